"""The C++ elementwise kernels (csrc/elementwise.cpp) against the NumPy backend: unary, binary
with broadcasting, pow_scalar, relu_bwd; float32 and float64, every vector width."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

from cpu_helpers import bad_input, cases, check, cpp, ext, rand, simd, spec  # noqa: F401

FLOATS = (np.float32, np.float64)
UNARY = ("neg", "abs", "relu", "sqrt", "exp", "log", "tanh", "sigmoid", "erf", "sin", "cos")
BINARY = ("add", "sub", "mul", "div", "maximum", "pow")
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.5, 1e-30, 100.0, -100.0, 700.0,
                    -800.0])


def unary_input(rng, op, shape, dtype):
    low = 0.1 if op in ("sqrt", "log") else -3.0      # inside the domain (the NaNs are below)
    return rand(rng, shape, dtype, low, 3.0)


def binary_inputs(rng, op, sa, sb, dtype):
    low = 0.5 if op == "pow" else -2.0                # pow of negative bases is NaN
    a, b = rand(rng, sa, dtype, low, 2.0), rand(rng, sb, dtype, low, 2.0)
    if op == "div":
        b = np.where(np.abs(b) < 0.1, 0.5, b).astype(dtype)
    return a, b


def check_special(got, ref, dtype, what):
    """NaN and infinities at the same places (with the same signs), the rest within tol."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{what}: NaNs")
    for sign in (np.inf, -np.inf):
        np.testing.assert_array_equal(got == sign, ref == sign, err_msg=f"{what}: {sign}")
    finite = np.isfinite(ref)
    check(got[finite], ref[finite], dtype, what)


# ---------------------------------------------------------------- unary

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", UNARY)
@cases(10)
@given(shape=array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=9), seed=st.integers(0, 99))
def test_unary(simd, op, dtype, shape, seed):
    x = unary_input(np.random.default_rng(seed), op, shape, dtype)
    got = cpp.unary(op, x)
    assert got.shape == x.shape
    check(got, spec.unary(op, x.astype(np.float64)), dtype, op)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", UNARY)
def test_unary_special_values(simd, op, dtype):
    """NaN, infinities, signed zeros, overflow as NumPy: relu(NaN) = NaN, sigmoid(-800) = 0."""
    x = np.tile(SPECIAL, 5).astype(dtype)        # long enough for the vector loop and its tail
    with np.errstate(all="ignore"):
        ref = spec.unary(op, x)
    check_special(cpp.unary(op, x), ref, dtype, op)


@pytest.mark.parametrize("dtype", FLOATS)
def test_unary_long_parallel(dtype):
    """More elements than one thread's grain: split among the threads."""
    x = rand(np.random.default_rng(0), (3, 70001), dtype)
    for op in ("relu", "exp", "neg"):
        check(cpp.unary(op, x), spec.unary(op, x.astype(np.float64)), dtype, op)


def test_unary_strided_and_other_dtypes():
    rng = np.random.default_rng(1)
    x = rand(rng, (6, 8), np.float32)[:, ::2]          # not contiguous: the wrapper copies
    check(cpp.unary("exp", x), spec.unary("exp", x.astype(np.float64)), np.float32)
    for x in (np.arange(-3, 4), np.array([True, False]), np.arange(4, dtype=np.float16)):
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(cpp.unary("abs", x), spec.unary("abs", x))
            assert cpp.unary("abs", x).dtype == spec.unary("abs", x).dtype


# ---------------------------------------------------------------- binary

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", BINARY)
@cases(10)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=5, max_side=6),
       seed=st.integers(0, 99))
def test_binary_broadcast(simd, op, dtype, shapes, seed):
    (sa, sb), out_shape = shapes
    a, b = binary_inputs(np.random.default_rng(seed), op, sa, sb, dtype)
    got = cpp.binary(op, a, b)
    assert got.shape == out_shape
    check(got, spec.binary(op, a.astype(np.float64), b.astype(np.float64)), dtype, op)
    got = cpp.binary(op, b, a)                               # the other way round
    check(got, spec.binary(op, b.astype(np.float64), a.astype(np.float64)), dtype, op)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("sa, sb", [((8, 64, 28, 28), (1, 64, 1, 1)),   # a conv's bias
                                    ((700, 1024), (1024,)),              # the LM's bias
                                    ((700, 1024), (700, 1)),             # a column
                                    ((3, 70001), (3, 70001)),            # same shape, parallel
                                    ((2, 3, 4, 5, 6, 7), (3, 1, 5, 1, 7))])
