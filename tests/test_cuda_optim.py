"""The fused CUDA optimizer kernels in Numba's simulator against the NumPy backend over several
steps (the first and later ones): SGD with and without momentum, dampening, Nesterov and weight
decay; Adam with and without weight decay; float64 and float32, odd sizes. The multi-tensor
kernels (one launch per list of parameters, learning rate and step counts in device arrays)
against the NumPy backend in float64, with their launch counts."""
import os

import numpy as np
import pytest

from tilegrad.testing import assert_close, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as ref          # noqa: E402
from tilegrad.backends.cuda import optim            # noqa: E402
from tilegrad.backends.cuda import runtime as rt    # noqa: E402
from tilegrad.backends.cuda.common import ceil_div  # noqa: E402

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


# ---------------------------------------------------------------- multi-tensor (kernel 2)
# Seven parameters: three launches of three in the simulator; smaller than a block (8 threads),
# several chunks of 16 elements, and an empty one.
MULTI_SHAPES = [(5,), (3, 7), (1,), (0,), (40,), (2, 2), (17,)]
# Step counts before the first call: 0 is a parameter's first step, in the same launch as others.
START_STEPS = [0, 2, 0, 5, 1, 0, 3]


def _launches(fn):
    before = rt.counts()["kernels"]
    fn()
    return rt.counts()["kernels"] - before


def _copies64(arrays):
    return [a.astype(np.float64) for a in arrays]


@pytest.mark.parametrize("momentum,dampening,weight_decay,nesterov", SGD_CASES, ids=str)
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
def test_sgd_step_multi_against_numpy_float64(momentum, dampening, weight_decay, nesterov, dtype,
                                              tol):
    r = rng(21)
    ps = [r.standard_normal(s).astype(dtype) for s in MULTI_SHAPES]
    bufs = [r.standard_normal(s).astype(dtype) for s in MULTI_SHAPES]   # reset where count is 0
    steps = [np.array(s, np.float32) for s in START_STEPS]
    ps64, bufs64, steps64 = _copies64(ps), _copies64(bufs), [s.copy() for s in steps]
    lr, lr64 = np.array(0.1, dtype), np.array(0.1)
    want = (ceil_div(7, optim.COUNT_TENSORS) if momentum else 0) + ceil_div(7, optim.SGD_TENSORS)
    for step in range(3):
        gs = [r.standard_normal(s).astype(dtype) for s in MULTI_SHAPES]
        if step == 2:                    # a new learning rate, written into the same array
            lr[()], lr64[()] = 0.03, 0.03
        launched = _launches(lambda gs=gs: optim.sgd_step_multi(
            ps, gs, bufs if momentum else None, steps if momentum else None, lr, momentum,
            dampening, weight_decay, nesterov))
        assert launched == want
        ref.sgd_step_multi(ps64, _copies64(gs), bufs64, steps64, lr64, momentum, dampening,
                           weight_decay, nesterov)
        for k in range(len(ps)):
            assert_close(ps[k], ps64[k], rtol=tol, atol=tol, what=f"param {k} after step {step}")
            if momentum:
                assert_close(bufs[k], bufs64[k], rtol=tol, atol=tol, what=f"buf {k}")
    assert [float(s) for s in steps] == ([s + 3 for s in START_STEPS] if momentum else START_STEPS)
    assert all(p.dtype == dtype for p in ps)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
def test_adam_step_multi_against_numpy_float64(weight_decay, dtype, tol):
    r = rng(22)
    ps = [r.standard_normal(s).astype(dtype) for s in MULTI_SHAPES]
    started = [n > 0 for n in START_STEPS]
    ms = [r.standard_normal(s).astype(dtype) * k for s, k in zip(MULTI_SHAPES, started)]
    vs = [r.uniform(0.1, 1.0, s).astype(dtype) * k for s, k in zip(MULTI_SHAPES, started)]
    steps = [np.array(s, np.float32) for s in START_STEPS]
    ps64, ms64, vs64 = _copies64(ps), _copies64(ms), _copies64(vs)
    steps64 = [s.copy() for s in steps]
    lr, lr64 = np.array(1e-2, dtype), np.array(1e-2)
    for step in range(3):
        gs = [r.standard_normal(s).astype(dtype) for s in MULTI_SHAPES]
        if step == 1:
            lr[()], lr64[()] = 3e-3, 3e-3
        launched = _launches(lambda gs=gs: optim.adam_step_multi(ps, gs, ms, vs, steps, lr, 0.8,
                                                                 0.99, 1e-6, weight_decay))
        assert launched == ceil_div(7, optim.COUNT_TENSORS) + ceil_div(7, optim.ADAM_TENSORS)
        ref.adam_step_multi(ps64, _copies64(gs), ms64, vs64, steps64, lr64, 0.8, 0.99, 1e-6,
                            weight_decay)
        for k in range(len(ps)):
            for got, want, what in ((ps, ps64, "param"), (ms, ms64, "m"), (vs, vs64, "v")):
                assert_close(got[k], want[k], rtol=tol, atol=tol, what=f"{what} {k}, step {step}")
    assert [float(s) for s in steps] == [s + 3 for s in START_STEPS]


def test_multi_steps_match_the_one_tensor_kernels():
    """Kernel 2 over a list equals kernel 1 run on each parameter (float64, same arithmetic)."""
    r = rng(23)
    ps = [r.standard_normal(s) for s in MULTI_SHAPES]
    ms, vs = [np.zeros(s) for s in MULTI_SHAPES], [np.zeros(s) for s in MULTI_SHAPES]
    one = [(p.copy(), m.copy(), v.copy()) for p, m, v in zip(ps, ms, vs)]
    steps = [np.array(0, np.float32) for _ in MULTI_SHAPES]
    for step in range(1, 4):
        gs = [r.standard_normal(s) for s in MULTI_SHAPES]
        optim.adam_step_multi(ps, gs, ms, vs, steps, np.array(1e-2), 0.9, 0.999, 1e-8, 0.0)
        for (p, m, v), g in zip(one, gs):
            optim.adam_step(p, g, m, v, step, 1e-2, 0.9, 0.999, 1e-8, 0.0)
    for k, (p, m, v) in enumerate(one):
        assert_close(ps[k], p, rtol=1e-13, atol=1e-15, what=f"param {k}")
        assert_close(ms[k], m, rtol=1e-13, atol=1e-15, what=f"m {k}")
        assert_close(vs[k], v, rtol=1e-13, atol=1e-15, what=f"v {k}")


def test_multi_steps_check_their_lists():
    p, g = np.ones(3), np.ones(3)
    with pytest.raises(AssertionError, match="lr must be a 0-d float64"):
        optim.sgd_step_multi([p], [g], None, None, np.array([0.1]), 0, 0, 0, False)
    with pytest.raises(AssertionError, match="grads"):
        optim.adam_step_multi([p], [np.ones(4)], [p], [p], [np.zeros((), np.float32)],
                              np.array(0.1), 0.9, 0.999, 1e-8, 0)
    with pytest.raises(AssertionError, match="step counts are 0-d float32"):
        optim.adam_step_multi([p], [g], [np.zeros(3)], [np.zeros(3)], [np.zeros(())],
                              np.array(0.1), 0.9, 0.999, 1e-8, 0)
    np.testing.assert_array_equal(p, np.ones(3))
