"""Device "cpu" and its two backends.

- ``cpp``: the hand-written C++ kernels of ``csrc/``, built at install time as the extension
  ``tilegrad._cpu`` (pybind11, OpenMP, the vector width chosen at run time). Each primitive the
  extension has runs there; the NumPy backend serves the rest (``backend.NATIVE`` and
  ``backend.FALLBACK`` list the split, as ``tilegrad info`` does). Storage is NumPy arrays either
  way, so switching backends never moves or converts a tensor.
- ``numpy``: the NumPy backend alone, the specification (``tilegrad/backends/numpy.py``).

Device "cpu" runs ``cpp`` where the extension was built, else ``numpy``;
``TILEGRAD_CPU_BACKEND=numpy`` (read at the first device lookup) or ``use("numpy")``
(``tilegrad.kernels.use("cpu", "numpy")``) choose. ``set_num_threads`` sets the extension's
OpenMP threads, which otherwise follow ``OMP_NUM_THREADS``.
"""
import importlib
import importlib.util
import os
import sys
import warnings

CHOICES = ("cpp", "numpy")
STATUS_FILE = "_cpu_build.txt"    # written by setup.py next to the extension
_state = {}


def extension():
    """``(tilegrad._cpu, None)``, or ``(None, why it is missing)``. Loaded once.
    ``TILEGRAD_CPU_EXTENSION=path`` loads a build from elsewhere (the sanitizer build)."""
    if "ext" not in _state:
        _state["ext"] = _load_extension(os.environ.get("TILEGRAD_CPU_EXTENSION"))
    return _state["ext"]


def _load_extension(path):
    try:
        if path:
            spec = importlib.util.spec_from_file_location("tilegrad._cpu", path)
            if spec is None:
                raise ImportError(f"TILEGRAD_CPU_EXTENSION={path!r} is not an extension module")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules["tilegrad._cpu"] = module
        else:
            module = importlib.import_module("tilegrad._cpu")
        return module, None
    except ImportError as e:
        return None, _missing_reason(e)


def _missing_reason(error):
    import tilegrad
    status = os.path.join(os.path.dirname(tilegrad.__file__), STATUS_FILE)
    try:
        with open(status) as f:
            recorded = f.read().strip()
    except OSError:
        recorded = ""
    if recorded.startswith("not built"):
        return f"the C++ extension was {recorded}"
    if not recorded:
        return ("the C++ extension tilegrad._cpu was not built (installed without a C++ "
                "compiler or pybind11?); reinstall with them to build it")
    return f"the C++ extension tilegrad._cpu cannot be imported: {error}"


def _backend(choice):
    """The backend module for ``choice``; ``cpp`` raises RuntimeError if the extension is
    missing."""
    if choice not in CHOICES:
        raise ValueError(f"cpu has backends {', '.join(CHOICES)}, not {choice!r}")
    if choice == "numpy":
        from tilegrad.backends import numpy as spec
        return spec
    ext, why = extension()
    if ext is None:
        raise RuntimeError(f"cpu backend 'cpp' is unavailable: {why}")
    from tilegrad.backends.cpu import backend
    return backend


def initial_backend():
    """The backend device "cpu" starts with: $TILEGRAD_CPU_BACKEND, else cpp where built."""
    choice, source = _environment()
    if choice is not None and choice not in CHOICES:
        raise ValueError(f"{source}: cpu backend {choice!r}; expected one of {', '.join(CHOICES)}")
    if choice is None or choice == "cpp":
        ext, why = extension()
        if ext is not None:
            return _backend("cpp")
        if choice == "cpp":
            warnings.warn(f"{source}: {why}; using the NumPy backend",
                          RuntimeWarning, stacklevel=2)
    return _backend("numpy")


def _environment():
    """(the backend named by $TILEGRAD_CPU_BACKEND, or by a ``cpu=...`` item of
    $TILEGRAD_KERNELS, or None; which variable said it)."""
    choice = os.environ.get("TILEGRAD_CPU_BACKEND", "").strip()
    if choice:
        return choice, f"TILEGRAD_CPU_BACKEND={choice!r}"
    spec = os.environ.get("TILEGRAD_KERNELS", "")
    for item in spec.split(","):
        family, _, version = (s.strip() for s in item.partition("="))
        if family == "cpu":
            return version, f"TILEGRAD_KERNELS={spec!r}"
    return None, None


def _cpu_device():
    from tilegrad.backends import get_device
    return get_device("cpu")


def use(choice):
    """Run device "cpu" on backend ``choice`` ("cpp" or "numpy") from now on."""
    _cpu_device()._module = _backend(choice)


def current():
    """The backend device "cpu" runs: "cpp" or "numpy"."""
    return "cpp" if _cpu_device().backend.name == "cpp" else "numpy"


def describe():
    """Lines for ``tilegrad info``: the backend in use, the extension's build, the split."""
    ext, why = extension()
    lines = [f"  in use: {current()} (TILEGRAD_CPU_BACKEND or kernels.use('cpu', ...) choose)"]
    if ext is None:
        return lines + [f"  cpp: unavailable: {why}"]
    from tilegrad.backends.cpu import backend
    lines.append(f"  cpp: tilegrad._cpu built by {ext.compiler}, "
                 f"{'OpenMP' if ext.openmp else 'no OpenMP'}, {ext.get_num_threads()} threads, "
                 f"vector width {ext.simd()} (the CPU has {ext.simd_supported()})"
                 f"{', sanitizers' if ext.sanitized else ''}")
    lines.append(f"  cpp kernels: {', '.join(sorted(backend.NATIVE))}")
    lines.append(f"  from the NumPy backend: {', '.join(backend.FALLBACK)}")
    return lines


def set_num_threads(n):
    """The number of threads the C++ kernels use (as ``torch.set_num_threads``)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: expected a positive number of threads, got {n}")
    ext, _ = extension()
    if ext is not None:
        ext.set_num_threads(n)
    _state["threads"] = n


def get_num_threads():
    """The number of threads the C++ kernels use (1 where the extension is missing)."""
    ext, _ = extension()
    return ext.get_num_threads() if ext is not None else _state.get("threads", 1)
