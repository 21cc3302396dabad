"""Memory, streams and launch helpers for the CUDA backend (no arithmetic lives here).

On a real GPU the storage is CuPy arrays from CuPy's memory pool, and every kernel launches on
CuPy's current stream, wrapped for Numba with ``cuda.external_stream`` so that Numba consuming a
CuPy array never synchronises on another stream. Under ``NUMBA_ENABLE_CUDASIM=1`` the storage is
NumPy arrays and Numba's simulator runs the same kernels on the CPU, one Python thread per CUDA
thread: slow, so the simulator tests use tiny shapes and the launchers small tiles.

CuPy provides memory, streams and copies only. No CuPy math (ufuncs, reductions, cuBLAS, cuDNN)
may appear in this backend; ``tests/test_cuda_source.py`` reads the sources and fails on any.
"""
import sys
import threading

import numpy as np
from numba import config, cuda

SIMULATOR = bool(config.ENABLE_CUDASIM)


def _aligned_empty(shape, dtype, alignment):
    """``np.empty(shape, dtype)`` whose data starts at a multiple of ``alignment`` bytes."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(count * dtype.itemsize + alignment, np.uint8)
    start = -raw.__array_interface__["data"][0] % alignment
    return raw[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


def _tune_simulator():
    """Two fixes for Numba's simulator, which runs each CUDA thread as a Python thread.

    - Its scheduler polls the threads holding the GIL, so Python's default 5 ms switch interval
      dominates every barrier: 0.1 ms makes simulated kernels about three times faster.
    - ``cuda.shared.array`` there looks up a block's array by the caller's line and creates it if
      missing, without a lock: two threads can each create one and then never see each other's
      writes (seen as wrong conv2d gradients once thread switches became frequent). The lookup is
      replaced by the same one under a lock, keyed by the caller's file and line as before.
      It also refuses ``alignment=`` (which the GPU kernels use to get 128-bit shared loads);
      here the array is simply allocated with that alignment.
    """
    sys.setswitchinterval(1e-4)
    try:
        from numba.cuda import types as nb_types
        from numba.cuda.np import numpy_support
        from numba.cuda.simulator.kernelapi import FakeCUDAShared
    except ImportError:   # pragma: no cover - another numba-cuda layout: leave it as it is
        return
    original, lock = FakeCUDAShared.array, threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0:                            # dynamic shared memory: unchanged
            return original(self, shape, dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with lock:
            res = self._allocations.get(key)
            if res is None:
                if isinstance(dtype, nb_types.Type):
                    dtype = numpy_support.as_dtype(dtype)
                res = self._allocations[key] = _aligned_empty(shape, dtype, alignment or 1)
        return res

    FakeCUDAShared.array = array


if SIMULATOR:
    _tune_simulator()

xp = None
if not SIMULATOR:
    try:   # CuPy holds the memory on a GPU; without it the kernels can still be compiled to PTX
        import cupy as xp
    except ImportError:
        pass


def _no_interface_sync():
    """Numba synchronises on the stream a CuPy array names in ``__cuda_array_interface__`` each
    time the array is passed to a kernel: a host wait per argument per launch. Every kernel here
    launches on CuPy's current stream, the one the arrays were made on, so stream order already
    holds and the wait is turned off (the config object moved between numba and numba-cuda)."""
    try:
        from numba.cuda.core import config as cuda_config
    except ImportError:   # pragma: no cover - older numba-cuda
        cuda_config = config
    cuda_config.CUDA_ARRAY_INTERFACE_SYNC = False


def _numpy_compat(tries=30):
    """numba-cuda 0.30 registers overloads for NumPy functions by name when it first compiles,
    among them ``np.row_stack``, which NumPy 2.5 removed (``np.vstack`` under another name): on
    NumPy 2.5 every first kernel compile then fails with AttributeError. The alias is put back,
    and a one-line function is compiled here so that all of numba-cuda's registries load now; any
    other function NumPy has removed gets a stand-in that raises if called (no kernel here calls
    one)."""
    import re
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack

    def probe(x):
        x[0] = 0.0

    for _ in range(tries):
        try:
            cuda.compile_ptx(probe, "void(float32[::1])", cc=(8, 0))
            return
        except AttributeError as e:
            missing = re.match(r"module 'numpy' has no attribute '(\w+)'", str(e))
            if not missing:
                return        # not this problem: the first real compile reports it in full

            def removed(*args, _name=missing.group(1), **kwargs):
                raise AttributeError(f"numpy.{_name} was removed from NumPy {np.__version__}")
            setattr(np, missing.group(1), removed)
        except Exception:   # noqa: BLE001 - no compiler here (NVVM missing): nothing to load
            return


if not SIMULATOR and xp is not None:
    _no_interface_sync()
    _numpy_compat()


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


_SMS = []


def multiprocessors():
    """The GPU's multiprocessor count (read once through CuPy); 1 in the simulator."""
    if not _SMS:
        try:
            _SMS.append(1 if SIMULATOR else
                        int(xp.cuda.Device().attributes["MultiProcessorCount"]))
        except Exception:   # noqa: BLE001 - no GPU to ask: an H100/H200's count
            _SMS.append(132)
    return _SMS[0]


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
    ptr = xp.cuda.get_current_stream().ptr     # pragma: no cover - needs a GPU
    return 0 if ptr == 0 else cuda.external_stream(ptr)   # 0: the legacy default stream


