"""The fuzz harness: one call, written once, run by tilegrad and by PyTorch on the same inputs.

A case is a function ``call(lib, *tensors)`` where ``lib`` is a namespace holding the framework
(``lib.tg`` is ``tilegrad`` or ``torch``, ``lib.F`` its functional module, ``lib.float64`` and the
other dtype names). ``compare(call, arrays, device)`` builds tensors from the NumPy ``arrays`` in
both frameworks (floating ones require grad), runs ``call`` in each, and asserts one of:

- PyTorch raised: tilegrad raised an instance of the same class among IndexError, ValueError,
  TypeError and RuntimeError (the first of those PyTorch's exception is an instance of), at the
  call or when its outputs are read back (where a device's kernels check indices, "cuda", the
  error comes at the next sync), and left its input tensors as they were;
- PyTorch returned: tilegrad returned the same structure of tensors (shapes, dtypes, and values to
  ``TOL`` in float64; NaNs and infinities at the same places), then the gradients of
  ``sum(w * out)`` for fixed random ``w`` agree to ``TOL`` for every input.

``fuzz(device)`` is the Hypothesis settings for a case: ``FUZZ_EXAMPLES`` examples on "cpu" and
``FUZZ_EXAMPLES_CUDA`` on "cuda" (the simulator is slow), both scaled by the environment variable
``TILEGRAD_FUZZ_SCALE`` (default 1; ``TILEGRAD_FUZZ_SCALE=20 make test`` is a long hunt).
"""
import contextlib
import os
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import tilegrad as tg
from helpers import torch
from tilegrad.testing import random_array

TOL = 1e-10
FUZZ_EXAMPLES = 25
FUZZ_EXAMPLES_CUDA = 4
ERROR_CLASSES = (IndexError, ValueError, TypeError, RuntimeError)


