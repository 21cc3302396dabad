"""The C++ GEMM (csrc/gemm.cpp, gemm_isa.cpp): the bindings matmul / matmul_batched and the
cpp backend's matmul against the NumPy backend computed in float64, every vector width."""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpu_helpers import bad_input, cases, check, cpp, ext, rand, simd, spec  # noqa: F401

FLOATS = (np.float32, np.float64)
TRANS = list(itertools.product((False, True), repeat=2))
# 0..70, often the edges of the tiles (MR = 6 or 14 rows, NR = 4 to 32 columns) and 0, 1
dims = st.sampled_from([0, 1, 3, 7, 13, 14, 15, 17, 31, 33, 64, 70]) | st.integers(0, 70)


def operands(rng, m, n, k, trans_a, trans_b, dtype):
    a = rand(rng, (k, m) if trans_a else (m, k), dtype)
    b = rand(rng, (n, k) if trans_b else (k, n), dtype)
    return a, b


def reference(a, b, trans_a, trans_b, bias=None, relu=False):
    def f64(x):
        return None if x is None else x.astype(np.float64)

    return spec.matmul(f64(a), f64(b), trans_a, trans_b, f64(bias), relu)


@pytest.fixture
def threads():
    """Restores the thread count a test changes."""
    before = ext.get_num_threads()
    yield
    ext.set_num_threads(before)


@pytest.mark.parametrize("dtype", FLOATS)
@cases()
@given(m=dims, n=dims, k=dims, trans=st.sampled_from(TRANS), use_bias=st.booleans(),
       relu=st.booleans(), seed=st.integers(0, 2**16))
def test_binding(simd, dtype, m, n, k, trans, use_bias, relu, seed):
    rng = np.random.default_rng(seed)
    a, b = operands(rng, m, n, k, *trans, dtype)
    bias = rand(rng, (n,), dtype) if use_bias else None
    got = ext.matmul(a, b, *trans, bias, relu)
    check(got, reference(a, b, *trans, bias, relu), dtype, f"matmul {m}x{n}x{k} {trans}")


@pytest.mark.parametrize("dtype", FLOATS)
@cases()
@given(m=dims, n=dims, k=dims, trans=st.sampled_from(TRANS), bias_shape=st.sampled_from(
    [None, "n", "1n", "mn", "scalar"]), relu=st.booleans(), seed=st.integers(0, 2**16))
def test_wrapper(simd, dtype, m, n, k, trans, bias_shape, relu, seed):
    rng = np.random.default_rng(seed)
    a, b = operands(rng, m, n, k, *trans, dtype)
    bias = {None: None, "n": (n,), "1n": (1, n), "mn": (m, n), "scalar": ()}[bias_shape]
    bias = None if bias is None else rand(rng, bias, dtype)
    got = cpp.matmul(a, b, *trans, bias=bias, relu=relu)
    check(got, reference(a, b, *trans, bias, relu), dtype, f"matmul {m}x{n}x{k} {trans}")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
