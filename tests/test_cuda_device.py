"""Every primitive of device "cuda" through the backend's own API (``from_numpy`` in,
``to_numpy`` out), against the NumPy backend in float64.

On a GPU (``make gpu-check``) the shapes are the reference models' at full size, made odd where a
multiple of a tile could hide an edge bug, with the GPU's launch sizes. Under Numba's simulator the
same tests run at tiny odd shapes; the per-family ``test_cuda_<family>.py`` files check each
kernel there in more cases.
"""
import numpy as np
import pytest

import tilegrad as tg
from tilegrad.testing import assert_close, rng

CUDA = tg.device("cuda")
if not CUDA.available:
    pytest.skip(f"device cuda: {CUDA.reason}", allow_module_level=True)

from tilegrad.backends import numpy as ref               # noqa: E402
from tilegrad.backends.cuda import conv                  # noqa: E402
from tilegrad.backends.cuda import matmul as ladder      # noqa: E402
from tilegrad.backends.cuda.runtime import SIMULATOR     # noqa: E402

be = CUDA.backend
FULL = not SIMULATOR
DTYPES = [(np.float32, 1e-4), (np.float64, 1e-11)]

# (M, N, K): a 4096-class square on the GPU would take the float64 reference too long; these are
# large, odd and not multiples of any tile.
# Odd (the scalar path of v5/v6), aligned (their 128-bit vector path), and two narrow GEMMs of
# the reference models that auto splits along K.
MATMUL = [(999, 1001, 1003), (1000, 1004, 1008), (64, 128, 784), (20, 1024, 256)] if FULL else \
    [(7, 5, 33), (8, 12, 16)]
CONV = [(64, 64, 14, 14, 128, 1, 1), (5, 3, 31, 29, 7, 2, 1), (64, 1, 28, 28, 64, 1, 1),
        (64, 128, 7, 7, 256, 1, 1)] if FULL else \
    [(2, 3, 7, 9, 5, 1, 1), (1, 2, 5, 7, 3, 2, 1), (2, 1, 5, 6, 3, 1, 1)]  # N C H W F stride pad
POOL = (64, 128, 14, 14) if FULL else (2, 3, 7, 5)
CE = (700, 10001) if FULL else (7, 33)
LSTM = (20, 256) if FULL else (3, 7)                        # (batch, hidden)
EMB = (10000, 128, (35, 20)) if FULL else (13, 5, (3, 2))   # (V, D, index shape)
ACT = (64, 128, 14, 15) if FULL else (3, 5, 7, 1)
OPTIM = 2_600_001 if FULL else 33


def _arr(shape, dtype, seed):
    return rng(seed).standard_normal(shape).astype(dtype)


def _on(*arrays):
    return [be.from_numpy(a) for a in arrays]


def _close(got, want, dtype, tol, scale=1.0, what=""):
    got = be.to_numpy(got)
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}"
    assert_close(got, want, rtol=tol, atol=tol * scale, what=what)


@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", MATMUL, ids=str)
@pytest.mark.parametrize("version", list(ladder.VERSIONS))
def test_matmul_every_version_and_transposition(version, shape, dtype, tol):
    m, n, k = shape
    for ta in (False, True):
        for tb in (False, True):
            a = _arr((k, m) if ta else (m, k), dtype, 1)
            b = _arr((n, k) if tb else (k, n), dtype, 2)
            got = ladder.VERSIONS[version](*_on(a, b), ta, tb)
            want = ref.matmul(a.astype(np.float64), b.astype(np.float64), ta, tb)
            _close(got, want, dtype, tol, np.sqrt(k), f"{version} trans {ta}, {tb}")
    bias = _arr((n,), dtype, 3)
    a, b = _arr((m, k), dtype, 4), _arr((n, k), dtype, 5)
    got = ladder.VERSIONS[version](*_on(a, b), False, True, be.from_numpy(bias), True)
    want = ref.matmul(a.astype(np.float64), b.astype(np.float64), False, True,
                      bias.astype(np.float64), True)
    _close(got, want, dtype, tol, np.sqrt(k), f"{version} bias+relu")


