"""The C++ optimizer updates and multi-tensor helpers (csrc/optim.cpp) against the NumPy
backend: SGD (momentum, dampening, weight decay, Nesterov, first step) and Adam element by
element in the same dtype (float32 within 1e-6 relative: the kernels round as the specification
does), and against the specification in float64; the multi-tensor forms with their step counts
and learning rates in 0-d arrays; fill, norm, clip; the wrappers' fallback for arrays the
kernels cannot update in place; bad input at the bindings (changing nothing)."""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tilegrad.testing import odd_sizes
from cpu_helpers import bad_input, cases, check, cpp, ext, rand, spec

DTYPES = [np.float32, np.float64]
ODD = odd_sizes((1, 3, 7, 13, 33))
SHAPES = st.lists(st.lists(ODD, max_size=3).map(tuple), min_size=1, max_size=4)
SGD_OPTIONS = [(m, d, wd, n) for m, d, wd, n in itertools.product((0.0, 0.9), (0.0, 0.25),
                                                                    (0.0, 0.01), (False, True))
               if not (n and m == 0)]


def _same(got, want, dtype, what):
    """Element by element against the specification run in the same dtype."""
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=0,
                               err_msg=what)


def _arrays(rng, shapes, dtype, low=-1.0, high=1.0):
    return [rand(rng, s, dtype, low, high) for s in shapes]


def _copies(arrays):
    return [a.copy() for a in arrays]


