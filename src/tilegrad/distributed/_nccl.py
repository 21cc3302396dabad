"""The ``nccl`` backend: NCCL's collectives between GPUs, through CuPy's ``cupy.cuda.nccl``.

MPI still starts the job: it tells each process its rank, carries NCCL's unique id from rank 0 to
the others, and serves the object collectives and the barrier. Each process drives the GPU of
its local rank (``local_rank % device count``). NCCL runs on a stream of its own: a collective
first waits for the work already queued on the current stream (an event), runs on NCCL's
stream, and ``Work.wait()`` makes the current stream wait for it in turn, so kernels queued
before and after are ordered around it without the host waiting. ``ReduceOp.AVG`` is NCCL's own
``ncclAvg``. Tensors must be on "cuda" and the GPU real (NCCL has no simulator).
"""

# NCCL's ncclDataType_t and ncclRedOp_t, as cupy.cuda.nccl names them (ncclAvg needs NCCL 2.10).
_DTYPES = {"uint8": "NCCL_UINT8", "int32": "NCCL_INT32", "int64": "NCCL_INT64",
           "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}
_OPS = {"sum": ("NCCL_SUM", 0), "product": ("NCCL_PROD", 1), "max": ("NCCL_MAX", 2),
        "min": ("NCCL_MIN", 3), "avg": ("NCCL_AVG", 4)}


def available():
    """(True, None), or (False, why not)."""
    try:
        import cupy
        from cupy.cuda import nccl
        if not getattr(nccl, "available", True):
            raise ImportError("cupy.cuda.nccl.available is False")
        nccl.get_version()       # loads the library
    except Exception as e:   # noqa: BLE001 - ImportError, or a library that does not load
        return False, f"CuPy cannot use NCCL ({e}); pip install tilegrad[cuda] " \
                      f"'nvidia-nccl-cu13>=2.27.7,<3'"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False, "no CUDA GPU is visible"
    except cupy.cuda.runtime.CUDARuntimeError as e:
        return False, f"no CUDA GPU is usable ({e})"
    return True, None


class _StreamWork:
    """A collective queued on NCCL's stream; ``wait()`` orders the current stream after it."""

    def __init__(self, cupy, event, keep, finish=None):
        self._cupy, self._event, self._keep, self._finish = cupy, event, keep, finish
        self._done = False

    def is_completed(self) -> bool:
        return self._done or bool(self._event.done)

    def wait(self, timeout=None) -> bool:
        if not self._done:
            self._cupy.cuda.get_current_stream().wait_event(self._event)
            if self._finish is not None:
                self._finish()
            self._done, self._keep = True, None    # the buffers may go once ordered
        return True


class NCCLGroup:
    """NCCL communicator over the ranks of ``mpi`` (an MPIGroup, kept for the rest)."""

    name = "nccl"

    def __init__(self, mpi):
        ok, why = available()
        if not ok:
            raise RuntimeError(f"init_process_group: backend 'nccl' is unavailable: {why}")
        import cupy
        from cupy.cuda import nccl
        self.cupy, self.nccl, self.mpi = cupy, nccl, mpi
        self.rank, self.size = mpi.rank, mpi.size
        self.local_rank, self.local_size = mpi.local_rank, mpi.local_size
        self.gpu = self.local_rank % cupy.cuda.runtime.getDeviceCount()
        cupy.cuda.Device(self.gpu).use()
        uid = nccl.get_unique_id() if self.rank == 0 else None
        self.comm = nccl.NcclCommunicator(self.size, mpi.comm.bcast(uid, root=0), self.rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def _check(self, op, tensor):
        if tensor.device.name != "cuda":
            raise RuntimeError(f"{op}: backend 'nccl' works on cuda tensors; got a tensor on "
                               f"{tensor.device} (use backend 'mpi' for cpu tensors)")

    def _queue(self, call, keep, finish=None):
        """Run ``call(stream pointer)`` on NCCL's stream after the current stream's work."""
        cupy = self.cupy
        ready = cupy.cuda.Event(disable_timing=True)
        ready.record(cupy.cuda.get_current_stream())
        self.stream.wait_event(ready)
        call(self.stream.ptr)
        done = cupy.cuda.Event(disable_timing=True)
        done.record(self.stream)
        return _StreamWork(cupy, done, keep, finish)

    def _dtype(self, array):
        return getattr(self.nccl, _DTYPES[array.dtype.name])

    def all_reduce(self, tensor, op):
        self._check("all_reduce", tensor)
        a = tensor._data
        name, value = _OPS[op]
        code = getattr(self.nccl, name, value)
        work = self._queue(lambda s: self.comm.allReduce(a.data.ptr, a.data.ptr, a.size,
                                                         self._dtype(a), code, s), a)
        tensor._version_counter.bump("all_reduce")
        return work

    def broadcast(self, tensor, src):
        self._check("broadcast", tensor)
        a = tensor._data
        work = self._queue(lambda s: self.comm.bcast(a.data.ptr, a.size, self._dtype(a), src, s),
                           a)
        if self.rank != src:
            tensor._version_counter.bump("broadcast")
        return work

    def all_gather(self, tensor_list, tensor):
        self._check("all_gather", tensor)
        be, a = tensor._be, tensor._data
        recv = be.empty((self.size,) + tuple(a.shape), a.dtype)

        def finish():            # on the current stream, after NCCL's
            for out, part in zip(tensor_list, recv):
                be.copy_into(out._data, part)
                out._version_counter.bump("all_gather")
        return self._queue(lambda s: self.comm.allGather(a.data.ptr, recv.data.ptr, a.size,
                                                         self._dtype(a), s), (a, recv), finish)

    def barrier(self):
        self.cupy.cuda.get_current_stream().synchronize()
        self.stream.synchronize()
        return self.mpi.barrier()

    def broadcast_object(self, obj, src):
        return self.mpi.broadcast_object(obj, src)

    def all_gather_object(self, obj):
        return self.mpi.all_gather_object(obj)

    def allreduce_floats(self, values, op="sum"):
        return self.mpi.allreduce_floats(values, op)

    def abort(self, code):
        self.mpi.abort(code)

    def destroy(self):
        self.stream.synchronize()
        self.comm.destroy()
        self.mpi.destroy()


