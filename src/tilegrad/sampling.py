"""Draws from distributions that a tensor describes: ``multinomial``, and the choice of NumPy
generator behind the random fills (``Tensor.uniform_``, ``normal_``).

Everything here draws on the host from a NumPy generator: tilegrad's global one (which
``tilegrad.manual_seed`` seeds) unless a ``generator=`` is given. ``multinomial`` reads its
weights back from the device for that: it is meant for sampling a few tokens at a time (a
language model's ``generate``), not for a training step's hot path.

``multinomial`` without replacement uses the exponential-keys method (Efraimidis and Spirakis):
each category ``j`` gets the key ``w_j / E_j`` with ``E_j`` drawn from Exp(1), and the ``k``
largest keys are the sample. That is the same distribution as drawing one category at a time in
proportion to the weights left, and it is the method PyTorch uses on the cpu. Categories of
weight 0 have key 0, so they come only after every positive one (in index order), where PyTorch
returns them too rather than raising.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import dtypes
from .errors import ArgumentError, DtypeError, ShapeError

if TYPE_CHECKING:
    from .tensor import Tensor


def numpy_generator(generator: Any, op: str) -> np.random.Generator:
    """The NumPy generator that ``op`` draws from (``random.numpy_generator_of``)."""
    from . import random
    return random.numpy_generator_of(generator, op)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,
                generator: Any = None) -> Tensor:
    """``num_samples`` category indices per row of ``input`` (1-D: one distribution; 2-D: one
    per row), drawn in proportion to its non-negative weights (they need not sum to 1), as
    ``torch.multinomial``. Without ``replacement`` a row's indices are distinct. Returns an int64
    tensor of shape ``(num_samples,)`` or ``(rows, num_samples)`` on ``input``'s device."""
    from .tensor import Tensor
    if not isinstance(input, Tensor):
        raise TypeError(f"multinomial: expects a tensor, got {type(input).__name__}")
    weights = _checked_weights(input, num_samples, replacement)
    rng = numpy_generator(generator, "multinomial")
    draw = _with_replacement if replacement else _without_replacement
    out = draw(weights, int(num_samples), rng)
    out = out.reshape(-1) if input.ndim == 1 else out
    return Tensor(input._be.from_numpy(out), input.device)


def _checked_weights(input, num_samples, replacement):
    """The weights as a float64 (rows, categories) host array, after PyTorch's checks."""
    if input.dtype not in dtypes.FLOATING:
        raise DtypeError(f"multinomial: only supports floating-point dtypes for input, got "
                         f"{input.dtype}")
    if input.ndim not in (1, 2):
        raise ShapeError(f"multinomial: prob_dist must be 1 or 2 dim, got shape {input.shape}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise TypeError(f"multinomial: num_samples must be an int, got "
                        f"{type(num_samples).__name__}")
    n = input.shape[-1]
    if n == 0:
        raise ArgumentError("multinomial: number of categories cannot be zero")
    if num_samples <= 0:
        raise ArgumentError(f"multinomial: cannot sample n_sample <= 0 samples "
                            f"(num_samples={num_samples})")
    if not replacement and num_samples > n:
        raise ArgumentError(f"multinomial: cannot sample n_sample > prob_dist.size(-1) samples "
                            f"without replacement ({num_samples} > {n})")
    w = input.numpy().astype(np.float64).reshape(-1, n)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ArgumentError("multinomial: probability tensor contains either inf, nan or "
                            "element < 0")
    bad = np.flatnonzero(w.sum(axis=1) <= 0)
    if bad.size:
        raise ArgumentError(f"multinomial: invalid multinomial distribution (sum of "
                            f"probabilities <= 0) in row {bad[0]}")
    return w


def _with_replacement(w, k, rng):
    """Inverse-CDF draws: the first category whose running total exceeds ``u * total``. A
    category of weight 0 adds nothing to the total, so no ``u`` lands on it."""
    cdf = np.cumsum(w, axis=1)
    u = rng.random((w.shape[0], k)) * cdf[:, -1:]
    out = np.empty((w.shape[0], k), dtype=np.int64)
    for r in range(w.shape[0]):
        # u * total rounds up to the total once in a while: the last positive category then
        last = np.flatnonzero(w[r])[-1]
        out[r] = np.minimum(np.searchsorted(cdf[r], u[r], side="right"), last)
    return out


def _without_replacement(w, k, rng):
    """The ``k`` largest keys ``w / E`` per row (see the module docstring)."""
    with np.errstate(divide="ignore", invalid="ignore"):   # E = 0 (probability 2**-53): inf
        keys = w / rng.exponential(size=w.shape)
    return np.argsort(-keys, axis=1, kind="stable")[:, :k].astype(np.int64)
