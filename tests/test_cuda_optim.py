"""The fused CUDA optimizer kernels in Numba's simulator against the NumPy backend over several
steps (the first and later ones): SGD with and without momentum, dampening, Nesterov and weight
decay; Adam with and without weight decay; float64 and float32, odd sizes."""
import os

import numpy as np
import pytest

from helpers import assert_close, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as ref          # noqa: E402
from tilegrad.backends.cuda import optim            # noqa: E402

DTYPES = [(np.float64, 1e-12), (np.float32, 1e-5)]
SGD_CASES = [   # momentum, dampening, weight_decay, nesterov
    (0.0, 0.0, 0.0, False),
    (0.0, 0.0, 0.01, False),
    (0.9, 0.0, 0.0, False),
    (0.9, 0.3, 0.05, False),
    (0.8, 0.0, 0.01, True),
]


@pytest.mark.parametrize("shape", [(1,), (3, 7), (5, 3, 3)], ids=str)
@pytest.mark.parametrize("momentum,dampening,weight_decay,nesterov", SGD_CASES, ids=str)
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
def test_sgd_steps_against_numpy(shape, momentum, dampening, weight_decay, nesterov, dtype, tol):
    r = rng(sum(shape))
    p = r.standard_normal(shape).astype(dtype)
    p_ref = p.copy()
    buf = r.standard_normal(shape).astype(dtype) if momentum else None   # overwritten at step 1
    buf_ref = None if buf is None else buf.copy()
    for step in range(3):
        g = r.standard_normal(shape).astype(dtype)
        optim.sgd_step(p, g, buf, 0.1, momentum, dampening, weight_decay, nesterov, step == 0)
        ref.sgd_step(p_ref, g, buf_ref, 0.1, momentum, dampening, weight_decay, nesterov, step == 0)
        assert_close(p, p_ref, rtol=tol, atol=tol, what=f"param after step {step + 1}")
        if momentum:
            assert_close(buf, buf_ref, rtol=tol, atol=tol, what=f"buf after step {step + 1}")
    assert p.dtype == dtype


@pytest.mark.parametrize("shape", [(1,), (3, 7), (5, 3, 3)], ids=str)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
def test_adam_steps_against_numpy(shape, weight_decay, dtype, tol):
    r = rng(sum(shape) + 1)
    p = r.standard_normal(shape).astype(dtype)
    m = np.zeros(shape, dtype)             # as torch starts them
    v = np.zeros(shape, dtype)
    p_ref, m_ref, v_ref = p.copy(), m.copy(), v.copy()
    for step in range(1, 5):
        g = r.standard_normal(shape).astype(dtype)
        optim.adam_step(p, g, m, v, step, 1e-2, 0.9, 0.999, 1e-8, weight_decay)
        ref.adam_step(p_ref, g, m_ref, v_ref, step, 1e-2, 0.9, 0.999, 1e-8, weight_decay)
        for got, want, what in ((p, p_ref, "param"), (m, m_ref, "m"), (v, v_ref, "v")):
            assert_close(got, want, rtol=tol, atol=tol, what=f"{what} after step {step}")


def test_adam_from_nonzero_moments():
    r = rng(9)
    p, g = r.standard_normal(7), r.standard_normal(7)
    m, v = r.standard_normal(7), r.uniform(0.1, 1.0, 7)
    p_ref, m_ref, v_ref = p.copy(), m.copy(), v.copy()
    optim.adam_step(p, g, m, v, 6, 3e-3, 0.8, 0.99, 1e-6, 0.1)
    ref.adam_step(p_ref, g, m_ref, v_ref, 6, 3e-3, 0.8, 0.99, 1e-6, 0.1)
    for got, want in ((p, p_ref), (m, m_ref), (v, v_ref)):
        assert_close(got, want, rtol=1e-12, atol=1e-12)
