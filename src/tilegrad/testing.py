"""Test oracles for tilegrad's kernels and functions, shipped so that your tests can use them.

- ``assert_close``: ``|actual - expected| <= atol + rtol*|expected|`` elementwise, with
  tolerances chosen for the dtype; a failure names the first mismatching index and both values.
- ``gradcheck``: gradients of a tilegrad function against central differences, in float64.
- ``compare_with_torch``: values and gradients against the same function in PyTorch, where
  PyTorch is installed (a skip otherwise).
- ``compare_with_reference``: values and gradients of two tilegrad functions, say one on "cuda"
  and the same on "cpu".
- ``odd_shapes``, ``odd_sizes``, ``random_array``: inputs that catch indexing bugs: sizes 1, 3,
  5, 7, 13 (never a multiple of a tile), fresh random values (never zeros).
- ``guarded``: an array that raises on any out-of-range index, so that a kernel run in Numba's
  CUDA simulator on it shows it never reads or writes outside.

Importing this module imports neither PyTorch nor Hypothesis; the functions that need one import
it when called.

>>> import numpy as np, tilegrad as tg
>>> from tilegrad.testing import assert_close, gradcheck
>>> assert_close(tg.tensor([1.0, 2.0]) * 2, np.array([2.0, 4.0]))
>>> gradcheck(lambda x: (x * x).sum(), np.array([0.5, -1.5, 2.0]))
True
"""
from __future__ import annotations

import itertools
import unittest
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["TOLERANCES", "ODD_SIZES", "tolerances", "assert_close", "gradcheck",
           "compare_with_torch", "compare_with_reference", "odd_sizes", "odd_shapes",
           "random_array", "rng", "guarded", "Guarded"]

# (rtol, atol) by the dtype of the value under test: float32 kernels differ from a float64
# reference by their rounding (sums in another order), about 1e-6 relative per long sum.
TOLERANCES = {
    np.dtype(np.float16): (1e-2, 1e-3),
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float64): (1e-8, 1e-12),
}
ODD_SIZES = (1, 3, 5, 7, 13)


def rng(seed: int = 0) -> np.random.Generator:
    """NumPy's generator, seeded: the tests' single source of random inputs."""
    return np.random.default_rng(seed)


