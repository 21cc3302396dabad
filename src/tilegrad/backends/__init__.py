"""Backends and the devices that select them.

A backend is a module of same-named functions (see ``backends/numpy.py`` for the list).
A device names one backend; a backend that cannot be used here is still a device, a
disabled one whose ``reason`` says why, so that asking for it gives a clear error and
``tilegrad.devices()`` can list it.
"""
import importlib
import threading


class DeviceUnavailableError(RuntimeError):
    """The device exists in tilegrad but cannot run on this machine."""


class Device:
    """A place tensors live: a name, the backend module that computes there, and availability."""

    def __init__(self, name, module=None, reason=None):
        self.name = name
        self._module = module
        self.reason = reason

    @property
    def available(self):
        return self._module is not None

    @property
    def backend(self):
        if self._module is None:
            raise DeviceUnavailableError(f"device '{self.name}' is unavailable: {self.reason}")
        return self._module

    def __eq__(self, other):
        return isinstance(other, Device) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f"device(type='{self.name}')"

    def __str__(self):
        return self.name

    def __reduce__(self):
        # By name: the backend module cannot be pickled, and the device it names is the one this
        # process has (set up when loaded). deepcopy goes through here too: the same Device back.
        return device, (self.name,)


def _load(module_name):
    try:
        return importlib.import_module(module_name), None
    except ImportError as e:
        return None, str(e)


def _cuda_device():
    # Hand-written Numba CUDA kernels on CuPy memory; under NUMBA_ENABLE_CUDASIM=1 the same code
    # runs in Numba's simulator on NumPy arrays. Without numba, CuPy or a GPU it is a disabled
    # device that says why, never an import error.
    try:
        from tilegrad.backends.cuda import runtime
    except ImportError as e:
        return Device("cuda", None,
                      f"numba-cuda is not installed (pip install tilegrad[cuda]): {e}")
    ok, why = runtime.available()
    if not ok:
        return Device("cuda", None, why)
    module, err = _load("tilegrad.backends.cuda.backend")
    return Device("cuda", module, err)


def _cpu_device():
    # The C++ kernels where the extension is built, else the NumPy backend (backends/cpu).
    from tilegrad.backends import cpu
    return Device("cpu", cpu.initial_backend())


# Every device tilegrad knows, in the order ``devices()`` lists them, with what sets it up. A
# device is set up the first time it is asked for, so that work on "cpu" never imports Numba or
# CuPy (about a second and a few hundred modules): "cuda" is built by the first
# ``device("cuda")``, ``.to("cuda")``, ``devices()`` or ``tilegrad.cuda`` call that needs it.
_FACTORIES = {"cpu": _cpu_device, "cuda": _cuda_device}
_DEVICES = {}
_SETUP = threading.RLock()      # two threads asking at once set a device up once
_DEFAULT = {"name": "cpu"}


def _registry():
    """The devices set up so far, by name ("cpu" always; the others once asked for). A test may
    put a device into it, a stand-in for "cuda" (``tests/conftest.py``'s ``disabled_cuda``) or
    one of its own."""
    if "cpu" not in _DEVICES:
        _lookup("cpu")
    return _DEVICES


def _lookup(name):
    """The Device named ``name`` (one set up already, or a key of ``_FACTORIES``), set up on
    first use."""
    dev = _DEVICES.get(name)
    if dev is None:
        with _SETUP:
            dev = _DEVICES.get(name)
            if dev is None:
                dev = _DEVICES[name] = _FACTORIES[name]()
    return dev


def get_device(spec=None):
    """The Device for ``spec``: a Device, a name ("cpu", "cuda", "cuda:0"), or None for the
    default device ("cpu" unless ``set_default_device`` said otherwise)."""
    if spec is None:
        return _lookup(_DEFAULT["name"])
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"device: expected a string or tilegrad.device, got {type(spec).__name__}")
    name = spec.split(":")[0]
    if name not in _DEVICES and name not in _FACTORIES:
        known = ", ".join({**_FACTORIES, **_DEVICES})
        raise ValueError(f"device: unknown device '{spec}'; known: {known}")
    return _lookup(name)


def device(spec):
    """``tilegrad.device("cpu")``: the device named, available or not (see ``.available``)."""
    return get_device(spec)


def set_default_device(spec):
    """The device new tensors and layers go to when none is named, as
    ``torch.set_default_device``; refused, changing nothing, if that device is unavailable."""
    dev = get_device("cpu" if spec is None else spec)
    dev.backend   # raises DeviceUnavailableError with the reason
    _DEFAULT["name"] = dev.name


def get_default_device():
    """The device new tensors and layers go to when none is named."""
    return get_device(None)


def devices():
    """Every device tilegrad knows, available or not (setting up any not set up yet)."""
    return [_lookup(name) for name in _FACTORIES] + \
        [dev for name, dev in _DEVICES.items() if name not in _FACTORIES]
