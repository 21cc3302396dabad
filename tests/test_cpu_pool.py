"""The C++ max-pool kernels (csrc/pool.cpp) against the NumPy backend: the maxima and argmax
exactly (ties: the first tap in window order; NaN: the first NaN; padded cells are -inf and win
where the specification lets them, windows wholly in the padding included), the backward against
the specification in float64, and bad input at the bindings (out-of-range argmax an IndexError)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tilegrad.testing import odd_sizes
from cpu_helpers import bad_input, cases, check, cpp, ext, spec

DTYPES = [np.float32, np.float64]
ODD = odd_sizes((1, 3, 5, 7, 9))


@st.composite
def geometries(draw):
    """(x shape, kernel, stride, padding), the kernel fitting the padded input."""
    n, c, h, w = (draw(ODD) for _ in range(4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (n, c, h, w), (min(kh, h + 2 * ph), min(kw, w + 2 * pw)), (sh, sw), (ph, pw)


def _input(rng, shape, dtype, specials):
    """Values from a few levels (many ties), with NaN and +-inf sprinkled in if `specials`."""
    x = rng.integers(-3, 3, size=shape).astype(dtype) + dtype(0.5)
    if specials:
        for value in (np.nan, -np.inf, np.inf):
            x[rng.random(shape) < 0.08] = value
    return x


def _check_pool(x, kernel, stride, padding):
    out, arg = cpp.max_pool2d_fwd(x, kernel, stride, padding)
    want, want_arg = spec.max_pool2d_fwd(x, kernel, stride, padding)
    assert out.dtype == x.dtype and arg.dtype == np.int64
    np.testing.assert_array_equal(out, want)          # NaN equal to NaN
    np.testing.assert_array_equal(arg, want_arg)
    g = np.random.default_rng(1).uniform(-1, 1, out.shape).astype(x.dtype)
    plane = x.shape[2] * x.shape[3]
    if arg.size and (arg.min() < 0 or arg.max() >= plane):
        # A padded cell won (the specification's NumPy would wrap a negative index): refused.
        bad_input(ext.max_pool2d_bwd, g, arg, x.shape, op="max_pool2d_bwd", error=IndexError,
                  match="out of range")
        return
    check(cpp.max_pool2d_bwd(g, arg, x.shape),
          spec.max_pool2d_bwd(g.astype(np.float64), want_arg, x.shape), x.dtype, "max_pool2d_bwd")


@cases(150)
@given(geom=geometries(), dtype=st.sampled_from(DTYPES), specials=st.booleans(),
       seed=st.integers(0, 2**16))
def test_against_numpy(geom, dtype, specials, seed):
    xs, kernel, stride, padding = geom
    _check_pool(_input(np.random.default_rng(seed), xs, dtype, specials), kernel, stride, padding)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,k,s,p", [
    ((2, 3, 28, 28), 2, 2, 0),      # the CNN's pools, at batch 2
    ((2, 5, 14, 14), 2, 2, 0),
    ((2, 7, 7, 7), 2, 2, 0),        # odd: the last row and column are dropped
    ((2, 3, 9, 11), 3, 2, 1),
    ((1, 2, 5, 5), 1, 2, 1),        # windows wholly in the padding: -inf, out-of-range argmax
    ((1, 2, 3, 3), 2, 1, 2),
])
def test_fixed_shapes(xs, k, s, p, dtype):
    x = np.random.default_rng(0).uniform(-1, 1, xs).astype(dtype)
    _check_pool(x, (k, k), (s, s), (p, p))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,p", [((2, 3, 8, 21), 0), ((1, 2, 9, 19), 1), ((3, 1, 6, 40), (0, 1))])
@pytest.mark.parametrize("seed", range(4))
def test_2x2_stride_2_ties_and_specials(xs, p, dtype, seed):
    """The CNN's pools (the vectorised path): many ties, NaN and infinities."""
    p = p if isinstance(p, tuple) else (p, p)
    _check_pool(_input(np.random.default_rng(seed), xs, dtype, specials=seed % 2 == 1),
                (2, 2), (2, 2), p)