def test_wrapper_views(dtype, trans_a, trans_b):
    """Sliced and transposed views (not C-contiguous) are copied by the wrapper, not refused."""
    rng = np.random.default_rng(1)
    m, n, k = 9, 11, 13
    a = rand(rng, (k, 2 * m) if trans_a else (m, 2 * k), dtype)[:, ::2]
    b = rand(rng, (k, n) if trans_b else (n, k), dtype).T       # the transposed view
    got = cpp.matmul(a, b, trans_a, trans_b)
    check(got, reference(a, b, trans_a, trans_b), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@cases(15)
@given(batch=st.sampled_from([(0,), (1,), (3,), (2, 3)]), m=dims, n=dims, k=dims,
       trans=st.sampled_from(TRANS), which=st.sampled_from(["both", "a", "b"]),
       use_bias=st.booleans(), relu=st.booleans(), seed=st.integers(0, 2**16))
def test_batched(simd, dtype, batch, m, n, k, trans, which, use_bias, relu, seed):
    rng = np.random.default_rng(seed)
    a, b = operands(rng, m, n, k, *trans, dtype)
    if which in ("both", "a"):
        a = rand(rng, batch + a.shape, dtype)
    if which in ("both", "b"):
        b = rand(rng, batch + b.shape, dtype)
    bias = rand(rng, (n,), dtype) if use_bias else None
    ref = reference(a, b, *trans, bias, relu)
    check(cpp.matmul(a, b, *trans, bias=bias, relu=relu), ref, dtype, "wrapper")
    if len(batch) == 1:
        check(ext.matmul_batched(a, b, *trans, bias, relu), ref, dtype, "binding")


def test_batched_fallbacks():
    rng = np.random.default_rng(2)
    a, b = rand(rng, (2, 1, 3, 4), np.float32), rand(rng, (1, 5, 4, 6), np.float32)
    check(cpp.matmul(a, b), reference(a, b, False, False), np.float32, "broadcast batch")
    v = rand(rng, (4,), np.float64)
    m = rand(rng, (4, 3), np.float64)
    check(cpp.matmul(v, m), reference(v, m, False, False), np.float64, "1-D a")
    check(cpp.matmul(m.T.copy(), v), reference(m.T.copy(), v, False, False), np.float64, "1-D b")
    ints = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(cpp.matmul(ints, ints.T), spec.matmul(ints, ints.T))
    mixed = cpp.matmul(m.astype(np.float32), m.T)          # float32 @ float64 -> float64
    assert mixed.dtype == np.float64
    with pytest.raises(ValueError):
        cpp.matmul(m, m)


@pytest.mark.parametrize("dtype", FLOATS)
@cases()
@given(m=dims, n=dims, k=dims, trans=st.sampled_from(TRANS), accumulate=st.booleans(),
       use_bias=st.booleans(), relu=st.booleans(), seed=st.integers(0, 2**16))
def test_gemm_in_place(simd, dtype, m, n, k, trans, accumulate, use_bias, relu, seed):
    """tg::gemm as the convolutions and the LSTM call it: accumulate adds to C before the bias."""
    rng = np.random.default_rng(seed)
    a, b = operands(rng, m, n, k, *trans, dtype)
    bias = rand(rng, (n,), dtype) if use_bias else None
    c = rand(rng, (m, n), dtype)
    ref = reference(a, b, *trans) + (c if accumulate else 0)
    if use_bias:
        ref = ref + bias
    if relu:
        ref = np.maximum(ref, 0)
    ext.gemm(a, b, c, *trans, accumulate, bias, relu)
    check(c, ref, dtype, f"gemm {m}x{n}x{k} {trans} accumulate={accumulate}")


@pytest.mark.parametrize("dtype", FLOATS)
def test_gemm_accumulate_large(simd, dtype):
    """accumulate over several K blocks and edge tiles, 300 x 257 x 600."""
    rng = np.random.default_rng(7)
    a, b = rand(rng, (300, 600), dtype), rand(rng, (600, 257), dtype)
    c = rand(rng, (300, 257), dtype)
    bias = rand(rng, (257,), dtype)
    ref = np.maximum(reference(a, b, False, False) + c + bias, 0)
    ext.gemm(a, b, c, False, False, True, bias, True)
    check(c, ref, dtype, scale=3)


@pytest.mark.parametrize("dtype", FLOATS)
def test_accumulate_and_k0(simd, dtype):
    """accumulate adds to C (through the conv/LSTM-facing gemm: matmul with k = 0 gives bias)."""
    rng = np.random.default_rng(3)
    for m, n in [(5, 7), (20, 40)]:
        a, b = np.zeros((m, 0), dtype), np.zeros((0, n), dtype)
        bias = rand(rng, (n,), dtype)
        check(ext.matmul(a, b, False, False, bias, False), np.broadcast_to(bias, (m, n)), dtype)
        check(ext.matmul(a, b, False, False, bias - 5, True), np.zeros((m, n)), dtype)
        check(ext.matmul(a, b), np.zeros((m, n)), dtype)
        c = rand(rng, (m, n), dtype)
        before = c.copy()
        ext.gemm(a, b, c, False, False, True)                  # k = 0, accumulate: C unchanged
        np.testing.assert_array_equal(c, before)
        ext.gemm(a, b, c, False, False, True, bias, True)
        check(c, np.maximum(before + bias, 0), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_relu_keeps_nan(simd, dtype):
    rng = np.random.default_rng(4)
    for m, n, k in [(3, 5, 7), (30, 70, 20)]:      # edge tiles and full tiles
        a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
        a[1, 2] = np.nan
        b[3, n - 1] = np.inf
        bias = rand(rng, (n,), dtype)
        bias[0] = np.nan
        got = ext.matmul(a, b, False, False, bias, True)
        ref = reference(a, b, False, False, bias, True)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
        fin = np.isfinite(ref)
        check(got[fin], ref[fin], dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
@pytest.mark.parametrize("m,n,k", [(300, 257, 529), (40, 4200, 33), (4200, 20, 33)])
def test_large_blocks_and_threads(simd, threads, dtype, trans_a, trans_b, m, n, k):
    """Shapes that cross MC, KC, the split between threads and the pieces that long m or n are
    cut into; 1 and 2 threads give bit-identical results."""
    rng = np.random.default_rng(5)
    a, b = operands(rng, m, n, k, trans_a, trans_b, dtype)
    bias = rand(rng, (n,), dtype)
    ref = reference(a, b, trans_a, trans_b, bias, True)
    outs = []
    for t in (1, 2):
        ext.set_num_threads(t)
        outs.append(ext.matmul(a, b, trans_a, trans_b, bias, True))
        check(outs[-1], ref, dtype, f"{t} threads", scale=3)
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m,n,k,trans_a,trans_b", [
    (64, 128, 784, False, True), (20, 1024, 256, False, True), (700, 1024, 128, False, True),
    (64, 784, 128, False, False), (128, 784, 64, True, False), (1, 4200, 5, True, False),
    (4200, 3, 9, False, False)])
def test_model_shapes(dtype, m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(6)
    a, b = operands(rng, m, n, k, trans_a, trans_b, dtype)
    bias = rand(rng, (n,), dtype)
    check(cpp.matmul(a, b, trans_a, trans_b, bias=bias), reference(a, b, trans_a, trans_b, bias),
          dtype, scale=10)


def test_bad_input():
    f4, f8 = np.ones((3, 4), np.float32), np.ones((4, 5), np.float64)
    b4 = np.ones((4, 5), np.float32)
    mm = ext.matmul
    bad_input(mm, f4, f8, op="matmul", error=TypeError)                       # mixed dtypes
    bad_input(mm, f4, b4, False, False, np.ones(5, np.float64), op="matmul", error=TypeError)
    bad_input(mm, f4.astype(np.int32), b4.astype(np.int32), op="matmul", error=TypeError)
    bad_input(mm, [[1.0]], b4, op="matmul", error=TypeError)                  # not an array
    bad_input(mm, np.ones((4, 3), np.float32).T, b4, op="matmul", error=ValueError)  # strided
    bad_input(mm, np.ones(4, np.float32), b4, op="matmul", error=ValueError)        # ndim
    bad_input(mm, np.ones((2, 3, 4), np.float32), b4, op="matmul", error=ValueError)
    msg = bad_input(mm, f4, np.ones((5, 4), np.float32), op="matmul", error=ValueError)
    assert "(3, 4)" in msg and "(5, 4)" in msg
    bad_input(mm, f4, b4, True, False, op="matmul", error=ValueError)         # op(a) is 4 x 3
    bad_input(mm, f4, b4, False, False, np.ones(4, np.float32), op="matmul", error=ValueError)
    bad_input(mm, f4, b4, False, False, np.ones((1, 5), np.float32), op="matmul", error=ValueError)
    mb = ext.matmul_batched
    bad_input(mb, f4, b4, op="matmul_batched", error=ValueError)              # no batch
    bad_input(mb, np.ones((2, 3, 4), np.float32), np.ones((3, 4, 5), np.float32),
              op="matmul_batched", error=ValueError)                          # batch sizes
    bad_input(mb, np.ones((2, 3, 4), np.float32), np.ones((2, 5, 5), np.float32),
              op="matmul_batched", error=ValueError)                          # inner dims
    bad_input(mb, np.ones((1, 2, 3, 4), np.float32), b4, op="matmul_batched", error=ValueError)
    c = np.zeros((3, 5), np.float32)
    bad_input(ext.gemm, f4, b4, np.zeros((3, 5), np.float64), op="gemm", error=TypeError)
    bad_input(ext.gemm, f4, b4, np.zeros((5, 3), np.float32), op="gemm", error=ValueError)
    bad_input(ext.gemm, f4, b4, np.zeros((3, 10), np.float32)[:, ::2], op="gemm", error=ValueError)
    readonly = np.zeros((3, 5), np.float32)
    readonly.flags.writeable = False
    bad_input(ext.gemm, f4, b4, readonly, op="gemm", error=ValueError)
    bad_input(ext.gemm, f4, np.ones((5, 4), np.float32), c, op="gemm", error=ValueError)
