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

from . import _numba_compat

SIMULATOR = bool(config.ENABLE_CUDASIM)

xp = None
if not SIMULATOR:
    try:   # CuPy holds the memory on a GPU; without it the kernels can still be compiled to PTX
        import cupy as xp
    except ImportError:
        pass

# What numba-cuda, its simulator or NumPy need worked around here (each fix, its versions and
# whether it applies: _numba_compat.py), decided once, as device "cuda" is set up.
_numba_compat.apply(simulator=SIMULATOR, gpu=xp is not None)


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
    """Launch ``kernel`` on the current stream (see ``_launch``); counted, and while a CUDA graph
    is being captured in the simulator, recorded instead of run."""
    COUNTS["kernels"] += 1
    if _RECORDING:
        _RECORDING[-1].append(("kernel", kernel, grid, block, args))
        return
    _launch(kernel, grid, block, *args)


_DRY = [False]


def count_only(on=True):
    """Simulator only: with ``on``, launches are counted (and recorded while capturing) but the
    kernels do not run, so that the launches of a full-size training step can be counted on a
    machine whose simulator could not run it. Results are garbage meanwhile; nothing in a step
    decides what to launch from device values, so the counts are those of a real run."""
    assert SIMULATOR or not on, "count_only is for the simulator"
    _DRY[0] = bool(on)


def _launch(kernel, grid, block, *args):
    """``kernel[grid, block, stream()](*args)``, with less host time on a GPU.

    Numba's own launch types every argument and converts each CuPy array through
    ``__cuda_array_interface__`` at every call: about 100 us per launch on an H200, where the
    kernels of the reference models run for 5-100 us (``bench/launch_overhead.py``). So the first
    launch of each kernel with each kind of arguments goes through Numba (which compiles it);
    later ones flatten the arguments as Numba's kernel ABI lays them out (per array: meminfo,
    parent, size, itemsize, data, shape..., strides...) and launch the same compiled function
    through ``cuda.core``, about 6 us. In the simulator, or where numba-cuda's internals differ
    (``_numba_compat.fast_launch`` is off), every launch is Numba's own.
    """
    if _DRY[0]:
        return
    if SIMULATOR:
        kernel[grid, block, 0](*args)
        return
    key = (kernel, tuple(_arg_key(a) for a in args))
    fast = _FAST.get(key)
    if fast is None:
        kernel[grid, block, stream()](*args)
        _FAST[key] = _numba_compat.fast_launcher(kernel, args) or False
        return
    if fast is False:
        kernel[grid, block, stream()](*args)
        return
    function, packers = fast
    params = []
    for pack, a in zip(packers, args):
        if pack is None:
            params += (0, 0, a.size, a.itemsize, a.data.ptr, *a.shape, *a.strides)
        elif pack is tuple:          # a tuple of arrays: its members one after the other
            for m in a:
                params += (0, 0, m.size, m.itemsize, m.data.ptr, *m.shape, *m.strides)
        else:
            params.append(pack(a))
    _numba_compat.CORE["launch"](_core_stream(), _config(grid, block), function, *params)


_FAST = {}
_CONFIGS = {}


def _arg_key(a):
    """What decides which compiled overload an argument selects (arrays by dtype, rank and
    layout; tuples of arrays member by member; scalars by type)."""
    if isinstance(a, xp.ndarray):
        return (a.dtype.char, a.ndim, a.flags.c_contiguous)
    if isinstance(a, tuple):
        return tuple(_arg_key(m) for m in a)
    return type(a)


def _dims(d):
    return (d, 1, 1) if isinstance(d, int) else tuple(d) + (1,) * (3 - len(d))


def _config(grid, block):
    cfg = _CONFIGS.get((grid, block))
    if cfg is None:
        cfg = _CONFIGS[(grid, block)] = _numba_compat.CORE["LaunchConfig"](
            grid=_dims(grid), block=_dims(block), shmem_size=0)
    return cfg


def _core_stream():
    ptr = xp.cuda.get_current_stream().ptr
    s = _STREAMS.get(ptr)
    if s is None:
        to_core = _numba_compat.CORE["to_core_stream"]
        s = _STREAMS[ptr] = to_core(0 if ptr == 0 else cuda.external_stream(ptr))
    return s


_STREAMS = {}