def test_binary_model_shapes(sa, sb, dtype):
    a, b = binary_inputs(np.random.default_rng(2), "add", sa, sb, dtype)
    for op in ("add", "mul", "sub"):
        check(cpp.binary(op, a, b), spec.binary(op, a.astype(np.float64), b.astype(np.float64)),
              dtype, op)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", BINARY)
def test_binary_scalar(simd, op, dtype):
    """A Python scalar b takes a's dtype, as in the specification (float32 + 0.5 stays float32)."""
    a = binary_inputs(np.random.default_rng(3), op, (5, 37), (1,), dtype)[0]
    for b in (0.5, 2, 1.25, True, np.float64(0.75)):
        got, ref = cpp.binary(op, a, b), spec.binary(op, a, b)
        assert got.dtype == ref.dtype == np.dtype(dtype)
        check(got, spec.binary(op, a.astype(np.float64), np.float64(ref.dtype.type(b))), dtype, op)
    s = np.tile(SPECIAL, 3).astype(dtype)                     # NumPy's scalar ** 0.5 is sqrt
    with np.errstate(all="ignore"):
        check_special(cpp.binary(op, s, 0.5), spec.binary(op, s, 0.5), dtype, op)
        check_special(cpp.binary(op, s, np.full((1, 1), 0.5, dtype)),
                      spec.binary(op, s, np.full((1, 1), 0.5, dtype)), dtype, op)
    a0 = np.asarray(1.5, dtype=dtype)                         # 0-d with a scalar: 0-d
    got = cpp.binary(op, a0, 2.0)
    assert got.shape == () and got.dtype == np.dtype(dtype)
    check(got, spec.binary(op, a0.astype(np.float64), 2.0), dtype, op)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", BINARY)
def test_binary_special_values(simd, op, dtype):
    """NaN and infinities as NumPy (maximum: NaN wins on either side)."""
    a = np.tile(SPECIAL, len(SPECIAL)).astype(dtype)
    b = np.repeat(SPECIAL, len(SPECIAL)).astype(dtype)
    with np.errstate(all="ignore"):
        check_special(cpp.binary(op, a, b), spec.binary(op, a, b), dtype, op)
        check_special(cpp.binary(op, a[:, None], b[None, :3]),
                      spec.binary(op, a[:, None], b[None, :3]), dtype, op)


def test_binary_broadcast_views():
    """Views from broadcast_to (stride 0) go in without a copy, cut to size 1; cut both along
    one dimension, they are copied instead (the output keeps the broadcast shape)."""
    rng = np.random.default_rng(4)
    row = rand(rng, (1, 7), np.float32)
    a = np.broadcast_to(row, (5, 7))
    b = rand(rng, (5, 7), np.float32)
    check(cpp.binary("mul", a, b), spec.binary("mul", a.astype(np.float64), b), np.float32)
    col = np.broadcast_to(rand(rng, (5, 1), np.float32), (5, 7))
    got = cpp.binary("add", a, col)
    assert got.shape == (5, 7)
    check(got, spec.binary("add", a.astype(np.float64), col), np.float32)
    both = cpp.binary("sub", a, np.broadcast_to(rand(rng, (1, 7), np.float32), (5, 7)))
    assert both.shape == (5, 7)


def test_binary_other_dtypes_and_ops_use_the_specification():
    rng = np.random.default_rng(5)
    f32, f64 = rand(rng, (3, 4), np.float32), rand(rng, (3, 4), np.float64)
    i = np.arange(12).reshape(3, 4)
    cases_ = [("add", i, i), ("add", f32, f64), ("mul", i, 0.5), ("gt", f32, 0.0), ("eq", f32, f32),
              ("le", f64, f64[0]), ("maximum", np.array([True, False]), np.array([False, False]))]
    for op, a, b in cases_:
        got, ref = cpp.binary(op, a, b), spec.binary(op, a, b)
        assert got.dtype == ref.dtype and got.shape == ref.shape, op
        np.testing.assert_array_equal(got, ref)


