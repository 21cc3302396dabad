"""The CUDA conv2d kernels (implicit GEMM) in Numba's simulator: forward, backward-weight and
backward-data against the NumPy backend in float64 and float32, on odd shapes, strides and
paddings (never multiples of the simulator's tile of 4)."""
import os

import numpy as np
import pytest

from helpers import assert_close, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as ref          # noqa: E402
from tilegrad.backends.cuda import conv             # noqa: E402

# (N, C, F, H, W, (KH, KW), stride, padding)
CASES = {
    "3x3_s1_p1": (3, 2, 3, 5, 4, (3, 3), (1, 1), (1, 1)),
    "3x3_s2_p1": (1, 2, 3, 7, 9, (3, 3), (2, 2), (1, 1)),
    "3x1_s21_p02": (1, 3, 2, 7, 5, (3, 1), (2, 1), (0, 2)),
    "1x1_p1": (1, 3, 5, 3, 5, (1, 1), (1, 1), (1, 1)),
    "2x2_s2_unread": (3, 2, 3, 5, 7, (2, 2), (2, 2), (0, 0)),   # last row/column never read
    "2x3_s21_p10": (2, 2, 2, 5, 3, (2, 3), (2, 1), (1, 0)),     # only for the adjoint test
}
GEMM_CASES = list(CASES)[:-1]
F32_CASES = ["3x1_s21_p02", "1x1_p1"]        # float32: its tolerance, on two (cheap) shapes
TOL = {np.float64: (1e-12, 1e-12), np.float32: (1e-5, 1e-5)}


def _params(with_bias=False):
    """(case, dtype[, bias]) pytest params: every case in float64, F32_CASES in float32."""
    out = []
    for c in GEMM_CASES:
        for b in ((True, False) if with_bias else (None,)):
            out.append(pytest.param(c, np.float64, *(() if b is None else (b,)),
                                    id=f"{c}-f64" + ("" if b is None else "-bias" * b)))
    for c in F32_CASES:
        out.append(pytest.param(c, np.float32, *((True,) if with_bias else ()),
                                id=f"{c}-f32" + ("-bias" if with_bias else "")))
    return out


def _inputs(case, dtype, seed):
    n, c, f, h, w, (kh, kw), stride, padding = CASES[case]
    r = rng(seed)
    x = r.standard_normal((n, c, h, w)).astype(dtype)
    wt = r.standard_normal((f, c, kh, kw)).astype(dtype)
    bias = r.standard_normal(f).astype(dtype)
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (w + 2 * padding[1] - kw) // stride[1] + 1
    gy = r.standard_normal((n, f, ho, wo)).astype(dtype)
    return x, wt, bias, gy, stride, padding


def _ref64(fn, *args):
    return fn(*[a.astype(np.float64) if isinstance(a, np.ndarray) else a for a in args])


@pytest.mark.parametrize("case,dtype,with_bias", _params(with_bias=True))
def test_conv2d_fwd(case, dtype, with_bias):
    x, w, bias, _, stride, padding = _inputs(case, dtype, seed=len(case))
    bias = bias if with_bias else None
    got = conv.conv2d_fwd(x, w, bias, stride, padding)
    assert got.dtype == dtype
    assert_close(got, _ref64(ref.conv2d_fwd, x, w, bias, stride, padding), *TOL[dtype])


@pytest.mark.parametrize("case,dtype", _params())
def test_conv2d_bwd_weight(case, dtype):
    x, w, _, gy, stride, padding = _inputs(case, dtype, seed=len(case) + 1)
    got = conv.conv2d_bwd_weight(gy, x, w.shape, stride, padding)
    assert got.dtype == dtype
    assert_close(got, _ref64(ref.conv2d_bwd_weight, gy, x, w.shape, stride, padding), *TOL[dtype])


@pytest.mark.parametrize("case,dtype", _params())
def test_conv2d_bwd_data(case, dtype):
    x, w, _, gy, stride, padding = _inputs(case, dtype, seed=len(case) + 2)
    got = conv.conv2d_bwd_data(gy, w, x.shape, stride, padding)
    assert got.dtype == dtype
    want = _ref64(ref.conv2d_bwd_data, gy, w, x.shape, stride, padding)
    assert_close(got, want, *TOL[dtype])
    if case == "2x2_s2_unread":       # the row and column the forward never read get no gradient
        assert (got[:, :, -1, :] == 0).all() and (got[:, :, :, -1] == 0).all()


def test_backward_is_the_adjoint_of_forward():
    """<conv(x), gy> == <x, bwd_data(gy)> == <w, bwd_weight(gy, x)> (bias off), in float64."""
    x, w, _, gy, stride, padding = _inputs("2x3_s21_p10", np.float64, seed=9)
    y = conv.conv2d_fwd(x, w, None, stride, padding)
    dx = conv.conv2d_bwd_data(gy, w, x.shape, stride, padding)
    dw = conv.conv2d_bwd_weight(gy, x, w.shape, stride, padding)
    lhs = float((y * gy).sum())
    assert abs(lhs - float((x * dx).sum())) <= 1e-10 * (1 + abs(lhs))
    assert abs(lhs - float((w * dw).sum())) <= 1e-10 * (1 + abs(lhs))


@pytest.mark.parametrize("blocks,k", [(1, 1), (1, 33), (4, 50176), (14, 7), (3, 97), (300, 999)])
def test_split_k_covers_k_in_whole_tiles(blocks, k):
    splits, chunk = conv._split_k(blocks, k)
    assert splits >= 1 and chunk % conv.TILE == 0
    assert (splits - 1) * chunk < k <= splits * chunk or k <= chunk == conv.TILE
    assert splits == 1 or chunk >= conv.SPLIT_MIN_TILES * conv.TILE


@pytest.mark.parametrize("case", ["3x3_s1_p1", "3x3_s2_p1", "2x2_s2_unread"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_bwd_weight_split_k_against_numpy(case, dtype, monkeypatch):
    """Backward-weight with K cut into slices (forced: more blocks wanted than the output has)
    gives the unsplit result: each slice's partial, summed by reduce.sum."""
    monkeypatch.setattr(conv, "SPLIT_TARGET", 64)
    x, wt, _, gy, stride, padding = _inputs(case, dtype, seed=11)
    n, _, _, ho, wo = (gy.shape[0], None, None) + gy.shape[2:]
    blocks = conv.ceil_div(np.prod(wt.shape[1:]), conv.TILE) * conv.ceil_div(wt.shape[0], conv.TILE)
    assert conv._split_k(blocks, n * ho * wo)[0] > 1          # the split path really runs
    got = conv.conv2d_bwd_weight(gy, x, wt.shape, stride, padding)
    want = _ref64(ref.conv2d_bwd_weight, gy, x, wt.shape, stride, padding)
    assert got.shape == wt.shape and got.dtype == dtype
    rtol, atol = TOL[dtype]
    assert_close(got, want, rtol=rtol, atol=atol)
