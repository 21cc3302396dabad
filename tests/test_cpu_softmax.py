"""The C++ log-softmax and fused cross-entropy (csrc/softmax.cpp) against the NumPy backend;
float32 and float64, every vector width, NaN and infinite rows, bad targets."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from cpu_helpers import bad_input, cases, check, cpp, ext, rand, simd, spec  # noqa: F401
from tilegrad.errors import IndexRangeError

FLOATS = (np.float32, np.float64)
REDUCTIONS = ("none", "sum", "mean")
INDEX = (np.int64, np.int32)


def logits(rng, shape, dtype, scale=4.0):
    return rand(rng, shape, dtype, -scale, scale)


def grad_loss(rng, n, dtype, reduction):
    if reduction == "none":
        return rand(rng, (n,), dtype)
    return np.asarray(rng.uniform(0.5, 2.0), dtype=dtype)


def same_nans_then_check(got, ref, dtype, what):
    """NaNs and infinities where the reference has them, the rest within tolerance."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.dtype == np.dtype(dtype) and got.shape == ref.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{what}: NaNs")
    for sign in (np.inf, -np.inf):
        np.testing.assert_array_equal(got == sign, ref == sign, err_msg=f"{what}: {sign}")
    ok = np.isfinite(ref)
    check(got[ok], ref[ok], dtype, what)


# ---------------------------------------------------------------- log_softmax

@pytest.mark.parametrize("dtype", FLOATS)
@cases(15)
@given(shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40), seed=st.integers(0, 99))
def test_log_softmax(simd, dtype, shape, seed):
    rng = np.random.default_rng(seed)
    x = logits(rng, shape, dtype)
    y = cpp.log_softmax_fwd(x)
    y64 = spec.log_softmax_fwd(x.astype(np.float64))
    check(y, y64, dtype, "log_softmax_fwd")
    g = rand(rng, shape, dtype)
    check(cpp.log_softmax_bwd(g, y), spec.log_softmax_bwd(g.astype(np.float64), y64), dtype,
          "log_softmax_bwd")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(700, 3001), (64, 10), (3, 5, 1030), (2, 70001), (5, 1)])
def test_log_softmax_model_shapes(dtype, shape):
    rng = np.random.default_rng(1)
    x = logits(rng, shape, dtype, 20.0)
    y = cpp.log_softmax_fwd(x)
    y64 = spec.log_softmax_fwd(x.astype(np.float64))
    check(y, y64, dtype, "log_softmax_fwd", scale=2)
    g = rand(rng, shape, dtype)
    check(cpp.log_softmax_bwd(g, y), spec.log_softmax_bwd(g.astype(np.float64), y64), dtype,
          "log_softmax_bwd", scale=2)


def special_rows(dtype, c=45):
    """Rows with a NaN, +inf, all -inf, huge and tiny values, and a normal one."""
    rng = np.random.default_rng(2)
    x = logits(rng, (7, c), dtype)
    x[0, 3] = np.nan
    x[1, c - 1] = np.inf
    x[2, :] = -np.inf
    x[3, 5] = -np.inf
    x[4, :] *= 1e4 if dtype == np.float32 else 1e30
    x[5, 0] = np.nan
    x[5, 1] = np.inf
    return x


@pytest.mark.parametrize("dtype", FLOATS)
def test_log_softmax_nan_and_inf(simd, dtype):
    x = special_rows(dtype)
    with np.errstate(all="ignore"):
        y_ref = spec.log_softmax_fwd(x)
    y = cpp.log_softmax_fwd(x)
    same_nans_then_check(y, y_ref, dtype, "log_softmax_fwd")
    g = rand(np.random.default_rng(3), x.shape, dtype)
    with np.errstate(all="ignore"):
        ref = spec.log_softmax_bwd(g, y_ref)
    same_nans_then_check(cpp.log_softmax_bwd(g, y), ref, dtype, "log_softmax_bwd")


