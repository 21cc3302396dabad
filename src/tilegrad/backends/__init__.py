"""Backends and the devices that select them.

A backend is a module of same-named functions (see ``backends/numpy.py`` for the list).
A device names one backend; a backend that cannot be used here is still a device, a
disabled one whose ``reason`` says why, so that asking for it gives a clear error and
``tilegrad.devices()`` can list it.
"""
import importlib


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


def _load(module_name):
    try:
        return importlib.import_module(module_name), None
    except ImportError as e:
        return None, str(e)


def _cuda_device():
    # The hand-written CUDA kernels are being written family by family (backends/cuda/); until
    # every primitive has one, "cuda" is a disabled device that says so, not an import error.
    return Device("cuda", None, "the CUDA backend is not enabled yet: its kernels are written "
                                "and tested one by one, the device-level tests are still to pass")


_DEVICES = {}


def _registry():
    if not _DEVICES:
        numpy_backend, _ = _load("tilegrad.backends.numpy")
        _DEVICES["cpu"] = Device("cpu", numpy_backend)
        _DEVICES["cuda"] = _cuda_device()
    return _DEVICES


def get_device(spec=None):
    """The Device for ``spec``: a Device, a name ("cpu", "cuda", "cuda:0"), or None for "cpu"."""
    if spec is None:
        return _registry()["cpu"]
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"device: expected a string or tilegrad.device, got {type(spec).__name__}")
    name = spec.split(":")[0]
    devices = _registry()
    if name not in devices:
        raise ValueError(f"device: unknown device '{spec}'; known: {', '.join(devices)}")
    return devices[name]


def device(spec):
    """``tilegrad.device("cpu")``: the device named, available or not (see ``.available``)."""
    return get_device(spec)


def devices():
    """Every device tilegrad knows, available or not."""
    return list(_registry().values())
