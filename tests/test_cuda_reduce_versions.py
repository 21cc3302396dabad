"""The "reduce" family's ladder (sum and amax: v1 a thread per output, v2 the shared-memory tree,
v3 warp shuffles) in Numba's simulator, against the NumPy backend in float64 on odd shapes, and
warp.py's simulator stand-in for the GPU's shuffles against a NumPy model of the shuffle.

The stand-in is what v3 runs here (the GPU's ``cuda.shfl_xor_sync`` path is compiled by the PTX
check and runs only on a GPU): lane ``l`` of a warp of ``warp.WARP`` lanes gets lane ``l ^ k``'s
value; a lane whose partner does not exist (a partial last warp: odd block sizes) keeps its own.
"""
import os

import numpy as np
import pytest

from helpers import spy_on_versions
from tilegrad.testing import assert_close, rng

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from numba import cuda                              # noqa: E402

import tilegrad as tg                               # noqa: E402
from tilegrad import kernels                        # noqa: E402
from tilegrad.backends import numpy as ref          # noqa: E402
from tilegrad.backends.cuda import reduce as red    # noqa: E402
from tilegrad.backends.cuda import warp             # noqa: E402

VERSIONS = list(red.VERSIONS)
TOL = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=2e-5, atol=1e-6)}

# (shape, axes): rows of 1, 3, 7 outputs; reductions of 1, 3, 7, 33 elements (33 > 4 * the
# simulator's block of 8), over the last axis, leading axes, strided middle axes, everything.
CASES = [((1, 7), (1,)), ((3, 1), (1,)), ((7, 3), (1,)), ((3, 33), (1,)), ((33, 7), (0,)),
         ((7, 5, 3), (0, 2)), ((3, 7, 3), (1,)), ((3, 11), (0, 1)), ((37, 3), (1,)), ((5,), ()),
         ((), ())]       # 37 outputs > v1's 4 simulated blocks of 8 threads: its loop wraps


def _x(shape, seed, dtype=np.float64):
    r = rng(seed)
    return (r.uniform(0.1, 2.0, shape) * r.choice([-1.0, 1.0], shape)).astype(dtype)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("op", ["sum", "amax"])
def test_every_version_against_numpy_float64(version, op):
    launchers = red.VERSIONS[version]
    for k, (shape, axes) in enumerate(CASES):
        x = _x(shape, seed=k)
        keepdims = bool(k % 2)
        got, want = getattr(launchers, op)(x, axes, keepdims), getattr(ref, op)(x, axes, keepdims)
        assert got.shape == want.shape and got.dtype == np.float64, (shape, axes, got.shape)
        assert_close(got, want, what=f"{op} {version} {shape} over {axes}", **TOL[np.float64])


@pytest.mark.parametrize("version", VERSIONS)
def test_float32_nan_inf_and_repeats(version):
    launchers = red.VERSIONS[version]
    x = _x((3, 33), seed=5, dtype=np.float32)
    assert_close(launchers.sum(x, (1,), False), ref.sum(x.astype(np.float64), (1,), False),
                 **TOL[np.float32])
    np.testing.assert_array_equal(launchers.sum(x, (1,), False), launchers.sum(x, (1,), False))
    y = _x((3, 33), seed=6)
    y[0, 20], y[1, 7], y[2, 1] = np.nan, np.inf, -np.inf
    np.testing.assert_array_equal(launchers.amax(y, (1,), False), ref.amax(y, (1,), False))
    np.testing.assert_array_equal(launchers.sum(y, (1,), False)[1:], [np.inf, -np.inf])
    assert np.isnan(launchers.sum(y, (1,), False)[0])
    assert np.isnan(launchers.amax(y, (0, 1), False))


@pytest.mark.parametrize("version", VERSIONS)
def test_integers_and_bool(version):
    """int64 passes through the shuffles exactly (values past 2**53); bool, which Numba cannot
    shuffle, runs v3 through v2's kernel."""
    launchers = red.VERSIONS[version]
    big = np.array([[2**60 + 1, 3, 2**60 + 3, -5, 7], [1, 2, 3, 4, 5]], dtype=np.int64)
    np.testing.assert_array_equal(launchers.amax(big, (1,), False), ref.amax(big, (1,), False))
    np.testing.assert_array_equal(launchers.sum(big, (1,), False), ref.sum(big, (1,), False))
    flags = rng(7).random((3, 13)) < 0.2
    np.testing.assert_array_equal(launchers.amax(flags, (1,), False), ref.amax(flags, (1,), False))


