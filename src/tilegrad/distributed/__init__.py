"""``tilegrad.distributed``: torch.distributed's names for data-parallel training, on MPI and NCCL.

tilegrad has no communication code of its own: processes are started by an MPI launcher
(``mpiexec -n 4 python train.py``), MPI (through mpi4py) moves host memory, and NCCL (through
CuPy) moves GPU memory. ``pip install tilegrad[dist]`` installs mpi4py and MPICH's wheel.

- ``init_process_group(backend=None)``: ``"mpi"`` (tensors on "cpu"; "cuda" tensors through the
  host) or ``"nccl"`` (tensors on "cuda", NCCL's id sent over MPI, NCCL on its own stream). The
  default is ``"nccl"`` where a GPU is usable, else ``"mpi"``. Rank and world size are MPI's;
  a launcher whose environment names more processes than MPI sees is refused at once.
- ``get_rank``, ``get_world_size``, ``get_local_rank`` (the rank among the processes on this
  machine; also ``get_node_local_rank``), ``get_local_world_size``, ``get_backend``,
  ``is_initialized``.
- Collectives, in place on a tensor, identical on every rank: ``all_reduce`` (``ReduceOp.SUM``,
  ``AVG``, ``MAX``, ``MIN``, ``PRODUCT``), ``broadcast``, ``all_gather``, ``barrier``; with
  ``async_op=True`` each returns a ``Work`` to ``wait()`` on. ``broadcast_object_list`` and
  ``all_gather_object`` move picklable Python objects.
- ``destroy_process_group()``.

Once a group of more than one process is initialised, an exception that reaches the top of any
rank ends the whole job (``MPI_Abort``) after printing it, instead of leaving the other ranks
waiting in a collective forever; ``abort()`` does the same by hand.

>>> import tilegrad as tg, tilegrad.distributed as dist   # doctest: +SKIP
>>> dist.init_process_group("mpi")                          # doctest: +SKIP
>>> t = tg.tensor([float(dist.get_rank())])                 # doctest: +SKIP
>>> dist.all_reduce(t, op=dist.ReduceOp.SUM)                # doctest: +SKIP
"""
from __future__ import annotations

import enum
import importlib.util
import sys
import traceback
from typing import Any

import numpy as np

from . import launcher
from ._mpi import Work

__all__ = [
    "ReduceOp", "Work", "group", "is_available", "is_mpi_available", "is_nccl_available",
    "is_initialized", "init_process_group", "destroy_process_group", "get_backend", "get_rank",
    "get_world_size", "get_local_rank", "get_node_local_rank", "get_local_world_size", "barrier",
    "all_reduce", "broadcast", "all_gather", "broadcast_object_list", "all_gather_object", "abort",
]


class ReduceOp(enum.Enum):
    """How ``all_reduce`` combines the ranks' tensors (torch.distributed.ReduceOp)."""
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"


class group:  # noqa: N801 - torch.distributed.group
    """``group.WORLD``: the default group, the only one tilegrad has."""
    WORLD = "WORLD"


_GROUP = None             # the default process group once initialised
_PREVIOUS_HOOK = None     # sys.excepthook before init_process_group replaced it
_DTYPES = ("float32", "float64", "int32", "int64", "uint8")


def is_available() -> bool:
    """True: the module is always there (whether a backend is, ``is_mpi_available`` says)."""
    return True


def is_mpi_available() -> bool:
    """Whether mpi4py is installed (``pip install tilegrad[dist]``)."""
    return importlib.util.find_spec("mpi4py") is not None


def is_nccl_available() -> bool:
    """Whether CuPy can load NCCL and a GPU is usable."""
    from ._nccl import available
    return available()[0]


def is_initialized() -> bool:
    return _GROUP is not None


def _default_backend():
    from .. import accelerator
    return "nccl" if accelerator.is_available() and is_nccl_available() else "mpi"


