"""Every workaround the CUDA backend applies to numba-cuda, its simulator and NumPy, in one place.

The backend runs on a library that moves fast (numba-cuda) and on a simulator written for
correctness tests, not for speed or thread safety. Where either gets in the way, the fix lives
here, never inside a kernel or launcher, so that each can be dropped when it is no longer needed:

- ``numpy_row_stack``: numba-cuda overloads ``np.row_stack`` by name, which NumPy 2.5 removed.
- ``simulator_switch_interval``: the simulator's barriers wait on Python's thread switches.
- ``simulator_shared_array_lock``: the simulator's ``cuda.shared.array`` races between threads.
- ``no_interface_sync``: Numba waits on a CuPy array's stream at every launch.
- ``fast_launch``: Numba's launch costs ~100 us of host time; ``cuda.core``'s ~6 us.
- ``target_cc``: compiling for a chosen compute capability needs a driver for device functions
  (a context manager the PTX check uses, not applied at set-up).

Each is a function whose docstring says what it works around and in which versions, registered
with a check that reads the versions (and, where no fixed version is known, probes the thing it
patches) and decides whether it applies here. ``apply`` runs them once, when device "cuda" is
first set up (``runtime`` calls it on import); ``applied()`` tells which are active and why
(``tilegrad info`` prints it). ``tests/test_numba_compat.py`` holds, for each, a test that fails
once it is no longer needed and one that it works.
"""
import contextlib
import importlib.metadata
import re
import sys
import threading

import numpy as np

_WORKAROUNDS = []      # (function, check) in the order they apply
_REPORT = {}           # name -> (active, why), filled by apply()
_LOCK = threading.Lock()


def _parse(text):
    """'0.30.4' -> (0, 30, 4); a suffix such as 'rc1' or '.dev0' is dropped."""
    return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:3])


def numba_cuda_version():
    """The installed numba-cuda's version as a tuple, or None without it."""
    try:
        return _parse(importlib.metadata.version("numba-cuda"))
    except importlib.metadata.PackageNotFoundError:
        try:
            import numba_cuda
            return _parse(numba_cuda.__version__)
        except ImportError:
            return None


def numpy_version():
    return _parse(np.__version__)


def _show(version):
    return ".".join(map(str, version)) if version else "?"


def _workaround(check):
    """Register the decorated function as a workaround applied where ``check(simulator, gpu)``
    returns (True, why)."""
    def register(fn):
        _WORKAROUNDS.append((fn, check))
        return fn
    return register


def apply(simulator, gpu):
    """Decide each workaround and apply those that hold, once per process. ``simulator``: running
    under NUMBA_ENABLE_CUDASIM=1; ``gpu``: CuPy is there to give device memory."""
    with _LOCK:
        if _REPORT:
            return
        for fn, check in _WORKAROUNDS:
            active, why = check(simulator, gpu)
            if active:
                fn()
            _REPORT[fn.__name__] = (active, why)


def applied():
    """[(name, active, why)] for every workaround; empty until device "cuda" is set up."""
    return [(name, active, why) for name, (active, why) in _REPORT.items()]


def describe():
    """Lines for ``tilegrad info``: each workaround, on or off, and why."""
    if not _REPORT:
        return [("  none decided: the CUDA runtime is not loaded (device cuda not set up yet, "
                 "or numba-cuda missing)")]
    width = max(len(name) for name in _REPORT)
    return [f"  {name:{width}s} {'on ' if active else 'off'} {why}"
            for name, active, why in applied()]


# ---------------------------------------------------------------- NumPy 2.5 and np.row_stack

def _check_row_stack(simulator, gpu):
    if simulator:
        return False, "the simulator compiles nothing"
    if hasattr(np, "row_stack") and numpy_version() < (2, 5):
        return False, f"NumPy {np.__version__} still has np.row_stack"
    return True, (f"NumPy {np.__version__} has no np.row_stack, which numba-cuda "
                  f"{_show(numba_cuda_version())} overloads by name")


@_workaround(_check_row_stack)
def numpy_row_stack(tries=30):
    """numba-cuda 0.30 registers overloads for NumPy functions by name when it first compiles,
    among them ``np.row_stack`` (for NumPy >= 2.0), which NumPy 2.5 removed (``np.vstack`` under
    another name): on NumPy >= 2.5 every first kernel compile then fails with AttributeError.
    No numba-cuda release is known to drop the name, so this applies wherever NumPy lacks it.

    The alias is put back, and a one-line function is compiled here so that all of numba-cuda's
    registries load now; any other function NumPy has removed gets a stand-in that raises if
    called (no kernel here calls one)."""
    from numba import cuda
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
            setattr(np, missing.group(1), _removed(missing.group(1)))
        except Exception:   # noqa: BLE001 - no compiler here (NVVM missing): nothing to load
            return


def _removed(name):
    """A stand-in for ``numpy.<name>``, which this NumPy no longer has: raises if called."""
    def removed(*args, **kwargs):
        raise AttributeError(f"numpy.{name} was removed from NumPy {np.__version__}")
    return removed