# ---------------------------------------------------------------- cross-entropy

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@cases(10)
@given(n=st.integers(1, 40), c=st.integers(1, 70), seed=st.integers(0, 99),
       index=st.sampled_from(INDEX))
def test_cross_entropy(simd, dtype, reduction, n, c, seed, index):
    rng = np.random.default_rng(seed)
    x = logits(rng, (n, c), dtype)
    t = rng.integers(0, c, n).astype(index)
    got = cpp.cross_entropy_fwd(x, t, reduction)
    ref = spec.cross_entropy_fwd(x.astype(np.float64), t, reduction)
    assert got.shape == ref.shape
    check(got, ref, dtype, f"cross_entropy_fwd {reduction}")
    g = grad_loss(rng, n, dtype, reduction)
    check(cpp.cross_entropy_bwd(x, t, g, reduction),
          spec.cross_entropy_bwd(x.astype(np.float64), t, g.astype(np.float64), reduction),
          dtype, f"cross_entropy_bwd {reduction}")


def ignored_targets(rng, n, c, index, which, ignore_index):
    """Targets in [0, C) with none, some (about 40%, at least one kept) or all of them
    ``ignore_index``."""
    t = rng.integers(0, c, n).astype(index)
    if which == "some":
        t[rng.random(n) < 0.4] = ignore_index
        t[0] = (ignore_index + 1) % c          # one kept row, never the ignored class
    elif which == "all":
        t[:] = ignore_index
    return t


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("which", ["none", "some", "all"])
@pytest.mark.parametrize("index", INDEX)
@pytest.mark.parametrize("n, c, ignore_index", [(1, 3, -100), (7, 13, -100), (13, 7, 2),
                                                (40, 33, -1)], ids=str)
def test_cross_entropy_ignore_index(dtype, reduction, which, index, n, c, ignore_index):
    """Rows whose target is ignore_index (-100, -1, or a class, 2) give loss 0 and gradient 0;
    'mean' divides by the rows kept, NaN when none is (as PyTorch's)."""
    rng = np.random.default_rng(n + c)
    x = logits(rng, (n, c), dtype)
    t = ignored_targets(rng, n, c, index, which, ignore_index)
    with np.errstate(invalid="ignore"):
        got = cpp.cross_entropy_fwd(x, t, reduction, ignore_index)
    ref = spec.cross_entropy_fwd(x.astype(np.float64), t, reduction, ignore_index)
    if which == "all" and reduction == "mean":
        assert got.dtype == np.dtype(dtype) and np.isnan(got) and np.isnan(ref)
    else:
        check(got, ref, dtype, f"cross_entropy_fwd {reduction}")
    g = grad_loss(rng, n, dtype, reduction)
    dx = cpp.cross_entropy_bwd(x, t, g, reduction, ignore_index)
    check(dx, spec.cross_entropy_bwd(x.astype(np.float64), t, g.astype(np.float64), reduction,
                                     ignore_index), dtype, f"cross_entropy_bwd {reduction}")
    ignored = t == ignore_index
    assert not dx[ignored].any()                # exactly 0, whatever the reduction
    if reduction == "none":
        assert (got[ignored] == 0).all()


def test_cross_entropy_ignored_rows_are_not_read():
    """An ignored row's logits are skipped by the forward (loss 0 even for a NaN row, as
    PyTorch's), while the backward gives softmax * 0 there: NaN for a NaN row, as PyTorch's
    log_softmax backward."""
    rng = np.random.default_rng(9)
    x = logits(rng, (3, 5), np.float64)
    x[1, 2] = np.nan
    t = np.array([4, -100, 0])
    loss = cpp.cross_entropy_fwd(x, t, "none")
    assert loss[1] == 0 and np.isfinite(loss).all()
    dx = cpp.cross_entropy_bwd(x, t, np.asarray(1.0), "mean")
    assert np.isnan(dx[1]).all() and np.isfinite(dx[[0, 2]]).all()
    with np.errstate(invalid="ignore"):
        same_nans_then_check(dx, spec.cross_entropy_bwd(x, t, np.asarray(1.0), "mean"),
                             np.float64, "bwd")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n, c", [(700, 10000), (64, 10), (3, 70001)])