@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", CONV, ids=str)
@pytest.mark.parametrize("version", list(conv.VERSIONS))
def test_conv2d_forward_and_both_backwards(version, shape, dtype, tol):
    n, c, h, w, f, s, p = shape
    passes = conv.VERSIONS[version]
    x, wt, bias = _arr((n, c, h, w), dtype, 1), _arr((f, c, 3, 3), dtype, 2), _arr((f,), dtype, 3)
    st, pd = (s, s), (p, p)
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    want = ref.conv2d_fwd(x64, w64, bias.astype(np.float64), st, pd)
    _close(passes["fwd"](*_on(x, wt, bias), st, pd), want, dtype, tol, np.sqrt(9 * c), "fwd")
    gy = _arr(want.shape, dtype, 4)
    gy64 = gy.astype(np.float64)
    ho, wo = want.shape[2:]
    _close(passes["bwd_data"](*_on(gy, wt), x.shape, st, pd),
           ref.conv2d_bwd_data(gy64, w64, x.shape, st, pd), dtype, tol, np.sqrt(9 * f), "dx")
    _close(passes["bwd_weight"](*_on(gy, x), wt.shape, st, pd),
           ref.conv2d_bwd_weight(gy64, x64, wt.shape, st, pd), dtype, tol, np.sqrt(n * ho * wo),
           "dw")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_and_relu(dtype):
    size = int(np.prod(POOL))      # distinct values: no tie makes the argmax ambiguous
    x = (rng(1).permutation(size).reshape(POOL) - size / 2).astype(dtype)
    out, arg = be.max_pool2d_fwd(be.from_numpy(x), (2, 2), (2, 2), (0, 0))
    want, want_arg = ref.max_pool2d_fwd(x, (2, 2), (2, 2), (0, 0))
    _close(out, want, dtype, 0, what="pool")
    np.testing.assert_array_equal(be.to_numpy(arg), want_arg)
    g = _arr(want.shape, dtype, 2)
    _close(be.max_pool2d_bwd(be.from_numpy(g), arg, x.shape),
           ref.max_pool2d_bwd(g, want_arg, x.shape), dtype, 0, what="pool bwd")
    y = _arr(ACT, dtype, 3)
    dy = be.from_numpy(y)
    r = be.unary("relu", dy)
    _close(r, ref.unary("relu", y), dtype, 0, what="relu")
    gr = _arr(ACT, dtype, 4)
    _close(be.relu_bwd(be.from_numpy(gr), r), ref.relu_bwd(gr, ref.unary("relu", y)), dtype, 0,
           what="relu bwd")


@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f32", "f64"])
def test_softmax_cross_entropy(dtype, tol):
    n, c = CE
    x = (_arr((n, c), dtype, 1) * 4).astype(dtype)
    x[0, :] += 1e3                          # stability: a row far from zero
    t = rng(2).integers(0, c, n)
    x64 = x.astype(np.float64)
    dx, dt = _on(x, t)
    _close(be.cross_entropy_fwd(dx, dt), ref.cross_entropy_fwd(x64, t), dtype, tol, 10, "ce")
    gl = np.abs(_arr((n,), dtype, 3))
    _close(be.cross_entropy_bwd(dx, dt, be.from_numpy(gl)),
           ref.cross_entropy_bwd(x64, t, gl.astype(np.float64)), dtype, tol, 1, "ce bwd")
    y = be.log_softmax_fwd(dx)
    _close(y, ref.log_softmax_fwd(x64), dtype, tol, 10, "log_softmax")
    g = _arr((n, c), dtype, 4)
    _close(be.log_softmax_bwd(be.from_numpy(g), y),
           ref.log_softmax_bwd(g.astype(np.float64), ref.log_softmax_fwd(x64)), dtype, tol,
           np.sqrt(c), "log_softmax bwd")