def init_process_group(backend: str | None = None, init_method: str | None = None,
                       timeout: Any = None, world_size: int = -1, rank: int = -1,
                       store: Any = None, group_name: str = "", pg_options: Any = None,
                       device_id: Any = None) -> None:
    """Join the job the MPI launcher started, as ``torch.distributed.init_process_group``.

    ``backend``: "mpi" or "nccl" (default: "nccl" where a GPU is usable, else "mpi").
    ``world_size`` and ``rank``, if given, must be what MPI says (MPI decides both);
    ``init_method`` may be None or "env://"; ``timeout``, ``group_name``, ``pg_options`` and
    ``device_id`` are accepted and unused (MPI has no timeout on a collective)."""
    global _GROUP
    if _GROUP is not None:
        raise RuntimeError("init_process_group: trying to initialize the default process group "
                           "twice!")
    backend = _default_backend() if backend is None else str(backend).lower()
    if backend not in ("mpi", "nccl"):
        raise ValueError(f"init_process_group: backend must be 'mpi' or 'nccl', got {backend!r} "
                         f"(tilegrad runs on MPI and NCCL only; use 'mpi' where PyTorch uses "
                         f"'gloo')")
    if init_method not in (None, "env://"):
        raise ValueError(f"init_process_group: init_method {init_method!r} is not supported: "
                         f"the MPI launcher (mpiexec) starts and connects the processes")
    if store is not None:
        raise ValueError("init_process_group: a store is not supported: the MPI launcher "
                         "(mpiexec) connects the processes")
    if not is_mpi_available():
        raise RuntimeError("init_process_group: mpi4py is not installed; pip install "
                           "'tilegrad[dist]' (mpi4py and MPICH), then start the job with mpiexec")
    from ._mpi import MPIGroup
    mpi = MPIGroup()
    wrong = launcher.mismatch_message(mpi.size)
    for name, given, actual in (("world_size", world_size, mpi.size), ("rank", rank, mpi.rank)):
        if wrong is None and given not in (-1, None) and int(given) != actual:
            wrong = (f"init_process_group: {name}={given} was given, but MPI says this process "
                     f"is rank {mpi.rank} of {mpi.size}")
    if wrong is not None:
        mpi.destroy()
        raise RuntimeError(wrong)
    if backend == "nccl":
        from ._nccl import NCCLGroup
        try:
            _GROUP = NCCLGroup(mpi)
        except Exception:
            mpi.destroy()
            raise
    else:
        _GROUP = mpi
    if _GROUP.size > 1:
        _install_abort_hook()


def destroy_process_group(group: Any = None) -> None:
    """Leave the default group (a new ``init_process_group`` may follow; MPI itself stays up
    until the process exits)."""
    global _GROUP
    _check_group("destroy_process_group", group)
    g = _group("destroy_process_group")
    _GROUP = None
    _remove_abort_hook()
    g.destroy()


def _group(op):
    if _GROUP is None:
        raise ValueError(f"{op}: the default process group has not been initialized, please make "
                         f"sure to call init_process_group.")
    return _GROUP


def _check_group(op, g):
    if g not in (None, group.WORLD):
        raise ValueError(f"{op}: only the default group (None or group.WORLD) exists in "
                         f"tilegrad, got {g!r}")


def get_backend(group: Any = None) -> str:
    _check_group("get_backend", group)
    return _group("get_backend").name


def get_rank(group: Any = None) -> int:
    """This process's rank, 0 .. world size - 1."""
    _check_group("get_rank", group)
    return _group("get_rank").rank


def get_world_size(group: Any = None) -> int:
    """The number of processes in the job."""
    _check_group("get_world_size", group)
    return _group("get_world_size").size


def get_local_rank() -> int:
    """This process's rank among the job's processes on the same machine (which GPU it takes)."""
    return _group("get_local_rank").local_rank


def get_local_world_size() -> int:
    """(tilegrad) The number of the job's processes on this machine (they share its cores)."""
    return _group("get_local_world_size").local_size


def get_node_local_rank(fallback_rank: int | None = None) -> int:
    """torch's name for ``get_local_rank``; ``fallback_rank`` before initialisation."""
    if _GROUP is None and fallback_rank is not None:
        return fallback_rank
    return get_local_rank()


# ---------------------------------------------------------------- collectives

def _check_tensor(op, tensor):
    from ..tensor import Tensor
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{op}: expects a tilegrad Tensor, got {type(tensor).__name__}")
    if tensor.dtype.name not in _DTYPES:
        raise TypeError(f"{op}: a {tensor.dtype} tensor cannot be communicated; the dtypes are "
                        f"{', '.join(_DTYPES)}")


def _done(work, async_op):
    if async_op:
        return work
    work.wait()
    return None


def all_reduce(tensor: Any, op: ReduceOp = ReduceOp.SUM, group: Any = None,
               async_op: bool = False) -> Work | None:
    """Combine ``tensor`` across all ranks with ``op``, in place, the same result on every rank.
    ``ReduceOp.AVG`` is the sum divided by the world size (floating-point tensors only)."""
    _check_group("all_reduce", group)
    g = _group("all_reduce")
    _check_tensor("all_reduce", tensor)
    if not isinstance(op, ReduceOp):
        raise TypeError(f"all_reduce: op must be a ReduceOp, got {op!r}")
    if op is ReduceOp.AVG and tensor.dtype.kind != "f":
        raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating-point tensor, got "
                        f"{tensor.dtype}")
    return _done(g.all_reduce(tensor, op.value), async_op)


