"""Whether this machine has a CUDA GPU, asked of the driver (libcuda) without importing Numba:
the oracle stage then runs on it, else in Numba's simulator."""
import ctypes


def gpu_count():
    """The CUDA devices the driver sees; 0 without a driver or a device."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0
