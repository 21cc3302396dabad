"""The CUDA conv2d kernels in Numba's simulator: every version's forward, backward-weight and
backward-data against the NumPy backend in float64 (float32 on a few shapes), on odd shapes,
strides, paddings and filters (never multiples of the simulator's tiles), one input channel
(version 2's direct kernels) included; split-K forced on and off.

Tests marked ``gpu_tiles`` run version 2's kernels with the GPU's own tile sizes (still in the
simulator, so slow: 2-20 s each, under a minute together) on shapes that span two blocks in each
direction."""
import os

import numpy as np
import pytest

from tilegrad.testing import assert_close, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as ref          # noqa: E402
from tilegrad.backends.cuda import conv             # noqa: E402
from tilegrad.backends.cuda import conv_direct      # noqa: E402

# (N, C, F, H, W, (KH, KW), stride, padding)
CASES = {
    "3x3_s1_p1": (3, 2, 3, 5, 4, (3, 3), (1, 1), (1, 1)),
    "3x3_s2_p1": (1, 2, 3, 7, 9, (3, 3), (2, 2), (1, 1)),
    "3x3_s1_p0_c7": (1, 7, 3, 4, 5, (3, 3), (1, 1), (0, 0)),
    "3x1_s21_p02": (1, 3, 2, 7, 5, (3, 1), (2, 1), (0, 2)),
    "1x1_p1": (1, 3, 5, 3, 5, (1, 1), (1, 1), (1, 1)),          # padding >= the filter
    "1x1_c9": (1, 9, 6, 3, 4, (1, 1), (1, 1), (0, 0)),          # K-tiles of several channels
    "5x2_s1_p0": (1, 3, 7, 7, 3, (5, 2), (1, 1), (0, 0)),       # K-tiles of 2 filter rows
    "2x2_s2_unread": (3, 2, 3, 5, 7, (2, 2), (2, 2), (0, 0)),   # last row/column never read
    "c1_3x3_s1_p1": (3, 1, 7, 5, 6, (3, 3), (1, 1), (1, 1)),    # one input channel: direct
    "c1_3x3_s2_p0": (1, 1, 3, 7, 9, (3, 3), (2, 2), (0, 0)),
    "c1_2x3_s21_p10": (2, 1, 5, 5, 4, (2, 3), (2, 1), (1, 0)),
    "2x3_s21_p10": (2, 2, 2, 5, 3, (2, 3), (2, 1), (1, 0)),     # only for the adjoint test
}
GEMM_CASES = list(CASES)[:-1]
F32_CASES = ["3x1_s21_p02", "1x1_p1", "3x3_s1_p1", "c1_3x3_s1_p1"]
V1_CASES = ["3x3_s1_p1", "3x3_s2_p1", "3x1_s21_p02", "1x1_p1", "2x2_s2_unread"]
TOL = {np.float64: (1e-12, 1e-12), np.float32: (1e-5, 1e-5)}
PASSES = ("fwd", "bwd_data", "bwd_weight")


def _params(with_bias=False):
    """(version, case, dtype[, bias]) pytest params: v2 on every case in float64 and on F32_CASES
    in float32; v1 on V1_CASES."""
    out = []
    for version, cases in (("v1", V1_CASES), ("v2", GEMM_CASES)):
        for c in cases:
            for b in ((True, False) if with_bias else (None,)):
                out.append(pytest.param(version, c, np.float64, *(() if b is None else (b,)),
                                        id=f"{version}-{c}-f64" + ("" if b is None else
                                                                  "-bias" * b)))
    for c in F32_CASES:
        out.append(pytest.param("v2", c, np.float32, *((True,) if with_bias else ()),
                                id=f"v2-{c}-f32" + ("-bias" if with_bias else "")))
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


def _run(version, pass_, x, w, bias, gy, stride, padding):
    """(what the launcher returned, the NumPy backend's float64 result)."""
    launcher = conv.VERSIONS[version][pass_]
    if pass_ == "fwd":
        return (launcher(x, w, bias, stride, padding),
                _ref64(ref.conv2d_fwd, x, w, bias, stride, padding))
    if pass_ == "bwd_data":
        return (launcher(gy, w, x.shape, stride, padding),
                _ref64(ref.conv2d_bwd_data, gy, w, x.shape, stride, padding))
    return (launcher(gy, x, w.shape, stride, padding),
            _ref64(ref.conv2d_bwd_weight, gy, x, w.shape, stride, padding))


