"""The CUDA elementwise and reduction kernels against the NumPy backend, in Numba's simulator.

Tiny odd shapes (1, 3, 7, 33: never a multiple of the simulator's 8-thread block), broadcasting
both ways, scalar operands, reductions over every kind of axis set. float64 to the NumPy
backend's precision, float32 to a float32 tolerance. Inputs are fresh random numbers, never
zeros, positive where log and sqrt need it.

Run with ``NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q
tests/test_cuda_elementwise.py``.
"""
import os
import re

import numpy as np
import pytest

from tilegrad.testing import assert_close

try:
    import numba  # noqa: F401
except ImportError:
    numba = None

if numba is None or os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs numba and NUMBA_ENABLE_CUDASIM=1 (the kernels run in Numba's CUDA "
                "simulator here; the GPU run is separate)", allow_module_level=True)

from tilegrad.backends import numpy as ref                  # noqa: E402
from tilegrad.backends.cuda import elementwise as ew        # noqa: E402
from tilegrad.backends.cuda import reduce as red            # noqa: E402
from tilegrad.backends.cuda import runtime as rt            # noqa: E402

DTYPES = [np.float64, np.float32]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=2e-5, atol=1e-6)}


def rand(shape, dtype, seed, positive=False, low=0.1, high=2.0):
    """Random values in [low, high), with a random sign unless ``positive``: never zero."""
    r = np.random.default_rng(seed)
    x = r.uniform(low, high, size=shape)
    if not positive:
        x = x * r.choice([-1.0, 1.0], size=shape)
    return x.astype(dtype)


def coarse(shape, dtype, seed):
    """Random values from {+-0.5, +-1, +-1.5}: nonzero, and equal often enough to test ties."""
    r = np.random.default_rng(seed)
    return r.choice([-1.5, -1.0, -0.5, 0.5, 1.0, 1.5], size=shape).astype(dtype)


def run_cuda(fn, *args):
    """Call a CUDA launcher on device copies of the array arguments; return a NumPy result."""
    # reshape: runtime.from_numpy goes through np.ascontiguousarray, which turns 0-d into (1,)
    dev = [rt.from_numpy(a).reshape(a.shape) if isinstance(a, np.ndarray) else a for a in args]
    return rt.to_numpy(fn(*dev))


def check(actual, expected, dtype, what):
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert_close(actual, expected, what=what, **TOL[dtype])

# ---------------------------------------------------------------- unary


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(ew.UNARY_OPS))
@pytest.mark.parametrize("shape", [(1,), (3, 7), (2, 1, 33)])
def test_unary(op, shape, dtype):
    x = rand(shape, dtype, seed=1, positive=op in ("log", "sqrt"))
    check(run_cuda(ew.unary, op, x), ref.unary(op, x), dtype, f"unary {op} {shape}")


def test_unary_0d():
    x = np.asarray(1.5)
    check(run_cuda(ew.unary, "exp", x), ref.unary("exp", x), np.float64, "unary exp 0-d")

# ---------------------------------------------------------------- binary

BROADCASTS = [
    ((7,), (7,)),                 # same shape: one coalesced dimension
    ((3, 7), (3, 7)),
    ((3, 1), (1, 7)),             # both operands broadcast
    ((7,), (2, 3, 7)),            # a broadcast to b's leading dims
    ((2, 3, 7), (7,)),
    ((2, 1, 5), (3, 1)),
    ((3, 1), (2, 1, 5)),
    ((3, 7), (3, 1)),             # a trailing broadcast dimension
    ((1, 33), (3, 1)),
    ((), (3, 7)),                 # a 0-d operand (as be.full((), 1) in autograd)
    ((3, 7), ()),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(ew.ARITH_OPS) + list(ew.COMPARE_OPS))
