"""The CUDA matmul ladder in Numba's simulator: every version, transposition, epilogue and
batch broadcast against the NumPy backend in float64, on odd shapes (never tile multiples)."""
import os

import numpy as np
import pytest

from tilegrad.testing import assert_close, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as ref          # noqa: E402
from tilegrad.backends.cuda import matmul as mm     # noqa: E402

SHAPES = [(1, 1, 1), (3, 7, 5), (7, 3, 33), (9, 11, 2)]   # (M, N, K)


def _operands(m, n, k, trans_a, trans_b, dtype, seed=0, batch_a=(), batch_b=()):
    r = rng(seed)
    a = r.standard_normal(batch_a + ((k, m) if trans_a else (m, k))).astype(dtype)
    b = r.standard_normal(batch_b + ((n, k) if trans_b else (k, n))).astype(dtype)
    return a, b


@pytest.mark.parametrize("version", list(mm.VERSIONS))
@pytest.mark.parametrize("m,n,k", SHAPES, ids=str)
@pytest.mark.parametrize("trans_a,trans_b",
                         [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_versions_against_numpy_float64(version, m, n, k, trans_a, trans_b):
    a, b = _operands(m, n, k, trans_a, trans_b, np.float64, seed=m + n + k)
    got = mm.VERSIONS[version](a, b, trans_a, trans_b)
    assert_close(got, ref.matmul(a, b, trans_a, trans_b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("version", list(mm.VERSIONS))
def test_fused_bias_relu_and_float32(version):
    a, b = _operands(7, 5, 9, False, True, np.float32, seed=3)
    bias = rng(4).standard_normal(5).astype(np.float32)
    got = mm.VERSIONS[version](a, b, False, True, bias, True)
    assert got.dtype == np.float32
    want = ref.matmul(a.astype(np.float64), b.astype(np.float64), False, True,
                      bias.astype(np.float64), True)
    assert (want == 0).any() and (want > 0).any()          # the ReLU did something
    assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("version", list(mm.VERSIONS))
def test_batched_and_broadcast_batches(version):
    a, b = _operands(3, 5, 7, False, False, np.float64, seed=5, batch_a=(2, 1), batch_b=(3,))
    got = mm.VERSIONS[version](a, b)
    assert got.shape == (2, 3, 3, 5)
    assert_close(got, ref.matmul(a, b), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- v5, v6, auto

BIG = ["v5", "v6", "auto"]
# Shapes over several of the simulator's tiles; the second and third take the vector path
# (K, N and, for A transposed, M multiples of 4), the others the scalar one.
BIG_SHAPES = [(33, 17, 5), (36, 20, 12), (20, 24, 40), (129, 3, 7), (1, 33, 9)]


@pytest.mark.parametrize("version", BIG)
@pytest.mark.parametrize("m,n,k", BIG_SHAPES, ids=str)
@pytest.mark.parametrize("trans_a,trans_b",
                         [(False, False), (True, False), (False, True), (True, True)])
def test_big_tiles_on_odd_shapes(version, m, n, k, trans_a, trans_b):
    a, b = _operands(m, n, k, trans_a, trans_b, np.float64, seed=m * n + k)
    got = mm.VERSIONS[version](a, b, trans_a, trans_b)
    assert_close(got, ref.matmul(a, b, trans_a, trans_b), rtol=1e-12, atol=1e-12)


def test_the_vector_path_is_taken_only_where_rows_are_aligned():
    a, b = _operands(8, 12, 16, False, False, np.float32)
    assert mm._vector_path(a, b, 8, 12, 16, False, False)
    assert not mm._vector_path(a, b[:, :11].copy(), 8, 11, 16, False, False)      # N odd
    assert not mm._vector_path(a[:, :15].copy(), b[:15], 8, 12, 15, False, False)  # K odd
    flat = np.zeros(8 * 16 + 1, np.float32)
    shifted = flat[1:].reshape(8, 16)                    # 4 bytes past an aligned start
    assert not mm._vector_path(shifted, b, 8, 12, 16, False, False)


@pytest.mark.parametrize("version", list(mm.VERSIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_offset_and_strided_views(version, dtype):
    """An offset view (data not 16-byte aligned) must not take the vector path, and a
    non-contiguous view (a transpose, a slice) is read as its values."""
    r = rng(11)
    m, n, k = 12, 16, 20
    flat = r.standard_normal(m * k + 3).astype(dtype)
    a = flat[3:].reshape(m, k)                           # offset by 3 elements
    b = r.standard_normal((2 * k, n + 5)).astype(dtype)[::2, 5:]     # strided rows, offset
    want = ref.matmul(a.astype(np.float64), b.astype(np.float64))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert_close(mm.VERSIONS[version](a, b), want, rtol=tol, atol=tol)
    at = np.ascontiguousarray(a.T).T                     # Fortran-ordered: not C-contiguous
    assert_close(mm.VERSIONS[version](at, b), want, rtol=tol, atol=tol)
    every_other = np.repeat(a, 2, axis=1)[:, ::2]        # one stride throughout: flattens to a
    assert every_other.reshape(-1).base is not None      # strided view, not a copy
    assert_close(mm.VERSIONS[version](every_other, b), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("version", ["v5", "v6"])
@pytest.mark.parametrize("splits", [1, 2, 3, 40])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_split_k_forced(version, splits, trans_a, trans_b):
    """Split-K on and off, with the bias and ReLU applied after the slices' sum; 40 asks for
    more slices than K-tiles (the launcher makes one per K-tile)."""
    a, b = _operands(19, 24, 37, trans_a, trans_b, np.float64, seed=splits, batch_a=(2,),
                     batch_b=(2,))
    bias = rng(9).standard_normal(24)
    got = mm._launch_bigtile(version, a, b, trans_a, trans_b, bias, True, splits=splits)
    want = ref.matmul(a, b, trans_a, trans_b, bias, True)
    assert (want == 0).any() and (want > 0).any()
    assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("version", BIG)
def test_big_tiles_float32_with_epilogue_and_broadcast_batches(version):
    a, b = _operands(9, 12, 16, False, True, np.float32, seed=3, batch_a=(2, 1), batch_b=(3,))
    bias = rng(4).standard_normal(12).astype(np.float32)
    got = mm.VERSIONS[version](a, b, False, True, bias, True)
    assert got.dtype == np.float32 and got.shape == (2, 3, 9, 12)
    want = ref.matmul(a.astype(np.float64), b.astype(np.float64), False, True,
                      bias.astype(np.float64), True)
    assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("version", BIG)
@pytest.mark.parametrize("n", [2, 6, 10])
def test_float64_vector_path_when_n_is_2_mod_4(version, n):
    """float64 rows are 16-byte aligned for every even N, but a thread's 4 columns then end past
    N: the second 2-wide store must be skipped (it wrote out of bounds before)."""
    a, b = _operands(3, n, 4, False, True, np.float64, seed=n)
    bias = rng(n).standard_normal(n)
    assert mm._vector_path(a, b, 3, n, 4, False, True)
    assert_close(mm.VERSIONS[version](a, b, False, True), ref.matmul(a, b, False, True),
                 rtol=1e-12, atol=1e-12)
    assert_close(mm.VERSIONS[version](a, b, False, True, bias, True),   # bias read only inside
                 ref.matmul(a, b, False, True, bias, True), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n", [(0, 2), (3, 0), (0, 0)])
def test_empty_output_on_auto(m, n, dtype):
    """auto planned an empty output by dividing by its zero blocks."""
    a, b = _operands(m, n, 3, False, True, dtype)
    got = mm.VERSIONS["auto"](a, b, False, True)
    assert got.shape == (m, n)


def test_empty_inner_dimension_gives_zeros_plus_bias():
    a, b = np.zeros((3, 0)), np.zeros((0, 5))
    bias = rng(2).standard_normal(5)
    for version in BIG:
        assert_close(mm.VERSIONS[version](a, b, bias=bias), np.broadcast_to(bias, (3, 5)))


def test_auto_plan_on_the_reference_shapes():
    """The dispatch table on an H200's 132 multiprocessors with the GPU's tiles: big tiles where
    they fill a wave, 64x64 tiles next, split-K for narrow GEMMs with a long K."""
    def plan(m, n, k):
        return mm.plan(m, n, k, sms=132, simulator=False)
    assert plan(4096, 4096, 4096) == ("v6", "v6", 1)              # 1024 blocks
    assert plan(700, 10000, 256) == ("v6", "v6", 1)               # 474 blocks
    assert plan(4096, 64, 4096)[:2] == ("v5-64", "v5")            # 32 big blocks, 64 small
    tiles, version, splits = plan(64, 128, 784)                   # MLP fc1: 2 blocks of 64x64
    assert (tiles, version) == ("v5-64", "v5") and splits == mm.SPLIT_MAX        # not 24
    tiles, version, splits = plan(20, 1024, 256)                  # LM step: 16 blocks of 32x64
    assert (tiles, version) == ("v5-32", "v5") and splits == 256 // 8 // mm.SPLIT_MIN_TILES
    tiles, version, splits = plan(700, 1024, 128)                 # 176 blocks: split to a wave
    assert (tiles, version) == ("v5-64", "v5") and 176 * splits <= 132 * mm.RESIDENT["v5-64"]
    assert plan(64, 64, 16) == ("v5-64", "v5", 1)                 # too short a K to split
    assert plan(2048, 2048, 2048) == ("v6", "v6", 1)              # 256 blocks
    # float64 never splits: its split-K kernel would spill.
    assert mm.plan(64, 128, 784, dtype=np.float64, sms=132, simulator=False)[2] == 1
    # Every rule's kernel is a declared version, and every tiling has a residency.
    assert {kernel for _, kernel, _ in mm.AUTO_RULES} <= set(mm.VERSIONS)
    assert {tiles for tiles, _, _ in mm.AUTO_RULES} <= set(mm.RESIDENT) == set(mm.TILES)


# The GPU's own tile configurations, run in the simulator on odd shapes of at least two blocks
# in each direction (256 simulated threads a block: seconds each).
GPU_TILE_CASES = [
    ("v5", "v5", (136, 132, 20), (False, True), np.float32, 1),   # vector path
    ("v6", "v6", (131, 129, 13), (True, False), np.float32, 1),   # scalar path
    ("v6", "v6", (132, 136, 36), (True, True), np.float64, 1),
    ("v5", "v5-64", (67, 70, 45), (False, False), np.float32, 3),
    ("v5", "v5-32", (33, 68, 40), (False, True), np.float32, 2),
]


@pytest.mark.gpu_tiles
@pytest.mark.parametrize("version,tiles,shape,trans,dtype,splits", GPU_TILE_CASES,
                         ids=[f"{c[1]}-{c[4].__name__}-split{c[5]}" for c in GPU_TILE_CASES])
def test_gpu_tile_configurations_in_the_simulator(version, tiles, shape, trans, dtype, splits):
    m, n, k = shape
    a, b = _operands(m, n, k, *trans, dtype, seed=k)
    bias = rng(5).standard_normal(n).astype(dtype)
    got = mm._launch_bigtile(version, a, b, *trans, bias, True, tiles, splits,
                             simulator_tiles=False)
    want = ref.matmul(a.astype(np.float64), b.astype(np.float64), *trans,
                      bias.astype(np.float64), True)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert_close(got, want, rtol=tol, atol=tol)


def test_split_k_leaves_its_counters_at_zero_and_repeats_bit_for_bit():
    """Split-K's last slice of each tile resets the tile's counter: the next launch finds them
    all at zero and computes the same bits (the slices are summed in slice order, whichever
    block finishes last)."""
    a, b = _operands(21, 18, 45, False, False, np.float64, seed=7)
    first = mm._launch_bigtile("v5", a, b, False, False, None, False, splits=3)
    assert not mm._tile_counters(1).any()
    again = mm._launch_bigtile("v5", a, b, False, False, None, False, splits=3)
    assert np.array_equal(first, again)
    assert_close(first, ref.matmul(a, b), rtol=1e-12, atol=1e-12)


@pytest.mark.gpu_tiles
@pytest.mark.parametrize("version,shape", [("v1", (33, 35, 21)), ("v2", (33, 35, 21)),
                                           ("v3", (65, 70, 19)), ("v4", (65, 70, 19))])
def test_v1_to_v4_with_the_gpu_tiles(version, shape, monkeypatch):
    """v1-v4 with the tile sizes they launch with on a GPU (16 x 16 threads; 64 x 64 tiles of
    4 x 4 a thread for v3 and v4), over two blocks or more in each direction."""
    monkeypatch.setattr(mm, "V2_TILE", 16)
    monkeypatch.setattr(mm, "V3", dict(BM=64, BN=64, BK=8, TM=4, TN=4))
    m, n, k = shape
    a, b = _operands(m, n, k, True, False, np.float64, seed=k)
    bias = rng(6).standard_normal(n)
    got = mm.VERSIONS[version](a, b, True, False, bias, True)
    assert_close(got, ref.matmul(a, b, True, False, bias, True), rtol=1e-12, atol=1e-12)
