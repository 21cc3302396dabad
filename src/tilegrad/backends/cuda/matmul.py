"""Matrix multiplication, a ladder of six versions and a dispatcher: C = op(A) @ op(B) (+ bias)
(then ReLU).

``op`` transposes an operand when its flag is set, so backward passes (dA = dC @ B^T,
dB = A^T @ dC) read the stored arrays as they are and copy nothing. Leading (batch) dimensions
broadcast as in ``numpy.matmul``: the launcher computes, on the host, the offset of each batch's
A and B (0 stride where an operand is broadcast) and the kernel takes the batch from blockIdx.z.

Costs for C (M, N) with inner size K, float32 (4 bytes; 8 for float64):
    FLOPs  = 2*M*N*K per batch
    bytes  >= 4*(M*K + K*N + M*N) (each operand read once, C written once); what a version
              really moves is set by how often it re-reads A and B:
    v1 naive         every thread reads a row of A and a column of B: 2*M*N*K loads, no reuse.
    v2 shared tiles  TILE x TILE blocks stage A and B through shared memory: global loads fall
                     by TILE (2*M*N*K / TILE).
    v3 register      a block computes BM x BN outputs, each thread TM x TN of them from
       blocking      registers: shared-memory loads per FLOP fall by ~TM*TN/(TM+TN), global
                     loads are 2*M*N*K / min(BM, BN).
    v4 double        v3 plus a prefetch of the next K-tile into registers while this one is
       buffered      computed, and two shared buffers: one barrier per K-tile instead of two,
                     and global-load latency overlapped with arithmetic.
    v5 big tiles     128 x 128 blocks, 8 x 8 outputs a thread, unsigned indices, the k loop
                     unrolled, 128-bit loads and stores, split-K (``matmul_bigtile.py``): global
                     loads 2*M*N*K / 128.
    v6 warp tiles    v5 with each warp owning a 64 x 32 sub-tile and BK = 16.
    auto             picks a tile configuration and split-K from the shape (``plan``, the table
                     ``AUTO_RULES``); split-K adds 2 * splits * M*N*4 bytes of partial sums,
                     written by every slice and read by the last one of each output tile.

Kernels are made by factories (``make_matmul_kernelN``) so that tile sizes, transpositions, the
bias and ReLU epilogue and the dtype are compile-time constants; the launchers pick small tiles
under the simulator (``NUMBA_ENABLE_CUDASIM=1``) and GPU-sized ones otherwise.

Test: ``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_matmul.py`` (every version against the
NumPy backend in float64 on odd shapes); compile: ``tests/test_cuda_ptx.py``.
"""
import functools

import numpy as np
from numba import cuda, float32, float64, int32, int64

from . import matmul_bigtile as bigtile
from .common import NUMBA_DTYPES as _NUMBA_DTYPES
from .common import flat
from .common import epilogue
from .runtime import (SIMULATOR, ceil_div, constant, empty, launch, multiprocessors,
                      placeholder, xp, zeros)


# Tile sizes: (GPU, simulator). The simulator runs one Python thread per CUDA thread, so its
# tiles are tiny; the tests' odd shapes are never multiples of either.
V2_GPU_TILE = 16
V2_TILE = 4 if SIMULATOR else V2_GPU_TILE
V3_GPU = dict(BM=64, BN=64, BK=8, TM=4, TN=4)
V3 = dict(BM=8, BN=8, BK=4, TM=2, TN=2) if SIMULATOR else V3_GPU


def _loaders(trans_a, trans_b):
    """Device functions reading A[i, k] and B[k, j] from flat storage, for stored layouts
    A (M, K) or, transposed, (K, M); B (K, N) or (N, K)."""
    if trans_a:
        @cuda.jit(device=True)
        def load_a(a, off, i, k, m, kk):
            return a[off + k * m + i]
    else:
        @cuda.jit(device=True)
        def load_a(a, off, i, k, m, kk):
            return a[off + i * kk + k]
    if trans_b:
        @cuda.jit(device=True)
        def load_b(b, off, k, j, n, kk):
            return b[off + j * kk + k]
    else:
        @cuda.jit(device=True)
        def load_b(b, off, k, j, n, kk):
            return b[off + k * n + j]
    return load_a, load_b


