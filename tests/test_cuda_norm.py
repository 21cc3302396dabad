"""The CUDA batch-norm and layer-norm kernels in Numba's simulator against the NumPy backend:
float64 to 1e-12 and float32 against the float64 specification, on tiny odd shapes (channels and
rows past the simulator's 4 blocks so the group loop wraps, groups longer than its 8 threads),
with and without weight, bias and running statistics (updated in place), and N*L = 1 or D = 1."""
import os

import numpy as np
import pytest

from tilegrad.testing import assert_close, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as ref          # noqa: E402
from tilegrad.backends.cuda import norm             # noqa: E402

TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=2e-5)}
DTYPES = [np.float64, np.float32]


def _data(shape, seed, dtype):
    # An offset mean and a spread: the two-pass variance must not cancel.
    return (rng(seed).standard_normal(shape) * 1.7 + 3.0).astype(dtype)


def _vec(n, seed, dtype, low=-1.5, high=1.5):
    return rng(seed).uniform(low, high, n).astype(dtype)


def up(a):
    """``a`` in float64 (None stays None): the specification's input."""
    return None if a is None else a.astype(np.float64)


def _check(got, want, dtype, names):
    for g, w, name in zip(got, want, names):
        assert g.dtype == dtype, (name, g.dtype)
        assert_close(g, w.astype(np.float64), what=name, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(3, 7, 5), (13, 3, 1), (1, 5, 3), (2, 1, 9)], ids=str)
@pytest.mark.parametrize("affine,running", [(True, True), (False, False), (True, False)])
def test_batch_norm_against_numpy(shape, dtype, affine, running):
    x = _data(shape, sum(shape), dtype)
    c = shape[1]
    w = _vec(c, 1, dtype) if affine else None
    b = _vec(c, 2, dtype) if affine else None
    mine = (_vec(c, 3, dtype), _vec(c, 4, dtype, 0.5, 2.0)) if running else (None, None)
    spec = tuple(up(a) for a in mine)           # the specification's copies, in float64
    x64 = x.astype(np.float64)
    got = norm.batch_norm_fwd(x, w, b, *mine, 0.3, 1e-5)
    want = ref.batch_norm_fwd(x64, up(w), up(b), *spec, 0.3, 1e-5)
    _check(got, want, dtype, ("y", "mean", "invstd"))
    if running:     # both updated in place, the variance with n / (n - 1)
        assert not np.allclose(spec[0], up(_vec(c, 3, dtype)))
        _check(mine, spec, dtype, ("running_mean", "running_var"))

    g = rng(9).standard_normal(shape).astype(dtype)
    mean, invstd = got[1], got[2]
    got = norm.batch_norm_bwd(g, x, w, mean, invstd)
    want = ref.batch_norm_bwd(up(g), x64, up(w), up(mean), up(invstd))
    _check(got, want, dtype, ("dx", "dweight", "dbias"))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(7, 13), (1, 3), (5, 1), (3, 33)], ids=str)
@pytest.mark.parametrize("weight,bias", [(True, True), (False, False), (True, False),
                                         (False, True)])
def test_layer_norm_against_numpy(shape, dtype, weight, bias):
    x = _data(shape, sum(shape) + 1, dtype)
    d = shape[1]
    w = _vec(d, 5, dtype) if weight else None
    b = _vec(d, 6, dtype) if bias else None
    got = norm.layer_norm_fwd(x, w, b, 1e-5)
    want = ref.layer_norm_fwd(x.astype(np.float64), up(w), up(b), 1e-5)
    _check(got, want, dtype, ("y", "mean", "rstd"))
    g = rng(11).standard_normal(shape).astype(dtype)
    got = norm.layer_norm_bwd(g, x, w, got[1], got[2])
    want = ref.layer_norm_bwd(g.astype(np.float64), x.astype(np.float64), up(w),
                              want[1].astype(np.float64), want[2].astype(np.float64))
    _check(got, want, dtype, ("dx", "dweight", "dbias"))


def test_empty_inputs_give_empty_outputs():
    y, mean, rstd = norm.layer_norm_fwd(np.zeros((0, 5)), None, None, 1e-5)
    assert y.shape == (0, 5) and mean.shape == rstd.shape == (0,)
    dx, dw, db = norm.layer_norm_bwd(np.zeros((0, 5)), np.zeros((0, 5)), None, mean, rstd)
    assert dx.shape == (0, 5)
    assert_close(dw, np.zeros(5), rtol=0, atol=0)
    assert_close(db, np.zeros(5), rtol=0, atol=0)
    y, mean, invstd = norm.batch_norm_fwd(np.ones((4, 0, 3)), None, None, None, None, None, 1e-5)
    assert y.shape == (4, 0, 3) and mean.shape == (0,)