def test_binary_empty():
    for sa, sb in (((0, 3), (3,)), ((2, 0), (1, 1)), ((0,), ())):
        a, b = np.ones(sa, np.float32), np.ones(sb, np.float32)
        got = cpp.binary("add", a, b)
        assert got.shape == np.broadcast_shapes(sa, sb) and got.dtype == np.float32
        got = cpp.unary("exp", a)
        assert got.shape == sa


# ---------------------------------------------------------------- pow_scalar, relu_bwd

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("p", [2, 1, -1, 0, 0.5, 3, -2.5, 2.0])
def test_pow_scalar(simd, p, dtype):
    x = rand(np.random.default_rng(6), (7, 13), dtype, 0.2, 3.0)
    got = cpp.pow_scalar(x, p)
    check(got, spec.pow_scalar(x.astype(np.float64), p), dtype, f"x ** {p}")
    s = np.tile(SPECIAL, 3).astype(dtype)
    with np.errstate(all="ignore"):
        check_special(cpp.pow_scalar(s, p), spec.pow_scalar(s, p), dtype, f"x ** {p}")


@pytest.mark.parametrize("dtype", FLOATS)
@cases(10)
@given(shape=array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=9), seed=st.integers(0, 99))
def test_relu_bwd(simd, dtype, shape, seed):
    rng = np.random.default_rng(seed)
    grad, y = rand(rng, shape, dtype), cpp.unary("relu", rand(rng, shape, dtype))
    check(cpp.relu_bwd(grad, y), spec.relu_bwd(grad.astype(np.float64), y), dtype, "relu_bwd")


@pytest.mark.parametrize("dtype", FLOATS)
def test_relu_model_shapes_and_nan(dtype):
    """ReLU forward and backward at a CNN's activations; a NaN y passes grad (as the spec)."""
    rng = np.random.default_rng(7)
    x = rand(rng, (8, 64, 28, 28), dtype)
    x.reshape(-1)[::1001] = np.nan
    y = cpp.unary("relu", x)
    np.testing.assert_array_equal(y, spec.unary("relu", x))
    grad = rand(rng, x.shape, dtype)
    np.testing.assert_array_equal(cpp.relu_bwd(grad, y), spec.relu_bwd(grad, y))


# ---------------------------------------------------------------- bad input at the bindings

def test_bad_input():
    f32 = np.ones((3, 4), np.float32)
    f64 = np.ones((3, 4), np.float64)
    bad_input(ext.unary, "nope", f32, op="unary", match="op must be")
    bad_input(ext.unary, "exp", np.ones((3, 4), np.int64), op="unary", match="float32 or float64")
    bad_input(ext.unary, "exp", f32[:, ::2], op="unary", match="C-contiguous")
    bad_input(ext.unary, "exp", [1.0, 2.0], op="unary", match="NumPy array")
    bad_input(ext.binary, "gt", f32, f32, op="binary", match="op must be")
    bad_input(ext.binary, "add", f32, f64, op="binary", match="dtype")
    bad_input(ext.binary, "add", f32, np.ones((5,), np.float32), op="binary",
              match="do not broadcast")
    bad_input(ext.binary, "add", f32, 1.0, op="binary", match="NumPy array")
    bad_input(ext.binary, "add", f32.T, f32.T, op="binary", match="C-contiguous")
    bad_input(ext.pow_scalar, np.ones(3, np.int32), 2.0, op="pow_scalar")
    bad_input(ext.pow_scalar, None, 2.0, op="pow_scalar")
    bad_input(ext.relu_bwd, f32, f64, op="relu_bwd", match="dtype")
    bad_input(ext.relu_bwd, f32, np.ones((4, 3), np.float32), op="relu_bwd", match="shape")
    bad_input(ext.relu_bwd, f32, np.ones((3, 4), np.int32), op="relu_bwd")