def test_cross_entropy_model_shapes(dtype, n, c):
    """The LM's loss (700 x 10000), the CNN's (64 x 10), a few very long rows."""
    rng = np.random.default_rng(4)
    x = logits(rng, (n, c), dtype, 10.0)
    t = rng.integers(0, c, n)
    for reduction in ("mean", "none"):
        check(cpp.cross_entropy_fwd(x, t, reduction),
              spec.cross_entropy_fwd(x.astype(np.float64), t, reduction), dtype, reduction)
        g = grad_loss(rng, n, dtype, reduction)
        check(cpp.cross_entropy_bwd(x, t, g, reduction),
              spec.cross_entropy_bwd(x.astype(np.float64), t, g.astype(np.float64), reduction),
              dtype, reduction)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_nan_and_inf(simd, dtype, reduction):
    x = special_rows(dtype)
    t = np.array([0, 1, 2, 5, 6, 3, 4])
    with np.errstate(all="ignore"):
        ref = spec.cross_entropy_fwd(x, t, reduction)
    same_nans_then_check(cpp.cross_entropy_fwd(x, t, reduction), ref, dtype, "fwd")
    g = grad_loss(np.random.default_rng(5), len(t), dtype, reduction)
    with np.errstate(all="ignore"):
        ref = spec.cross_entropy_bwd(x, t, g, reduction)
    same_nans_then_check(cpp.cross_entropy_bwd(x, t, g, reduction), ref, dtype, "bwd")


def test_cross_entropy_same_bits_for_any_thread_count():
    rng = np.random.default_rng(6)
    x = logits(rng, (301, 999), np.float32)
    t = rng.integers(0, 999, 301)
    before = ext.get_num_threads()
    try:
        out = []
        for threads in (1, 2, 3):
            ext.set_num_threads(threads)
            out.append((cpp.cross_entropy_fwd(x, t, "mean"),
                        cpp.cross_entropy_bwd(x, t, np.asarray(1.0, np.float32), "mean")))
    finally:
        ext.set_num_threads(before)
    for fwd, bwd in out[1:]:
        np.testing.assert_array_equal(fwd, out[0][0])
        np.testing.assert_array_equal(bwd, out[0][1])


def test_empty():
    for dtype in FLOATS:
        x = np.zeros((0, 5), dtype)
        t = np.zeros(0, np.int64)
        assert cpp.cross_entropy_fwd(x, t, "none").shape == (0,)
        assert cpp.cross_entropy_fwd(x, t, "sum") == 0
        with np.errstate(all="ignore"):
            assert np.isnan(cpp.cross_entropy_fwd(x, t, "mean"))
        assert cpp.cross_entropy_bwd(x, t, np.asarray(1.0, dtype), "mean").shape == (0, 5)
        assert cpp.log_softmax_fwd(np.zeros((3, 0), dtype)).shape == (3, 0)
        assert cpp.log_softmax_bwd(x, x).shape == (0, 5)
        assert cpp.cross_entropy_fwd(x, t, "sum").shape == ()


def test_reduced_loss_is_0d_of_the_logits_dtype():
    rng = np.random.default_rng(7)
    for dtype in FLOATS:
        x, t = logits(rng, (5, 4), dtype), rng.integers(0, 4, 5)
        for reduction in ("sum", "mean"):
            got = cpp.cross_entropy_fwd(x, t, reduction)
            assert got.shape == () and got.dtype == np.dtype(dtype)
            g = np.ones((1,), dtype)                      # any one-element array
            assert cpp.cross_entropy_bwd(x, t, g, reduction).shape == (5, 4)