@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f32", "f64"])
def test_lstm_cell_embedding_and_sums(dtype, tol):
    b, h = LSTM
    gates, c0 = _arr((b, 4 * h), dtype, 1), _arr((b, h), dtype, 2)
    hh, cc, acts = be.lstm_cell_fwd(*_on(gates, c0))
    want = ref.lstm_cell_fwd(gates.astype(np.float64), c0.astype(np.float64))
    for got, w, what in zip((hh, cc, acts), want, ("h", "c", "acts")):
        _close(got, w, dtype, tol, what=what)
    gh, gc = _arr((b, h), dtype, 3), _arr((b, h), dtype, 4)
    got = be.lstm_cell_bwd(*_on(gh, gc), acts, cc, be.from_numpy(c0))
    want = ref.lstm_cell_bwd(gh.astype(np.float64), gc.astype(np.float64), want[2], want[1],
                             c0.astype(np.float64))
    for g, w, what in zip(got, want, ("dgates", "dc_prev")):
        _close(g, w, dtype, tol, 4, what)

    v, d, shape = EMB
    wt, idx = _arr((v, d), dtype, 5), rng(6).integers(0, v, shape)
    idx.flat[1] = idx.flat[0]               # a repeated row: the scatter-add must accumulate
    _close(be.embedding_fwd(*_on(wt, idx)), ref.embedding_fwd(wt, idx), dtype, 0, what="gather")
    go = _arr(shape + (d,), dtype, 7)
    _close(be.embedding_bwd(*_on(go, idx), v), ref.embedding_bwd(go.astype(np.float64), idx, v),
           dtype, tol, 1, "scatter-add")

    x = _arr(ACT, dtype, 8)
    dx = be.from_numpy(x)
    x64 = x.astype(np.float64)
    for axes in [(0,), (0, 2, 3), (1,), (0, 1, 2, 3)]:
        _close(be.sum(dx, axes, False), ref.sum(x64, axes, False), dtype, tol,
               np.sqrt(x.size), f"sum {axes}")
    _close(be.amax(dx, (3,), True), ref.amax(x64, (3,), True), dtype, 0, what="amax")
    np.testing.assert_array_equal(be.to_numpy(be.argmax(dx, 1, False)), ref.argmax(x, 1, False))


@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f32", "f64"])
def test_broadcast_binary_layout_and_optimizers(dtype, tol):
    x, bias = _arr(ACT, dtype, 1), _arr((ACT[1], 1, 1), dtype, 2)
    dx, db = _on(x, bias)
    x64, b64 = x.astype(np.float64), bias.astype(np.float64)
    for op in ("add", "mul", "div", "maximum"):
        _close(be.binary(op, dx, db), ref.binary(op, x64, b64), dtype, tol, what=op)
    for op in ("exp", "tanh", "sigmoid"):
        small = be.from_numpy((x / 4).astype(dtype))
        _close(be.unary(op, small), ref.unary(op, x64 / 4), dtype, tol, what=op)
    perm = (0, 2, 3, 1)
    _close(be.permute(dx, perm), np.transpose(x, perm), dtype, 0, what="permute")
    _close(be.concat([dx, dx], 1), np.concatenate([x, x], 1), dtype, 0, what="concat")
    key = (slice(None), slice(1, None, 2))
    _close(be.index(dx, key), x[key], dtype, 0, what="index")

    n = OPTIM
    p, g, m, v = (_arr((n,), dtype, s) for s in range(4))
    v = np.abs(v)
    dp, dg, dm, dv = _on(p, g, m, v)
    be.adam_step(dp, dg, dm, dv, 3, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    rp, rm, rv = (a.astype(np.float64) for a in (p, m, v))
    ref.adam_step(rp, g.astype(np.float64), rm, rv, 3, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    for got, want, what in ((dp, rp, "param"), (dm, rm, "m"), (dv, rv, "v")):
        _close(got, want, dtype, tol, what=f"adam {what}")
    buf = be.from_numpy(m)
    be.sgd_step(dp, dg, buf, 0.1, 0.9, 0.0, 1e-4, True, False)
    rbuf = m.astype(np.float64)
    ref.sgd_step(rp, g.astype(np.float64), rbuf, 0.1, 0.9, 0.0, 1e-4, True, False)
    _close(dp, rp, dtype, tol, what="sgd param")
    _close(buf, rbuf, dtype, tol, what="sgd momentum")