def fuzz(device, examples=None, examples_cuda=None):
    """Hypothesis settings for one fuzz case on ``device``."""
    scale = float(os.environ.get("TILEGRAD_FUZZ_SCALE", "1"))
    n = (examples_cuda or FUZZ_EXAMPLES_CUDA) if device == "cuda" else (examples or FUZZ_EXAMPLES)
    return settings(max_examples=max(1, int(n * scale)), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


def _namespace(mod, functional):
    ns = types.SimpleNamespace(tg=mod, F=functional)
    for name in ("float32", "float64", "int32", "int64", "uint8"):
        setattr(ns, name, getattr(mod, name))
    ns.bool = tg.bool_ if mod is tg else torch.bool
    return ns


def libs():
    """The (tilegrad, torch) namespaces a case is called with; skips without PyTorch."""
    if torch is None:
        pytest.skip("PyTorch is not installed")
    import tilegrad.nn.functional as tg_F
    import torch.nn.functional as th_F
    return _namespace(tg, tg_F), _namespace(torch, th_F)


# ---------------------------------------------------------------- strategies

def shapes(min_dims=0, max_dims=4, min_side=0, max_side=4):
    """Shapes with 0-length and 1-length dimensions among the others."""
    return st.lists(st.integers(min_side, max_side), min_size=min_dims,
                    max_size=max_dims).map(tuple)


def broadcastable(shape):
    """A shape that broadcasts with ``shape``: some dimensions set to 1 or dropped from the left."""
    @st.composite
    def build(draw):
        out = [1 if draw(st.booleans()) else n for n in shape]
        return tuple(out[draw(st.integers(0, len(out))):])
    return build()


def arrays(shape, dtype="float64", seed=None):
    """Fresh random values of ``shape``: normal floats (no ties, no zeros in practice), small
    integers, or random booleans (``tilegrad.testing.random_array``)."""
    return random_array(shape, dtype, seed)


def dims(ndim, out_of_range=2):
    """A dimension argument for a tensor of ``ndim`` dimensions: valid ones (negative too) and
    ``out_of_range`` beyond each end."""
    n = max(ndim, 1)
    return st.integers(-n - out_of_range, n - 1 + out_of_range)


@contextlib.contextmanager
def tolerance(tol):
    """``compare`` to ``tol`` instead of ``TOL`` inside the block: float32 cases, whose rounding
    differs between the frameworks (sums in another order) by ~1e-7 relative."""
    global TOL
    saved, TOL = TOL, tol
    try:
        yield
    finally:
        TOL = saved


# ---------------------------------------------------------------- the comparison

def _outputs(out):
    if isinstance(out, (tuple, list)):
        return [o for x in out for o in _outputs(x)]
    return [out]


def _numpy(x):
    if isinstance(x, tg.Tensor):
        return x.numpy()
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return np.asarray(x)


def _expected_error(e):
    return next((c for c in ERROR_CLASSES if isinstance(e, c)), type(e))


def _assert_same(actual, ref, what):
    a, r = _numpy(actual), _numpy(ref)
    assert a.shape == r.shape, f"{what}: shape {a.shape}, PyTorch {r.shape}"
    assert a.dtype == r.dtype, f"{what}: dtype {a.dtype}, PyTorch {r.dtype}"
    if a.dtype.kind != "f":
        assert np.array_equal(a, r), f"{what}: {a!r}, PyTorch {r!r}"
        return
    same_special = np.array_equal(np.isnan(a), np.isnan(r)) and \
        np.array_equal(np.where(np.isinf(r), a, 0), np.where(np.isinf(r), r, 0))
    assert same_special, f"{what}: NaN or infinities differ: {a!r}, PyTorch {r!r}"
    finite = np.isfinite(r)
    diff = np.abs(np.where(finite, a, 0) - np.where(finite, r, 0))
    bad = ~(diff <= TOL + TOL * np.abs(np.where(finite, r, 0)))
    if bad.any():
        i = tuple(int(k) for k in np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {a.size} differ; first at {i}: "
                             f"{a[i]!r}, PyTorch {r[i]!r}")


def compare(call, arrs, device="cpu", grad=True, seed=0):
    """Run ``call`` on tensors made from ``arrs`` in tilegrad (on ``device``) and in PyTorch;
    assert the same outcome (see the module docstring). Returns PyTorch's exception class or
    None, so that a case can count what it exercised."""
    tg_lib, th_lib = libs()
    arrs = [np.ascontiguousarray(a).reshape(np.shape(a)) for a in arrs]   # keeps 0-d as 0-d
    th_in = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrs]
    tg_in = [tg.tensor(a, dtype=a.dtype, device=device,
                       requires_grad=grad and a.dtype.kind == "f") for a in arrs]
    try:
        th_out = call(th_lib, *th_in)
    except ERROR_CLASSES as e:
        expected = _expected_error(e)
        try:
            out = call(tg_lib, *tg_in)
            for o in _outputs(out):   # "cuda" raises an index its kernels reject at the next sync
                _numpy(o)
        except Exception as mine:   # noqa: BLE001 (any class: the assertion says which)
            assert isinstance(mine, expected), \
                f"PyTorch raised {type(e).__name__}({e}); tilegrad {type(mine).__name__}({mine})"
        else:
            raise AssertionError(f"PyTorch raised {type(e).__name__}({e}); tilegrad returned "
                                 f"{[tuple(o.shape) for o in _outputs(out)]}")
        for k, (t, a) in enumerate(zip(tg_in, arrs)):
            assert np.array_equal(t.numpy(), a, equal_nan=True), f"input {k} changed by an error"
        return expected
    tg_out = call(tg_lib, *tg_in)
    th_outs, tg_outs = _outputs(th_out), _outputs(tg_out)
    assert len(tg_outs) == len(th_outs), f"{len(tg_outs)} outputs, PyTorch {len(th_outs)}"
    for k, (a, r) in enumerate(zip(tg_outs, th_outs)):
        assert isinstance(a, tg.Tensor) == isinstance(r, torch.Tensor), \
            f"output {k}: {type(a).__name__}, PyTorch {type(r).__name__}"
        _assert_same(a, r, f"output {k}")
    pairs = [(a, r) for a, r in zip(tg_outs, th_outs)
             if isinstance(r, torch.Tensor) and r.requires_grad and r.grad_fn is not None]
    if not pairs:
        return None
    w = np.random.default_rng(seed + 1)
    weights = [w.standard_normal(tuple(r.shape)) for _, r in pairs]
    sum((r * torch.tensor(x, dtype=r.dtype)).sum() for (_, r), x in zip(pairs, weights)).backward()
    sum((a * tg.tensor(x, dtype=a.dtype, device=device)).sum()
        for (a, _), x in zip(pairs, weights)).backward()
    for k, (t, r) in enumerate(zip(tg_in, th_in)):
        if r.grad is None:
            assert t.grad is None or not np.any(t.grad.numpy()), \
                f"input {k}: a gradient in tilegrad only"
        else:
            assert t.grad is not None, f"input {k}: PyTorch has a gradient, tilegrad none"
            _assert_same(t.grad, r.grad, f"gradient of input {k}")
    return None
