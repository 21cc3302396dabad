"""The CUDA max-pool kernels in Numba's simulator against the NumPy backend: kernels 2 and 3,
strides 1 and 2 (overlapping windows), padding 0 and 1, odd sizes; float64 and float32."""
import os

import numpy as np
import pytest

from tilegrad.testing import assert_close, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as ref          # noqa: E402
from tilegrad.backends.cuda import pool             # noqa: E402

GEOMETRIES = [(k, s, p) for k in (2, 3) for s in (1, 2) for p in (0, 1) if p <= k // 2]
SHAPES = [(1, 1, 3, 3), (2, 3, 7, 5)]       # (N, C, H, W)


def _input(shape, dtype, seed):
    # Distinct values (a permutation), so ties never make the argmax ambiguous in float32.
    r = rng(seed)
    x = r.permutation(int(np.prod(shape))).reshape(shape) + r.uniform(0.1, 0.4, shape)
    return (x - x.size / 2).astype(dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("k,s,p", GEOMETRIES, ids=str)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)], ids=["f64", "f32"])
def test_max_pool2d_fwd_bwd_against_numpy(shape, k, s, p, dtype, tol):
    x = _input(shape, dtype, seed=k * 10 + s * 3 + p)
    args = ((k, k), (s, s), (p, p))
    out, arg = pool.max_pool2d_fwd(x, *args)
    want_out, want_arg = ref.max_pool2d_fwd(x, *args)
    assert out.dtype == x.dtype and arg.dtype == np.int64
    assert_close(out, want_out, rtol=0, atol=0, what="max")
    np.testing.assert_array_equal(arg, want_arg)

    g = rng(7).standard_normal(want_out.shape).astype(dtype)
    grad = pool.max_pool2d_bwd(g, want_arg, x.shape)
    assert grad.dtype == x.dtype
    assert_close(grad, ref.max_pool2d_bwd(g.astype(np.float64), want_arg, x.shape),
                 rtol=tol, atol=tol, what="grad")


def test_overlapping_windows_accumulate_and_ties_take_the_first():
    # Stride 1 < kernel 3: a large centre element is the maximum of every window holding it.
    x = rng(1).uniform(-1, 0, (1, 2, 5, 7))
    x[0, 0, 2, 3] = 5.0
    x[0, 1] = 0.5                          # all ties: the first tap of each window wins
    args = ((3, 3), (1, 1), (1, 1))
    out, arg = pool.max_pool2d_fwd(x, *args)
    want_out, want_arg = ref.max_pool2d_fwd(x, *args)
    np.testing.assert_array_equal(arg, want_arg)
    assert_close(out, want_out, rtol=0, atol=0)
    g = rng(2).standard_normal(want_out.shape)
    grad = pool.max_pool2d_bwd(g, arg, x.shape)
    want = ref.max_pool2d_bwd(g, want_arg, x.shape)
    assert (np.count_nonzero(arg[0, 0] == 2 * 7 + 3)) == 9     # nine windows share the maximum
    assert_close(grad, want, rtol=1e-12, atol=1e-12)


def test_rectangular_geometry():
    x = _input((1, 3, 7, 9), np.float64, seed=3)
    args = ((2, 3), (1, 2), (1, 0))
    out, arg = pool.max_pool2d_fwd(x, *args)
    want_out, want_arg = ref.max_pool2d_fwd(x, *args)
    np.testing.assert_array_equal(arg, want_arg)
    assert_close(out, want_out, rtol=0, atol=0)
    g = rng(4).standard_normal(want_out.shape)
    assert_close(pool.max_pool2d_bwd(g, arg, x.shape), ref.max_pool2d_bwd(g, want_arg, x.shape),
                 rtol=1e-12, atol=1e-12)


def test_nan_is_the_maximum_as_in_numpy():
    x = _input((1, 1, 5, 5), np.float64, seed=5)
    x[0, 0, 1, 1] = x[0, 0, 3, 2] = np.nan
    args = ((3, 3), (1, 1), (1, 1))
    out, arg = pool.max_pool2d_fwd(x, *args)
    want_out, want_arg = ref.max_pool2d_fwd(x, *args)
    np.testing.assert_array_equal(arg, want_arg)
    np.testing.assert_array_equal(out, want_out)        # NaNs in the same places