# ---------------------------------------------------------------- launching

def launch(kernel, grid, block, *args):
    """``kernel[grid, block, stream()](*args)``, with less host time on a GPU.

    Numba's own launch types every argument and converts each CuPy array through
    ``__cuda_array_interface__`` at every call: about 100 us per launch on an H200, where the
    kernels of the reference models run for 5-100 us (``bench/launch_overhead.py``). So the first
    launch of each kernel with each kind of arguments goes through Numba (which compiles it);
    later ones flatten the arguments as Numba's kernel ABI lays them out (per array: meminfo,
    parent, size, itemsize, data, shape..., strides...) and launch the same compiled function
    through ``cuda.core``, about 6 us. In the simulator, or where numba-cuda's internals differ,
    every launch is Numba's own.
    """
    if SIMULATOR:
        kernel[grid, block, 0](*args)
        return
    key = (kernel, tuple((a.dtype.char, a.ndim, a.flags.c_contiguous) if isinstance(a, xp.ndarray)
                         else type(a) for a in args))
    fast = _FAST.get(key)
    if fast is None:
        kernel[grid, block, stream()](*args)
        _FAST[key] = _fast_path(kernel, args) or False
        return
    if fast is False:
        kernel[grid, block, stream()](*args)
        return
    function, packers = fast
    params = []
    for pack, a in zip(packers, args):
        if pack is None:
            params += (0, 0, a.size, a.itemsize, a.data.ptr, *a.shape, *a.strides)
        else:
            params.append(pack(a))
    _core_launch(_core_stream(), _config(grid, block), function, *params)


_FAST = {}
_CONFIGS = {}


def _dims(d):
    return (d, 1, 1) if isinstance(d, int) else tuple(d) + (1,) * (3 - len(d))


def _config(grid, block):
    cfg = _CONFIGS.get((grid, block))
    if cfg is None:
        cfg = _CONFIGS[(grid, block)] = _LaunchConfig(grid=_dims(grid), block=_dims(block),
                                                      shmem_size=0)
    return cfg


def _fast_path(kernel, args):
    """(the compiled function, one packer per argument: None for arrays), or None."""
    if _core_launch is None:
        return None
    try:
        import ctypes

        from numba.core import types as nb_types
        from numba.cuda.typing.typeof import Purpose, typeof
        argtypes = tuple(typeof(a, Purpose.argument) for a in args)
        compiled = kernel.overloads.get(argtypes)
        if compiled is None or getattr(compiled, "debug", False):
            return None
        packers = []
        for t in argtypes:
            if isinstance(t, nb_types.Array):
                packers.append(None)
            elif isinstance(t, nb_types.Integer):
                packers.append(getattr(ctypes, f"c_{t}"))
            elif t == nb_types.float64:
                packers.append(ctypes.c_double)
            elif t == nb_types.float32:
                packers.append(ctypes.c_float)
            elif t == nb_types.boolean:
                packers.append(bool)
            else:
                return None
        return compiled._codelibrary.get_cufunc().kernel, packers
    except Exception:   # noqa: BLE001 - another numba-cuda: keep Numba's own launch
        return None


def _core_stream():
    ptr = xp.cuda.get_current_stream().ptr
    s = _STREAMS.get(ptr)
    if s is None:
        from numba.cuda.cudadrv import driver
        s = _STREAMS[ptr] = driver._to_core_stream(0 if ptr == 0 else cuda.external_stream(ptr))
    return s


_STREAMS = {}
_core_launch = _LaunchConfig = None
if not SIMULATOR:
    try:
        from cuda.core import LaunchConfig as _LaunchConfig
        from cuda.core import launch as _core_launch
    except ImportError:   # pragma: no cover - an older numba-cuda: Numba's own launch only
        pass


def synchronize():
    """Wait until every kernel launched so far has finished (nothing to wait for simulated)."""
    if not SIMULATOR:
        xp.cuda.get_current_stream().synchronize()   # pragma: no cover - needs a GPU


# ---------------------------------------------------------------- memory

def empty(shape, dtype):
    return np.empty(shape, dtype=dtype) if SIMULATOR else xp.empty(shape, dtype=dtype)


def zeros(shape, dtype):
    # cupy.zeros is a memset (a copy of a constant), not arithmetic.
    return np.zeros(shape, dtype=dtype) if SIMULATOR else xp.zeros(shape, dtype=dtype)


_PLACEHOLDERS = {}


def placeholder(dtype):
    """A one-element array standing in for an optional argument that is absent (a bias): the
    kernel never reads it. One per dtype, made once."""
    dtype = np.dtype(dtype)
    if dtype not in _PLACEHOLDERS:
        _PLACEHOLDERS[dtype] = empty((1,), dtype)
    return _PLACEHOLDERS[dtype]


def from_numpy(a):
    a = np.array(a, order="C", copy=True)      # keeps 0-d arrays 0-d, unlike ascontiguousarray
    return a if SIMULATOR else xp.asarray(a)


def to_numpy(x):
    return np.array(x, copy=True) if SIMULATOR else xp.asnumpy(x)


def copy(x):
    """A C-contiguous copy (a device-to-device copy on a GPU)."""
    return np.array(x, copy=True, order="C") if SIMULATOR else xp.array(x, copy=True, order="C")
