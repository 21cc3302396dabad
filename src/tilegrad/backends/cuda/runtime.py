"""Memory, streams and launch helpers for the CUDA backend (no arithmetic lives here).

On a real GPU the storage is CuPy arrays from CuPy's memory pool, and every kernel launches on
CuPy's current stream, wrapped for Numba with ``cuda.external_stream`` so that Numba consuming a
CuPy array never synchronises on another stream. Under ``NUMBA_ENABLE_CUDASIM=1`` the storage is
NumPy arrays and Numba's simulator runs the same kernels on the CPU, one Python thread per CUDA
thread: slow, so the simulator tests use tiny shapes and the launchers small tiles.

CuPy provides memory, streams and copies only. No CuPy math (ufuncs, reductions, cuBLAS, cuDNN)
may appear in this backend; ``tests/test_cuda_source.py`` reads the sources and fails on any.
"""
import numpy as np
from numba import config, cuda

SIMULATOR = bool(config.ENABLE_CUDASIM)

xp = None
if not SIMULATOR:
    try:   # CuPy holds the memory on a GPU; without it the kernels can still be compiled to PTX
        import cupy as xp
    except ImportError:
        pass


def available():
    """(True, None), or (False, why not)."""
    if SIMULATOR:
        return True, None
    if xp is None:
        return False, "CuPy is not installed (pip install tilegrad[cuda])"
    if not cuda.is_available():   # pragma: no cover - needs a GPU
        return False, "no CUDA GPU is visible to Numba"
    return True, None   # pragma: no cover


def ceil_div(a, b):
    return (a + b - 1) // b


def c_strides(shape):
    """Host-side: the C-order strides of ``shape``, in elements."""
    strides, acc = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = acc
        acc *= shape[d]
    return strides


def coalesce(dims):
    """Host-side: (size, stride) pairs in C order with size-1 ones dropped and neighbours merged
    when stepping the outer one equals stepping the inner one through its whole size, so that
    kernels peel as few coordinates as possible; at least one pair."""
    out = []
    for size, stride in dims:
        if size == 1:
            continue
        if out and out[-1][1] == stride * size:
            out[-1] = (out[-1][0] * size, stride)
        else:
            out.append((size, stride))
    return out or [(1, 0)]


def stream():
    """The stream kernels launch on: CuPy's current stream on a GPU, the default one simulated."""
    if SIMULATOR:
        return 0
    return cuda.external_stream(xp.cuda.get_current_stream().ptr)   # pragma: no cover


# ---------------------------------------------------------------- memory

def empty(shape, dtype):
    return np.empty(shape, dtype=dtype) if SIMULATOR else xp.empty(shape, dtype=dtype)


def zeros(shape, dtype):
    # cupy.zeros is a memset (a copy of a constant), not arithmetic.
    return np.zeros(shape, dtype=dtype) if SIMULATOR else xp.zeros(shape, dtype=dtype)


def from_numpy(a):
    a = np.array(a, order="C", copy=True)      # keeps 0-d arrays 0-d, unlike ascontiguousarray
    return a if SIMULATOR else xp.asarray(a)


def to_numpy(x):
    return np.array(x, copy=True) if SIMULATOR else xp.asnumpy(x)


def copy(x):
    """A C-contiguous copy (a device-to-device copy on a GPU)."""
    return np.array(x, copy=True, order="C") if SIMULATOR else xp.array(x, copy=True, order="C")
