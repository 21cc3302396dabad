"""``tilegrad.accelerator``: PyTorch's device-agnostic accelerator API (``torch.accelerator``),
so that scripts which pick their device with it run unchanged.

tilegrad's one accelerator is device "cuda" on a real GPU. Numba's CUDA simulator also serves
device "cuda" (for testing kernels on machines without a GPU), but it runs kernels in Python,
thousands of times slower than the cpu: it is not an accelerator, so a script that asks
``accelerator.is_available()`` trains on the cpu there. Ask for ``"cuda"`` by name to use the
simulator on purpose.

>>> device = accelerator.current_accelerator() if accelerator.is_available() else tg.device("cpu")
... # doctest: +SKIP
"""
from __future__ import annotations

import sys

from .backends import Device, device

__all__ = ["is_available", "current_accelerator", "device_count", "current_device_index",
           "synchronize"]


def is_available() -> bool:
    """True when device "cuda" runs on a real GPU (not in Numba's simulator)."""
    cuda = device("cuda")
    if not cuda.available:
        return False
    cuda.backend                     # set up: the runtime says whether it simulates
    return not sys.modules["tilegrad.backends.cuda.runtime"].SIMULATOR


def current_accelerator(check_available: bool = False) -> Device | None:
    """Device "cuda" when there is a GPU, else None (also with ``check_available``, as
    PyTorch's, when none is available)."""
    return device("cuda") if is_available() else None


def device_count() -> int:
    """1 with a GPU (tilegrad uses one), else 0."""
    return 1 if is_available() else 0


def current_device_index() -> int:
    """0: tilegrad uses the first GPU."""
    return 0


def synchronize(device: Device | str | None = None) -> None:
    """Wait for the GPU's queued work (nothing to wait for without one)."""
    if is_available():
        from . import cuda
        cuda.synchronize()