def test_ties_nan_and_padding_follow_numpy_argmax():
    x = np.full((1, 1, 4, 4), 2.0)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan             # the second NaN of the window: the first one wins
    x[0, 0, 2:, 2:] = -np.inf          # real cells all -inf: the padded cell before them wins
    _check_pool(x, (2, 2), (2, 2), (0, 0))
    _check_pool(x, (2, 2), (1, 1), (1, 1))
    out, arg = ext.max_pool2d_fwd(x, (2, 2), (2, 2), (0, 0))
    assert np.isnan(out[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 1
    assert out[0, 0, 0, 1] == 2.0 and arg[0, 0, 0, 1] == 2      # all tied: the first tap


def test_empty_batch_and_int32_argmax():
    x = np.ones((0, 3, 4, 4), np.float32)
    out, arg = cpp.max_pool2d_fwd(x, (2, 2), (2, 2), (0, 0))
    assert out.shape == arg.shape == (0, 3, 2, 2)
    assert cpp.max_pool2d_bwd(out, arg, x.shape).shape == x.shape
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 6, 6))
    out, arg = spec.max_pool2d_fwd(x, (2, 2), (2, 2), (0, 0))
    check(cpp.max_pool2d_bwd(out, arg.astype(np.int32), x.shape),
          spec.max_pool2d_bwd(out, arg, x.shape), np.float64)


def test_threads_and_determinism():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (4, 6, 13, 13)).astype(np.float32)
    before = ext.get_num_threads()
    try:
        got = []
        for threads in (1, 2, 2):
            ext.set_num_threads(threads)
            out, arg = cpp.max_pool2d_fwd(x, (3, 3), (1, 1), (1, 1))   # overlapping windows
            got.append((out, arg, cpp.max_pool2d_bwd(out, arg, x.shape)))
        for a, b in zip(got[0], got[1]):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(got[1], got[2]):
            np.testing.assert_array_equal(a, b)
    finally:
        ext.set_num_threads(before)


def test_non_float_goes_to_numpy():
    x = np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4).astype(np.float16)
    out, arg = cpp.max_pool2d_fwd(x, (2, 2), (2, 2), (0, 0))
    want, want_arg = spec.max_pool2d_fwd(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(arg, want_arg)
    view = np.random.default_rng(0).uniform(-1, 1, (2, 4, 3, 4)).transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(cpp.max_pool2d_fwd(view, (2, 2), (2, 2), (0, 0))[1],
                                  spec.max_pool2d_fwd(view, (2, 2), (2, 2), (0, 0))[1])


def test_bad_input_fwd():
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 6, 6)).astype(np.float32)
    op, fn, ok = "max_pool2d_fwd", ext.max_pool2d_fwd, ((2, 2), (2, 2), (0, 0))
    bad_input(fn, x.astype(np.int64), *ok, op=op, match="float32 or float64")
    bad_input(fn, x[:, :, ::2], *ok, op=op, match="C-contiguous")
    bad_input(fn, x[0], *ok, op=op, match="dimensions")
    bad_input(fn, x.tolist(), *ok, op=op, match="NumPy array")
    bad_input(fn, x, (0, 2), (2, 2), (0, 0), op=op, match="kernel")
    bad_input(fn, x, (2, 2), (2, 0), (0, 0), op=op, match="stride")
    bad_input(fn, x, (2, 2), (-1, 2), (0, 0), op=op, match="stride")
    bad_input(fn, x, (2, 2), (2, 2), (0, -1), op=op, match="padding")
    bad_input(fn, x, (2,), (2, 2), (0, 0), op=op, match="kernel")
    bad_input(fn, x, (2, 2), (2, 2), (0, 0.5), op=op, match="int")
    bad_input(fn, x, (7, 2), (2, 2), (0, 0), op=op, match="larger")


def test_bad_input_bwd():
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 6, 6)).astype(np.float32)
    out, arg = ext.max_pool2d_fwd(x, (2, 2), (2, 2), (0, 0))
    op, fn = "max_pool2d_bwd", ext.max_pool2d_bwd
    bad_input(fn, out.astype(np.int32), arg, x.shape, op=op, match="float32 or float64")
    bad_input(fn, out, arg.astype(np.float64), x.shape, op=op, match="int64 or int32")
    bad_input(fn, out, arg.astype(np.uint64), x.shape, op=op, match="int64 or int32")
    bad_input(fn, out[:, :, ::2], arg, x.shape, op=op, match="C-contiguous")
    bad_input(fn, out, arg[:, :, ::2], x.shape, op=op, match="C-contiguous")
    bad_input(fn, out[0], arg[0], x.shape, op=op, match="dimensions")
    bad_input(fn, out, arg[:, :2].copy(), x.shape, op=op, match="argmax")
    bad_input(fn, out, arg, (2, 4, 6, 6), op=op, match="x_shape")
    bad_input(fn, out, arg, (2, 3, 6), op=op, match="x_shape")
    bad_input(fn, out, arg, (2, 3, -6, 6), op=op, match="x_shape")
    for value in (36, -1, 2**40):
        arg2 = arg.copy()
        arg2[1, 2, 1, 0] = value
        bad_input(fn, out, arg2, x.shape, op=op, error=IndexError, match=f"index {value} ")
    bad_input(fn, out, arg, (2, 3, 0, 6), op=op, error=IndexError)
