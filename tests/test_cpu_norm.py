"""The C++ batch-norm and layer-norm kernels (csrc/norm.cpp) against the NumPy backend in float64
(float64 to 1e-12-ish, float32 to a float32 tolerance), on odd shapes drawn by Hypothesis, with
and without weight, bias and running statistics (updated in place); every vector width; the same
bits for 1 and 2 threads; bad input refused at the bindings with nothing changed."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tilegrad.testing import odd_sizes
from cpu_helpers import bad_input, cases, check, cpp, ext, rand, simd, spec  # noqa: F401

DTYPES = [np.float32, np.float64]
ODD = odd_sizes((1, 3, 5, 7, 13))


def up(a):
    """``a`` in float64 (None stays None): the specification's input."""
    return None if a is None else a.astype(np.float64)


def _batch_norm_case(x, w, b, running, dtype):
    c = x.shape[1]
    rng = np.random.default_rng(c)
    mine = (rand(rng, c, dtype), rand(rng, c, dtype, 0.5, 2.0)) if running else (None, None)
    spec_stats = tuple(up(a) for a in mine)
    got = cpp.batch_norm_fwd(x, w, b, *mine, 0.25, 1e-5)
    want = spec.batch_norm_fwd(up(x), up(w), up(b), *spec_stats, 0.25, 1e-5)
    for g, v, name in zip(got, want, ("y", "mean", "invstd")):
        check(g, v, dtype, name, scale=10)
    if running:
        check(mine[0], spec_stats[0], dtype, "running_mean")
        check(mine[1], spec_stats[1], dtype, "running_var", scale=10)
    grad = rand(rng, x.shape, dtype)
    got = cpp.batch_norm_bwd(grad, x, w, got[1], got[2])
    want = spec.batch_norm_bwd(up(grad), up(x), up(w), up(want[1]), up(want[2]))
    for g, v, name in zip(got, want, ("dx", "dweight", "dbias")):
        check(g, v, dtype, name, scale=10)


def _layer_norm_case(x, w, b, dtype):
    got = cpp.layer_norm_fwd(x, w, b, 1e-5)
    want = spec.layer_norm_fwd(up(x), up(w), up(b), 1e-5)
    for g, v, name in zip(got, want, ("y", "mean", "rstd")):
        check(g, v, dtype, name, scale=10)
    grad = rand(np.random.default_rng(x.shape[0]), x.shape, dtype)
    got = cpp.layer_norm_bwd(grad, x, w, got[1], got[2])
    want = spec.layer_norm_bwd(up(grad), up(x), up(w), up(want[1]), up(want[2]))
    for g, v, name in zip(got, want, ("dx", "dweight", "dbias")):
        check(g, v, dtype, name, scale=10)


@cases(60)
@given(n=ODD, c=ODD, span=ODD, dtype=st.sampled_from(DTYPES), affine=st.booleans(),
       running=st.booleans(), seed=st.integers(0, 2**16))
def test_batch_norm_against_numpy(n, c, span, dtype, affine, running, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, (n, c, span), dtype, -2.0, 5.0)
    w, b = (rand(rng, c, dtype), rand(rng, c, dtype)) if affine else (None, None)
    _batch_norm_case(x, w, b, running and n * span > 1, dtype)


@cases(60)
@given(m=ODD, d=st.integers(1, 70), dtype=st.sampled_from(DTYPES), weight=st.booleans(),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_layer_norm_against_numpy(m, d, dtype, weight, bias, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, (m, d), dtype, -3.0, 4.0)
    _layer_norm_case(x, rand(rng, d, dtype) if weight else None,
                     rand(rng, d, dtype) if bias else None, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_vector_width(simd, dtype):
    rng = np.random.default_rng(5)
    x = rand(rng, (3, 5, 37), dtype, -1.0, 3.0)        # lanes of 8, a tail of 5
    _batch_norm_case(x, rand(rng, 5, dtype), rand(rng, 5, dtype), True, dtype)
    _layer_norm_case(rand(rng, (7, 45), dtype), rand(rng, 45, dtype), rand(rng, 45, dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_and_two_threads_give_the_same_bits(dtype):
    """Each channel's and column's sums are added in an order that the thread count does not
    change: the results are bit-identical. Sizes past 2 threads' grain of 32K elements."""
    rng = np.random.default_rng(7)
    x, g = rand(rng, (4, 6, 3001), dtype), rand(rng, (4, 6, 3001), dtype)
    x2, g2 = rand(rng, (2001, 37), dtype), rand(rng, (2001, 37), dtype)
    before = ext.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            ext.set_num_threads(threads)
            y, mean, invstd = cpp.batch_norm_fwd(x, None, None, None, None, None, 1e-5)
            ly, lm, lr = cpp.layer_norm_fwd(x2, None, None, 1e-5)
            results.append((y, mean, invstd, *cpp.batch_norm_bwd(g, x, None, mean, invstd),
                            ly, *cpp.layer_norm_bwd(g2, x2, None, lm, lr)))
        for a, b in zip(*results):
            np.testing.assert_array_equal(a, b)
    finally:
        ext.set_num_threads(before)


def test_bad_input_is_refused_and_changes_nothing():
    x, w = np.ones((2, 3, 4)), np.ones(3)
    rm, rv = np.zeros(3), np.ones(3)
    bad_input(ext.batch_norm_fwd, x[0], w, None, None, None, 0.1, 1e-5, op="batch_norm_fwd",
              match="3")
    bad_input(ext.batch_norm_fwd, x, np.ones(4), None, rm, rv, 0.1, 1e-5, op="batch_norm_fwd",
              match="weight")
    bad_input(ext.batch_norm_fwd, x, w, None, rm, None, 0.1, 1e-5, op="batch_norm_fwd",
              match="both")
    bad_input(ext.batch_norm_fwd, x, w, None, rm.astype(np.float32), rv, 0.1, 1e-5,
              op="batch_norm_fwd", match="running_mean")
    frozen = rm.copy()
    frozen.setflags(write=False)
    bad_input(ext.batch_norm_fwd, x, w, None, frozen, rv, 0.1, 1e-5, op="batch_norm_fwd")
    bad_input(ext.batch_norm_fwd, x, w, None, rm, rv, "fast", 1e-5, op="batch_norm_fwd",
              error=TypeError)
    bad_input(ext.batch_norm_bwd, x, x[:1], w, rm, rv, op="batch_norm_bwd", match="grad")
    bad_input(ext.layer_norm_fwd, x, None, None, 1e-5, op="layer_norm_fwd")
    bad_input(ext.layer_norm_fwd, x[0], np.ones(3), None, 1e-5, op="layer_norm_fwd",
              match="weight")
    bad_input(ext.layer_norm_bwd, x[0], x[0], None, np.ones(3), np.ones(2),
              op="layer_norm_bwd", match="rstd")
    bad_input(ext.layer_norm_fwd, x[0].astype(np.int64), None, None, 1e-5,
              op="layer_norm_fwd", error=TypeError)


def test_non_float_and_strided_arrays_take_the_specification_or_a_copy():
    x = np.arange(30, dtype=np.float64).reshape(2, 3, 5)[:, :, ::2]   # strided: copied
    rm = np.zeros(6)[::2]                                            # strided: the spec updates
    rv = np.ones(3)
    y, mean, invstd = cpp.batch_norm_fwd(x, None, None, rm, rv, 0.5, 1e-5)
    want = spec.batch_norm_fwd(x, None, None, np.zeros(3), np.ones(3), 0.5, 1e-5)
    check(y, want[0], np.float64)
    check(rm, 0.5 * want[1], np.float64, "running_mean written through the view")
