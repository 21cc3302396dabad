"""The C++ LSTM kernels (csrc/lstm.cpp) against the NumPy backend run in float64 on the same
inputs: the fused cell forward and backward, the whole recurrence forward (with the
specification's return structure: y and h_prev views of one (T+1, B, H) array) and backward
(None for any of grad_y, grad_hn, grad_cn, h0, c0, b_hh), the bias gradients; bad input at the
bindings."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tilegrad.testing import odd_sizes
from cpu_helpers import bad_input, cases, check, cpp, ext, rand, simd, spec  # noqa: F401

DTYPES = [np.float32, np.float64]
ODD = odd_sizes()
WIDE = st.sampled_from([1, 3, 7, 13, 37, 70])   # past a 16-lane vector, with a tail


def _f64(*arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


def _check_all(got, want, dtype, names, scale=1.0):
    assert len(got) == len(want)
    for g, w, name in zip(got, want, names):
        if w is None:
            assert g is None, f"{name}: expected None"
        else:
            check(g, w, dtype, name, scale)


@cases(40)
@given(b=ODD, h=WIDE, dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16),
       spread=st.sampled_from([3.0, 30.0]))
def test_cell_against_numpy(simd, b, h, dtype, seed, spread):
    # The cell's sigmoid and tanh are vectorised (csrc/vmath.h): every vector width, and gates
    # large enough to saturate them.
    rng = np.random.default_rng(seed)
    gates, c_prev = rand(rng, (b, 4 * h), dtype, -spread, spread), rand(rng, (b, h), dtype)
    got = cpp.lstm_cell_fwd(gates, c_prev)
    _check_all(got, spec.lstm_cell_fwd(*_f64(gates, c_prev)), dtype, ("h", "c", "acts"))
    grad_h, grad_c = rand(rng, (b, h), dtype), rand(rng, (b, h), dtype)
    acts, c = got[2], got[1]
    _check_all(cpp.lstm_cell_bwd(grad_h, grad_c, acts, c, c_prev),
               spec.lstm_cell_bwd(*_f64(grad_h, grad_c, acts, c, c_prev)), dtype,
               ("dgates", "dc_prev"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cell_special_values_as_numpy(simd, dtype):
    vals = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-5, 0.5, -0.5, 9.0, -9.0, 20.0, -20.0, 88.0,
                     -88.0, 800.0, -800.0, np.inf, -np.inf, np.nan], dtype=dtype)
    h = vals.size
    gates = np.stack([np.roll(vals, k) for k in range(4)]).reshape(1, 4 * h).astype(dtype)
    c_prev = np.roll(vals, 5).reshape(1, h).astype(dtype)
    with np.errstate(all="ignore"):
        want = spec.lstm_cell_fwd(*_f64(gates, c_prev))
    got = cpp.lstm_cell_fwd(gates, c_prev)
    for g, w, name in zip(got, want, ("h", "c", "acts")):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{name}: NaN places")
        inf = np.isinf(w)
        np.testing.assert_array_equal(g[inf], w[inf], err_msg=f"{name}: infinities")
        ok = ~np.isnan(w) & ~inf
        check(g[ok], w[ok], dtype, name)


def _sequence(rng, t, b, h, dtype):
    xproj = rand(rng, (t, b, 4 * h), dtype, -2, 2)
    w_hh = rand(rng, (4 * h, h), dtype, -0.5, 0.5)
    return xproj, rand(rng, (b, h), dtype), rand(rng, (b, h), dtype), w_hh, rand(rng, 4 * h, dtype)


def _check_seq_fwd(args, dtype, scale=1.0):
    got = cpp.lstm_seq_fwd(*args)
    want = spec.lstm_seq_fwd(*_f64(*args))
    _check_all(got, want, dtype, ("y", "h_n", "c_n", "h_prev", "cs", "acts"), scale)
    y, h_n, c_n, h_prev, cs, acts = got
    t, b, g = args[0].shape
    # The structure: y = hs[1:], h_prev = hs[:-1] of one (T+1, B, H) array; h_n, c_n their own.
    assert y.base is not None and y.base is h_prev.base and y.base.shape == (t + 1, b, g // 4)
    assert np.shares_memory(y, h_prev) == (t > 1)
    assert h_n.base is None and c_n.base is None and cs.shape == (t + 1, b, g // 4)
    assert not np.shares_memory(h_n, y) and not np.shares_memory(c_n, cs)
    return got


@cases(40)
@given(t=st.sampled_from([0, 1, 2, 3, 5]), b=ODD, h=ODD, dtype=st.sampled_from(DTYPES),
       present=st.tuples(st.booleans(), st.booleans(), st.booleans()),
       grads=st.tuples(st.booleans(), st.booleans(), st.booleans()), need_dh0=st.booleans(),
       seed=st.integers(0, 2**16))
def test_sequence_against_numpy(simd, t, b, h, dtype, present, grads, need_dh0, seed):
    rng = np.random.default_rng(seed)
    xproj, h0, c0, w_hh, b_hh = _sequence(rng, t, b, h, dtype)
    h0, c0, b_hh = (a if keep else None for a, keep in zip((h0, c0, b_hh), present))
    y, h_n, c_n, h_prev, cs, acts = _check_seq_fwd((xproj, h0, c0, w_hh, b_hh), dtype)
    grad_y, grad_hn, grad_cn = (rand(rng, a.shape, dtype) if keep else None
                                for a, keep in zip((y, h_n, c_n), grads))
    got = cpp.lstm_seq_bwd(grad_y, grad_hn, grad_cn, cs, acts, w_hh, need_dh0)
    want = spec.lstm_seq_bwd(*_f64(grad_y, grad_hn, grad_cn, cs, acts, w_hh), need_dh0)
    _check_all(got, want, dtype, ("dgates", "dh0", "dc0"))
    if t == 0 and grad_hn is not None and need_dh0:     # nothing to run back through
        np.testing.assert_array_equal(got[1], grad_hn)


@pytest.mark.parametrize("dtype", DTYPES)
def test_language_model_shape(dtype):
    """The word LM's layer: T=35, B=20, H=256 (one test: the stand-in GEMM is slow)."""
    rng = np.random.default_rng(0)
    xproj, h0, c0, w_hh, b_hh = _sequence(rng, 35, 20, 256, dtype)
    w_hh *= 0.2
    y, h_n, c_n, h_prev, cs, acts = _check_seq_fwd((xproj, h0, c0, w_hh, b_hh), dtype, scale=3)
    grad_y = rand(rng, y.shape, dtype)
    got = cpp.lstm_seq_bwd(grad_y, None, None, cs, acts, w_hh, True)
    want = spec.lstm_seq_bwd(*_f64(grad_y, None, None, cs, acts, w_hh), True)
    _check_all(got, want, dtype, ("dgates", "dh0", "dc0"), scale=3)
    again = cpp.lstm_seq_bwd(grad_y, None, None, cs, acts, w_hh, True)
    for a, b in zip(got, again):                              # deterministic
        np.testing.assert_array_equal(a, b)
    check(cpp.lstm_bias_bwd(got[0])[0], spec.lstm_bias_bwd(got[0].astype(np.float64))[0], dtype,
          "db")


