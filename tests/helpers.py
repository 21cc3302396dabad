"""Test oracles: central differences, the NumPy backend in float64, and PyTorch (one helper).

- ``assert_close``: ``|actual - ref| <= atol + rtol*|ref|`` elementwise; a failure names the first
  mismatching index and both values.
- ``check_grad``: gradients of a tilegrad function against central differences in float64.
- ``check_torch``: values and gradients of a tilegrad function against the same function in
  PyTorch, in float64, where torch is importable (skipped otherwise; required when CI is set).
"""
import os

import numpy as np
import pytest

import tilegrad as tg

try:
    import torch
except ImportError:   # parity tests skip; on CI that is an error (conftest)
    torch = None

RTOL_TORCH = 1e-8


def rng(seed=0):
    return np.random.default_rng(seed)


def assert_close(actual, ref, rtol=1e-8, atol=1e-12, what="value"):
    actual, ref = np.asarray(actual, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert actual.shape == ref.shape, f"{what}: shape {actual.shape} != reference {ref.shape}"
    bad = ~(np.abs(actual - ref) <= atol + rtol * np.abs(ref))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements differ; first at "
                             f"{idx}: got {actual[idx]!r}, expected {ref[idx]!r} "
                             f"(rtol={rtol}, atol={atol})")


def _as_outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def check_grad(fn, *arrays, eps=1e-6, rtol=1e-5, atol=1e-7, seed=1):
    """Compare the gradients of ``sum(w * fn(*tensors))`` (random fixed weights ``w`` per output)
    with central differences, for every float input array (float64)."""
    r = rng(seed)
    tensors = [tg.tensor(a, dtype=a.dtype, requires_grad=a.dtype.kind == "f") for a in arrays]
    outs = _as_outputs(fn(*tensors))
    weights = [r.standard_normal(o.shape) for o in outs]

    def objective(arrs):
        with tg.no_grad():
            ts = [tg.tensor(a, dtype=a.dtype) for a in arrs]
            return sum(float((o.numpy() * w).sum()) for o, w in zip(_as_outputs(fn(*ts)), weights))

    loss = sum((o * tg.tensor(w)).sum() for o, w in zip(outs, weights))
    loss.backward()
    for k, (a, t) in enumerate(zip(arrays, tensors)):
        if a.dtype.kind != "f":
            continue
        num = np.zeros_like(a)
        flat = num.reshape(-1)
        for i in range(a.size):
            plus, minus = [x.copy() for x in arrays], [x.copy() for x in arrays]
            plus[k].reshape(-1)[i] += eps
            minus[k].reshape(-1)[i] -= eps
            flat[i] = (objective(plus) - objective(minus)) / (2 * eps)
        assert t.grad is not None, f"input {k}: no gradient"
        assert_close(t.grad.numpy(), num, rtol=rtol, atol=atol, what=f"gradient of input {k}")


def check_torch(tg_fn, torch_fn, *arrays, rtol=RTOL_TORCH, atol=1e-12, seed=2):
    """Run ``tg_fn`` and ``torch_fn`` on the same float64 inputs: outputs, and the gradients of
    ``sum(w * out)`` for random ``w``, must agree to ``rtol``."""
    if torch is None:
        pytest.skip("PyTorch is not installed")
    r = rng(seed)
    tg_in = [tg.tensor(a, dtype=a.dtype, requires_grad=a.dtype.kind == "f") for a in arrays]
    th_in = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    tg_out, th_out = _as_outputs(tg_fn(*tg_in)), _as_outputs(torch_fn(*th_in))
    assert len(tg_out) == len(th_out)
    weights = [r.standard_normal(tuple(o.shape)) for o in th_out]
    for k, (a, b) in enumerate(zip(tg_out, th_out)):
        assert_close(a.numpy(), b.detach().numpy(), rtol, atol, what=f"output {k}")
    sum((o * tg.tensor(w)).sum() for o, w in zip(tg_out, weights)).backward()
    sum((o * torch.tensor(w)).sum() for o, w in zip(th_out, weights)).backward()
    for k, (a, b) in enumerate(zip(tg_in, th_in)):
        if b.grad is not None:
            assert a.grad is not None, f"input {k}: torch has a gradient, tilegrad none"
            assert_close(a.grad.numpy(), b.grad.numpy(), rtol, atol, what=f"gradient of input {k}")


def check_same_as_cpu(fn, cpu_fn, *arrays, rtol=1e-10, atol=1e-12, seed=1):
    """``fn`` (on some device) and ``cpu_fn`` on the same float64 inputs: outputs, and the
    gradients of ``sum(w * out)`` for random ``w``, must agree to ``rtol``."""
    results = []
    for f in (fn, cpu_fn):
        r = rng(seed)
        ts = [tg.tensor(a, dtype=a.dtype, requires_grad=a.dtype.kind == "f") for a in arrays]
        outs = _as_outputs(f(*ts))
        sum((o * tg.tensor(r.standard_normal(o.shape))).sum() for o in outs).backward()
        results.append(([o.numpy() for o in outs], [t.grad for t in ts]))
    (outs, grads), (want_outs, want_grads) = results
    assert len(outs) == len(want_outs)
    for k, (a, b) in enumerate(zip(outs, want_outs)):
        assert_close(a, b, rtol, atol, what=f"output {k}")
    for k, (a, b) in enumerate(zip(grads, want_grads)):
        assert (a is None) == (b is None), f"input {k}: a gradient on one device only"
        if b is not None:
            assert_close(a.numpy(), b.numpy(), rtol, atol, what=f"gradient of input {k}")


def on_ci():
    return bool(os.environ.get("CI"))


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


def guarded(a):
    return np.ascontiguousarray(a).view(Guarded)