def _numpy(x: Any) -> np.ndarray:
    """A NumPy copy of a tilegrad Tensor, a PyTorch tensor, a CuPy array or anything array-like."""
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    if hasattr(x, "numpy") and callable(x.numpy):    # tilegrad.Tensor (any device)
        return np.asarray(x.numpy())
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def tolerances(dtype: Any) -> tuple[float, float]:
    """``(rtol, atol)`` for values of ``dtype`` (integers and booleans: exact)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return 0.0, 0.0
    return TOLERANCES.get(dtype, TOLERANCES[np.dtype(np.float64)])


def assert_close(actual: Any, expected: Any, rtol: float | None = None,
                 atol: float | None = None, what: str = "value", equal_nan: bool = False) -> None:
    """Raise ``AssertionError`` unless ``actual`` and ``expected`` have the same shape and
    ``|actual - expected| <= atol + rtol*|expected|`` everywhere.

    Args:
        actual, expected: Tensors (any device), NumPy or CuPy arrays, PyTorch tensors, numbers.
        rtol, atol: default from ``tolerances`` of the less precise of the two dtypes.
        what: the name the message gives the values ("gradient of input 0").
        equal_nan: NaN in both at the same place counts as equal (else any NaN fails).
    """
    a, e = _numpy(actual), _numpy(expected)
    if rtol is None or atol is None:
        dtypes = [d for d in (a.dtype, e.dtype) if d.kind == "f"] or [a.dtype]
        loosest = max((tolerances(d) for d in dtypes), key=lambda t: t[0])
        rtol = loosest[0] if rtol is None else rtol
        atol = loosest[1] if atol is None else atol
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape} != expected {e.shape}")
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~(np.abs(a64 - e64) <= atol + rtol * np.abs(e64))
    infinite = np.isinf(a64) | np.isinf(e64)      # an infinity matches only itself
    bad = np.where(infinite, a64 != e64, bad)
    if equal_nan:
        bad &= ~(np.isnan(a64) & np.isnan(e64))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements differ; first at "
                             f"{idx}: got {float(a64[idx])!r}, expected {float(e64[idx])!r} "
                             f"(rtol={rtol}, atol={atol})")


def _outputs(out: Any) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def gradcheck(fn: Callable, *arrays: np.ndarray, eps: float = 1e-6, rtol: float = 1e-5,
              atol: float = 1e-7, seed: int = 1) -> bool:
    """Check the gradients tilegrad computes for ``fn`` against central differences.

    ``fn`` takes tilegrad tensors made from ``arrays`` (floating ones require grad) and returns a
    tensor or a tuple of them. The gradients of ``sum(w * fn(...))``, for fixed random weights
    ``w`` per output, are compared with ``(f(x + eps) - f(x - eps)) / (2 eps)`` for every element
    of every floating input. Give float64 arrays: float32 differences are mostly rounding.
    Returns True; raises ``AssertionError`` naming the input and element that differ.
    """
    import tilegrad as tg
    r = rng(seed)
    tensors = [tg.tensor(a, dtype=a.dtype, requires_grad=a.dtype.kind == "f") for a in arrays]
    outs = _outputs(fn(*tensors))
    weights = [r.standard_normal(o.shape) for o in outs]

    def objective(arrs):
        with tg.no_grad():
            ts = [tg.tensor(a, dtype=a.dtype) for a in arrs]
            return sum(float((o.numpy() * w).sum()) for o, w in zip(_outputs(fn(*ts)), weights))

    sum((o * tg.tensor(w)).sum() for o, w in zip(outs, weights)).backward()
    for k, (a, t) in enumerate(zip(arrays, tensors)):
        if a.dtype.kind != "f":
            continue
        numeric = np.zeros_like(a)
        flat = numeric.reshape(-1)
        for i in range(a.size):
            plus, minus = [x.copy() for x in arrays], [x.copy() for x in arrays]
            plus[k].reshape(-1)[i] += eps
            minus[k].reshape(-1)[i] -= eps
            flat[i] = (objective(plus) - objective(minus)) / (2 * eps)
        if t.grad is None:
            raise AssertionError(f"gradcheck: input {k} got no gradient")
        assert_close(t.grad, numeric, rtol=rtol, atol=atol, what=f"gradient of input {k}")
    return True


def compare_with_torch(tg_fn: Callable, torch_fn: Callable, *arrays: np.ndarray,
                       rtol: float = 1e-8, atol: float = 1e-12, seed: int = 2) -> None:
    """Run ``tg_fn`` on tilegrad tensors and ``torch_fn`` on PyTorch tensors made from the same
    ``arrays`` (floating ones require grad): the outputs, and the gradients of ``sum(w * out)``
    for random ``w``, must agree to ``rtol``/``atol``. Skips (``unittest.SkipTest``, which pytest
    reports as a skip) where PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        raise unittest.SkipTest("PyTorch is not installed") from None
    import tilegrad as tg
    r = rng(seed)
    tg_in = [tg.tensor(a, dtype=a.dtype, requires_grad=a.dtype.kind == "f") for a in arrays]
    th_in = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    tg_out, th_out = _outputs(tg_fn(*tg_in)), _outputs(torch_fn(*th_in))
    if len(tg_out) != len(th_out):
        raise AssertionError(f"tilegrad returned {len(tg_out)} outputs, PyTorch {len(th_out)}")
    weights = [r.standard_normal(tuple(o.shape)) for o in th_out]
    for k, (a, b) in enumerate(zip(tg_out, th_out)):
        assert_close(a, b, rtol, atol, what=f"output {k}")
    sum((o * tg.tensor(w)).sum() for o, w in zip(tg_out, weights)).backward()
    sum((o * torch.tensor(w)).sum() for o, w in zip(th_out, weights)).backward()
    for k, (a, b) in enumerate(zip(tg_in, th_in)):
        if b.grad is not None:
            if a.grad is None:
                raise AssertionError(f"input {k}: PyTorch has a gradient, tilegrad none")
            assert_close(a.grad, b.grad, rtol, atol, what=f"gradient of input {k}")


