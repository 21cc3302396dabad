"""The dtypes tilegrad supports, as NumPy dtypes under PyTorch's names."""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")

float = float32
double = float64
long = int64

SUPPORTED = (float32, float64, int32, int64, uint8, bool_)
FLOATING = (float32, float64)

_default = [float32]


def get_default_dtype() -> np.dtype:
    """The dtype of floating-point tensors and parameters made without an explicit dtype."""
    return _default[0]


def set_default_dtype(dtype: npt.DTypeLike) -> None:
    """Set the default floating-point dtype (float32 or float64), as torch.set_default_dtype."""
    dtype = as_dtype(dtype, "set_default_dtype")
    if dtype not in FLOATING:
        raise TypeError(f"set_default_dtype: only float32 and float64 are allowed, got {dtype}")
    _default[0] = dtype


def as_dtype(dtype: npt.DTypeLike, op: str) -> np.dtype:
    """``dtype`` (a NumPy dtype, type or name) as a supported NumPy dtype, or a TypeError naming
    ``op``."""
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}: {dtype!r} is not a dtype") from None
    if d not in SUPPORTED:
        names = ", ".join(str(s) for s in SUPPORTED)
        raise TypeError(f"{op}: dtype {d} is not supported (supported: {names})")
    return d
