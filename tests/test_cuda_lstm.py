"""The fused CUDA LSTM-cell kernels in Numba's simulator against the NumPy backend, float64 and
float32, on (B, H) = (1, 1), (3, 7), (5, 33)."""
import os

import numpy as np
import pytest

from helpers import assert_close, rng

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