def synchronize():
    """Wait until every kernel launched so far has finished (nothing to wait for simulated), then
    raise any error a kernel reported (``check_errors``)."""
    forbid_in_capture("synchronize: waiting for the device")
    if not SIMULATOR:
        xp.cuda.get_current_stream().synchronize()   # pragma: no cover - needs a GPU
    check_errors()


# ---------------------------------------------------------------- counting and capture

# Device operations issued since the process started: kernel launches, copies and fills (a
# memset or a device-to-device copy is one node of a CUDA graph, as a kernel is), graph replays.
COUNTS = {"kernels": 0, "copies": 0, "graphs": 0}

# While a CUDA graph is captured in the simulator: the list its operations are recorded into.
# On a GPU the capturing stream records them itself and this stays empty.
_RECORDING = []
_CAPTURING = [0]      # captures in progress (simulated or on a GPU)


def counts():
    """A copy of ``COUNTS``: diff two of them to count what a piece of code issues."""
    return dict(COUNTS)


def capturing():
    """True while a CUDA graph is being captured."""
    return _CAPTURING[0] > 0


def forbid_in_capture(what):
    """Host work cannot be part of a CUDA graph: raise naming ``what`` while one is captured."""
    if _CAPTURING[0]:
        from tilegrad.errors import CaptureError
        raise CaptureError(f"{what} is not allowed while capturing a CUDA graph")


class Capture:
    """One capture in progress, then the captured work (``replay``).

    In the simulator the launches, copies and fills issued between ``begin`` and ``end`` are
    recorded (a kernel with its bound arguments, device arrays by reference) and not run;
    ``replay`` runs them again in order, and no Python code of the model runs. On a GPU the work
    is captured by CuPy stream capture on a dedicated stream, allocating from a memory pool
    private to the graph, so every address the graph holds stays its own while it lives.
    """

    def __init__(self):
        self.ops = self.graph = self.stream = self.pool = None
        self._contexts = []

    def begin(self):
        error_flag()                  # made outside the graph's pool: it outlives every graph
        _CAPTURING[0] += 1
        if SIMULATOR:
            self.ops = []
            _RECORDING.append(self.ops)
            return
        xp.cuda.get_current_stream().synchronize()   # pragma: no cover - needs a GPU
        self.stream = xp.cuda.Stream(non_blocking=True)
        self.pool = xp.cuda.MemoryPool()
        self._contexts = [xp.cuda.using_allocator(self.pool.malloc), self.stream]
        for c in self._contexts:
            c.__enter__()
        self.stream.begin_capture()

    def end(self):
        _CAPTURING[0] -= 1
        if SIMULATOR:
            _RECORDING.remove(self.ops)
            return
        try:                                          # pragma: no cover - needs a GPU
            self.graph = self.stream.end_capture()
        finally:
            for c in reversed(self._contexts):
                c.__exit__(None, None, None)
            self._contexts = []

    def replay(self):
        COUNTS["graphs"] += 1
        _PENDING[0] = True            # its kernels may report errors: look at the next sync
        if SIMULATOR:
            for op in self.ops:
                _run(op)
            return
        self.graph.launch(xp.cuda.get_current_stream())   # pragma: no cover - needs a GPU

    def __len__(self):
        """The number of recorded operations (simulator), or None on a GPU."""
        return len(self.ops) if self.ops is not None else None


def _run(op):
    if op[0] == "kernel":
        _launch(*op[1:4], *op[4])
    else:                    # "fill" (dst, a value) or "copy" (dst, src): one assignment either way
        op[1][...] = op[2]


def _record(op):
    """In a simulated capture, record ``op`` for replay; it has run already only if it must
    (a fill or copy that makes a new array leaves it as the GPU would: its value set at replay)."""
    _RECORDING[-1].append(op)


# ---------------------------------------------------------------- errors reported by kernels

# Kernels that find bad input (an index out of range) cannot raise: they write a code and two
# values into a small device array, the first report winning, and go on without reading out of
# bounds. The host reads the array at the next synchronisation (synchronize, a copy to the host,
# a replayed graph followed by either) and raises the error registered for the code.
_FLAG = []
_PENDING = [False]
_ERRORS = {}