@functools.lru_cache(maxsize=None)
def make_matmul_kernel1(trans_a, trans_b, has_bias, relu, dtype):
    """v1: one thread per output C[i, j] (x: column j, y: row i, z: batch), a K-long loop."""
    load_a, load_b = _loaders(trans_a, trans_b)
    finish = epilogue(has_bias, relu, dtype(0))
    zero = dtype(0)

    @cuda.jit
    def matmul_kernel1(a, b, bias, c, a_off, b_off, m, n, k):
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        i = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        z = cuda.blockIdx.z
        if i < m and j < n:
            acc = zero
            for p in range(k):
                acc += load_a(a, a_off[z], i, p, m, k) * load_b(b, b_off[z], p, j, n, k)
            c[z * m * n + i * n + j] = finish(acc, bias, j)
    return matmul_kernel1


@functools.lru_cache(maxsize=None)
def make_matmul_kernel2(tile, trans_a, trans_b, has_bias, relu, dtype):
    """v2: a TILE x TILE block computes a TILE x TILE tile of C; each K-step stages a TILE x TILE
    tile of A and of B in shared memory (thread (ty, tx) loads A[row, k0+tx] and B[k0+ty, col]),
    then every thread reads TILE values of each from shared memory."""
    load_a, load_b = _loaders(trans_a, trans_b)
    finish = epilogue(has_bias, relu, dtype(0))
    zero = dtype(0)

    @cuda.jit
    def matmul_kernel2(a, b, bias, c, a_off, b_off, m, n, k):
        sa = cuda.shared.array((tile, tile), dtype)
        sb = cuda.shared.array((tile, tile), dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        j = cuda.blockIdx.x * tile + tx
        i = cuda.blockIdx.y * tile + ty
        z = cuda.blockIdx.z
        acc = zero
        for k0 in range(0, k, tile):
            # Out-of-range elements load as zero, so the inner loop needs no bounds checks.
            sa[ty, tx] = load_a(a, a_off[z], i, k0 + tx, m, k) if i < m and k0 + tx < k else zero
            sb[ty, tx] = load_b(b, b_off[z], k0 + ty, j, n, k) if k0 + ty < k and j < n else zero
            cuda.syncthreads()            # the tiles are complete before anyone reads them
            for p in range(tile):
                acc += sa[ty, p] * sb[p, tx]
            cuda.syncthreads()            # everyone is done reading before the next tile lands
        if i < m and j < n:
            c[z * m * n + i * n + j] = finish(acc, bias, j)
    return matmul_kernel2


@functools.lru_cache(maxsize=None)
def make_matmul_kernel3(bm, bn, bk, tm, tn, trans_a, trans_b, has_bias, relu, dtype):
    """v3: a block of (BM/TM) x (BN/TN) threads computes a BM x BN tile of C; thread (ty, tx)
    owns the TM x TN outputs at rows ty*TM.., columns tx*TN.. of the tile, accumulated in
    registers. Per K-step the block stages A (BK x BM, stored k-major so a thread's TM values are
    adjacent) and B (BK x BN) in shared memory; each thread then reads TM + TN values per k and
    does TM*TN multiply-adds."""
    load_a, load_b = _loaders(trans_a, trans_b)
    finish = epilogue(has_bias, relu, dtype(0))
    zero = dtype(0)
    threads = (bm // tm) * (bn // tn)

    @cuda.jit
    def matmul_kernel3(a, b, bias, c, a_off, b_off, m, n, k):
        sa = cuda.shared.array((bk, bm), dtype)
        sb = cuda.shared.array((bk, bn), dtype)
        acc = cuda.local.array((tm, tn), dtype)
        ra = cuda.local.array(tm, dtype)
        rb = cuda.local.array(tn, dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * (bn // tn) + tx
        row0, col0, z = cuda.blockIdx.y * bm, cuda.blockIdx.x * bn, cuda.blockIdx.z
        for r in range(tm):
            for s in range(tn):
                acc[r, s] = zero
        for k0 in range(0, k, bk):
            # The block's threads load the BK x BM and BK x BN tiles cooperatively.
            for e in range(tid, bk * bm, threads):
                p, r = e // bm, e % bm
                i = row0 + r
                sa[p, r] = load_a(a, a_off[z], i, k0 + p, m, k) if i < m and k0 + p < k else zero
            for e in range(tid, bk * bn, threads):
                p, s = e // bn, e % bn
                j = col0 + s
                sb[p, s] = load_b(b, b_off[z], k0 + p, j, n, k) if j < n and k0 + p < k else zero
            cuda.syncthreads()
            for p in range(bk):
                for r in range(tm):
                    ra[r] = sa[p, ty * tm + r]
                for s in range(tn):
                    rb[s] = sb[p, tx * tn + s]
                for r in range(tm):
                    for s in range(tn):
                        acc[r, s] += ra[r] * rb[s]
            cuda.syncthreads()
        for r in range(tm):
            i = row0 + ty * tm + r
            for s in range(tn):
                j = col0 + tx * tn + s
                if i < m and j < n:
                    c[z * m * n + i * n + j] = finish(acc[r, s], bias, j)
    return matmul_kernel3


@functools.lru_cache(maxsize=None)
def make_matmul_kernel4(bm, bn, bk, tm, tn, trans_a, trans_b, has_bias, relu, dtype):
    """v4: v3 with double buffering. Two shared buffers per operand: while the block computes
    K-tile t from buffer t % 2, each thread has already fetched its share of tile t+1 from global
    memory into registers (the loads are in flight during the arithmetic) and stores it into the
    other buffer afterwards. One barrier per K-tile instead of two."""
    load_a, load_b = _loaders(trans_a, trans_b)
    finish = epilogue(has_bias, relu, dtype(0))
    zero = dtype(0)
    threads = (bm // tm) * (bn // tn)
    per_a = (bk * bm + threads - 1) // threads     # elements of a tile each thread loads
    per_b = (bk * bn + threads - 1) // threads

    @cuda.jit(device=True)
    def fetch(a, b, pa, pb, a_off, b_off, row0, col0, k0, tid, m, n, k):
        for q in range(per_a):
            e = tid + q * threads
            p, r = e // bm, e % bm
            i = row0 + r
            ok = e < bk * bm and i < m and k0 + p < k
            pa[q] = load_a(a, a_off, i, k0 + p, m, k) if ok else zero
        for q in range(per_b):
            e = tid + q * threads
            p, s = e // bn, e % bn
            j = col0 + s
            ok = e < bk * bn and j < n and k0 + p < k
            pb[q] = load_b(b, b_off, k0 + p, j, n, k) if ok else zero

    @cuda.jit(device=True)
    def store(sa, sb, pa, pb, buf, tid):
        for q in range(per_a):
            e = tid + q * threads
            if e < bk * bm:
                sa[buf, e // bm, e % bm] = pa[q]
        for q in range(per_b):
            e = tid + q * threads
            if e < bk * bn:
                sb[buf, e // bn, e % bn] = pb[q]

    @cuda.jit
    def matmul_kernel4(a, b, bias, c, a_off, b_off, m, n, k):
        sa = cuda.shared.array((2, bk, bm), dtype)
        sb = cuda.shared.array((2, bk, bn), dtype)
        pa = cuda.local.array(per_a, dtype)
        pb = cuda.local.array(per_b, dtype)
        acc = cuda.local.array((tm, tn), dtype)
        ra = cuda.local.array(tm, dtype)
        rb = cuda.local.array(tn, dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * (bn // tn) + tx
        row0, col0, z = cuda.blockIdx.y * bm, cuda.blockIdx.x * bn, cuda.blockIdx.z
        ao, bo = a_off[z], b_off[z]
        for r in range(tm):
            for s in range(tn):
                acc[r, s] = zero
        fetch(a, b, pa, pb, ao, bo, row0, col0, 0, tid, m, n, k)
        store(sa, sb, pa, pb, 0, tid)
        cuda.syncthreads()
        tiles = (k + bk - 1) // bk
        for t in range(tiles):
            buf = t % 2
            if t + 1 < tiles:      # next tile's loads issue before this tile's arithmetic
                fetch(a, b, pa, pb, ao, bo, row0, col0, (t + 1) * bk, tid, m, n, k)
            for p in range(bk):
                for r in range(tm):
                    ra[r] = sa[buf, p, ty * tm + r]
                for s in range(tn):
                    rb[s] = sb[buf, p, tx * tn + s]
                for r in range(tm):
                    for s in range(tn):
                        acc[r, s] += ra[r] * rb[s]
            if t + 1 < tiles:
                # The other buffer was last read in tile t-1, before the previous barrier.
                store(sa, sb, pa, pb, 1 - buf, tid)
            cuda.syncthreads()
        for r in range(tm):
            i = row0 + ty * tm + r
            for s in range(tn):
                j = col0 + tx * tn + s
                if i < m and j < n:
                    c[z * m * n + i * n + j] = finish(acc[r, s], bias, j)
    return matmul_kernel4


# ---------------------------------------------------------------- launchers

@functools.lru_cache(maxsize=256)
def _batch_offsets(a_shape, b_shape, a_mat, b_mat):
    """The broadcast batch shape, the batch count, and each batch's element offset into A and B
    as device arrays. Computed on the host and uploaded once per shape: the kernels only read
    them, and a training step repeats its shapes (an upload per call cost 0.1-0.2 ms)."""
    a_batch, b_batch = a_shape, b_shape
    batch = np.broadcast_shapes(a_batch, b_batch)
    count = int(np.prod(batch, dtype=np.int64))
    a_idx = np.broadcast_to(
        np.arange(int(np.prod(a_batch, dtype=np.int64))).reshape(a_batch), batch)
    b_idx = np.broadcast_to(
        np.arange(int(np.prod(b_batch, dtype=np.int64))).reshape(b_batch), batch)
    return batch, count, constant((a_idx.reshape(-1) * a_mat).astype(np.int64)), \
        constant((b_idx.reshape(-1) * b_mat).astype(np.int64))



def _prepare(a, b, trans_a, trans_b, bias):
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: the CUDA kernels take operands of 2 or more dimensions, got "
                         f"{a.shape} and {b.shape}")
    m, k = (a.shape[-1], a.shape[-2]) if trans_a else a.shape[-2:]
    k2, n = (b.shape[-1], b.shape[-2]) if trans_b else b.shape[-2:]
    assert k == k2, f"matmul: inner sizes {k} and {k2} differ"
    assert a.dtype == b.dtype and a.dtype in _NUMBA_DTYPES, (a.dtype, b.dtype)
    assert bias is None or bias.shape == (n,), f"matmul: bias {bias.shape} is not ({n},)"
    batch, count, a_off, b_off = _batch_offsets(tuple(a.shape[:-2]), tuple(b.shape[:-2]),
                                                m * k, k * n)
    out = empty(tuple(batch) + (m, n), a.dtype)
    bias_arr = bias if bias is not None else placeholder(a.dtype)
    return (m, n, k, count, out, a_off, b_off, flat(bias_arr), _NUMBA_DTYPES[a.dtype])


def _run(kernel, threads, tile_m, tile_n, prepared, a, b):
    """Launch a v1-v4 kernel: a grid of (N / tile_n, M / tile_m, batches) blocks of ``threads``,
    each block computing a tile_m x tile_n tile of C."""
    m, n, k, count, out, a_off, b_off, bias_arr, _ = prepared
    if m and n and count:
        grid = (ceil_div(n, tile_n), ceil_div(m, tile_m), count)
        launch(kernel, grid, threads, flat(a), flat(b), bias_arr, out.reshape(-1),
               a_off, b_off, m, n, k)
    return out


def matmul_v1(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    prepared = _prepare(a, b, trans_a, trans_b, bias)
    kernel = make_matmul_kernel1(trans_a, trans_b, bias is not None, relu, prepared[-1])
    return _run(kernel, (V2_TILE, V2_TILE), V2_TILE, V2_TILE, prepared, a, b)


def matmul_v2(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    prepared = _prepare(a, b, trans_a, trans_b, bias)
    kernel = make_matmul_kernel2(V2_TILE, trans_a, trans_b, bias is not None, relu, prepared[-1])
    return _run(kernel, (V2_TILE, V2_TILE), V2_TILE, V2_TILE, prepared, a, b)


def _run_v3(make, a, b, trans_a, trans_b, bias, relu):
    """v3 and v4: BM x BN tiles, (BN / TN) x (BM / TM) threads of TM x TN outputs each."""
    prepared, p = _prepare(a, b, trans_a, trans_b, bias), V3
    kernel = make(p["BM"], p["BN"], p["BK"], p["TM"], p["TN"], trans_a, trans_b,
                  bias is not None, relu, prepared[-1])
    threads = (p["BN"] // p["TN"], p["BM"] // p["TM"])
    return _run(kernel, threads, p["BM"], p["BN"], prepared, a, b)


def matmul_v3(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    return _run_v3(make_matmul_kernel3, a, b, trans_a, trans_b, bias, relu)


def matmul_v4(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    return _run_v3(make_matmul_kernel4, a, b, trans_a, trans_b, bias, relu)


# ---------------------------------------------------------------- v5, v6 and split-K

# Big-tile configurations (matmul_bigtile.py): block tile bm x bn, K-tile bk, warp tile wm x wn;
# bm*bn/64 threads. float64 keeps bk = 8: at 16 its shared arrays pass the 48 KB a block may
# declare statically, and its registers spill.
TILES = {
    "v5": dict(bm=128, bn=128, bk=8, wm=128, wn=128),
    "v6": dict(bm=128, bn=128, bk=16, wm=64, wn=32),
    "v5-64": dict(bm=64, bn=64, bk=8, wm=64, wn=64),     # narrow GEMMs: 4x the blocks of v5
    "v5-32": dict(bm=32, bn=64, bk=8, wm=32, wn=64),     # at most 32 rows: less waste
}
# The simulator runs one Python thread per CUDA thread: the same kernels with tiny tiles.
SIM_TILES = {
    "v5": dict(bm=16, bn=16, bk=8, wm=16, wn=16),
    "v6": dict(bm=32, bn=16, bk=16, wm=16, wn=8),
    "v5-64": dict(bm=16, bn=16, bk=8, wm=16, wn=16),
    "v5-32": dict(bm=8, bn=16, bk=8, wm=8, wn=16),
}


def _itemsize(dtype):
    """Bytes per element of a NumPy dtype or type, or of a Numba type."""
    bits = getattr(dtype, "bitwidth", None)
    return bits // 8 if bits else np.dtype(dtype).itemsize


def tile_config(name, dtype, simulator=SIMULATOR):
    """The tile sizes kernel ``name`` launches with, for ``dtype`` (numpy or numba)."""
    cfg = dict((SIM_TILES if simulator else TILES)[name])
    if _itemsize(dtype) == 8:
        cfg["bk"] = 8
    return cfg


def _address(x):
    return x.__array_interface__["data"][0] if SIMULATOR else x.data.ptr


def _vector_path(a, b, m, n, k, trans_a, trans_b):
    """Whether every row of A, B and C starts on a 16-byte boundary, so that the kernel may use
    128-bit loads and stores: aligned base pointers (an offset view may not be) and leading
    dimensions that are multiples of the vector (K for A and for B transposed, M for A
    transposed, N for B and C)."""
    vw = 16 // a.dtype.itemsize
    lda, ldb = (m if trans_a else k), (k if trans_b else n)
    return (lda % vw == 0 and ldb % vw == 0 and n % vw == 0
            and _address(a) % 16 == 0 and _address(b) % 16 == 0)


def _slices(k, splits, bk):
    """(K per slice in whole K-tiles, the slices that makes) for about ``splits`` slices."""
    chunk = ceil_div(ceil_div(max(k, 1), splits), bk) * bk
    return chunk, ceil_div(max(k, 1), chunk)


_COUNTERS = {}


def _tile_counters(tiles):
    """At least ``tiles`` int32 counters, all zero, for split-K on the current stream. They are
    kept between launches: a split-K launch leaves every counter it used at zero again (the
    block that completes a tile resets its counter), so launches in stream order can share them."""
    key = 0 if SIMULATOR else xp.cuda.get_current_stream().ptr
    buf = _COUNTERS.get(key)
    if buf is None or buf.size < tiles:
        buf = _COUNTERS[key] = zeros((max(tiles, 4096),), np.int32)
    return buf


def _launch_bigtile(version, a, b, trans_a, trans_b, bias, relu, tiles="", splits=1,
                    simulator_tiles=SIMULATOR):
    """v5/v6 with tile configuration ``tiles`` (default: the version's own) and ``splits``
    slices of K (1: no split-K)."""
    return _run_bigtile(version, a, b, trans_a, trans_b, bias, relu, tiles, splits,
                        simulator_tiles, _prepare(a, b, trans_a, trans_b, bias))


def _run_bigtile(version, a, b, trans_a, trans_b, bias, relu, tiles, splits, simulator_tiles,
                 prepared):
    """``_launch_bigtile`` once ``_prepare`` has checked the operands and made the output."""
    m, n, k, count, out, a_off, b_off, bias_arr, dt = prepared
    if not (m and n and count):
        return out
    limit = 2 ** 32
    if max(a.size, b.size, out.size * splits) >= limit:
        raise ValueError(f"matmul {version}: operands {a.shape}, {b.shape} are too large for its "
                         f"32-bit indices; use v4 (tilegrad.kernels.use('matmul', 'v4'))")
    cfg = tile_config(tiles or version, a.dtype, simulator_tiles)
    bk = cfg["bk"]
    chunk, splits = _slices(k, splits, bk)
    a, b = flat(a), flat(b)      # C-contiguous: a strided view is copied first
    vec = _vector_path(a, b, m, n, k, trans_a, trans_b)
    kernel = bigtile.make_bigtile_kernel(f"matmul_kernel{version[1:]}", cfg["bm"], cfg["bn"], bk,
                                         cfg["wm"], cfg["wn"], trans_a, trans_b,
                                         bias is not None, relu, vec, dt, splits > 1)
    grid = (ceil_div(n, cfg["bn"]), ceil_div(m, cfg["bm"]), count * splits)
    if splits > 1:      # the partial products, and a counter per output tile
        part = empty((count * splits, m, n), a.dtype).reshape(-1)
        counters = _tile_counters(grid[0] * grid[1] * count)
    else:
        part, counters = placeholder(a.dtype), placeholder(np.int32)
    launch(kernel, grid, cfg["bm"] * cfg["bn"] // 64, a, b, bias_arr,
           out.reshape(-1), part, counters, a_off, b_off, m, n, k, chunk, splits)
    return out


def matmul_v5(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    return _launch_bigtile("v5", a, b, trans_a, trans_b, bias, relu)


def matmul_v6(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    return _launch_bigtile("v6", a, b, trans_a, trans_b, bias, relu)


# ---------------------------------------------------------------- auto: shape-aware dispatch

# Read top to bottom; the first rule whose test holds picks the kernel. "blocks" is the grid a
# tile configuration makes (ceil(M/bm) * ceil(N/bn) * batch); a wave is the blocks the GPU holds
# at once: multiprocessors x RESIDENT[tiles], the blocks of that configuration one SM can hold
# (limited by registers, as build/sass_report.md shows: 151-165 registers a thread for the
# float32 v5/v6 kernels). Split-K cuts K into slices until the grid makes a wave, keeping at
# least SPLIT_MIN_TILES K-tiles a slice.
AUTO_RULES = (
    # (tiles,  kernel, when)
    ("v6", "v6", "blocks(128x128 tiles) make at least one wave"),
    ("v5-64", "v5", "blocks(64x64 tiles) make at least one wave"),
    ("v5-32", "v5", "M <= 32: 32x64 tiles, split-K (at most SPLIT_MAX) towards one wave"),
    ("v5-64", "v5", "otherwise: 64x64 tiles, split-K (at most SPLIT_MAX) towards one wave"),
)
RESIDENT = {"v5": 1, "v6": 1, "v5-64": 6, "v5-32": 8}     # float32 blocks per SM, sm_90
SPLIT_MIN_TILES = 4
# The last slice of an output tile adds every slice's partial: splits x 64 loads a thread, in one
# block per tile. Past 16 slices that serial sum costs more than the K-tiles it saves.
SPLIT_MAX = 16


def plan(m, n, k, count=1, dtype=np.float32, sms=None, simulator=SIMULATOR):
    """``(tiles, kernel version, splits)`` that ``auto`` runs for an (M, N, K) GEMM, ``count``
    batches: the rules of AUTO_RULES applied to this shape and the GPU's multiprocessors."""
    sms = multiprocessors() if sms is None else sms
    return _plan(m, n, k, count, _itemsize(dtype), sms, simulator)


@functools.lru_cache(maxsize=1024)
def _plan(m, n, k, count, itemsize, sms, simulator):
    """``plan``, cached: auto asks on every call, and a training step repeats its shapes."""
    dtype = np.float64 if itemsize == 8 else np.float32

    def blocks(tiles):
        cfg = tile_config(tiles, dtype, simulator)
        return ceil_div(m, cfg["bm"]) * ceil_div(n, cfg["bn"]) * count

    def wave(tiles):
        return sms * RESIDENT[tiles]

    if blocks("v6") >= wave("v6"):
        return "v6", "v6", 1
    if blocks("v5-64") >= wave("v5-64"):
        return "v5-64", "v5", 1
    tiles = "v5-32" if m <= tile_config("v5-32", dtype, simulator)["bm"] else "v5-64"
    if _itemsize(dtype) == 8:
        return tiles, "v5", 1      # float64's split-K kernel would spill (255 registers)
    k_tiles = ceil_div(k, tile_config(tiles, dtype, simulator)["bk"])
    want = ceil_div(wave(tiles), max(blocks(tiles), 1))   # no blocks: an empty output
    return tiles, "v5", max(1, min(want, k_tiles // SPLIT_MIN_TILES, SPLIT_MAX))


def matmul_auto(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    """The kernel that suits the shape (``plan``): big tiles for big GEMMs; smaller tiles, then
    deterministic split-K, when the grid would fill less than a wave of the GPU."""
    prepared = _prepare(a, b, trans_a, trans_b, bias)
    m, n, k, count = prepared[:4]
    tiles, version, splits = plan(m, n, k, count, a.dtype)
    return _run_bigtile(version, a, b, trans_a, trans_b, bias, relu, tiles, splits, SIMULATOR,
                        prepared)


VERSIONS = {"v1": matmul_v1, "v2": matmul_v2, "v3": matmul_v3, "v4": matmul_v4,
            "v5": matmul_v5, "v6": matmul_v6, "auto": matmul_auto}
KERNEL_FAMILIES = {"matmul": (VERSIONS, "auto")}
# The kernels (PTX_SIGNATURES names) of a version not all named matmul_kernel<N>: auto runs v5's
# and v6's (``tilegrad check`` compiles a version's kernels).
VERSION_KERNELS = {"auto": ("matmul_kernel5", "matmul_kernel6")}


# The compile check's list of the v1-v4 style kernels (operands, bias, C, batch offsets, m, n, k):
# name -> (the factory at the GPU's tile sizes, taking trans_a, trans_b, has_bias, relu, dtype;
# threads per block). A new kernel of that signature is checked once it has a line here.
PTX_KERNELS = {
    "matmul_kernel1": (make_matmul_kernel1, V2_GPU_TILE * V2_GPU_TILE),
    "matmul_kernel2": (functools.partial(make_matmul_kernel2, V2_GPU_TILE),
                       V2_GPU_TILE * V2_GPU_TILE),
    "matmul_kernel3": (functools.partial(make_matmul_kernel3, *V3_GPU.values()),
                       V3_GPU["BM"] * V3_GPU["BN"] // (V3_GPU["TM"] * V3_GPU["TN"])),
    "matmul_kernel4": (functools.partial(make_matmul_kernel4, *V3_GPU.values()),
                       V3_GPU["BM"] * V3_GPU["BN"] // (V3_GPU["TM"] * V3_GPU["TN"])),
}


def _ptx_signatures():
    """Every kernel the launchers make on a GPU, for the PTX compile check, and each one's threads
    per block: v1-v4 with each transposition and the bias-ReLU epilogue, in float32 and float64;
    v5 and v6 likewise on the vector path, and on the scalar path without the epilogue; auto's
    64x64 and 32x64 tiles in float32."""
    sigs, threads = [], {}

    def add(name, kernel, sig, block):
        sigs.append((name, kernel, sig))
        threads[name] = block

    for dt in (float32, float64):
        arr, idx = dt[::1], int64[::1]
        sig = (arr, arr, arr, arr, idx, idx, int64, int64, int64)
        big = (arr, arr, arr, arr, arr, int32[::1], idx, idx) + (int64,) * 5
        for ta in (False, True):
            for tb in (False, True):
                for bias_relu in ((False, False), (True, True)):
                    tag = f"{dt}{'_tA' if ta else ''}{'_tB' if tb else ''}" \
                          f"{'_bias_relu' if bias_relu[0] else ''}"
                    for name, (make, block) in PTX_KERNELS.items():
                        add(f"{name}_{tag}", make(ta, tb, *bias_relu, dt), sig, block)
                    for version in ("v5", "v6"):
                        c = tile_config(version, dt, simulator=False)
                        for vec in ((True, False) if not bias_relu[0] else (True,)):
                            kernel = bigtile.make_bigtile_kernel(
                                f"matmul_kernel{version[1:]}", *c.values(), ta, tb, *bias_relu,
                                vec, dt)
                            add(f"matmul_kernel{version[1:]}_{tag}{'' if vec else '_scalar'}",
                                kernel, big, c["bm"] * c["bn"] // 64)
        if dt == float32:       # auto's narrow tiles, unsplit and split
            for tiles in ("v5-64", "v5-32"):
                c = tile_config(tiles, dt, simulator=False)
                block = c["bm"] * c["bn"] // 64
                add(f"matmul_kernel5_{tiles[3:]}_{dt}_tB", bigtile.make_bigtile_kernel(
                    "matmul_kernel5", *c.values(), False, True, False, False, True, dt), big,
                    block)
                for ta, tb, bias_relu, vec in ((False, False, False, True),
                                               (True, False, False, True),
                                               (False, True, False, True),
                                               (True, True, False, True),
                                               (False, True, False, False),
                                               (False, True, True, True)):
                    tag = f"{'_tA' if ta else ''}{'_tB' if tb else ''}" \
                          f"{'_bias_relu' if bias_relu else ''}{'' if vec else '_scalar'}"
                    add(f"matmul_kernel5_{tiles[3:]}_splitk_{dt}{tag}",
                        bigtile.make_bigtile_kernel("matmul_kernel5", *c.values(), ta, tb,
                                                    bias_relu, bias_relu, vec, dt, True),
                        big, block)
    return sigs, threads


def _sass_gemm():
    """For the SASS report: each float32 GEMM kernel's grid at the reference models' shapes."""
    from tilegrad.bench.kernels import _MODEL_MATMULS
    shapes = [(label, m, n, k) for label, m, n, k, _ in _MODEL_MATMULS] + \
        [("square 4096", 4096, 4096, 4096)]
    out = {}
    v14 = {"matmul_kernel2_float32": 16, "matmul_kernel3_float32": 64,
           "matmul_kernel4_float32": 64}
    for name, tile in v14.items():
        out[name] = [(f"{label} {m}x{n}x{k}", ceil_div(m, tile) * ceil_div(n, tile))
                     for label, m, n, k in shapes]
    for name, tiles in (("matmul_kernel5_float32", "v5"), ("matmul_kernel6_float32", "v6"),
                        ("matmul_kernel5_64_float32_tB", "v5-64"),
                        ("matmul_kernel5_32_float32_tB", "v5-32")):
        c = TILES[tiles]
        out[name] = [(f"{label} {m}x{n}x{k}", ceil_div(m, c["bm"]) * ceil_div(n, c["bn"]))
                     for label, m, n, k in shapes]
    # What auto runs, split-K slices included.
    for label, m, n, k in shapes:
        tiles, version, splits = plan(m, n, k, sms=132, simulator=False)
        if tiles == "v6":
            name = "matmul_kernel6_float32"
        else:
            name = f"matmul_kernel5_{tiles[3:]}_{'splitk_' if splits > 1 else ''}float32_tB"
        c = TILES[tiles]
        splits = _slices(k, splits, c["bk"])[1]
        blocks = ceil_div(m, c["bm"]) * ceil_div(n, c["bn"]) * splits
        out.setdefault(name, []).append((f"auto: {label} {m}x{n}x{k}, split-K {splits}", blocks))
    return out


if SIMULATOR:
    PTX_SIGNATURES, LAUNCH_BLOCKS, SASS_GEMM = [], {}, {}
else:
    PTX_SIGNATURES, LAUNCH_BLOCKS = _ptx_signatures()
    SASS_GEMM = _sass_gemm()
# The float32 kernel that auto runs on large GEMMs (the SASS report checks its hot loop).
SASS_DEFAULT = "matmul_kernel6_float32"