# ---------------------------------------------------------------- the simulator's threads

def _check_simulator(simulator, gpu):
    if not simulator:
        return False, "not the simulator"
    return True, (f"numba-cuda {_show(numba_cuda_version())}'s simulator runs each CUDA thread "
                  f"as a Python thread")


@_workaround(_check_simulator)
def simulator_switch_interval():
    """Numba's simulator (every numba-cuda to date, 0.30 included) runs each CUDA thread as a
    Python thread and its barriers wait for the others to be scheduled, so Python's default 5 ms
    switch interval dominates every ``syncthreads``: 0.1 ms makes simulated kernels about three
    times faster."""
    sys.setswitchinterval(1e-4)


# The simulator's own cuda.shared.array, kept for the tests that show it still needs the lock.
ORIGINAL_SHARED_ARRAY = []


def _fake_shared():
    try:
        from numba.cuda.simulator.kernelapi import FakeCUDAShared
    except ImportError:
        return None
    return FakeCUDAShared


def _check_shared_array(simulator, gpu):
    if not simulator:
        return False, "not the simulator"
    shared = _fake_shared()
    version = _show(numba_cuda_version())
    if shared is None:
        return False, f"numba-cuda {version} has no simulator.kernelapi.FakeCUDAShared"
    import inspect
    params = list(inspect.signature(shared.array).parameters)
    own = shared.array.__module__ == shared.__module__       # not replaced already
    if not own or params != ["self", "shape", "dtype", "alignment"] or \
            not isinstance(getattr(shared(0), "_allocations", None), dict):
        return False, f"numba-cuda {version}'s FakeCUDAShared.array is not the one patched"
    return True, (f"numba-cuda {version}'s FakeCUDAShared.array creates a block's array without "
                  f"a lock and refuses alignment=")


@_workaround(_check_shared_array)
def simulator_shared_array_lock():
    """In Numba's simulator (numba-cuda 0.30, and Numba's own simulator before it; no fixed
    release known) ``cuda.shared.array`` looks up a block's array by the caller's line and
    creates it if missing, without a lock: two threads can each create one and then never see
    each other's writes (seen as wrong conv2d gradients once thread switches became frequent).
    The lookup is replaced by the same one under a lock, keyed by the caller's file and line as
    before. It also refuses ``alignment=`` (which the GPU kernels use to get 128-bit shared
    loads); here the array is simply allocated with that alignment. Applies while
    ``FakeCUDAShared.array`` is the unlocked lookup on ``_allocations`` it replaces."""
    from numba.cuda import types as nb_types
    from numba.cuda.np import numpy_support
    shared = _fake_shared()
    original, lock = shared.array, threading.Lock()
    ORIGINAL_SHARED_ARRAY.append(original)

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
                res = self._allocations[key] = aligned_empty(shape, dtype, alignment or 1)
        return res

    shared.array = array


