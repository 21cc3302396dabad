"""The C++ embedding and dropout kernels (csrc/embedding.cpp, csrc/dropout.cpp) against the NumPy
backend: the gather exactly, the scatter-add against the specification in float64 (and
bit-identical to it in the input dtype: both add in index order), dropout's Philox mask
bit-identical with its state advanced the same way, and bad input at the bindings (an
out-of-range index an IndexError naming the op, raised before anything is written)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tilegrad.testing import odd_sizes
from cpu_helpers import bad_input, cases, check, cpp, ext, rand, spec

DTYPES = [np.float32, np.float64]
INDEX = [np.int64, np.int32]
ODD = odd_sizes()


@cases(60)
@given(v=ODD, d=st.sampled_from([0, 1, 3, 7, 13, 33]), idx_shape=st.lists(ODD, max_size=3),
       dtype=st.sampled_from(DTYPES), itype=st.sampled_from(INDEX), seed=st.integers(0, 2**16))
def test_against_numpy(v, d, idx_shape, dtype, itype, seed):
    rng = np.random.default_rng(seed)
    weight = rand(rng, (v, d), dtype)
    idx = rng.integers(0, v, size=idx_shape).astype(itype)    # repeats: v is small
    out = cpp.embedding_fwd(weight, idx)
    assert out.shape == tuple(idx_shape) + (d,) and out.dtype == dtype
    np.testing.assert_array_equal(out, spec.embedding_fwd(weight, idx))
    grad = rand(rng, out.shape, dtype)
    got = cpp.embedding_bwd(grad, idx, v)
    check(got, spec.embedding_bwd(grad.astype(np.float64), idx, v), dtype, "embedding_bwd")
    np.testing.assert_array_equal(got, spec.embedding_bwd(grad, idx, v))   # same order of adds


@pytest.mark.parametrize("dtype", DTYPES)
def test_language_model_shape(dtype):
    rng = np.random.default_rng(0)
    weight = rand(rng, (10000, 128), dtype)
    idx = rng.integers(0, 10000, size=(35, 20))
    idx[3, :5] = 17                                              # a few repeated rows
    np.testing.assert_array_equal(cpp.embedding_fwd(weight, idx), weight[idx])
    grad = rand(rng, (35, 20, 128), dtype)
    got = cpp.embedding_bwd(grad, idx, 10000)
    np.testing.assert_array_equal(got, spec.embedding_bwd(grad, idx, 10000))
    np.testing.assert_array_equal(got, cpp.embedding_bwd(grad, idx, 10000))  # deterministic


def test_many_repeats_small_d_and_empty():
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 3, size=5000)
    grad = rand(rng, (5000, 2), np.float32)
    check(cpp.embedding_bwd(grad, idx, 4), spec.embedding_bwd(grad.astype(np.float64), idx, 4),
          np.float32, "embedding_bwd", scale=10)
    empty = np.zeros((0,), np.int64)
    assert cpp.embedding_fwd(rand(rng, (3, 4), np.float64), empty).shape == (0, 4)
    np.testing.assert_array_equal(cpp.embedding_bwd(np.zeros((0, 4)), empty, 3), np.zeros((3, 4)))
    w = np.zeros((0, 4))
    assert cpp.embedding_fwd(w, empty).shape == (0, 4)


def test_strided_inputs_through_the_wrapper():
    rng = np.random.default_rng(3)
    weight = rand(rng, (8, 6), np.float64).T        # (6, 8), not contiguous
    idx = rng.integers(0, 6, size=(4, 5)).T
    np.testing.assert_array_equal(cpp.embedding_fwd(weight, idx), weight[idx])
    grad = rand(rng, (5, 4, 8), np.float32)[:, :, ::1]
    np.testing.assert_array_equal(cpp.embedding_bwd(grad, idx, 6), spec.embedding_bwd(grad, idx, 6))


def test_out_of_range_indices():
    w = rand(np.random.default_rng(0), (10, 4), np.float32)
    for bad in (10, 12, -1):
        idx = np.array([[1, 2], [bad, 3]])
        msg = bad_input(ext.embedding_fwd, w, idx, op="embedding_fwd", error=IndexError,
                        match="out of range")
        assert f"index {bad} " in msg and "10 rows" in msg
        with pytest.raises(IndexError, match="embedding_fwd"):
            cpp.embedding_fwd(w, idx.astype(np.int32))
        grad = np.ones((2, 2, 4), np.float32)
        bad_input(ext.embedding_bwd, grad, idx, 10, op="embedding_bwd", error=IndexError,
                  match="out of range")
    bad_input(ext.embedding_fwd, np.zeros((0, 3)), np.array([0]), op="embedding_fwd",
              error=IndexError)


def test_bad_input():
    w = np.ones((5, 3), np.float32)
    idx = np.array([0, 1, 4])
    g = np.ones((3, 3), np.float32)
    fwd, bwd = ext.embedding_fwd, ext.embedding_bwd
    bad_input(fwd, w.astype(np.int32), idx, op="embedding_fwd", match="float32 or float64")
    bad_input(fwd, w, idx.astype(np.float32), op="embedding_fwd", match="int64 or int32")
    bad_input(fwd, w, idx.astype(np.uint8), op="embedding_fwd")
    bad_input(fwd, np.ones((3, 5), np.float32).T, idx, op="embedding_fwd", match="C-contiguous")
    bad_input(fwd, w, np.arange(6)[::2], op="embedding_fwd", match="C-contiguous")
    bad_input(fwd, np.ones(5, np.float32), idx, op="embedding_fwd", match="dimensions")
    bad_input(fwd, [[1.0]], idx, op="embedding_fwd", match="NumPy array")
    bad_input(fwd, w, [0, 1], op="embedding_fwd", match="NumPy array")
    bad_input(bwd, g, idx, -1, op="embedding_bwd", match="non-negative")
    bad_input(bwd, g, idx, 5.0, op="embedding_bwd", match="must be an int")
    bad_input(bwd, g, idx, None, op="embedding_bwd", match="must be an int")
    bad_input(bwd, g, idx, 2**70, op="embedding_bwd", match="too large")
    bad_input(bwd, g, idx, True, op="embedding_bwd", match="must be an int")
    bad_input(bwd, np.ones((4, 3), np.float32), idx, 5, op="embedding_bwd", match="shape")
    bad_input(bwd, np.ones((3,), np.float32), idx, 5, op="embedding_bwd", match="shape")
    bad_input(bwd, g.astype(np.int64), idx, 5, op="embedding_bwd", match="float32 or float64")
    bad_input(bwd, g.T, idx, 5, op="embedding_bwd", match="C-contiguous")
    bad_input(bwd, "g", idx, 5, op="embedding_bwd", match="NumPy array")


# ------------------------------------------------------------------ dropout

@cases(40)
@given(shape=st.lists(ODD, max_size=3), p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1 / 3]),
       seed=st.integers(0, 2**64 - 1), offset=st.integers(0, 2**20).map(lambda k: 4 * k),
       dtype=st.sampled_from(DTYPES))
def test_dropout_against_numpy(shape, p, seed, offset, dtype):
    x = rand(np.random.default_rng(seed % 2**32), shape, dtype)
    state = np.array([seed, offset, 0], np.uint64)
    want_state = state.copy()
    y, mask = cpp.dropout_fwd(x, p, state)
    want_y, want_mask = spec.dropout_fwd(x, p, want_state)
    assert mask.dtype == np.bool_ and mask.shape == x.shape and y.dtype == dtype
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(state, want_state)
    g = rand(np.random.default_rng(1), shape, dtype)
    np.testing.assert_array_equal(cpp.dropout_bwd(g, mask, p), spec.dropout_bwd(g, mask, p))


def test_dropout_large_and_offsets():
    """Many groups (every thread draws), a counter past 2^32 (its high word in play), an
    offset that is not a multiple of 4 (the specification's counter is offset // 4), inf and
    NaN in x (times 0 gives NaN, as the specification's product)."""
    x = rand(np.random.default_rng(0), (35, 20, 257), np.float32)
    x[0, 0, :4] = [np.inf, -np.inf, np.nan, 1.0]
    for offset in (0, 6, 4 * 2**32 - 8, 2**64 - 16):
        state, want_state = (np.array([2**63 + 12345, offset, 0], np.uint64) for _ in range(2))
        y, mask = ext.dropout_fwd(x, 0.5, state)
        with np.errstate(all="ignore"):    # inf * 0 and the offset's wrap-around
            want_y, want_mask = spec.dropout_fwd(x, 0.5, want_state)
        np.testing.assert_array_equal(mask, want_mask)
        np.testing.assert_array_equal(y, want_y)
        np.testing.assert_array_equal(state, want_state)
    assert 0.45 < mask.mean() < 0.55


def test_dropout_bad_input():
    x = np.ones((3, 4), np.float32)
    state = np.array([1, 0, 0], np.uint64)
    fwd, bwd = ext.dropout_fwd, ext.dropout_bwd
    bad_input(fwd, x, 1.0, state, op="dropout_fwd", match="[0, 1)")
    bad_input(fwd, x, -0.1, state, op="dropout_fwd", match="[0, 1)")
    bad_input(fwd, x, float("nan"), state, op="dropout_fwd", match="[0, 1)")
    bad_input(fwd, x, "0.5", state, op="dropout_fwd", match="number")
    bad_input(fwd, x, 0.5, state.astype(np.int64), op="dropout_fwd", match="uint64")
    bad_input(fwd, x, 0.5, np.zeros(4, np.uint64), op="dropout_fwd", match="shape")
    ro = state.copy()
    ro.flags.writeable = False
    bad_input(fwd, x, 0.5, ro, op="dropout_fwd", match="writeable")
    bad_input(fwd, x.astype(np.int32), 0.5, state, op="dropout_fwd", match="float32 or float64")
    bad_input(fwd, x.T, 0.5, state, op="dropout_fwd", match="C-contiguous")
    bad_input(fwd, [1.0], 0.5, state, op="dropout_fwd", match="NumPy array")
    mask = np.ones((3, 4), bool)
    bad_input(bwd, x, mask.astype(np.uint8), 0.5, op="dropout_bwd", match="bool")
    bad_input(bwd, x, mask[:2], 0.5, op="dropout_bwd", match="shape")
    bad_input(bwd, x, mask, 1.5, op="dropout_bwd", match="[0, 1)")
    np.testing.assert_array_equal(state, [1, 0, 0])