def test_other_dtypes_use_the_specification():
    rng = np.random.default_rng(8)
    x = logits(rng, (4, 6), np.float32)
    t = rng.integers(0, 6, 4).astype(np.uint8)
    np.testing.assert_array_equal(cpp.cross_entropy_fwd(x, t, "sum"),
                                  spec.cross_entropy_fwd(x, t, "sum"))
    xs = logits(rng, (4, 12), np.float64)[:, ::2]          # strided: copied
    check(cpp.log_softmax_fwd(xs), spec.log_softmax_fwd(xs), np.float64)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("index", INDEX)
def test_target_out_of_range(index):
    x = np.ones((3, 10), np.float32)
    g = np.ones(3, np.float32)
    for bad in (10, -1, 12):
        t = np.array([0, bad, 1], dtype=index)
        for fn, args in ((ext.cross_entropy_fwd, (x, t, "mean")),
                         (ext.cross_entropy_bwd, (x, t, g, "none")),
                         (cpp.cross_entropy_fwd, (x, t, "none"))):
            op = fn.__name__
            msg = bad_input(fn, *args, op=op, error=IndexRangeError)
            assert f"target {bad} is out of range for 10 classes" in msg
    with pytest.raises(IndexError):
        ext.cross_entropy_fwd(np.ones((2, 0), np.float32), np.zeros(2, index), "none")
    # ignore_index excuses its own value only: -100 is ignored, 10 and -1 still raise
    for bad in (10, -1):
        t = np.array([-100, bad, 1], dtype=index)
        msg = bad_input(ext.cross_entropy_fwd, x, t, "mean", -100, op="cross_entropy_fwd",
                        error=IndexRangeError)
        assert f"target {bad} is out of range" in msg
    assert np.isfinite(ext.cross_entropy_fwd(x, np.array([5, 9, -1], index), "sum", -1))


def test_bad_input():
    x = np.ones((3, 4), np.float32)
    t = np.zeros(3, np.int64)
    g = np.ones(3, np.float32)
    fwd, bwd = "cross_entropy_fwd", "cross_entropy_bwd"
    bad_input(ext.cross_entropy_fwd, x, t, "avg", op=fwd, match="reduction")
    bad_input(ext.cross_entropy_fwd, x.astype(np.int32), t, "sum", op=fwd, match="float32")
    bad_input(ext.cross_entropy_fwd, x, t.astype(np.float32), "sum", op=fwd, match="int64")
    bad_input(ext.cross_entropy_fwd, x, np.zeros(4, np.int64), "sum", op=fwd, match="shape")
    bad_input(ext.cross_entropy_fwd, x.reshape(3, 2, 2), t, "sum", op=fwd, match="dimensions")
    bad_input(ext.cross_entropy_fwd, x.T, np.zeros(4, np.int64), "sum", op=fwd,
              match="C-contiguous")
    bad_input(ext.cross_entropy_fwd, x, [0, 0, 0], "sum", op=fwd, match="NumPy array")
    bad_input(ext.cross_entropy_bwd, x, t, g.astype(np.float64), "none", op=bwd, match="dtype")
    bad_input(ext.cross_entropy_bwd, x, t, np.ones(4, np.float32), "none", op=bwd, match="shape")
    bad_input(ext.cross_entropy_bwd, x, t, g, "mean", op=bwd, match="one element")
    bad_input(ext.cross_entropy_bwd, x, t, g, "max", op=bwd, match="reduction")
    bad_input(ext.log_softmax_fwd, np.asarray(1.0, np.float32), op="log_softmax_fwd")
    bad_input(ext.log_softmax_fwd, x.astype(np.float16), op="log_softmax_fwd")
    bad_input(ext.log_softmax_bwd, x, x.astype(np.float64), op="log_softmax_bwd", match="dtype")
    bad_input(ext.log_softmax_bwd, x, x.T.copy(), op="log_softmax_bwd", match="shape")
    bad_input(ext.log_softmax_bwd, x, None, op="log_softmax_bwd", match="NumPy array")