def aligned_empty(shape, dtype, alignment):
    """``np.empty(shape, dtype)`` whose data starts at a multiple of ``alignment`` bytes."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(count * dtype.itemsize + alignment, np.uint8)
    start = -raw.__array_interface__["data"][0] % alignment
    return raw[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


# ---------------------------------------------------------------- launching on a GPU

def _cuda_config():
    """numba-cuda's config object: ``numba.cuda.core.config`` since numba-cuda moved it out of
    Numba (0.30 has it), ``numba.config`` before."""
    try:
        from numba.cuda.core import config
    except ImportError:   # pragma: no cover - older numba-cuda
        from numba import config
    return config


def _check_interface_sync(simulator, gpu):
    if simulator:
        return False, "not on a GPU (simulator)"
    if not gpu:
        return False, "no CuPy arrays to pass"
    return True, (f"numba-cuda {_show(numba_cuda_version())} waits on the stream of every CuPy "
                  f"array it is passed (NUMBA_CUDA_ARRAY_INTERFACE_SYNC defaults to 1)")


@_workaround(_check_interface_sync)
def no_interface_sync():
    """Numba (every numba-cuda to date, 0.30 included) synchronises on the stream a CuPy array
    names in ``__cuda_array_interface__`` each time the array is passed to a kernel: a host wait
    per argument per launch. Every kernel here launches on CuPy's current stream, the one the
    arrays were made on, so stream order already holds and the wait is turned off."""
    _cuda_config().CUDA_ARRAY_INTERFACE_SYNC = False


FAST_LAUNCH_SINCE = (0, 30)      # the numba-cuda whose kernel argument layout packers() follows
CORE = {}                        # "launch", "LaunchConfig", "to_core_stream" once fast_launch runs


def _check_fast_launch(simulator, gpu):
    if simulator:
        return False, "not on a GPU (simulator)"
    if not gpu:
        return False, "no CuPy arrays to pass"
    version = numba_cuda_version()
    if version is None or version < FAST_LAUNCH_SINCE:
        return False, f"numba-cuda {_show(version)} is older than {_show(FAST_LAUNCH_SINCE)}"
    try:
        import cuda.core
        from numba.cuda.cudadrv import driver
        from numba.cuda.typing.typeof import Purpose, typeof  # noqa: F401
    except ImportError as e:
        return False, f"numba-cuda {_show(version)} lacks what it needs ({e})"
    needed = ((cuda.core, "launch"), (cuda.core, "LaunchConfig"), (driver, "_to_core_stream"))
    missing = [f"{owner.__name__}.{name}" for owner, name in needed if not hasattr(owner, name)]
    if missing:
        return False, f"numba-cuda {_show(version)} has no {', '.join(missing)}"
    return True, (f"numba-cuda {_show(version)}'s launch costs ~100 us of host time; "
                  f"cuda.core {getattr(cuda.core, '__version__', '?')}'s launch ~6 us")


@_workaround(_check_fast_launch)
def fast_launch():
    """Numba's own launch types every argument and converts each CuPy array through
    ``__cuda_array_interface__`` at every call: about 100 us of host time per launch on an H200
    with numba-cuda 0.30, where the kernels of the reference models run for 5-100 us. Once Numba
    has compiled a kernel for some arguments, ``runtime`` launches the same compiled function
    through ``cuda.core.launch`` (about 6 us) with the arguments flattened as Numba's kernel ABI
    lays them out (``packers``). Applies from numba-cuda 0.30, where ``cuda.core`` has ``launch``
    and ``LaunchConfig`` and numba-cuda has the internals ``fast_launcher`` reads."""
    from cuda.core import LaunchConfig, launch
    from numba.cuda.cudadrv import driver
    CORE.update(launch=launch, LaunchConfig=LaunchConfig, to_core_stream=driver._to_core_stream)


def packers(argtypes):
    """One packer per Numba argument type, following numba-cuda's kernel ABI: None for an array
    (it becomes meminfo, parent, size, itemsize, data, shape..., strides...), ``tuple`` for a
    tuple of arrays (its members one after the other), a ctypes type or ``bool`` for a scalar;
    None overall if some type is not one of these."""
    import ctypes

    from numba.core import types as nb_types
    out = []
    for t in argtypes:
        if isinstance(t, nb_types.Array):
            out.append(None)
        elif isinstance(t, nb_types.UniTuple) and isinstance(t.dtype, nb_types.Array):
            out.append(tuple)
        elif isinstance(t, nb_types.Integer):
            out.append(getattr(ctypes, f"c_{t}"))
        elif t == nb_types.float64:
            out.append(ctypes.c_double)
        elif t == nb_types.float32:
            out.append(ctypes.c_float)
        elif t == nb_types.boolean:
            out.append(bool)
        else:
            return None
    return out


def fast_launcher(kernel, args):
    """(the compiled function ``cuda.core.launch`` takes, ``packers`` of the arguments) for the
    overload that Numba compiled ``kernel`` into for ``args``; None where ``fast_launch`` is off,
    for a debug kernel, or for an argument it cannot pack."""
    if not CORE:
        return None
    try:
        from numba.cuda.typing.typeof import Purpose, typeof
        argtypes = tuple(typeof(a, Purpose.argument) for a in args)
        compiled = kernel.overloads.get(argtypes)
        if compiled is None or getattr(compiled, "debug", False):
            return None
        packed = packers(argtypes)
        if packed is None:
            return None
        return compiled._codelibrary.get_cufunc().kernel, packed
    except Exception:   # noqa: BLE001 - another numba-cuda: keep Numba's own launch
        return None


# ---------------------------------------------------------------- target_cc

class _TargetDevice:
    """Stands in for the current device while compiling: only its compute capability is read."""

    def __init__(self, cc):
        self.compute_capability = tuple(cc)


@contextlib.contextmanager
def target_cc(cc):
    """Compile device functions for ``cc`` without a driver (numba-cuda 0.30; used by ``ptx.py``).

    ``compile_ptx`` takes ``cc`` for the kernel, but a ``cuda.jit(device=True)`` function the
    kernel calls is compiled by its dispatcher for ``get_current_device()``, which needs a CUDA
    driver (CudaSupportError "CUDA driver library cannot be found" on a machine without one) and,
    with one, would use the present GPU's cc rather than the target's. While compiling, the
    dispatcher module's ``get_current_device`` answers with ``cc``. A device function's typed IR
    is cached on its dispatcher after its first compile, so the second target links the first
    one's IR (NVVM still generates code for the kernel's own target; Numba lowers nothing
    differently between sm_80 and sm_90). Where numba-cuda has no such function, nothing is
    patched.
    """
    from numba.cuda import dispatcher
    original = getattr(dispatcher, "get_current_device", None)
    if original is None:    # another numba-cuda layout: nothing to stand in for
        yield
        return
    dispatcher.get_current_device = lambda: _TargetDevice(cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = original