def _check(version, pass_, case, dtype, with_bias=False, seed=0, tol_scale=1.0):
    x, w, bias, gy, stride, padding = _inputs(case, dtype, seed=len(case) + seed)
    got, want = _run(version, pass_, x, w, bias if with_bias else None, gy, stride, padding)
    assert got.dtype == dtype and got.shape == want.shape
    rtol, atol = TOL[dtype]
    assert_close(got, want, rtol * tol_scale, atol * tol_scale, what=f"{version} {pass_} {case}")
    return got


@pytest.mark.parametrize("version,case,dtype,with_bias", _params(with_bias=True))
def test_conv2d_fwd(version, case, dtype, with_bias):
    _check(version, "fwd", case, dtype, with_bias)


@pytest.mark.parametrize("version,case,dtype", _params())
def test_conv2d_bwd_weight(version, case, dtype):
    _check(version, "bwd_weight", case, dtype, seed=1)


@pytest.mark.parametrize("version,case,dtype", _params())
def test_conv2d_bwd_data(version, case, dtype):
    got = _check(version, "bwd_data", case, dtype, seed=2)
    if case == "2x2_s2_unread":       # the row and column the forward never read get no gradient
        assert (got[:, :, -1, :] == 0).all() and (got[:, :, :, -1] == 0).all()


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("case", ["2x3_s21_p10", "c1_2x3_s21_p10"])
def test_backward_is_the_adjoint_of_forward(version, case):
    """<conv(x), gy> == <x, bwd_data(gy)> == <w, bwd_weight(gy, x)> (bias off), in float64."""
    x, w, _, gy, stride, padding = _inputs(case, np.float64, seed=9)
    launchers = conv.VERSIONS[version]
    y = launchers["fwd"](x, w, None, stride, padding)
    dx = launchers["bwd_data"](gy, w, x.shape, stride, padding)
    dw = launchers["bwd_weight"](gy, x, w.shape, stride, padding)
    lhs = float((y * gy).sum())
    assert abs(lhs - float((x * dx).sum())) <= 1e-10 * (1 + abs(lhs))
    assert abs(lhs - float((w * dw).sum())) <= 1e-10 * (1 + abs(lhs))


def test_the_default_launchers_are_the_default_versions():
    assert conv.DEFAULT_VERSION == "v2"
    for p in PASSES:
        assert getattr(conv, f"conv2d_{p}") is conv.VERSIONS["v2"][p]
        assert getattr(conv, f"conv2d_{p}_v1") is conv.VERSIONS["v1"][p]
        assert getattr(conv, f"conv2d_{p}_v2") is conv.VERSIONS["v2"][p]
        versions, default = conv.KERNEL_FAMILIES[f"conv2d_{p}"]
        assert default == "v2" and versions == {v: conv.VERSIONS[v][p] for v in ("v1", "v2")}


@pytest.mark.parametrize("blocks,k", [(1, 1), (1, 33), (4, 50176), (14, 7), (3, 97), (300, 999)])
def test_split_k_covers_k_in_whole_tiles(blocks, k):
    for tile, target, min_tiles in ((None, None, None), (8, 4, 8), (3, 64, 2)):
        splits, chunk = conv._split_k(blocks, k, tile, target, min_tiles)
        tile = tile or conv.TILE
        assert splits >= 1 and chunk % tile == 0
        assert (splits - 1) * chunk < k <= splits * chunk or k <= chunk == tile
        assert splits == 1 or chunk >= (min_tiles or conv.SPLIT_MIN_TILES) * tile


