"""Making tensors: from data, filled, random, ranges (torch's factory functions)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from . import _checks as C
from . import dtypes
from .backends import get_device
from .errors import ArgumentError
from .tensor import Tensor, _DeviceLike, _Number, _shape_args, _Size, check_can_require_grad

def _device_and_dtype(device, dtype, op, default=None, requires_grad=False):
    """The checked device and dtype of a new tensor, before anything is allocated."""
    dev = get_device(device)
    dev.backend   # raises DeviceUnavailableError with the reason
    dtype = dtypes.as_dtype(
        dtype if dtype is not None else (default or dtypes.get_default_dtype()), op)
    held = getattr(dev.backend, "DTYPES", dtypes.SUPPORTED)
    if dtype not in held:
        raise TypeError(f"{op}: dtype {dtype} is not supported on device '{dev.name}' "
                        f"(supported: {', '.join(str(d) for d in held)})")
    if requires_grad:
        check_can_require_grad(dtype)
    return dev, dtype


def tensor(data: Tensor | npt.ArrayLike, dtype: npt.DTypeLike | None = None,
           device: _DeviceLike = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (a Tensor, NumPy array, list or number).

    Python floats become the default dtype (float32), Python ints int64, NumPy arrays keep theirs.
    """
    if isinstance(data, Tensor):
        data = data.numpy()
    arr = np.asarray(data)
    if dtype is None:
        from_python = not isinstance(data, (np.ndarray, np.generic))
        if arr.dtype.kind == "f" and from_python:
            dtype = dtypes.get_default_dtype()
        elif arr.dtype.kind in "iu" and from_python:
            dtype = dtypes.int64
        else:
            dtype = arr.dtype
    dev, dtype = _device_and_dtype(device, dtype, "tensor", requires_grad=requires_grad)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"tensor: cannot make a tensor from data of type {arr.dtype}")
    t = Tensor(dev.backend.from_numpy(arr.astype(dtype, copy=False)), dev)
    t.requires_grad = requires_grad
    return t


def from_numpy(a: np.ndarray) -> Tensor:
    """A CPU tensor with a copy of the NumPy array ``a`` (its dtype kept)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"from_numpy: expects a numpy.ndarray, got {type(a).__name__}")
    return tensor(a)


def _filled(value, shape, dtype, device, requires_grad, op):
    shape = C.sizes(_shape_args(shape, op), op)
    dev, dtype = _device_and_dtype(device, dtype, op, requires_grad=requires_grad)
    if dtype.kind in "iu" and not isinstance(value, (bool, np.bool_)):
        # PyTorch's range check: an int may wrap into an unsigned dtype from as far below 0 as
        # the dtype reaches above (-1 gives 255 in uint8); a float must fit.
        lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
        if dtype.kind == "u" and C.is_int(value):
            lo = -hi
        if not lo <= value <= hi:
            raise ArgumentError(f"{op}: the value {value} does not fit in {dtype}")
        value = np.array(value).astype(dtype).item()   # -1 to 255, 2.5 to 2: a C cast
    t = Tensor(dev.backend.full(shape, value, dtype), dev)
    t.requires_grad = requires_grad
    return t


def zeros(*size: _Size, dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
          requires_grad: bool = False) -> Tensor:
    return _filled(0, size, dtype, device, requires_grad, "zeros")


def ones(*size: _Size, dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
         requires_grad: bool = False) -> Tensor:
    return _filled(1, size, dtype, device, requires_grad, "ones")


def full(size: Sequence[int], fill_value: _Number | np.number | np.bool_,
         dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` filled with ``fill_value``; without ``dtype``, the value's (as
    PyTorch: a bool gives bool, an int int64, a float the default dtype)."""
    if dtype is None and isinstance(fill_value, (bool, np.bool_)):
        dtype = dtypes.bool_
    elif dtype is None and C.is_int(fill_value):
        dtype = dtypes.int64
    return _filled(fill_value, (tuple(size),), dtype, device, requires_grad, "full")


def zeros_like(t: Tensor, dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
               requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=dtype or t.dtype, device=device or t.device,
                 requires_grad=requires_grad)


def ones_like(t: Tensor, dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
              requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=dtype or t.dtype, device=device or t.device,
                requires_grad=requires_grad)


def _random(sample, size, dtype, device, requires_grad, op):
    from . import random
    shape = _shape_args(size, op)
    dev, dtype = _device_and_dtype(device, dtype, op)
    if dtype not in dtypes.FLOATING:
        raise TypeError(f"{op}: expects a floating-point dtype, got {dtype}")
    t = Tensor(dev.backend.from_numpy(sample(random.generator(), shape).astype(dtype)), dev)
    t.requires_grad = requires_grad
    return t


def randn(*size: _Size, dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
          requires_grad: bool = False) -> Tensor:
    """Samples of the standard normal distribution, from the generator ``manual_seed`` seeds."""
    return _random(lambda g, s: g.standard_normal(s), size, dtype, device, requires_grad, "randn")


def rand(*size: _Size, dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
         requires_grad: bool = False) -> Tensor:
    """Samples of the uniform distribution on [0, 1)."""
    return _random(lambda g, s: g.random(s), size, dtype, device, requires_grad, "rand")


def arange(start: float, end: float | None = None, step: float = 1,
           dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
           requires_grad: bool = False) -> Tensor:
    """Values from ``start`` to ``end`` (excluded) by ``step``; int64 unless a number is a float."""
    if end is None:
        start, end = 0, start
    if (step > 0 and start > end) or (step < 0 and start < end):
        raise ArgumentError(f"arange: the bounds [{start}, {end}) and the step {step} have "
                            f"inconsistent signs")
    if dtype is not None and dtypes.as_dtype(dtype, "arange") == dtypes.int64:
        # PyTorch truncates the numbers to int64 (after checking their signs): 0.5 steps by 0.
        start, end, step = int(start), int(end), int(step)
    if step == 0:
        raise ArgumentError("arange: step must not be zero")
    values = np.arange(start, end, step)
    if dtype is None:
        dtype = dtypes.int64 if values.dtype.kind in "iu" else dtypes.get_default_dtype()
    return tensor(values, dtype=dtype, device=device, requires_grad=requires_grad)