@cases(30)
@given(lead=st.lists(ODD, max_size=3), g=st.sampled_from([4, 12, 28, 300]),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_bias_bwd_against_numpy(lead, g, dtype, seed):
    dgates = rand(np.random.default_rng(seed), tuple(lead) + (g,), dtype)
    db_ih, db_hh = cpp.lstm_bias_bwd(dgates)
    want, _ = spec.lstm_bias_bwd(dgates.astype(np.float64))
    check(db_ih, want, dtype, "db_ih")
    check(db_hh, want, dtype, "db_hh")
    assert not np.shares_memory(db_ih, db_hh)


def test_strided_inputs_through_the_wrapper():
    rng = np.random.default_rng(5)
    xproj, h0, c0, w_hh, b_hh = _sequence(rng, 3, 4, 5, np.float64)
    xproj_t = np.ascontiguousarray(xproj.transpose(1, 0, 2)).transpose(1, 0, 2)   # strided view
    h0_t = np.ascontiguousarray(h0.T).T
    _check_seq_fwd((xproj_t, h0_t, c0, w_hh, b_hh), np.float64)
    gates = np.ascontiguousarray(xproj[0].T).T
    _check_all(cpp.lstm_cell_fwd(gates, c0), spec.lstm_cell_fwd(gates, c0), np.float64, "hca")
    # mixed dtypes go to the NumPy backend
    got = cpp.lstm_seq_fwd(xproj.astype(np.float32), h0, c0, w_hh, b_hh)
    want = spec.lstm_seq_fwd(xproj.astype(np.float32), h0, c0, w_hh, b_hh)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_bad_input():
    f4 = np.float32
    b, h = 2, 3
    gates, c = np.ones((b, 4 * h), f4), np.ones((b, h), f4)
    cf, cb = ext.lstm_cell_fwd, ext.lstm_cell_bwd
    bad_input(cf, gates.astype(np.float64), c, op="lstm_cell_fwd", match="dtype")
    bad_input(cf, gates, c.astype(np.int32), op="lstm_cell_fwd", match="float32 or float64")
    bad_input(cf, np.ones((b, 4 * h + 1), f4), c, op="lstm_cell_fwd", match="shape")
    bad_input(cf, gates, np.ones(h, f4), op="lstm_cell_fwd", match="dimensions")
    bad_input(cf, np.ones((4 * h, b), f4).T, c, op="lstm_cell_fwd", match="C-contiguous")
    bad_input(cf, gates, None, op="lstm_cell_fwd", match="NumPy array")
    bad_input(cb, c, c, gates, c, np.ones((b + 1, h), f4), op="lstm_cell_bwd", match="shape")
    bad_input(cb, c, c, gates[:, :h], c, c, op="lstm_cell_bwd")
    bad_input(cb, c, c.astype(np.float64), gates, c, c, op="lstm_cell_bwd", match="dtype")

    t = 2
    xproj, w_hh, b_hh = np.ones((t, b, 4 * h), f4), np.ones((4 * h, h), f4), np.ones(4 * h, f4)
    sf = ext.lstm_seq_fwd
    bad_input(sf, xproj[0], None, None, w_hh, None, op="lstm_seq_fwd", match="dimensions")
    bad_input(sf, np.ones((t, b, 6), f4), None, None, np.ones((6, 1), f4), None,
              op="lstm_seq_fwd", match="4*H")
    bad_input(sf, xproj, None, None, w_hh.T.copy(), None, op="lstm_seq_fwd", match="w_hh")
    bad_input(sf, xproj, np.ones((b + 1, h), f4), None, w_hh, None, op="lstm_seq_fwd", match="h0")
    bad_input(sf, xproj, None, np.ones((b, h)), w_hh, None, op="lstm_seq_fwd", match="c0")
    bad_input(sf, xproj, None, None, w_hh, b_hh[:-1], op="lstm_seq_fwd", match="b_hh")
    bad_input(sf, xproj, None, None, w_hh, [1.0], op="lstm_seq_fwd", match="NumPy array")
    bad_input(sf, xproj, None, None, w_hh.astype(np.float64), None, op="lstm_seq_fwd")

    cs, acts = np.ones((t + 1, b, h), f4), np.ones((t, b, 4 * h), f4)
    sb = ext.lstm_seq_bwd
    grad_y = np.ones((t, b, h), f4)
    bad_input(sb, grad_y, None, None, cs[:t], acts, w_hh, False, op="lstm_seq_bwd", match="cs")
    bad_input(sb, grad_y[:1], None, None, cs, acts, w_hh, False, op="lstm_seq_bwd", match="grad_y")
    bad_input(sb, None, c[:1], None, cs, acts, w_hh, False, op="lstm_seq_bwd", match="grad_hn")
    bad_input(sb, None, None, c.astype(np.float64), cs, acts, w_hh, False, op="lstm_seq_bwd",
              match="grad_cn")
    bad_input(sb, None, None, None, cs, acts, w_hh, "yes", op="lstm_seq_bwd", match="bool")
    bad_input(sb, None, None, None, cs, acts, w_hh[:, :2], True, op="lstm_seq_bwd", match="w_hh")
    bad_input(sb, None, None, None, cs, "acts", w_hh, True, op="lstm_seq_bwd", match="NumPy array")
    bad_input(ext.lstm_bias_bwd, np.float32(1.0) * np.ones(()), op="lstm_bias_bwd")
    bad_input(ext.lstm_bias_bwd, np.ones((3, 4), np.int64), op="lstm_bias_bwd")
    bad_input(ext.lstm_bias_bwd, np.ones((4, 3)).T, op="lstm_bias_bwd", match="C-contiguous")