def _bwd_weight_splits(version, case, dtype):
    """How many K-slices the version's backward-weight cuts the case into, as its launcher
    computes them."""
    x, wt, _, gy, _, _ = _inputs(case, dtype, seed=0)
    f, c, kh, kw = wt.shape
    n, _, ho, wo = gy.shape
    if version == "v1":
        blocks = conv.ceil_div(c * kh * kw, conv.TILE) * conv.ceil_div(f, conv.TILE)
        return conv._split_k(blocks, n * ho * wo)[0]
    if c == 1:
        threads, group = conv_direct.BWD_WEIGHT
        return conv_direct._row_slices(conv.ceil_div(f, group), n * ho,
                                       max(1, threads // wo))[0]
    bm, bn, _, _, bk = conv.V2_TILES[x.dtype.name]["bwd_weight"]
    blocks = conv.ceil_div(c * kh * kw, bn) * conv.ceil_div(f, bm)
    return conv._split_k(blocks, n * ho * wo, bk, conv.SPLIT_TARGET2, conv.SPLIT_MIN_TILES2)[0]


def _force_split(monkeypatch, on, target=64):
    """Split-K on (``target`` blocks wanted, more than the output has) or off, in every
    version."""
    target = target if on else 0
    monkeypatch.setattr(conv, "SPLIT_TARGET", target)
    monkeypatch.setattr(conv, "SPLIT_TARGET2", target)
    monkeypatch.setattr(conv_direct, "SPLIT_TARGET", target)
    monkeypatch.setattr(conv, "SPLIT_TARGET_FWD2", target)
    if on:
        monkeypatch.setattr(conv, "SPLIT_MIN_TILES2", 1)
        monkeypatch.setattr(conv, "SPLIT_MIN_TILES_FWD2", 1)
        monkeypatch.setattr(conv_direct, "SPLIT_MIN_STEPS", 1)


@pytest.mark.parametrize("split", [True, False], ids=["split", "whole"])
@pytest.mark.parametrize("version,case", [("v1", "3x3_s1_p1"), ("v1", "2x2_s2_unread"),
                                          ("v2", "3x3_s1_p1"), ("v2", "3x3_s2_p1"),
                                          ("v2", "2x2_s2_unread"), ("v2", "c1_3x3_s1_p1"),
                                          ("v2", "c1_2x3_s21_p10")])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_bwd_weight_split_k_against_numpy(version, case, dtype, split, monkeypatch):
    """Backward-weight with K cut into slices gives the unsplit result: each slice's partial,
    summed by reduce.sum; and without slices, one pass."""
    _force_split(monkeypatch, split)
    splits = _bwd_weight_splits(version, case, dtype)
    assert (splits > 1) == split                  # the path under test really runs
    _check(version, "bwd_weight", case, dtype, seed=11)


@pytest.mark.parametrize("split", [True, False], ids=["split", "whole"])
@pytest.mark.parametrize("pass_", ["fwd", "bwd_data"])
@pytest.mark.parametrize("case", ["3x3_s1_p1", "3x3_s1_p0_c7", "1x1_c9", "5x2_s1_p0"])
def test_v2_fwd_split_k_against_numpy(case, pass_, split, monkeypatch):
    """The forward GEMM (also backward-data's at stride 1) with K cut into slices, some starting
    inside a channel's filter (5x2: K-tiles of two filter rows), and without."""
    _force_split(monkeypatch, split)
    x, w, _, gy, stride, padding = _inputs(case, np.float64, seed=5)
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    ho, wo = gy.shape[2:]
    tiles = conv.V2_TILES["float64"]["fwd"]
    if pass_ == "fwd":
        splits = conv._fwd_splits(tiles, n, c, f, kh, kw, ho, wo)[1]
    elif padding[0] < kh and padding[1] < kw:       # backward-data: the forward on dY
        splits = conv._fwd_splits(tiles, n, f, c, kh, kw, h, wd)[1]
    else:
        pytest.skip("backward-data here is v1's gather kernel")
    assert (splits > 1) == split
    _check("v2", pass_, case, np.float64, with_bias=pass_ == "fwd", seed=5)


# ---------------------------------------------------------------- the GPU's tiles

def _gpu_tiles(monkeypatch):
    monkeypatch.setattr(conv, "V2_TILES", conv.V2_GPU_TILES)
    monkeypatch.setattr(conv_direct, "FWD", conv_direct.GPU_FWD)
    monkeypatch.setattr(conv_direct, "BWD_DATA", conv_direct.GPU_BWD_DATA)
    monkeypatch.setattr(conv_direct, "BWD_WEIGHT", conv_direct.GPU_BWD_WEIGHT)


def _gpu_case(name, shape):
    CASES[name] = shape
    return name


# Shapes that give each GPU-tiled kernel two blocks (at least) along each grid direction: the
# GEMMs' 64 x 64 tiles (65 rows, 72 columns; K of 2-3 K-tiles, the last partial, cut into two
# slices for the backward passes), the direct kernels' 256 positions and 16 (forward), 64
# (backward-data) or 4 (backward-weight, two slices) filters.
GPU_CASES = {
    "fwd": _gpu_case("gpu_gemm_fwd", (1, 3, 65, 9, 8, (3, 3), (1, 1), (1, 1))),
    "bwd_data": _gpu_case("gpu_gemm_bwd_data", (1, 65, 3, 9, 8, (3, 3), (1, 1), (1, 1))),
    "bwd_weight": _gpu_case("gpu_gemm_bwd_weight", (1, 8, 65, 6, 6, (3, 3), (1, 1), (1, 1))),
    "direct_fwd": _gpu_case("gpu_direct_fwd", (2, 1, 17, 12, 11, (3, 3), (1, 1), (1, 1))),
    "direct_bwd_data": _gpu_case("gpu_direct_bwd_data", (1, 1, 65, 17, 16, (3, 3), (1, 1),
                                                         (1, 1))),
    "direct_bwd_weight": _gpu_case("gpu_direct_bwd_weight", (3, 1, 5, 28, 28, (3, 3), (1, 1),
                                                             (1, 1))),
}


@pytest.mark.gpu_tiles
@pytest.mark.parametrize("kind,dtype,with_bias", [
    ("fwd", np.float32, True), ("bwd_data", np.float64, False), ("bwd_weight", np.float32, False),
    ("direct_fwd", np.float32, True), ("direct_bwd_data", np.float32, False),
    ("direct_bwd_weight", np.float64, False)])
def test_v2_with_the_gpu_tiles(kind, dtype, with_bias, monkeypatch):
    _gpu_tiles(monkeypatch)
    if kind.endswith("bwd_weight") or kind == "bwd_data":   # split-K: a few slices
        _force_split(monkeypatch, True, target=8)
    if kind.endswith("bwd_weight"):
        assert _bwd_weight_splits("v2", GPU_CASES[kind], dtype) > 1
    _check("v2", kind.removeprefix("direct_"), GPU_CASES[kind], dtype, with_bias,
           tol_scale=10.0)


# Version 1 with the GPU's 16 x 16 tiles: two blocks (at least) along each grid direction. The
# backward-data case has stride 2, the path v2 hands to v1.
V1_GPU_CASES = {
    "fwd": _gpu_case("gpu_v1_fwd", (1, 3, 17, 5, 4, (3, 3), (1, 1), (1, 1))),      # M 20, F 17
    "bwd_data": _gpu_case("gpu_v1_bwd_data", (2, 17, 3, 5, 4, (3, 3), (2, 2), (1, 1))),  # M 40
    "bwd_weight": _gpu_case("gpu_v1_bwd_weight", (1, 2, 17, 5, 4, (3, 3), (1, 1), (1, 1))),
}


@pytest.mark.gpu_tiles
@pytest.mark.parametrize("pass_", PASSES)
def test_v1_with_the_gpu_tile(pass_, monkeypatch):
    monkeypatch.setattr(conv, "TILE", conv.GPU_TILE)
    _check("v1", pass_, V1_GPU_CASES[pass_], np.float64, with_bias=pass_ == "fwd")


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("pass_", PASSES)
def test_strided_and_offset_views(version, pass_):
    """Operands that are views: a slice with a stride, and a contiguous view that starts one
    element into its buffer (not 16-byte aligned)."""
    x, w, bias, gy, stride, padding = _inputs("3x3_s1_p1", np.float64, seed=4)
    strided = np.repeat(x, 2, axis=3)[:, :, :, ::2]                # the same values, strided
    assert not strided.flags.c_contiguous and np.array_equal(strided, x)
    flat = np.empty(gy.size + 1)
    offset = flat[1:].reshape(gy.shape)
    offset[...] = gy
    got, want = _run(version, pass_, strided, w, bias, offset, stride, padding)
    assert_close(got, want, 1e-12, 1e-12, what=f"{version} {pass_} on views")
