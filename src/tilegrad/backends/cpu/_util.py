"""Small helpers the family modules of the cpp backend share."""
import numpy as np

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def same_float(*arrays):
    """Whether every array is float32, or every one float64: what the C++ kernels take. Other
    dtypes (integers, mixed) go to the NumPy backend."""
    dt = arrays[0].dtype
    return dt in FLOATS and all(a.dtype == dt for a in arrays[1:])


def contiguous(x):
    """``x`` itself when C-contiguous and aligned (no copy), else a C-contiguous copy; 0-d
    arrays stay 0-d."""
    if x.flags.c_contiguous and x.flags.aligned and x.dtype.isnative:
        return x
    return np.array(x, order="C", dtype=x.dtype.newbyteorder("="))
