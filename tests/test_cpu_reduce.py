"""The C++ reductions (csrc/reduce.cpp), sum and amax over any axes, against the NumPy backend;
float32 and float64, every vector width, results independent of the thread count."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from cpu_helpers import bad_input, cases, check, cpp, ext, rand, simd, spec  # noqa: F401

FLOATS = (np.float32, np.float64)


@st.composite
def shape_and_axes(draw, max_dims=5, max_side=9):
    shape = draw(array_shapes(min_dims=0, max_dims=max_dims, min_side=1, max_side=max_side))
    nd = len(shape)
    axes = draw(st.lists(st.integers(0, max(nd - 1, 0)), unique=True, max_size=nd)) if nd else []
    # some axes negative, in any order
    axes = tuple(a - nd if draw(st.booleans()) else a for a in draw(st.permutations(axes)))
    return shape, axes


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ["sum", "amax"])
@cases(15)
@given(sa=shape_and_axes(), keepdims=st.booleans(), seed=st.integers(0, 99))
def test_reduce(simd, name, dtype, sa, keepdims, seed):
    shape, axes = sa
    x = rand(np.random.default_rng(seed), shape, dtype)
    got = getattr(cpp, name)(x, axes, keepdims)
    ref = getattr(spec, name)(x.astype(np.float64), axes, keepdims)
    assert got.shape == ref.shape
    check(got, ref, dtype, f"{name}{shape} over {axes}")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape, axes", [
    ((16, 64, 28, 28), (0, 2, 3)),        # a conv's bias gradient
    ((64, 256, 7, 7), (0, 2, 3)),
    ((700, 1024), (0,)),                  # the LM's bias gradient (column pass, 4 tiles)
    ((700, 1000), (1,)),                  # rows
    ((3, 70001), (0, 1)),                 # everything
    ((200003,), (0,)),                    # one long row: its blocks split among the threads
    ((2, 131075), (1,)),                  # fewer rows than threads, long
    ((5, 3, 300, 7), (1, 3)),             # K R K R: two row passes and a column pass
    ((3, 5, 4, 6, 2), (0, 2, 4)),         # R K R K R
    ((1, 7, 1, 9), (0, 2)),               # only dimensions of size 1: a copy
])
def test_reduce_model_shapes(dtype, shape, axes):
    x = rand(np.random.default_rng(1), shape, dtype)
    for name in ("sum", "amax"):
        for keepdims in (False, True):
            got = getattr(cpp, name)(x, axes, keepdims)
            ref = getattr(spec, name)(x.astype(np.float64), axes, keepdims)
            assert got.shape == ref.shape
            check(got, ref, dtype, f"{name}{shape} over {axes}", scale=10 if name == "sum" else 1)


@pytest.mark.parametrize("dtype", FLOATS)
def test_long_sums_are_accurate(dtype):
    """A million float32 values: far within tolerance of the float64 sum (blocks in double)."""
    x = rand(np.random.default_rng(2), (1_000_003,), dtype, 0.0, 1.0)
    check(cpp.sum(x, (0,), False), spec.sum(x.astype(np.float64), (0,), False), dtype, "sum",
          scale=0.1)
    y = x.reshape(1, -1).repeat(3, 0).T.copy()       # (1000003, 3): a column pass over many rows
    check(cpp.sum(y, (0,), False), spec.sum(y.astype(np.float64), (0,), False), dtype, "sum",
          scale=0.1)


@pytest.mark.parametrize("dtype", FLOATS)
def test_same_bits_for_any_thread_count_and_width(dtype):
    x = rand(np.random.default_rng(3), (3, 300001), dtype)
    cases_ = [((0, 1), False), ((1,), True), ((0,), False)]
    before_threads, before_simd = ext.get_num_threads(), ext.simd()
    try:
        results = []
        for threads in (1, 2, 3):
            ext.set_num_threads(threads)
            for width in ("portable", ext.simd_supported()):
                ext.set_simd(width)
                results.append([cpp.sum(x, axes, kd) for axes, kd in cases_])
    finally:
        ext.set_num_threads(before_threads)
        ext.set_simd(before_simd)
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_and_inf(simd, dtype):
    """A NaN anywhere in the reduced elements gives NaN (sum and amax, as NumPy); infinities
    add up to inf or NaN as NumPy's do."""
    x = rand(np.random.default_rng(4), (4, 1100), dtype)
    x[0, 5] = np.nan                 # in the vector part
    x[1, 1099] = np.nan              # in a tail
    x[2, 7] = np.inf
    x[3, :] = -np.inf
    for name in ("sum", "amax"):
        for axes in ((1,), (0,), (0, 1)):
            got = getattr(cpp, name)(x, axes, False)
            with np.errstate(invalid="ignore"):
                ref = getattr(spec, name)(x, axes, False)
            np.testing.assert_array_equal(got, ref, err_msg=f"{name} over {axes}")


def test_empty_and_fallbacks():
    z = np.zeros((0, 3), np.float32)
    for name, axes in (("sum", (0,)), ("sum", (1,)), ("amax", (1,)), ("sum", ())):
        got, ref = getattr(cpp, name)(z, axes, False), getattr(spec, name)(z, axes, False)
        assert got.shape == ref.shape and got.dtype == ref.dtype
        np.testing.assert_array_equal(got, ref)
    with pytest.raises(ValueError):
        cpp.amax(z, (0,), False)                      # no maximum of nothing, as NumPy
    i = np.arange(12).reshape(3, 4)
    got, ref = cpp.sum(i, (1,), False), spec.sum(i, (1,), False)
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)
    x = rand(np.random.default_rng(5), (4, 6), np.float32)[:, ::2]     # strided: copied
    check(cpp.sum(x, (0,), True), spec.sum(x.astype(np.float64), (0,), True), np.float32)
    # at the binding: an empty sum is zeros, an empty maximum an error unless nothing is asked
    np.testing.assert_array_equal(ext.sum(z, (0,), False), np.zeros(3, np.float32))
    assert ext.amax(z, (1,), True).shape == (0, 1)
    bad_input(ext.amax, z, (0,), False, op="amax", match="size 0")
    assert ext.sum(np.asarray(2.5), (), False) == 2.5


def test_bad_input():
    x = np.ones((3, 4), np.float32)
    for name in ("sum", "amax"):
        f = getattr(ext, name)
        bad_input(f, x, (2,), False, op=name, match="out of range")
        bad_input(f, x, (-3,), False, op=name, match="out of range")
        bad_input(f, x, (1, -1), False, op=name, match="repeated")
        bad_input(f, x, 1, False, op=name, match="tuple")
        bad_input(f, x, ("a",), False, op=name, match="ints")
        bad_input(f, np.ones((3, 4), np.int32), (0,), False, op=name, match="float32 or float64")
        bad_input(f, x.T, (0,), False, op=name, match="C-contiguous")
        bad_input(f, [1.0], (0,), False, op=name, match="NumPy array")
