"""Tensors in and out of other libraries: NumPy's array protocol, DLPack, pickle and deepcopy.

What shares memory and what copies (``docs/interop.md`` says it for users):

- ``np.asarray(t)`` of a "cpu" tensor is the tensor's own NumPy array (cpu storage is NumPy
  arrays): zero-copy. A "cuda" tensor's values are copied to the host.
- DLPack (``t.__dlpack__()``, ``tilegrad.from_dlpack(obj)``) hands over the storage itself, on
  the cpu (NumPy, torch) and on a GPU (CuPy, torch CUDA). In Numba's CUDA simulator the "cuda"
  storage is host memory pretending to be a GPU's, which no DLPack consumer could use as CUDA
  memory: both directions say so instead of exporting host memory as if it were a device's.
- pickle writes the values as a NumPy copy and the device by name, and builds the tensor on that
  device again when loaded; ``.grad`` and the graph are not carried (as PyTorch).
- ``copy.deepcopy`` copies the storage on its device (and ``.grad``, as PyTorch), once per
  storage: tensors that shared one (``p`` and ``p.data``, a tied weight) still do.
"""
from __future__ import annotations

import copy
import sys
from typing import Any

import numpy as np

from . import dtypes
from .backends import Device, get_device

# DLPack's device types (dlpack.h, DLDeviceType) that tilegrad can hold.
KDL_CPU, KDL_CUDA, KDL_CUDA_HOST, KDL_CUDA_MANAGED = 1, 2, 3, 13

# What a Tensor's __dict__ holds for the Tensor class itself; pickle and deepcopy rebuild these.
# Any other public attribute (one a user set on a tensor) travels as it is.
_CORE = frozenset(("_data", "device", "grad", "_ctx", "_out_index", "_version_counter", "_base",
                   "_copy_of", "_requires_grad"))


def _simulated(device: Device) -> bool:
    """True for device "cuda" run by Numba's simulator (its arrays are NumPy arrays). The cuda
    runtime is loaded once that device is set up; this never sets it up."""
    runtime = sys.modules.get("tilegrad.backends.cuda.runtime")
    return device.name == "cuda" and runtime is not None and runtime.SIMULATOR


def _no_simulated_dlpack(what: str) -> BufferError:
    return BufferError(f"{what}: device 'cuda' runs in Numba's CUDA simulator here, where its "
                       f"memory is host memory; DLPack needs a real GPU. Move the tensor to the "
                       f"cpu first (.cpu()), which DLPack exports without a copy.")