def broadcast(tensor: Any, src: int, group: Any = None, async_op: bool = False) -> Work | None:
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every other rank."""
    _check_group("broadcast", group)
    g = _group("broadcast")
    _check_tensor("broadcast", tensor)
    _check_rank("broadcast", src, g.size)
    return _done(g.broadcast(tensor, int(src)), async_op)


def all_gather(tensor_list: list, tensor: Any, group: Any = None,
               async_op: bool = False) -> Work | None:
    """``tensor_list[r]`` becomes rank r's ``tensor``, on every rank. ``tensor_list`` holds one
    tensor per rank, each of ``tensor``'s shape, dtype and device."""
    _check_group("all_gather", group)
    g = _group("all_gather")
    _check_tensor("all_gather", tensor)
    if not isinstance(tensor_list, (list, tuple)) or len(tensor_list) != g.size:
        got = len(tensor_list) if isinstance(tensor_list, (list, tuple)) else \
            type(tensor_list).__name__
        raise ValueError(f"all_gather: tensor_list must be a list of {g.size} tensors (the world "
                         f"size), got {got}")
    for i, out in enumerate(tensor_list):
        _check_tensor("all_gather", out)
        if (out.shape, out.dtype, out.device) != (tensor.shape, tensor.dtype, tensor.device):
            raise ValueError(f"all_gather: tensor_list[{i}] is {out.shape} {out.dtype} on "
                             f"{out.device}, the input {tensor.shape} {tensor.dtype} on "
                             f"{tensor.device}; they must match")
    return _done(g.all_gather(tensor_list, tensor), async_op)


def barrier(group: Any = None, async_op: bool = False, device_ids: Any = None) -> Work | None:
    """Wait until every rank has reached the barrier."""
    _check_group("barrier", group)
    return _done(_group("barrier").barrier(), async_op)


def broadcast_object_list(object_list: list, src: int = 0, group: Any = None,
                          device: Any = None) -> None:
    """Replace the items of ``object_list`` on every rank with rank ``src``'s (pickled)."""
    _check_group("broadcast_object_list", group)
    g = _group("broadcast_object_list")
    _check_rank("broadcast_object_list", src, g.size)
    if not isinstance(object_list, list):
        raise TypeError(f"broadcast_object_list: expects a list, got "
                        f"{type(object_list).__name__}")
    object_list[:] = g.broadcast_object(list(object_list) if g.rank == src else None, int(src))


def all_gather_object(object_list: list, obj: Any, group: Any = None) -> None:
    """``object_list[r]`` becomes rank r's ``obj`` (pickled), on every rank."""
    _check_group("all_gather_object", group)
    g = _group("all_gather_object")
    if not isinstance(object_list, list) or len(object_list) != g.size:
        raise ValueError(f"all_gather_object: object_list must be a list of {g.size} items (the "
                         f"world size)")
    object_list[:] = g.all_gather_object(obj)


def _check_rank(op, src, size):
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= src < size:
        raise ValueError(f"{op}: src must be a rank in 0..{size - 1}, got {src!r}")


def allreduce_floats(values: Any, op: str = "sum") -> np.ndarray:
    """A float64 allreduce of a few host numbers (sum or max), as a NumPy array: what the
    trainer uses for losses and counts."""
    return _group("allreduce_floats").allreduce_floats(values, op)


# ---------------------------------------------------------------- ending the job on an error

def abort(exit_code: int = 1) -> None:
    """End every process of the job now (``MPI_Abort``); the launcher exits with an error."""
    sys.stdout.flush()
    sys.stderr.flush()
    _group("abort").abort(exit_code)


def _abort_hook(kind, value, tb):
    rank = _GROUP.rank if _GROUP is not None else "?"
    sys.stderr.write(f"rank {rank}: an exception ended this process; aborting the job\n")
    traceback.print_exception(kind, value, tb)
    if _GROUP is not None:
        abort(1)


def _install_abort_hook():
    global _PREVIOUS_HOOK
    if _PREVIOUS_HOOK is None:
        _PREVIOUS_HOOK, sys.excepthook = sys.excepthook, _abort_hook


def _remove_abort_hook():
    global _PREVIOUS_HOOK
    if _PREVIOUS_HOOK is not None:
        sys.excepthook, _PREVIOUS_HOOK = _PREVIOUS_HOOK, None
