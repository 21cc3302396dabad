"""The ``mpi`` backend: collectives of MPI (through mpi4py) on host memory.

Tensors on "cpu" are NumPy arrays, which MPI reads and writes in place. A "cuda" tensor travels
through the host: copied out, reduced by MPI, copied back (neither MPI wheel on PyPI is
CUDA-aware). Every collective is started nonblocking (``Iallreduce``, ``Ibcast``,
``Iallgather``), so that ``async_op=True`` returns a ``Work`` whose ``wait()`` finishes it; the
arithmetic of a reduction is MPI's, and the division of ``ReduceOp.AVG`` (which MPI lacks) is a
tilegrad kernel on the tensor's own device.
"""
import numpy as np

from .. import autograd

HOST_DEVICES = ("cpu", "numpy")


class Work:
    """One collective in flight (torch.distributed's ``Work``): ``wait()`` completes it and
    returns True; ``is_completed()`` asks without waiting."""

    def __init__(self, request=None, finish=None):
        self._request, self._finish, self._done = request, finish, False

    def is_completed(self) -> bool:
        if self._done:
            return True
        return self._request is None or bool(self._request.Test())

    def wait(self, timeout=None) -> bool:
        if not self._done:
            if self._request is not None:
                self._request.Wait()
            if self._finish is not None:
                self._finish()
            self._done = True
        return True


def _host_buffer(tensor):
    """The NumPy array MPI works on for ``tensor``, and whether it is the tensor's own storage."""
    data = tensor._data
    if tensor.device.name in HOST_DEVICES and isinstance(data, np.ndarray) \
            and data.flags.c_contiguous:
        return data, True
    host = tensor._be.to_numpy(data)       # a copy (np.ascontiguousarray would make 0-d 1-d)
    return (host if host.flags.c_contiguous else np.array(host, order="C")), False


def _write_back(tensor, host, op):
    """``host`` (the collective's result) into ``tensor`` when it is not already there."""
    be = tensor._be
    be.copy_into(tensor._data, be.from_numpy(host))
    tensor._version_counter.bump(op)


class MPIGroup:
    """The default process group over ``MPI.COMM_WORLD`` (a private duplicate of it, so that
    tilegrad's messages never meet a user's own mpi4py traffic)."""

    name = "mpi"

    def __init__(self):
        from mpi4py import MPI      # initialises MPI, once per process
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self.ops = {"sum": MPI.SUM, "avg": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN,
                    "product": MPI.PROD}

    # ------------------------------------------------------------ tensors
    def all_reduce(self, tensor, op):
        buf, own = _host_buffer(tensor)

        def finish():
            if not own:
                _write_back(tensor, buf, "all_reduce")
            else:
                tensor._version_counter.bump("all_reduce")
            if op == "avg":
                _average(tensor, self.size)
        return Work(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.ops[op]), finish)

    def broadcast(self, tensor, src):
        buf, own = _host_buffer(tensor)

        def finish():
            if self.rank != src:
                if own:
                    tensor._version_counter.bump("broadcast")
                else:
                    _write_back(tensor, buf, "broadcast")
        return Work(self.comm.Ibcast(buf, root=src), finish)

    def all_gather(self, tensor_list, tensor):
        send, _ = _host_buffer(tensor)
        recv = np.empty((self.size,) + send.shape, send.dtype)

        def finish():
            for out, part in zip(tensor_list, recv):
                _write_back(out, np.array(part, order="C"), "all_gather")
        return Work(self.comm.Iallgather(send, recv), finish)

    # ------------------------------------------------------------ objects and the rest
    def barrier(self):
        return Work(self.comm.Ibarrier())

    def broadcast_object(self, obj, src):
        return self.comm.bcast(obj, root=src)

    def all_gather_object(self, obj):
        return self.comm.allgather(obj)

    def allreduce_floats(self, values, op="sum"):
        """A float64 allreduce of a few host numbers (the trainer's loss and metrics)."""
        buf = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.ops[op])
        return buf

    def abort(self, code):
        self.MPI.COMM_WORLD.Abort(code)

    def destroy(self):
        self.comm.Free()


def _average(tensor, size):
    """``tensor /= size`` in place, outside any graph (the AVG of a SUM)."""
    with autograd.no_grad():
        tensor.div_(size)
