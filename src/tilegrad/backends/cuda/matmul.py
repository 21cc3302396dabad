"""Matrix multiplication, a ladder of four versions: C = op(A) @ op(B) (+ bias) (then ReLU).

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

Kernels are made by factories (``make_matmul_kernelN``) so that tile sizes, transpositions, the
bias and ReLU epilogue and the dtype are compile-time constants; the launchers pick small tiles
under the simulator (``NUMBA_ENABLE_CUDASIM=1``) and GPU-sized ones otherwise.

Test: ``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_matmul.py`` (every version against the
NumPy backend in float64 on odd shapes); compile: ``tests/test_cuda_ptx.py``.
"""
import functools

import numpy as np
from numba import cuda, float32, float64, int64

from .runtime import SIMULATOR, ceil_div, empty, from_numpy, launch, placeholder

_NUMBA_DTYPES = {np.dtype("float32"): float32, np.dtype("float64"): float64}

# Tile sizes: (GPU, simulator). The simulator runs one Python thread per CUDA thread, so its
# tiles are tiny; the tests' odd shapes are never multiples of either.
V2_TILE = 4 if SIMULATOR else 16
V3 = dict(BM=8, BN=8, BK=4, TM=2, TN=2) if SIMULATOR else dict(BM=64, BN=64, BK=8, TM=4, TN=4)


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


def _epilogue(has_bias, relu, dtype):
    """Device function applied to each finished output: + bias[j], then max(., 0)."""
    zero = dtype(0)

    @cuda.jit(device=True)
    def finish(acc, bias, j):
        if has_bias:
            acc += bias[j]
        if relu and acc < zero:
            acc = zero
        return acc
    return finish


@functools.lru_cache(maxsize=None)
def make_matmul_kernel1(trans_a, trans_b, has_bias, relu, dtype):
    """v1: one thread per output C[i, j] (x: column j, y: row i, z: batch), a K-long loop."""
    load_a, load_b = _loaders(trans_a, trans_b)
    finish = _epilogue(has_bias, relu, dtype)
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
    finish = _epilogue(has_bias, relu, dtype)
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
    finish = _epilogue(has_bias, relu, dtype)
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
    finish = _epilogue(has_bias, relu, dtype)
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
    a_idx = np.broadcast_to(np.arange(int(np.prod(a_batch, dtype=np.int64))).reshape(a_batch), batch)
    b_idx = np.broadcast_to(np.arange(int(np.prod(b_batch, dtype=np.int64))).reshape(b_batch), batch)
    return batch, count, from_numpy((a_idx.reshape(-1) * a_mat).astype(np.int64)), \
        from_numpy((b_idx.reshape(-1) * b_mat).astype(np.int64))



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
    return (m, n, k, count, out, a_off, b_off, bias_arr.reshape(-1), _NUMBA_DTYPES[a.dtype])


def _launch(version, a, b, trans_a, trans_b, bias, relu):
    m, n, k, count, out, a_off, b_off, bias_arr, dt = _prepare(a, b, trans_a, trans_b, bias)
    has_bias = bias is not None
    if version == 1:
        kernel, threads, tile_m, tile_n = make_matmul_kernel1(trans_a, trans_b, has_bias, relu, dt), \
            (V2_TILE, V2_TILE), V2_TILE, V2_TILE
    elif version == 2:
        kernel, threads, tile_m, tile_n = make_matmul_kernel2(V2_TILE, trans_a, trans_b, has_bias,
                                                              relu, dt), \
            (V2_TILE, V2_TILE), V2_TILE, V2_TILE
    else:
        make = make_matmul_kernel3 if version == 3 else make_matmul_kernel4
        p = V3
        kernel = make(p["BM"], p["BN"], p["BK"], p["TM"], p["TN"], trans_a, trans_b, has_bias,
                      relu, dt)
        threads, tile_m, tile_n = (p["BN"] // p["TN"], p["BM"] // p["TM"]), p["BM"], p["BN"]
    if m and n and count:
        grid = (ceil_div(n, tile_n), ceil_div(m, tile_m), count)
        launch(kernel, grid, threads, a.reshape(-1), b.reshape(-1), bias_arr, out.reshape(-1),
               a_off, b_off, m, n, k)
    return out


def matmul_v1(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    return _launch(1, a, b, trans_a, trans_b, bias, relu)


def matmul_v2(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    return _launch(2, a, b, trans_a, trans_b, bias, relu)


def matmul_v3(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    return _launch(3, a, b, trans_a, trans_b, bias, relu)


def matmul_v4(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    return _launch(4, a, b, trans_a, trans_b, bias, relu)


VERSIONS = {"v1": matmul_v1, "v2": matmul_v2, "v3": matmul_v3, "v4": matmul_v4}


def _ptx_signatures():
    """Every kernel the launchers make on a GPU, for the PTX compile check: each version, with
    each transposition and the bias-ReLU epilogue, in float32 and float64."""
    sigs = []
    p = dict(BM=64, BN=64, BK=8, TM=4, TN=4)
    for dt in (float32, float64):
        arr, idx = dt[::1], int64[::1]
        sig = (arr, arr, arr, arr, idx, idx, int64, int64, int64)
        for ta in (False, True):
            for tb in (False, True):
                for bias_relu in ((False, False), (True, True)):
                    tag = f"{dt}{'_tA' if ta else ''}{'_tB' if tb else ''}" \
                          f"{'_bias_relu' if bias_relu[0] else ''}"
                    sigs += [
                        (f"matmul_kernel1_{tag}", make_matmul_kernel1(ta, tb, *bias_relu, dt), sig),
                        (f"matmul_kernel2_{tag}", make_matmul_kernel2(16, ta, tb, *bias_relu, dt), sig),
                        (f"matmul_kernel3_{tag}", make_matmul_kernel3(*p.values(), ta, tb, *bias_relu, dt), sig),
                        (f"matmul_kernel4_{tag}", make_matmul_kernel4(*p.values(), ta, tb, *bias_relu, dt), sig),
                    ]
    return sigs


PTX_SIGNATURES = [] if SIMULATOR else _ptx_signatures()
