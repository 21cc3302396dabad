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


def _foreign(data):
    """True for another library's tensor (torch, CuPy...: ``__dlpack__``), not a NumPy array."""
    return hasattr(data, "__dlpack__") and not isinstance(data, (np.ndarray, np.generic, Tensor))


def _from_foreign(data):
    """A tilegrad tensor over the memory of another library's tensor, its graph cut off (torch
    refuses to export a tensor that requires grad)."""
    from .interop import from_dlpack
    detach = getattr(data, "detach", None)
    return from_dlpack(detach() if callable(detach) else data)


def tensor(data: Tensor | npt.ArrayLike, dtype: npt.DTypeLike | None = None,
           device: _DeviceLike = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (a Tensor, a torch tensor or any DLPack producer,
    a NumPy array, a list or a number).

    Python floats become the default dtype (float32), Python ints int64, arrays and tensors keep
    theirs; a tensor's copy stays on its device unless ``device`` says otherwise (as PyTorch).
    """
    if _foreign(data):
        data = _from_foreign(data)
    if isinstance(data, Tensor):
        return _copy_of_tensor(data, dtype, device, requires_grad)
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


def _copy_of_tensor(t, dtype, device, requires_grad):
    dev, dtype = _device_and_dtype(t.device if device is None else device,
                                   t.dtype if dtype is None else dtype, "tensor",
                                   requires_grad=requires_grad)
    src = t.detach()
    if dev != src.device:
        data = dev.backend.from_numpy(src.numpy())
    else:
        data = src._be.copy(src._data)
    if dtype != src.dtype:
        data = dev.backend.astype(data, dtype)
    out = Tensor(data, dev)
    out.requires_grad = requires_grad
    return out


def as_tensor(data: Tensor | npt.ArrayLike, dtype: npt.DTypeLike | None = None,
              device: _DeviceLike = None) -> Tensor:
    """``data`` as a tensor, sharing its memory where it can (as ``torch.as_tensor``): a tensor
    of the asked dtype and device is returned as it is, a writable C-contiguous NumPy array of a
    supported dtype becomes a "cpu" tensor over the same memory, a torch or CuPy tensor shares
    through DLPack; anything else (a list, another dtype or device) is copied."""
    if _foreign(data):
        data = _from_foreign(data)
    if isinstance(data, np.ndarray) and data.dtype in dtypes.SUPPORTED and \
            data.flags.c_contiguous and data.flags.writeable and get_device(device).name == "cpu":
        data = Tensor(data, get_device("cpu"))
    if isinstance(data, Tensor):
        want_dev = data.device if device is None else get_device(device)
        want_dtype = data.dtype if dtype is None else dtypes.as_dtype(dtype, "as_tensor")
        if want_dev == data.device and want_dtype == data.dtype:
            return data
        return data.to(want_dev, want_dtype)
    return tensor(data, dtype=dtype, device=device)


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


def empty(*size: _Size, dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
          requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` whose values are whatever the memory held (fill it before reading)."""
    shape = C.sizes(_shape_args(size, "empty"), "empty")
    dev, dtype = _device_and_dtype(device, dtype, "empty", requires_grad=requires_grad)
    t = Tensor(dev.backend.empty(shape, dtype), dev)
    t.requires_grad = requires_grad
    return t


def empty_like(t: Tensor, dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
               requires_grad: bool = False) -> Tensor:
    return empty(t.shape, dtype=dtype or t.dtype, device=device or t.device,
                 requires_grad=requires_grad)


def full_like(t: Tensor, fill_value: _Number | np.number | np.bool_,
              dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
              requires_grad: bool = False) -> Tensor:
    """``fill_value`` in a tensor of ``t``'s shape, dtype and device (unless told)."""
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device or t.device,
                requires_grad=requires_grad)


def randn_like(t: Tensor, dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
               requires_grad: bool = False) -> Tensor:
    return randn(t.shape, dtype=dtype or t.dtype, device=device or t.device,
                 requires_grad=requires_grad)


def rand_like(t: Tensor, dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
              requires_grad: bool = False) -> Tensor:
    return rand(t.shape, dtype=dtype or t.dtype, device=device or t.device,
                requires_grad=requires_grad)


def randint(*args: int | Sequence[int], size: Sequence[int] | None = None,
            low: int | None = None, high: int | None = None,
            dtype: npt.DTypeLike | None = None, device: _DeviceLike = None,
            requires_grad: bool = False) -> Tensor:
    """Integers drawn uniformly from ``[low, high)``: ``randint(high, size)`` or
    ``randint(low, high, size)``, as ``torch.randint``; int64 unless ``dtype`` says otherwise."""
    from . import random
    args = list(args)
    if size is None and args and isinstance(args[-1], (tuple, list)):
        size = args.pop()
    if len(args) > 2 or (len(args) == 2 and (low is not None or high is not None)):
        raise TypeError(f"randint: expects (high, size) or (low, high, size), got {tuple(args)}")
    if len(args) == 2:
        low, high = args
    elif args:
        high = args[0]
    if high is None or size is None:
        raise TypeError("randint: missing the high bound or the size")
    low = 0 if low is None else low
    if not C.is_int(low) or not C.is_int(high):
        raise TypeError(f"randint: the bounds are integers, got {low!r} and {high!r}")
    if low >= high:
        raise ArgumentError(f"randint: expects low to be less than high, but got low={low} >= "
                            f"high={high}")
    shape = C.sizes(_shape_args((tuple(size),), "randint"), "randint")
    dev, dtype = _device_and_dtype(device, dtype, "randint", default=dtypes.int64,
                                   requires_grad=requires_grad)
    if dtype.kind in "iu" and not (np.iinfo(dtype).min <= low and high - 1 <= np.iinfo(dtype).max):
        raise ArgumentError(f"randint: the bounds [{low}, {high}) do not fit in {dtype}")
    values = random.generator().integers(low, high, size=shape).astype(dtype)
    t = Tensor(dev.backend.from_numpy(values), dev)
    t.requires_grad = requires_grad
    return t


def eye(n: int, m: int | None = None, dtype: npt.DTypeLike | None = None,
        device: _DeviceLike = None, requires_grad: bool = False) -> Tensor:
    """The ``n`` x ``m`` (``n`` x ``n``) matrix with ones on the diagonal, zeros elsewhere."""
    m = n if m is None else m
    for name, k in (("n", n), ("m", m)):
        if not C.is_int(k) or k < 0:
            raise ArgumentError(f"eye: {name} must be an integer >= 0, got {k!r}")
    dev, dtype = _device_and_dtype(device, dtype, "eye", requires_grad=requires_grad)
    return tensor(np.eye(n, m, dtype=dtype), device=dev, requires_grad=requires_grad)