def error_flag():
    """The device array (int64, 4) kernels report errors into: [code, value, bound, unused]. Each
    launch that passes it marks a check as pending (``expect_errors``)."""
    if not _FLAG:
        _FLAG.append(np.zeros(4, np.int64) if SIMULATOR else xp.zeros(4, np.int64))
    return _FLAG[0]


def expect_errors():
    """The error flag, for a kernel about to be launched with it: the next sync will look at it."""
    _PENDING[0] = True
    return error_flag()


def register_error(code, make):
    """``make(value, bound)`` builds the exception for ``code`` (a positive int, one per check)."""
    assert code > 0 and _ERRORS.get(code, make) is make, f"error code {code} is taken"
    _ERRORS[code] = make


def clear_errors():
    """Forget any error reported and not yet raised (a test's leftovers, say)."""
    if _FLAG:
        _FLAG[0][...] = 0
    _PENDING[0] = False


def check_errors():
    """Raise the error a kernel reported since the last check, if any (and clear it)."""
    if not _PENDING[0] or _CAPTURING[0]:
        return
    _PENDING[0] = False
    flag = error_flag()
    code, value, bound, _ = (int(v) for v in (flag if SIMULATOR else xp.asnumpy(flag)))
    if code:
        flag[...] = 0                # a fill, not arithmetic
        make = _ERRORS.get(code)
        raise make(value, bound) if make else RuntimeError(f"a kernel reported error {code}")


# ---------------------------------------------------------------- constants

_CONSTANTS = {}
_MAX_CONSTANTS = 4096


def constant(a):
    """A device copy of the small host array ``a`` (a shape or stride table), made once per
    content and kept: launchers pass the same tables every step, so they are uploaded once, before
    any capture, instead of at every call. Never write into it."""
    a = np.ascontiguousarray(a)
    key = (a.dtype.str, a.shape, a.tobytes())
    out = _CONSTANTS.get(key)
    if out is None:
        if len(_CONSTANTS) >= _MAX_CONSTANTS:
            _CONSTANTS.clear()
        out = _CONSTANTS[key] = _upload_constant(a)
    return out


def _upload_constant(a):
    """A device copy of ``a``. While a graph is captured the copy cannot go on the capturing
    stream (it would be replayed from host memory that is gone): it is made on a side stream and
    waited for, before the kernel that reads it is captured."""
    if SIMULATOR or not _CAPTURING[0]:
        return np.array(a) if SIMULATOR else xp.asarray(a)
    side = xp.cuda.Stream(non_blocking=True)      # pragma: no cover - needs a GPU
    with side:
        out = xp.asarray(a)
    side.synchronize()
    return out


# ---------------------------------------------------------------- memory

def empty(shape, dtype):
    return np.empty(shape, dtype=dtype) if SIMULATOR else xp.empty(shape, dtype=dtype)


def zeros(shape, dtype):
    # cupy.zeros is a memset (a copy of a constant), not arithmetic.
    COUNTS["copies"] += 1
    if SIMULATOR:
        out = np.zeros(shape, dtype=dtype)
        if _RECORDING:
            _record(("fill", out, 0))
        return out
    return xp.zeros(shape, dtype=dtype)


_PLACEHOLDERS = {}


def placeholder(dtype):
    """A one-element array standing in for an optional argument that is absent (a bias): the
    kernel never reads it. One per dtype, made once."""
    dtype = np.dtype(dtype)
    if dtype not in _PLACEHOLDERS:
        _PLACEHOLDERS[dtype] = np.empty((1,), dtype) if SIMULATOR else xp.empty((1,), dtype)
    return _PLACEHOLDERS[dtype]


def from_numpy(a):
    forbid_in_capture("from_numpy: copying host data to the device (copy_ it into a tensor made "
                      "before the capture)")
    a = np.array(a, order="C", copy=True)      # keeps 0-d arrays 0-d, unlike ascontiguousarray
    return a if SIMULATOR else xp.asarray(a)


def to_numpy(x):
    forbid_in_capture("to_numpy: reading device memory on the host")
    out = np.array(x, copy=True) if SIMULATOR else xp.asnumpy(x)
    check_errors()
    return out


def copy(x):
    """A C-contiguous copy (a device-to-device copy on a GPU)."""
    COUNTS["copies"] += 1
    if SIMULATOR:
        out = np.array(x, copy=True, order="C")
        if _RECORDING:
            _record(("copy", out, x))
        return out
    return xp.array(x, copy=True, order="C")