@cases(40)
@given(shape=st.lists(ODD, max_size=3), options=st.sampled_from(SGD_OPTIONS),
       first=st.booleans(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_sgd_step(shape, options, first, dtype, seed):
    momentum, dampening, weight_decay, nesterov = options
    rng = np.random.default_rng(seed)
    param, grad, buf = _arrays(rng, [shape] * 3, dtype)
    p2, b2 = param.copy(), buf.copy()
    p64, b64 = param.astype(np.float64), buf.astype(np.float64)
    args = (0.1, momentum, dampening, weight_decay, nesterov, first)
    cpp.sgd_step(param, grad, buf, *args)
    spec.sgd_step(p2, grad, b2, *args)
    spec.sgd_step(p64, grad.astype(np.float64), b64, *args)
    _same(param, p2, dtype, "param")
    check(param, p64, dtype, "param")
    if momentum:
        _same(buf, b2, dtype, "buf")
        check(buf, b64, dtype, "buf")


@cases(40)
@given(shape=st.lists(ODD, max_size=3), step=st.sampled_from([1, 2, 7, 1000]),
       weight_decay=st.sampled_from([0.0, 0.01]), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**16))
def test_adam_step(shape, step, weight_decay, dtype, seed):
    rng = np.random.default_rng(seed)
    param, grad, m = _arrays(rng, [shape] * 3, dtype)
    v = rand(rng, shape, dtype, 0.0, 1.0)
    state = [param, m, v]
    same, f64 = _copies(state), [a.astype(np.float64) for a in state]
    args = (step, 1e-3, 0.9, 0.999, 1e-8, weight_decay)
    cpp.adam_step(param, grad, m, v, *args)
    spec.adam_step(same[0], grad, same[1], same[2], *args)
    spec.adam_step(f64[0], grad.astype(np.float64), f64[1], f64[2], *args)
    for got, want, want64, name in zip(state, same, f64, ("param", "m", "v")):
        _same(got, want, dtype, name)
        check(got, want64, dtype, name)


@cases(30)
@given(shapes=SHAPES, options=st.sampled_from(SGD_OPTIONS), dtype=st.sampled_from(DTYPES),
       counts=st.lists(st.sampled_from([0.0, 1.0, 5.0]), min_size=4, max_size=4),
       seed=st.integers(0, 2**16))
def test_sgd_step_multi(shapes, options, dtype, counts, seed):
    momentum, dampening, weight_decay, nesterov = options
    rng = np.random.default_rng(seed)
    params, grads, bufs = (_arrays(rng, shapes, dtype) for _ in range(3))
    steps = [np.array(c, np.float32) for c in counts[:len(shapes)]]
    want = [_copies(params), _copies(bufs), _copies(steps)]
    lr = np.array(0.05, dtype)
    cpp.sgd_step_multi(params, grads, bufs, steps, lr, momentum, dampening, weight_decay, nesterov)
    spec.sgd_step_multi(want[0], grads, want[1], want[2], lr, momentum, dampening, weight_decay,
                        nesterov)
    for k in range(len(shapes)):
        _same(params[k], want[0][k], dtype, f"params[{k}]")
        if momentum:
            _same(bufs[k], want[1][k], dtype, f"bufs[{k}]")
        np.testing.assert_array_equal(steps[k], want[2][k])
        assert steps[k].dtype == np.float32 and steps[k].shape == ()


@cases(30)
@given(shapes=SHAPES, weight_decay=st.sampled_from([0.0, 0.1]), dtype=st.sampled_from(DTYPES),
       counts=st.lists(st.sampled_from([0.0, 1.0, 9.0]), min_size=4, max_size=4),
       seed=st.integers(0, 2**16))
def test_adam_step_multi(shapes, weight_decay, dtype, counts, seed):
    rng = np.random.default_rng(seed)
    params, grads, ms = (_arrays(rng, shapes, dtype) for _ in range(3))
    vs = _arrays(rng, shapes, dtype, 0.0, 1.0)
    steps = [np.array(c, np.float32) for c in counts[:len(shapes)]]
    want = [_copies(params), _copies(ms), _copies(vs), _copies(steps)]
    lr = np.array(3e-3, dtype)
    cpp.adam_step_multi(params, grads, ms, vs, steps, lr, 0.8, 0.99, 1e-6, weight_decay)
    spec.adam_step_multi(want[0], grads, want[1], want[2], want[3], lr, 0.8, 0.99, 1e-6,
                         weight_decay)
    for k in range(len(shapes)):
        for got, name in zip((params, ms, vs, steps), ("params", "ms", "vs", "steps")):
            _same(got[k], want[("params", "ms", "vs", "steps").index(name)][k], dtype,
                  f"{name}[{k}]")


@pytest.mark.parametrize("dtype", DTYPES)
def test_language_model_parameters(dtype):
    """Adam and SGD over the word LM's seven parameters (V=10000 cut to 1000: the same code
    path), several steps, against the specification element by element."""
    rng = np.random.default_rng(0)
    shapes = [(1000, 128), (1024, 128), (1024, 256), (1024,), (1024,), (1000, 256), (1000,)]
    params, ms = _arrays(rng, shapes, dtype), _arrays(rng, shapes, dtype)
    vs = _arrays(rng, shapes, dtype, 0.0, 1.0)
    steps = [np.array(0, np.float32) for _ in shapes]
    want = [_copies(params), _copies(ms), _copies(vs), _copies(steps)]
    lr = np.array(1e-3, dtype)
    for _ in range(3):
        grads = _arrays(rng, shapes, dtype)
        cpp.adam_step_multi(params, grads, ms, vs, steps, lr, 0.9, 0.999, 1e-8, 0)
        spec.adam_step_multi(want[0], grads, want[1], want[2], want[3], lr, 0.9, 0.999, 1e-8, 0)
    for k in range(len(shapes)):
        _same(params[k], want[0][k], dtype, f"params[{k}]")
        _same(vs[k], want[2][k], dtype, f"vs[{k}]")
    assert float(steps[0]) == 3.0


def test_wrapper_falls_back_for_arrays_it_cannot_update():
    """A strided parameter, a read-only one, mixed dtypes, hyperparameters that are NumPy
    scalars (promoted by NumPy), unequal lists: the NumPy backend updates them, as specified."""
    rng = np.random.default_rng(1)
    base = rand(rng, (6, 8), np.float32)
    for make in (lambda: [base.copy()[:, ::2]], lambda: [base.copy().T]):
        params = make()
        want = [p.copy() for p in params]
        grads = [rand(rng, params[0].shape, np.float32)]
        cpp.sgd_step_multi(params, grads, None, None, np.array(0.1, np.float32), 0, 0, 0, False)
        spec.sgd_step_multi(want, grads, None, None, np.array(0.1, np.float32), 0, 0, 0, False)
        np.testing.assert_array_equal(params[0], want[0])
    p, want = base.copy(), base.copy()
    g = rand(rng, p.shape, np.float32)
    cpp.adam_step(p, g, np.zeros_like(p), np.zeros_like(p), 1, np.float64(1e-3), 0.9, 0.999,
                  1e-8, 0)
    spec.adam_step(want, g, np.zeros_like(p), np.zeros_like(p), 1, np.float64(1e-3), 0.9, 0.999,
                   1e-8, 0)
    np.testing.assert_array_equal(p, want)
    xs = [base.copy()[::2], base.astype(np.float64)]
    cpp.fill_multi(xs, 3)
    assert (xs[0] == 3).all() and (xs[1] == 3).all()
    # mixed dtypes: the norm in float64, as np.result_type
    total = cpp.norm_multi([base, base.astype(np.float64)])
    assert total.dtype == np.float64 and total.shape == ()


@cases(30)
@given(shapes=SHAPES, dtype=st.sampled_from(DTYPES), max_norm=st.sampled_from([0.5, 1e6]),
       seed=st.integers(0, 2**16))
def test_norm_and_clip(shapes, dtype, max_norm, seed):
    rng = np.random.default_rng(seed)
    xs = _arrays(rng, shapes, dtype)
    total = cpp.norm_multi(xs)
    assert total.shape == () and total.dtype == dtype
    check(total, spec.norm_multi([x.astype(np.float64) for x in xs]), dtype, "norm")
    want = _copies(xs)
    cpp.clip_scale_multi(xs, total, max_norm)
    spec.clip_scale_multi(want, total, max_norm)
    for got, w in zip(xs, want):
        np.testing.assert_array_equal(got, w)
    cpp.fill_multi(xs, 0.5)
    assert all((x == dtype(0.5)).all() for x in xs)


def test_norm_clip_fill_large_and_special():
    rng = np.random.default_rng(3)
    xs = [rand(rng, (300, 1000), np.float32), rand(rng, (7,), np.float32),
          rand(rng, (1000, 129), np.float32)]
    total = cpp.norm_multi(xs)
    check(total, spec.norm_multi([x.astype(np.float64) for x in xs]), np.float32, "norm")
    np.testing.assert_array_equal(total, cpp.norm_multi(xs))        # deterministic
    for value in (np.nan, np.inf):
        ys = [x.copy() for x in xs]
        want = [x.copy() for x in xs]
        bad = np.array(value, np.float32)
        with np.errstate(all="ignore"):
            cpp.clip_scale_multi(ys, bad, 1.0)
            spec.clip_scale_multi(want, bad, 1.0)
        for got, w in zip(ys, want):
            np.testing.assert_array_equal(got, w)                     # NaN where NumPy's are
    ys = [np.full(5, np.inf)]
    assert np.isinf(cpp.norm_multi(ys))
    cpp.fill_multi(xs, 0)
    assert not any(x.any() for x in xs)
    cpp.fill_multi([], 0)


def test_bad_input():
    f4 = np.float32
    p, g = np.ones((3, 4), f4), np.ones((3, 4), f4)
    m, v = np.ones((3, 4), f4), np.ones((3, 4), f4)
    lr, step = np.array(0.1, f4), np.array(0, f4)
    ro = p.copy()
    ro.flags.writeable = False
    sgd, adam = ext.sgd_step, ext.adam_step
    bad_input(sgd, ro, g, None, 0.1, 0.0, 0.0, 0.0, False, False, op="sgd_step", match="writeable")
    bad_input(sgd, p, g.astype(np.float64), None, 0.1, 0, 0, 0, False, False, op="sgd_step")
    bad_input(sgd, p, g[:2], None, 0.1, 0, 0, 0, False, False, op="sgd_step", match="shape")
    bad_input(sgd, p, g, None, 0.1, 0.9, 0, 0, False, False, op="sgd_step", match="NumPy array")
    bad_input(sgd, p, g, m.T, 0.1, 0.9, 0, 0, False, False, op="sgd_step")
    bad_input(sgd, p, g, m, "0.1", 0.9, 0, 0, False, False, op="sgd_step", match="number")
    bad_input(sgd, p, g, m, 0.1, 0.9, 0, 0, "no", False, op="sgd_step", match="bool")
    bad_input(sgd, p.astype(np.int32), g, None, 0.1, 0, 0, 0, False, False, op="sgd_step")
    bad_input(adam, p, g, m, v[:, :2], 1, 0.1, 0.9, 0.999, 1e-8, 0, op="adam_step", match="v")
    bad_input(adam, p, g, ro, v, 1, 0.1, 0.9, 0.999, 1e-8, 0, op="adam_step", match="writeable")
    bad_input(adam, p, g, m, v, 0, 0.1, 0.9, 0.999, 1e-8, 0, op="adam_step", match="step")
    bad_input(adam, p, g, m, v, 1, None, 0.9, 0.999, 1e-8, 0, op="adam_step", match="number")

    am, sm = ext.adam_step_multi, ext.sgd_step_multi
    ok = ([p], [g], [m], [v], [step], lr, 0.9, 0.999, 1e-8, 0.0)

    def adam_with(k, value):
        args = list(ok)
        args[k] = value
        return args

    for k, value, match in [
        (0, [p, "x"], "NumPy array"),            # a list holding a non-array
        (0, p, "list"),                          # not a list
        (0, [], "empty"),
        (0, [ro], "writeable"),                  # a read-only param
        (0, [p[:, ::2]], "C-contiguous"),
        (0, [p, p.astype(np.float64)], "must be float32"),  # mixed dtypes
        (1, [g, g], "arrays"),                   # mismatched list lengths
        (1, [g[:2]], "shape"),
        (1, [None], "NumPy array"),
        (2, [ro], "writeable"),
        (3, [], "arrays"),
        (4, [step, step], "arrays"),
        (4, [np.array(0.0)], "float32"),         # steps must be float32
        (4, [np.zeros(1, f4)], "shape"),
        (4, [0.0], "NumPy array"),
        (5, np.array([0.1], f4), "shape"),       # lr not 0-d
        (5, np.array(0.1), "must be float32"),   # lr of another dtype
        (5, 0.1, "NumPy array"),
        (6, "0.9", "number"),
    ]:
        bad_input(am, *adam_with(k, value), op="adam_step_multi", match=match)
    assert float(step) == 0.0
    bad_input(am, [p], [g], [m], [v], [np.array(-1, f4)], lr, 0.0, 0.999, 1e-8, 0.0,
              op="adam_step_multi", match="step")    # 1 - beta1**0 == 0: ZeroDivisionError in NumPy
    bad_input(sm, [p], [g], [m], [step, step], lr, 0.9, 0.0, 0.0, False, op="sgd_step_multi",
              match="arrays")
    bad_input(sm, [p], [g], None, None, lr, 0.9, 0.0, 0.0, False, op="sgd_step_multi",
              match="list")
    bad_input(sm, [p], [g, g], None, None, lr, 0.0, 0.0, 0.0, False, op="sgd_step_multi")
    bad_input(sm, [p, 3], [g, g], None, None, lr, 0.0, 0.0, 0.0, False, op="sgd_step_multi")

    bad_input(ext.fill_multi, [p, ro], 0, op="fill_multi", match="writeable")
    bad_input(ext.fill_multi, [p, [1.0]], 0, op="fill_multi", match="NumPy array")
    bad_input(ext.fill_multi, [p.astype(np.int64)], 0, op="fill_multi")
    bad_input(ext.fill_multi, [p], "zero", op="fill_multi", match="number")
    bad_input(ext.fill_multi, p, 0, op="fill_multi", match="list")
    bad_input(ext.norm_multi, [], op="norm_multi", match="empty")
    bad_input(ext.norm_multi, [p, p.astype(np.float64)], op="norm_multi", match="float32")
    bad_input(ext.norm_multi, [p.T], op="norm_multi", match="C-contiguous")
    bad_input(ext.norm_multi, [p, 1.0], op="norm_multi", match="NumPy array")
    total = np.array(2.0, f4)
    bad_input(ext.clip_scale_multi, [p], np.array([2.0], f4), 1.0, op="clip_scale_multi",
              match="shape")
    bad_input(ext.clip_scale_multi, [p], np.array(2.0), 1.0, op="clip_scale_multi", match="float64")
    bad_input(ext.clip_scale_multi, [p, ro], total, 1.0, op="clip_scale_multi", match="writeable")
    bad_input(ext.clip_scale_multi, [p], total, None, op="clip_scale_multi", match="number")