def compare_with_reference(fn: Callable, ref_fn: Callable, *arrays: np.ndarray,
                           rtol: float = 1e-10, atol: float = 1e-12, seed: int = 1) -> None:
    """``fn`` and ``ref_fn`` (two tilegrad functions: the same computation on two devices, say)
    on tensors made from the same ``arrays``: outputs, and the gradients of ``sum(w * out)`` for
    random ``w``, must agree to ``rtol``/``atol``."""
    import tilegrad as tg
    results = []
    for f in (fn, ref_fn):
        r = rng(seed)
        ts = [tg.tensor(a, dtype=a.dtype, requires_grad=a.dtype.kind == "f") for a in arrays]
        outs = _outputs(f(*ts))
        sum((o * tg.tensor(r.standard_normal(o.shape))).sum() for o in outs).backward()
        results.append(([o.numpy() for o in outs], [t.grad for t in ts]))
    (outs, grads), (want_outs, want_grads) = results
    if len(outs) != len(want_outs):
        raise AssertionError(f"{len(outs)} outputs, the reference {len(want_outs)}")
    for k, (a, b) in enumerate(zip(outs, want_outs)):
        assert_close(a, b, rtol, atol, what=f"output {k}")
    for k, (a, b) in enumerate(zip(grads, want_grads)):
        if (a is None) != (b is None):
            raise AssertionError(f"input {k}: a gradient on one side only")
        if b is not None:
            assert_close(a, b, rtol, atol, what=f"gradient of input {k}")


def odd_sizes(sizes: Sequence[int] = ODD_SIZES):
    """A Hypothesis strategy drawing one of ``sizes`` (needs Hypothesis)."""
    from hypothesis import strategies as st
    return st.sampled_from(list(sizes))


def odd_shapes(ndim: int, sizes: Sequence[int] = ODD_SIZES, limit: int | None = None,
               seed: int = 0) -> list[tuple[int, ...]]:
    """Shapes of ``ndim`` dimensions, each side one of ``sizes``: all of them, or ``limit`` of
    them chosen at random (always including the smallest and the largest)."""
    shapes = list(itertools.product(sizes, repeat=ndim))
    if limit is None or limit >= len(shapes):
        return shapes
    ends = [shapes[0], shapes[-1]]
    middle = shapes[1:-1]
    picks = rng(seed).choice(len(middle), size=max(limit - 2, 0), replace=False)
    return ends[:limit] + [middle[i] for i in sorted(picks)]


def random_array(shape: Sequence[int], dtype: Any = "float64", seed: int | None = None,
                 low: int = -5, high: int = 6) -> np.ndarray:
    """Fresh random values: normal floats (no ties, no zeros in practice), integers in
    [low, high) (from 0 for unsigned), or random booleans."""
    r = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return r.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return r.random(shape) < 0.5
    return r.integers(low if dtype.kind == "i" else 0, high, size=shape).astype(dtype)


class Guarded(np.ndarray):
    """An array that raises IndexError on any integer index outside it, negative ones included
    (NumPy would wrap those): passed to a kernel in Numba's simulator, it shows that the kernel
    never reads or writes out of bounds. ``guarded(a)`` makes one, a view of ``a``."""

    def _check(self, key):
        for i, n in zip(key if isinstance(key, tuple) else (key,), self.shape):
            if isinstance(i, (int, np.integer)) and not 0 <= i < n:
                raise IndexError(f"index {i} is out of bounds for a dimension of {n}")

    def __getitem__(self, key):
        self._check(key)
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        self._check(key)
        super().__setitem__(key, value)


def guarded(a: np.ndarray) -> Guarded:
    """A C-contiguous ``Guarded`` view of ``a``."""
    return np.ascontiguousarray(a).view(Guarded)
