"""Where the data layer's random draws come from: one rule for samplers, ``random_split`` and
the workers' seeds.

A ``generator=`` argument is a ``tilegrad.Generator`` (its NumPy generator draws) or a NumPy
``Generator``. Without one, a fresh NumPy generator is seeded from tilegrad's global generator,
as torch seeds a fresh generator from its default one: ``tilegrad.manual_seed(s)`` then makes
the draws reproducible.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ... import random as _global


def numpy_rng(generator: Any, what: str) -> np.random.Generator:
    """The NumPy generator that ``what`` draws from, given its ``generator`` argument: without
    one, a fresh generator seeded from tilegrad's global one (as torch's samplers draw a seed)."""
    if generator is None:
        return np.random.default_rng(int(_global.generator().integers(2 ** 63)))
    return _global.numpy_generator_of(generator, what)


def check_generator(generator: Any, what: str) -> None:
    """Refuse, at construction, a ``generator`` argument that ``numpy_rng`` could not use."""
    if generator is not None:
        numpy_rng(generator, what)


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """The generator of epoch ``epoch`` under ``seed``: ``default_rng([seed, epoch])`` for the
    shuffle (stream 0, the rule runs resume on), ``[seed, epoch, stream]`` for other draws."""
    key = [seed, epoch] if stream == 0 else [seed, epoch, stream]
    return np.random.default_rng(key)


def check_seed(seed: Any, what: str) -> int | None:
    """``seed`` as an int (None stays None), or a ValueError naming ``what``."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{what}: seed must be a non-negative integer, got {seed!r}")
    return int(seed)