def test_v2_is_the_default(monkeypatch):
    monkeypatch.delenv("TILEGRAD_KERNELS", raising=False)
    monkeypatch.setattr(kernels, "_chosen", {})
    assert kernels.versions()[red.FAMILY] == (("v1", "v2", "v3"), "v2")


@pytest.mark.parametrize("name", VERSIONS)
def test_kernels_use_switches_the_version_tensors_and_conv_run(name, monkeypatch):
    """Tensor.sum and Tensor.amax on device "cuda" (the backend's primitives), and this module's
    ``sum`` (what conv's bias gradient calls), run the version chosen by kernels.use."""
    monkeypatch.setattr(kernels, "_chosen", {"_env": True})      # choices undone afterwards
    ran = spy_on_versions(monkeypatch, red.VERSIONS, ("sum", "amax"))
    kernels.use(red.FAMILY, name)
    x = _x((3, 7), seed=8)
    t = tg.tensor(x, dtype=tg.float64, device="cuda", requires_grad=True)
    assert_close(t.sum(dim=1).numpy(), x.sum(axis=1), **TOL[np.float64])
    assert_close(t.amax(dim=0).numpy(), x.max(axis=0), **TOL[np.float64])
    assert_close(red.sum(x, (0,), False), x.sum(axis=0), **TOL[np.float64])
    assert set(ran) == {(name, "sum"), (name, "amax")}

# ---------------------------------------------------------------- warp.py's stand-in


def _model_shfl_xor(values, lane_mask, width):
    """NumPy model: the block cut into warps of ``width``; lane l takes lane l ^ lane_mask's value
    where that lane exists, else keeps its own."""
    n = len(values)
    padded = np.full(-(-n // width) * width, np.nan)
    padded[:n] = values
    warps = padded.reshape(-1, width)
    partner = np.arange(width) ^ lane_mask
    swapped = warps[:, partner].reshape(-1)[:n]
    exists = (np.arange(n) - np.arange(n) % width + partner[np.arange(n) % width]) < n
    return np.where(exists, swapped, values)


@cuda.jit
def _shfl_xor_kernel(values, out, lane_mask):
    t = cuda.threadIdx.x
    out[t] = warp.shfl_xor(values[t], lane_mask)


@cuda.jit
def _reductions_kernel(values, with_nan, sums, maxes, block_sums, block_maxes):
    totals = cuda.shared.array(16, np.float64)     # one slot per warp: up to 16 warps
    t = cuda.threadIdx.x
    sums[t] = warp.warp_sum(values[t])
    maxes[t] = warp.warp_max(with_nan[t])
    block_sums[t] = warp.block_sum(totals[:cuda.blockDim.x // warp.WARP], t, values[t])
    block_maxes[t] = warp.block_max(totals[:cuda.blockDim.x // warp.WARP], t, with_nan[t])


@pytest.mark.parametrize("threads", [1, 3, 7, 13])
def test_shfl_xor_stand_in_against_the_model_on_odd_blocks(threads):
    values = rng(threads).standard_normal(threads)
    for lane_mask in range(1, warp.WARP):
        out = np.empty(threads)
        _shfl_xor_kernel[1, threads](values, out, lane_mask)
        np.testing.assert_array_equal(out, _model_shfl_xor(values, lane_mask, warp.WARP),
                                      err_msg=f"{threads} threads, lane mask {lane_mask}")


@pytest.mark.parametrize("warps", [1, 2, 3])
def test_warp_and_block_reductions_on_whole_warps(warps):
    """Every lane of a warp holds the same bits of the warp's sum (the butterfly adds the same
    pairs in every lane); the block's result reaches every thread; a NaN wins the max (one in
    the last warp but one lane, none in the others)."""
    n = warps * warp.WARP
    values = rng(20 + warps).standard_normal(n)
    with_nan = values.copy()
    with_nan[n - 2] = np.nan
    sums, maxes, block_sums, block_maxes = (np.empty(n) for _ in range(4))
    _reductions_kernel[1, n](values, with_nan, sums, maxes, block_sums, block_maxes)
    for w in range(warps):
        lanes = slice(w * warp.WARP, (w + 1) * warp.WARP)
        assert len(set(sums[lanes].tolist())) == 1, f"warp {w}: lanes differ {sums[lanes]}"
        assert_close(sums[lanes], np.full(warp.WARP, values[lanes].sum()), what=f"warp {w} sum")
        np.testing.assert_array_equal(maxes[lanes], np.full(warp.WARP, with_nan[lanes].max()))
    assert_close(block_sums, np.full(n, values.sum()), what="block sum")
    np.testing.assert_array_equal(block_maxes, np.full(n, np.nan))