# ---------------------------------------------------------------- NumPy's array protocol
def to_array(t: Any, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
    """``Tensor.__array__``: the cpu storage itself unless a copy is asked for or needed (a
    dtype change); a host copy for other devices. ``copy=False`` where a copy is needed raises
    ValueError, as NumPy 2 asks of ``__array__``."""
    t._host_read("Tensor.__array__")
    need = np.dtype(dtype) if dtype is not None else None
    shared = t.device.name == "cpu"
    if copy is False and (not shared or (need is not None and need != t.dtype)):
        why = f"a {t.device} tensor lives off the host" if not shared else \
            f"converting {t.dtype} to {need} makes new values"
        raise ValueError(f"Tensor.__array__: cannot give a NumPy array without a copy "
                         f"(copy=False): {why}")
    arr = t._data if shared else t.numpy()
    if need is not None and need != arr.dtype:
        return arr.astype(need)
    return np.array(arr, copy=True) if copy and shared else arr


# ---------------------------------------------------------------- DLPack
def dlpack_device(t: Any) -> tuple[int, int]:
    """``Tensor.__dlpack_device__``: (DLPack device type, device id) of the storage."""
    if _simulated(t.device):
        raise _no_simulated_dlpack("Tensor.__dlpack_device__")
    return t._data.__dlpack_device__()


def dlpack(t: Any, stream: Any = None, max_version: Any = None, dl_device: Any = None,
           copy: bool | None = None) -> Any:
    """``Tensor.__dlpack__``: the storage's own capsule (NumPy's or CuPy's). Only the arguments
    given are passed on, so that an older NumPy without them still exports."""
    if _simulated(t.device):
        raise _no_simulated_dlpack("Tensor.__dlpack__")
    t._host_read("Tensor.__dlpack__")
    given = {k: v for k, v in (("stream", stream), ("max_version", max_version),
                               ("dl_device", dl_device), ("copy", copy)) if v is not None}
    return t._data.__dlpack__(**given)


def _check_dtype(dtype, op):
    if dtype not in dtypes.SUPPORTED:
        names = ", ".join(str(d) for d in dtypes.SUPPORTED)
        raise TypeError(f"{op}: dtype {dtype} is not supported by tilegrad (supported: {names}); "
                        f"convert it first (in torch: .to(torch.float32))")


def from_dlpack(obj: Any) -> Any:
    """A tensor over the memory of ``obj`` (a NumPy array, a torch tensor on the cpu or a GPU, a
    CuPy array: anything with ``__dlpack__``), on the matching device, without a copy where the
    storage is C-contiguous (a strided one, such as a transposed torch tensor, is copied: tilegrad
    keeps C-contiguous storage). Dtypes tilegrad lacks (float16, int16...) raise TypeError."""
    from .tensor import Tensor
    if isinstance(obj, Tensor):
        return obj.detach()
    if not hasattr(obj, "__dlpack__") or not hasattr(obj, "__dlpack_device__"):
        raise TypeError(f"from_dlpack: expects an object with __dlpack__ and __dlpack_device__ "
                        f"(a NumPy array, a torch tensor, a CuPy array), got "
                        f"{type(obj).__name__}")
    kind, _ = obj.__dlpack_device__()
    if kind == KDL_CPU:
        arr, dev = np.from_dlpack(obj), get_device("cpu")
    elif kind in (KDL_CUDA, KDL_CUDA_MANAGED):
        dev = get_device("cuda")
        dev.backend    # raises DeviceUnavailableError with the reason
        if _simulated(dev):
            raise _no_simulated_dlpack("from_dlpack")
        import cupy    # pragma: no cover - needs a GPU: the cuda backend's memory is CuPy's
        arr = cupy.from_dlpack(obj)   # pragma: no cover
    else:
        raise BufferError(f"from_dlpack: DLPack device type {kind} is not one tilegrad has "
                          f"(cpu: {KDL_CPU}, cuda: {KDL_CUDA})")
    _check_dtype(np.dtype(arr.dtype), "from_dlpack")
    if not arr.flags.c_contiguous:
        arr = dev.backend.copy(arr)
    return Tensor(arr, dev)


def cuda_array_interface(t: Any) -> dict:
    """``Tensor.__cuda_array_interface__`` on a GPU (CuPy's own); AttributeError elsewhere, so
    that ``hasattr`` says False and consumers try the next protocol."""
    if t.device.name != "cuda" or _simulated(t.device):
        raise AttributeError(f"a {t.device} tensor has no __cuda_array_interface__"
                             + (" in Numba's CUDA simulator" if t.device.name == "cuda" else ""))
    return t._data.__cuda_array_interface__   # pragma: no cover - needs a GPU


# ---------------------------------------------------------------- pickle
def reduce_tensor(t: Any) -> tuple:
    """``Tensor.__reduce_ex__``: rebuild from a NumPy copy of the values, the device's name and
    ``requires_grad`` (and public attributes a user set). ``.grad`` and the graph stay behind, as
    in PyTorch: a pickled non-leaf comes back as a leaf."""
    t._host_read("pickle")
    extra = {k: v for k, v in vars(t).items() if k not in _CORE and not k.startswith("_")}
    return rebuild_tensor, (type(t), t.numpy(), t.device.name, t.requires_grad, extra)


def rebuild_tensor(cls: type, values: np.ndarray, device: str, requires_grad: bool,
                   extra: dict) -> Any:
    """The tensor ``reduce_tensor`` described, on its device again (DeviceUnavailableError if
    that device cannot run here)."""
    dev = get_device(device)
    return _new(cls, dev.backend.from_numpy(values), dev, requires_grad, extra)


def _new(cls, data, dev, requires_grad, extra):
    from .tensor import Tensor
    out = cls.__new__(cls)
    Tensor.__init__(out, data, dev, requires_grad)   # a Parameter's __init__ takes a Tensor
    out.__dict__.update(extra)
    return out


# ---------------------------------------------------------------- deepcopy
_LEAVES_ONLY = ("Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                "protocol at the moment.")


def deepcopy_tensor(t: Any, memo: dict) -> Any:
    """``Tensor.__deepcopy__``, as PyTorch's: a leaf (or a tensor outside any graph) gets new
    storage on its device, its ``requires_grad``, a deep copy of ``.grad``, of its public
    attributes; a non-leaf that requires grad raises RuntimeError. Storage shared between tensors
    is copied once (``memo``), so the copies share it too; a reshape view stays a view."""
    if t.requires_grad and not t.is_leaf:
        raise RuntimeError(f"{_LEAVES_ONLY} This tensor of shape {t.shape} was computed by "
                           f"{t._ctx.op_name()}; .detach() it first.")
    base = None
    if t._base is not None:
        base_src = t._base if t._base.is_leaf else t._base.detach()
        base = copy.deepcopy(base_src, memo)
        data = base._be.reshape(base._data, t.shape)
    else:
        data = _memoised(memo, t._data, lambda: t._be.copy(t._data))
    extra = {k: copy.deepcopy(v, memo) for k, v in vars(t).items()
             if k not in _CORE and not k.startswith("_")}
    out = _new(type(t), data, t.device, t.requires_grad, extra)
    memo[id(t)] = out   # before .grad: a gradient cannot name its tensor, but be safe
    out._version_counter = _memoised(memo, t._version_counter, type(t._version_counter))
    out._base, out._copy_of = base, t._copy_of
    out.grad = copy.deepcopy(t.grad, memo)
    return out


def _memoised(memo, obj, make):
    """The copy of ``obj`` already made in this deepcopy, or ``make()`` noted as its copy."""
    key = id(obj)
    if key not in memo:
        memo[key] = make()
        memo.setdefault(id(memo), []).append(obj)   # keep ``obj`` alive: its id is a key
    return memo[key]
