"""The global random number generators.

- NumPy's generator (``generator()``), on the host: randn, rand and parameter initialisation.
- A counter-based generator per device (``device_state(device)``), for dropout: its state is a
  small uint64 array ``[seed, offset, 0]`` in the device's memory, which the dropout primitive
  reads and advances on the device (``backends/cuda/random.py`` explains the generator). No host
  work per call, so a training step that drops out can be captured as a CUDA graph; each replay
  draws new numbers, the same as eager calls would from the same state.

``manual_seed(s)`` seeds both: NumPy's from ``s``, and every device's counter generator from a
seed derived from ``s`` (the same on every device, so cpu and cuda draw the same masks) with
offset 0. A device's state is made on its first dropout; reseeding writes into the existing
arrays, so a graph captured before keeps drawing from the reseeded state.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .backends import Device

_rng = [np.random.default_rng()]
_counter_seed = [None]   # the seed of device states not made yet (None: not drawn yet)
_states = {}             # device name -> backend uint64 array [seed, offset, 0]
_pending = {}            # device name -> (seed, offset) that set_rng_state gave before it was made


def _derive_seed(seed):
    """The counter generator's 64-bit seed for ``manual_seed(seed)``: NumPy's SeedSequence of
    ``seed``, spawned as child 1, so that it is independent of NumPy's stream from the same seed."""
    return int(np.random.SeedSequence(seed, spawn_key=(1,)).generate_state(1, np.uint64)[0])


def _default_seed():
    if _counter_seed[0] is None:                      # unseeded: fresh entropy, as NumPy's
        _counter_seed[0] = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    return _counter_seed[0]


def manual_seed(seed: int) -> None:
    """Seed the global generators, so that what follows is reproducible."""
    seed = int(seed)
    _rng[0] = np.random.default_rng(seed)
    _counter_seed[0] = _derive_seed(seed)
    _pending.clear()
    for name in _states:
        _write(name, _counter_seed[0], 0)


def generator() -> np.random.Generator:
    return _rng[0]


def device_state(device: Device) -> Any:
    """The counter generator's state on ``device`` (a backend array, made on first use): the
    dropout primitive reads and advances it."""
    state = _states.get(device.name)
    if state is None:
        seed, offset = _pending.pop(device.name, (_default_seed(), 0))
        state = device.backend.from_numpy(np.array([seed, offset, 0], dtype=np.uint64))
        _states[device.name] = state
    return state


def _write(name, seed, offset):
    """Set device ``name``'s existing state in place (a graph may hold the array)."""
    from .backends import device
    be = device(name).backend
    be.copy_into(_states[name], be.from_numpy(np.array([seed, offset, 0], dtype=np.uint64)))


def get_rng_state() -> dict[str, Any]:
    """The generators' state, a plain dict that ``tilegrad.save`` can store: ``"numpy"``, NumPy's
    generator state; ``"counter"``, the counter generators' ``"seed"`` and each device's
    ``[seed, offset]`` (read from the device)."""
    from .backends import device
    devices = {name: [int(v) for v in values] for name, values in _pending.items()}
    for name, state in _states.items():
        seed, offset, _ = device(name).backend.to_numpy(state)
        devices[name] = [int(seed), int(offset)]
    return {"numpy": _rng[0].bit_generator.state,
            "counter": {"seed": _default_seed(), "devices": devices}}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``get_rng_state`` returned. A state saved before the counter generators
    existed (NumPy's state alone) restores NumPy's generator and leaves them as they are."""
    if "counter" not in state:
        numpy_state, counter = state, None
    else:
        numpy_state, counter = state["numpy"], state["counter"]
    g = np.random.default_rng()
    g.bit_generator.state = numpy_state
    if counter is not None:
        seed = _uint64(counter["seed"], "seed")
        devices = {str(name): (_uint64(s, f"{name} seed"), _uint64(o, f"{name} offset"))
                   for name, (s, o) in counter["devices"].items()}
        if any(o % 4 for _, o in devices.values()):   # draws come four per Philox counter
            raise ValueError(f"set_rng_state: a counter generator's offset must be a multiple "
                             f"of 4, got {counter['devices']}")
        _counter_seed[0] = seed
        _pending.clear()
        for name in _states:          # a device with no saved state had not drawn yet
            _write(name, *devices.pop(name, (seed, 0)))
        _pending.update(devices)
    _rng[0] = g


def _uint64(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) < 2 ** 64:
        raise ValueError(f"set_rng_state: the counter generator's {what} must be an integer in "
                         f"[0, 2**64), got {v!r}")
    return int(v)


class Generator:
    """A random number generator object of its own, as ``torch.Generator``: pass it as
    ``generator=`` to a sampler, ``random_split`` or a ``DataLoader`` to make their draws
    reproducible without touching the global generator.

    It wraps a NumPy ``Generator`` (PCG64) seeded from ``initial_seed()``. ``get_state`` returns
    a plain dict (NumPy's bit-generator state and the seed) where torch returns a byte tensor.

    >>> g = Generator().manual_seed(7)
    >>> a = g.numpy_generator().permutation(5); _ = g.manual_seed(7)
    >>> bool((a == g.numpy_generator().permutation(5)).all())
    True
    """

    def __init__(self, device: str = "cpu") -> None:
        if str(device) != "cpu":
            raise ValueError(f"Generator: only device 'cpu' is supported, got {device!r}")
        self.device = "cpu"
        self.seed()

    def manual_seed(self, seed: int) -> Generator:
        """Seed the generator (any integer; negative ones as torch, modulo 2**64); returns it."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"Generator.manual_seed: expected an int, got {type(seed).__name__}")
        self._seed = int(seed) % 2 ** 64
        self._rng = np.random.default_rng(self._seed)
        return self

    def seed(self) -> int:
        """Seed from fresh OS entropy, as ``torch.Generator.seed``; returns the seed used."""
        self.manual_seed(int(np.random.SeedSequence().generate_state(1, np.uint64)[0]))
        return self._seed

    def initial_seed(self) -> int:
        """The seed last given to ``manual_seed`` (or drawn by ``seed``)."""
        return self._seed

    def get_state(self) -> dict[str, Any]:
        """The generator's state (a copy), for ``set_state``."""
        return {"seed": self._seed, "numpy": self._rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> Generator:
        """Restore a state from ``get_state``; returns the generator."""
        if not isinstance(state, dict) or set(state) != {"seed", "numpy"}:
            raise TypeError("Generator.set_state: expected the dict get_state returns, got "
                            f"{type(state).__name__}")
        rng = np.random.default_rng()
        rng.bit_generator.state = state["numpy"]
        self._seed, self._rng = int(state["seed"]), rng
        return self

    def numpy_generator(self) -> np.random.Generator:
        """The NumPy generator that draws this generator's numbers (samplers use it)."""
        return self._rng

    def __repr__(self) -> str:
        return f"Generator(device='cpu', initial_seed={self._seed})"


def numpy_generator_of(generator: Any, op: str) -> np.random.Generator:
    """The NumPy generator behind a ``generator=`` argument of ``op``: tilegrad's global one
    for None, that of a ``tilegrad.Generator``, or a NumPy ``Generator`` itself."""
    if generator is None:
        return _rng[0]
    if isinstance(generator, np.random.Generator):
        return generator
    if callable(getattr(generator, "numpy_generator", None)):
        return generator.numpy_generator()
    raise TypeError(f"{op}: generator must be a tilegrad.Generator or a numpy.random.Generator, "
                    f"got {type(generator).__name__}")
