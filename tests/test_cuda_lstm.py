"""The fused CUDA LSTM-cell kernels in Numba's simulator against the NumPy backend, float64 and
float32, on (B, H) = (1, 1), (3, 7), (5, 33)."""
import os

import numpy as np
import pytest

from tilegrad.testing import assert_close, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as ref          # noqa: E402
from tilegrad.backends.cuda import lstm             # noqa: E402


@pytest.mark.parametrize("bs,hs", [(1, 1), (3, 7), (5, 33)], ids=str)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)], ids=["f64", "f32"])
def test_lstm_cell_fwd_bwd_against_numpy(bs, hs, dtype, tol):
    r = rng(bs * 100 + hs)
    gates = (2 * r.standard_normal((bs, 4 * hs))).astype(dtype)
    c_prev = r.standard_normal((bs, hs)).astype(dtype)
    h, c, acts = lstm.lstm_cell_fwd(gates, c_prev)
    want_h, want_c, want_acts = ref.lstm_cell_fwd(gates.astype(np.float64),
                                                  c_prev.astype(np.float64))
    for got, want, what in ((h, want_h, "h"), (c, want_c, "c"), (acts, want_acts, "acts")):
        assert got.dtype == dtype
        assert_close(got, want, rtol=tol, atol=tol, what=what)

    grad_h = r.standard_normal((bs, hs)).astype(dtype)
    grad_c = r.standard_normal((bs, hs)).astype(dtype)
    # Backward from the same (float64 reference) forward state, cast to the dtype under test.
    state = [a.astype(dtype) for a in (want_acts, want_c)]
    gg, gc = lstm.lstm_cell_bwd(grad_h, grad_c, state[0], state[1], c_prev)
    want_gg, want_gc = ref.lstm_cell_bwd(*(a.astype(np.float64)
                                           for a in (grad_h, grad_c, state[0], state[1], c_prev)))
    assert gg.dtype == dtype and gc.dtype == dtype
    assert_close(gg, want_gg, rtol=tol, atol=tol, what="grad_gates")
    assert_close(gc, want_gc, rtol=tol, atol=tol, what="grad_c_prev")


# ---------------------------------------------------------------- rung 2: a layer over T steps

from tilegrad.testing import guarded                            # noqa: E402

# (T, B, H): B over the GEMM's 4-row tile, 4H and H over its 4-column tile, H over its 4-deep
# K-tile, and B*H over the 8 threads x 4 blocks of the step kernels' grid-stride loop.
SEQ_SHAPES = [(1, 1, 1), (3, 5, 7), (4, 2, 9), (2, 9, 5)]


def _seq_inputs(steps, bs, hs, dtype, seed):
    r = rng(seed)
    g = 4 * hs
    return ((2 * r.standard_normal((steps, bs, g))).astype(dtype),
            r.standard_normal((bs, hs)).astype(dtype), r.standard_normal((bs, hs)).astype(dtype),
            (r.standard_normal((g, hs)) / np.sqrt(hs)).astype(dtype),
            r.standard_normal(g).astype(dtype))


@pytest.mark.parametrize("state", ["h0-c0", "none", "h0-only"])
@pytest.mark.parametrize("steps,bs,hs", SEQ_SHAPES, ids=str)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)], ids=["f64", "f32"])
def test_lstm_seq_fwd_against_numpy(steps, bs, hs, dtype, tol, state):
    xproj, h0, c0, w_hh, b_hh = _seq_inputs(steps, bs, hs, dtype, seed=steps * 100 + bs * 10 + hs)
    h0 = None if state == "none" else h0
    c0 = c0 if state == "h0-c0" else None
    b_hh = None if state == "h0-only" else b_hh
    got = lstm.lstm_seq_fwd(*(None if a is None else guarded(a) for a in (xproj, h0, c0, w_hh,
                                                                          b_hh)))
    want = ref.lstm_seq_fwd(*(None if a is None else a.astype(np.float64)
                              for a in (xproj, h0, c0, w_hh, b_hh)))
    for a, b, what in zip(got, want, ("y", "h_n", "c_n", "h_prev", "cs", "acts")):
        assert a.dtype == dtype
        assert_close(a, b, rtol=tol, atol=tol, what=what)


@pytest.mark.parametrize("grads", ["all", "no-y", "y-only", "no-c"])
@pytest.mark.parametrize("steps,bs,hs", SEQ_SHAPES, ids=str)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)], ids=["f64", "f32"])
def test_lstm_seq_bwd_against_numpy(steps, bs, hs, dtype, tol, grads):
    xproj, h0, c0, w_hh, b_hh = _seq_inputs(steps, bs, hs, np.float64, seed=steps + bs + hs)
    _, _, _, _, cs, acts = ref.lstm_seq_fwd(xproj, h0, c0, w_hh, b_hh)
    r = rng(7)
    grad_y = None if grads == "no-y" else r.standard_normal((steps, bs, hs))
    grad_hn = None if grads == "y-only" else r.standard_normal((bs, hs))
    grad_cn = None if grads in ("y-only", "no-c") else r.standard_normal((bs, hs))
    args = [None if a is None else a.astype(dtype) for a in (grad_y, grad_hn, grad_cn, cs, acts,
                                                             w_hh)]
    for need_dh0 in (True, False):
        got = lstm.lstm_seq_bwd(*(None if a is None else guarded(a) for a in args), need_dh0)
        want = ref.lstm_seq_bwd(*(None if a is None else a.astype(np.float64) for a in args),
                                need_dh0)
        assert (got[1] is None) == (not need_dh0)
        for a, b, what in zip(got, want, ("dgates", "dh0", "dc0")):
            if b is not None:
                assert a.dtype == dtype
                assert_close(a, b, rtol=tol, atol=tol, what=what)


@pytest.mark.parametrize("shape", [(1, 4), (3, 5, 20), (37, 12), (0, 8)], ids=str)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)], ids=["f64", "f32"])
def test_lstm_bias_bwd_against_numpy(shape, dtype, tol):
    grad = rng(sum(shape)).standard_normal(shape).astype(dtype)
    got_ih, got_hh = lstm.lstm_bias_bwd(guarded(grad))
    want_ih, want_hh = ref.lstm_bias_bwd(grad.astype(np.float64))
    assert got_ih is not got_hh and got_ih.dtype == dtype
    assert_close(got_ih, want_ih, rtol=tol, atol=tol, what="grad b_ih")
    assert_close(got_hh, want_hh, rtol=tol, atol=tol, what="grad b_hh")


def test_ptx_signatures_list_every_kernel_in_both_dtypes():
    import re
    names = {n for n in dir(lstm) if re.fullmatch(r"[a-z_]+_kernel\d+", n)}
    names |= {"lstm_gates_fwd_kernel1", "lstm_gates_bwd_kernel1"}   # made by the factory
    listed = {name for name, *_ in lstm.PTX_SIGNATURES}
    for name in names:
        for f in ("float32", "float64"):
            assert f"{name}_{f}" in listed, f"{name}_{f} is not in PTX_SIGNATURES"