def test_binary_broadcast(op, dtype):
    for k, (sa, sb) in enumerate(BROADCASTS):
        a = rand(sa, dtype, seed=10 + k)
        b = rand(sb, dtype, seed=50 + k)
        if op in ew.COMPARE_OPS or op == "maximum":   # few distinct values: many ties
            a, b = coarse(sa, dtype, seed=10 + k), coarse(sb, dtype, seed=50 + k)
        if op == "pow":   # a negative base to a fractional power is NaN: positive bases
            a = np.abs(a) + 0.5
        check(run_cuda(ew.binary, op, a, b), ref.binary(op, a, b), dtype,
              f"binary {op} {sa} x {sb}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(ew.ARITH_OPS) + list(ew.COMPARE_OPS))
@pytest.mark.parametrize("b", [0.7, -3, 2.0])
def test_binary_scalar(op, b, dtype):
    a = rand((3, 7), dtype, seed=3)
    if op == "pow":                       # positive bases, as in test_binary_broadcast
        a = np.abs(a) + 0.5
    a[0, 0] = b                           # a tie for the comparisons
    check(run_cuda(ew.binary, op, a, b), ref.binary(op, a, b), dtype, f"binary {op} scalar {b}")


def test_binary_maximum_nan():
    a = np.array([1.0, np.nan, 3.0, -1.0])
    b = np.array([np.nan, 2.0, 1.0, 5.0])
    out = run_cuda(ew.binary, "maximum", a, b)
    np.testing.assert_array_equal(out, ref.binary("maximum", a, b))

# ---------------------------------------------------------------- pow, relu_bwd, where


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [2, 3, 0.5, -1.5])
def test_pow_scalar(p, dtype):
    x = rand((3, 7), dtype, seed=4, positive=True)
    check(run_cuda(ew.pow_scalar, x, p), ref.pow_scalar(x, p), dtype, f"pow {p}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7, 3), (3, 1, 33)])
def test_relu_bwd(shape, dtype):
    g = rand(shape, dtype, seed=5)
    y = np.maximum(rand(shape, dtype, seed=6), 0).astype(dtype)   # a ReLU output: zeros occur
    check(run_cuda(ew.relu_bwd, g, y), ref.relu_bwd(g, y), dtype, f"relu_bwd {shape}")


WHERE_SHAPES = [((3, 7), (3, 7), (3, 7)), ((3, 7), (3, 7), (3, 1)), ((3, 1), (1, 7), (7,)),
                ((2, 1, 5), (3, 1), (1,))]


@pytest.mark.parametrize("dtype", DTYPES)
def test_where_mask(dtype):
    for k, (sm, sa, sb) in enumerate(WHERE_SHAPES):
        mask = np.random.default_rng(k).random(sm) < 0.5
        a, b = rand(sa, dtype, seed=20 + k), rand(sb, dtype, seed=30 + k)
        check(run_cuda(ew.where_mask, mask, a, b), ref.where_mask(mask, a, b), dtype,
              f"where {sm} {sa} {sb}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [((3, 7), (3, 7)), ((3, 1), (1, 7)), ((7,), (2, 1, 7))])
def test_where_mask_scalar(shapes, dtype):
    sm, sa = shapes
    mask = np.random.default_rng(1).random(sm) < 0.5
    a = rand(sa, dtype, seed=7)
    check(run_cuda(ew.where_mask, mask, a, 0), ref.where_mask(mask, a, 0), dtype, "where scalar")

# ---------------------------------------------------------------- reductions

REDUCE_CASES = [((7,), ()), ((33,), (0,)), ((3, 7), (0,)), ((3, 7), (1,)), ((3, 7), (0, 1)),
                ((3, 7, 5), (0, 2)), ((3, 7, 3), (1,)), ((2, 3, 7), (0, 1, 2)), ((1, 7, 1), (0,)),
                ((7, 1, 3), (0, 2)), ((), ())]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", ["sum", "amax"])
def test_sum_amax(fn, dtype):
    # keepdims alternates case by case, the other way round in the other dtype, so every case
    # runs with both (the simulator's barriers make each launch slow).
    for k, (shape, axes) in enumerate(REDUCE_CASES):
        keepdims = bool((k + (dtype is np.float32)) % 2)
        x = rand(shape, dtype, seed=40 + k)
        check(run_cuda(getattr(red, fn), x, axes, keepdims), getattr(ref, fn)(x, axes, keepdims),
              dtype, f"{fn} {shape} over {axes} keepdims={keepdims}")


def test_sum_deterministic():
    x = rand((3, 33), np.float32, seed=8)
    first = run_cuda(red.sum, x, (1,), False)
    for _ in range(2):
        np.testing.assert_array_equal(run_cuda(red.sum, x, (1,), False), first)


def test_amax_nan():
    x = np.array([[1.0, np.nan, 3.0], [2.0, 5.0, 4.0]])
    np.testing.assert_array_equal(run_cuda(red.amax, x, (1,), False), ref.amax(x, (1,), False))


ARGMAX_CASES = [((33,), 0), ((3, 7), 0), ((3, 7), 1), ((3, 7), -1), ((3, 7, 5), 1), ((1, 7), 0),
                ((2, 3, 7), None)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_argmax(keepdims, dtype):
    for k, (shape, axis) in enumerate(ARGMAX_CASES):
        x = rand(shape, dtype, seed=60 + k)
        got, want = run_cuda(red.argmax, x, axis, keepdims), ref.argmax(x, axis, keepdims)
        assert got.dtype == np.int64 and got.shape == want.shape, (got.dtype, got.shape, want.shape)
        np.testing.assert_array_equal(got, want, err_msg=f"argmax {shape} axis {axis}")


def test_argmax_ties_take_the_first():
    x = np.array([[1.0, 5.0, 5.0, 2.0, 5.0, 0.5, 5.0, 1.0, 5.0, 3.0, 5.0],
                  [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0],
                  [1.0, np.nan, 7.0, np.nan, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0, 1.0]])
    np.testing.assert_array_equal(run_cuda(red.argmax, x, 1, False), ref.argmax(x, 1, False))


def test_ptx_signatures_listed():
    """Every kernel the modules define appears in PTX_SIGNATURES in float32 and float64."""
    for mod in (ew, red):
        names = {n for n in dir(mod) if re.fullmatch(r"[a-z_]+_kernel\d+", n)}
        listed = {name for name, _, _ in mod.PTX_SIGNATURES}
        assert names <= listed, f"{mod.__name__}: not in PTX_SIGNATURES: {names - listed}"
        assert len(mod.PTX_SIGNATURES) == 2 * len(listed)
