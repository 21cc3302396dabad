// The blocked GEMM (tg::gemm) that matmul, the convolutions and the LSTM run on, and the
// bindings matmul, matmul_batched and gemm.
//
//   C (m x n) = op(A) (m x k) @ op(B) (k x n)  [+ C]  [+ bias per column]  [then ReLU]
//
// FLOPs: 2*m*n*k. Bytes: at least (m*k + k*n + m*n)*sizeof(T) (2*m*n when adding to C); with the
// blocking below each thread reads its part of op(B) once and op(A) once per NC block of columns
// (plus writing and re-reading the packed copies), and C once per KC block of depth. At 1024^3
// that is ~2.1 GFLOP for ~12 MB: ~180 FLOP per byte, far into the compute-bound regime; the
// micro-kernel (gemm_isa.cpp: 28 FMAs per 16 loads on AVX-512) is what sets the speed.
//
// The structure is Goto's / BLIS's (K. Goto, R. van de Geijn, "Anatomy of high-performance
// matrix multiplication", 2008). Five loops around a micro-kernel (gemm_isa.cpp) that keeps an
// MR x NR tile of C in registers:
//
//   for jc in 0..n step NC:                 B block: op(B)[pc:pc+KC, jc:jc+NC], packed once
//     for pc in 0..k step KC:                 per (jc, pc)                       (lives in L3)
//       pack op(B) block into NR-column slivers (kc x NR each, row by row)
//       for ic in 0..m step MC:             A block: op(A)[ic:ic+MC, pc:pc+KC]   (lives in L2)
//         pack op(A) block into MR-row slivers (kc x MR each, column by column)
//         for jr in 0..nc step NR:          one B sliver, kc x NR                (lives in L1)
//           for ir in 0..mc step MR:        one A sliver, kc x MR, streamed from L2
//             micro-kernel: C[ic+ir : +MR, jc+jr : +NR] (+)= A sliver @ B sliver
//
// Packing is what lets one micro-kernel serve all four (trans_a, trans_b) cases: it copies
// op(A) and op(B) into the exact order the kernel reads them (contiguous, aligned, zero-padded
// to whole slivers), so a transposed operand only changes how the packing loop indexes it. The
// packed copies also make the kernel's reads sequential, whatever lda and ldb are.
//
// Block sizes (in elements of T; kc, mc are then evened out so that the last block is not a
// sliver: k = 300 runs as 2 x 150, not 256 + 44):
//   KC = 256: the depth of one rank-kc update. The B sliver, KC x NR, stays in L1 while the
//        kernel walks down the A slivers: 256 x 32 floats = 32 KB (AVX-512; L1d is 32-48 KB),
//        and long enough that loading/storing the C tile once per KC block is negligible.
//   MC: the A block, MC x KC, stays in L2 (1-2 MB per core on recent x86); we give it ~384 KB,
//        so MC = 384 KB / (KC * sizeof(T)) rounded down to a multiple of MR (378 rows for float).
//   NC: the B block, KC x NC, stays in the shared L3; ~4 MB, NC = 4096 floats (2048 doubles),
//        a multiple of NR. Every A block is multiplied by the whole B block before the next.
//
// Threads (OpenMP, one parallel region per call): C is cut along the larger of m and n, in whole
// slivers (MR rows or NR columns), into one piece per thread, or, when that dimension is longer
// than a few thousand, into pieces of ~CHUNK = 1024 that the threads take in turn (dynamic
// schedule), so that a thread slowed down by another process on its core does fewer of them.
// Each thread runs the five loops above on its piece with its own packed buffers: no barriers, no
// shared writes. Cutting n repeats the packing of op(A) for every piece (m*k values each),
// cutting m that of op(B) (k*n each); cutting the larger dimension repeats the smaller operand,
// which is cheap next to the 2*m*n*k/pieces FLOPs of a piece (about 1/CHUNK of the work per
// element packed). Both threads stay busy for tall (700 x 128), wide (64 x 1000) and small-m
// (20 x 1024: two pieces of 512 columns) shapes alike. The K blocks depend on k only, and each C
// element is summed by one thread in the same order whatever the cut, so results are
// bit-identical for any thread count and schedule. Small products (< 2^19 FLOPs) and calls from
// inside a parallel region (a convolution running an image per thread) run on the calling thread.
//
// The epilogue (accumulate, bias, ReLU) is fused into the kernel's store of the C tile: the
// first K block stores acc (or C + acc when accumulating), later blocks add, the last adds bias
// and applies ReLU as `s < 0 ? 0 : s` (NaN stays NaN, as np.maximum). Edge tiles (m or n not a
// multiple of MR or NR): the last rows run a kernel instance for that many rows, the last
// columns go through a scratch tile whose valid part is then copied out.
#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <new>

namespace tg {

// ------------------------------------------------------------------ the micro-kernels
// Defined in gemm_isa.cpp, once per vector width (each in its own namespace).
#define TG_DECLARE_KERNELS(NS)                                                                    \
    namespace NS {                                                                                \
    extern const int mr_f32, nr_f32, mr_f64, nr_f64;                                              \
    void kernel_f32(int rows, index_t kc, const float* a, const float* b, float* c, index_t ldc,  \
                    bool load_c, const float* bias, bool relu);                                   \
    void kernel_f64(int rows, index_t kc, const double* a, const double* b, double* c,            \
                    index_t ldc, bool load_c, const double* bias, bool relu);                     \
    }
#if defined(__x86_64__) || defined(_M_X64)
#define TG_GEMM_X86 1
TG_DECLARE_KERNELS(gemm_avx512)
TG_DECLARE_KERNELS(gemm_avx2)
#endif
TG_DECLARE_KERNELS(gemm_portable)

namespace {   // what follows, up to tg::gemm, is this file's own (no clash with other families)

template <class T> struct MicroKernel {
    int mr, nr;
    // rows (1..mr) of an mr x nr tile
    void (*run)(int rows, index_t kc, const T* a, const T* b, T* c, index_t ldc, bool load_c,
                const T* bias, bool relu);
};

// The kernel of the vector width tg::simd() names now.
template <class T> MicroKernel<T> micro_kernel();
template <> MicroKernel<float> micro_kernel<float>() {
#ifdef TG_GEMM_X86
    if (simd() == Simd::avx512) return {gemm_avx512::mr_f32, gemm_avx512::nr_f32, &gemm_avx512::kernel_f32};
    if (simd() == Simd::avx2) return {gemm_avx2::mr_f32, gemm_avx2::nr_f32, &gemm_avx2::kernel_f32};
#endif
    return {gemm_portable::mr_f32, gemm_portable::nr_f32, &gemm_portable::kernel_f32};
}
template <> MicroKernel<double> micro_kernel<double>() {
#ifdef TG_GEMM_X86
    if (simd() == Simd::avx512) return {gemm_avx512::mr_f64, gemm_avx512::nr_f64, &gemm_avx512::kernel_f64};
    if (simd() == Simd::avx2) return {gemm_avx2::mr_f64, gemm_avx2::nr_f64, &gemm_avx2::kernel_f64};
#endif
    return {gemm_portable::mr_f64, gemm_portable::nr_f64, &gemm_portable::kernel_f64};
}

// ------------------------------------------------------------------ blocking

constexpr index_t KC = 256;
constexpr index_t A_BLOCK_BYTES = 384 * 1024;       // the A block in L2
constexpr index_t B_BLOCK_BYTES = 4 * 1024 * 1024;  // the B block in L3
// Below this, one thread: starting and joining an OpenMP team costs ~10 us here, the time one
// thread takes for ~2 MFLOP at full speed; 2^19 FLOPs keeps the MLP's 64 x 10 x 128 products
// (3 us on one thread) serial and still splits 64 x 10 x 1000 (1.3 MFLOP at the low efficiency
// of a 10-column product: 32 us on one thread, 25 us on two).
constexpr index_t SERIAL_FLOPS = index_t{1} << 19;
// Threads take pieces of C of about CHUNK columns (or rows) when m or n is long: each piece
// packs the other operand again, 1/CHUNK of the work or less (see "Threads" above).
constexpr index_t CHUNK = 1024;

inline index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
inline index_t round_up(index_t a, index_t b) { return ceil_div(a, b) * b; }

// `total` split into blocks of at most `limit`, evened out and rounded up to a multiple of `unit`.
inline index_t even_block(index_t total, index_t limit, index_t unit) {
    index_t blocks = ceil_div(total, limit);
    return std::min(round_up(ceil_div(total, blocks), unit), round_up(limit, unit));
}

// ------------------------------------------------------------------ packing
// Both operands are packed as slivers of `width` (MR or NR) lines, p-major: element p of line r
// goes to dst[p*width + r], lines past the edge zero. Depending on the layout that is a copy of
// `width` consecutive values per p (op(A) transposed, op(B) as stored), or a transpose of
// `width` rows of the array (A as stored, B transposed: the forward pass of every linear layer).

// dst[p*width + r] = src[r*ld + p0 + p] for r < lines, p < kc: `lines` rows read across. Done in
// square blocks of one 16-byte vector per row (4 x 4 floats, 2 x 2 doubles) transposed in
// registers, so both the loads and the stores are whole vectors; the rest one by one.
template <class T>
void pack_transposed(const T* src, index_t ld, index_t p0, index_t lines, index_t kc, index_t width,
                     T* dst) {
    constexpr index_t L = 16 / sizeof(T);   // lanes of a 16-byte vector: the block side
    typedef T V __attribute__((vector_size(16)));
    typedef T VU __attribute__((vector_size(16), aligned(sizeof(T)), may_alias));
    index_t r = 0;
    for (; r + L <= lines; r += L) {
        const T* s = src + r * ld + p0;
        index_t p = 0;
        for (; p + L <= kc; p += L) {
            V v[L];
            for (index_t i = 0; i < L; ++i) v[i] = *reinterpret_cast<const VU*>(s + i * ld + p);
            if constexpr (L == 4) {   // rows a, b, c, d -> columns (a0 b0 c0 d0) ...
                typedef int I __attribute__((vector_size(16)));
                V ab_lo = __builtin_shuffle(v[0], v[1], I{0, 4, 1, 5});   // a0 b0 a1 b1
                V ab_hi = __builtin_shuffle(v[0], v[1], I{2, 6, 3, 7});   // a2 b2 a3 b3
                V cd_lo = __builtin_shuffle(v[2], v[3], I{0, 4, 1, 5});
                V cd_hi = __builtin_shuffle(v[2], v[3], I{2, 6, 3, 7});
                v[0] = __builtin_shuffle(ab_lo, cd_lo, I{0, 1, 4, 5});     // a0 b0 c0 d0
                v[1] = __builtin_shuffle(ab_lo, cd_lo, I{2, 3, 6, 7});
                v[2] = __builtin_shuffle(ab_hi, cd_hi, I{0, 1, 4, 5});
                v[3] = __builtin_shuffle(ab_hi, cd_hi, I{2, 3, 6, 7});
            } else {                  // rows a, b -> columns (a0 b0), (a1 b1)
                typedef long long I __attribute__((vector_size(16)));
                V lo = __builtin_shuffle(v[0], v[1], I{0, 2});
                V hi = __builtin_shuffle(v[0], v[1], I{1, 3});
                v[0] = lo;
                v[1] = hi;
            }
            for (index_t i = 0; i < L; ++i) *reinterpret_cast<VU*>(dst + (p + i) * width + r) = v[i];
        }
        for (; p < kc; ++p)
            for (index_t i = 0; i < L; ++i) dst[p * width + r + i] = s[i * ld + p];
    }
    for (; r < lines; ++r)
        for (index_t p = 0; p < kc; ++p) dst[p * width + r] = src[r * ld + p0 + p];
    for (r = lines; r < width; ++r)
        for (index_t p = 0; p < kc; ++p) dst[p * width + r] = T(0);
}

// dst[p*width + r] = src[(p0 + p)*ld + r] for r < lines, p < kc: `lines` consecutive values per p.
template <class T>
void pack_copied(const T* src, index_t ld, index_t p0, index_t lines, index_t kc, index_t width,
                 T* dst) {
    for (index_t p = 0; p < kc; ++p, dst += width) {
        const T* s = src + (p0 + p) * ld;
        for (index_t r = 0; r < lines; ++r) dst[r] = s[r];
        for (index_t r = lines; r < width; ++r) dst[r] = T(0);
    }
}

// op(A)[i0 : i0+mc, p0 : p0+kc] as MR-row slivers: sliver s holds, for each p, the MR values
// op(A)[i0 + s*MR + r][p0 + p] (r = 0..MR-1) side by side.
template <class T>
void pack_a(bool trans_a, const T* a, index_t lda, index_t i0, index_t p0, index_t mc, index_t kc,
            index_t mr, T* out) {
    for (index_t s = 0; s * mr < mc; ++s) {
        const index_t i = i0 + s * mr, rows = std::min(mr, mc - s * mr);
        if (trans_a)   // op(A)[i][p] = a[p*lda + i]
            pack_copied(a + i, lda, p0, rows, kc, mr, out + s * mr * kc);
        else           // op(A)[i][p] = a[i*lda + p]
            pack_transposed(a + i * lda, lda, p0, rows, kc, mr, out + s * mr * kc);
    }
}

// op(B)[p0 : p0+kc, j0 : j0+nc] as NR-column slivers: sliver s holds, for each p, the NR values
// op(B)[p0 + p][j0 + s*NR + c] (c = 0..NR-1) side by side.
template <class T>
void pack_b(bool trans_b, const T* b, index_t ldb, index_t p0, index_t j0, index_t nc, index_t kc,
            index_t nr, T* out) {
    for (index_t s = 0; s * nr < nc; ++s) {
        const index_t j = j0 + s * nr, cols = std::min(nr, nc - s * nr);
        if (trans_b)   // op(B)[p][j] = b[j*ldb + p]
            pack_transposed(b + j * ldb, ldb, p0, cols, kc, nr, out + s * nr * kc);
        else           // op(B)[p][j] = b[p*ldb + j]
            pack_copied(b + j, ldb, p0, cols, kc, nr, out + s * nr * kc);
    }
}

// ------------------------------------------------------------------ the epilogue, one element
// The same steps as the micro-kernel's store, for the edge tiles and for k == 0.
template <class T> inline T finish(T s, const T* c, bool load_c, const T* bias, bool relu) {
    if (load_c) s = *c + s;
    if (bias) s = s + *bias;
    if (relu) s = s < T(0) ? T(0) : s;
    return s;
}

// ------------------------------------------------------------------ workspace
// The packed blocks, reused from call to call (one buffer per calling thread, so that gemm
// called from several threads at once, a convolution per image say, never shares one). 64-byte
// aligned: the kernel loads B slivers with aligned vector loads.
struct Workspace {
    void* data = nullptr;
    size_t bytes = 0;
    ~Workspace() { std::free(data); }
    void* get(size_t need) {
        if (need > bytes) {
            std::free(data);
            bytes = round_up(static_cast<index_t>(need), 4096);
            data = std::aligned_alloc(64, bytes);
            if (!data) {
                bytes = 0;
                throw std::bad_alloc();
            }
        }
        return data;
    }
};

// ------------------------------------------------------------------ the loops, one thread

// The five loops of the header comment on one thread, for the whole of the (sub)problem given.
template <class T>
void gemm_blocked(const MicroKernel<T>& uk, bool trans_a, bool trans_b, index_t m, index_t n,
                  index_t k, const T* a, index_t lda, const T* b, index_t ldb, T* c, index_t ldc,
                  bool accumulate, const T* bias, bool relu) {
    const index_t MR = uk.mr, NR = uk.nr;
    const index_t kc_max = even_block(k, KC, 1);    // depends on k only: see "Threads" above
    const index_t mc_max = even_block(m, std::max(MR, A_BLOCK_BYTES / (KC * index_t(sizeof(T))) / MR * MR), MR);
    const index_t nc_max = std::min(round_up(n, NR), B_BLOCK_BYTES / (KC * index_t(sizeof(T))) / NR * NR);

    static thread_local Workspace workspace;
    const index_t b_size = round_up(nc_max * kc_max, 16);   // keeps pa 64-byte aligned too
    T* pb = static_cast<T*>(workspace.get(static_cast<size_t>(b_size + mc_max * kc_max) * sizeof(T)));
    T* pa = pb + b_size;
    alignas(64) T scratch[16 * 64];   // one edge tile (MR x NR is at most 16 x 64)

    for (index_t jc = 0; jc < n; jc += nc_max) {
        const index_t nc = std::min(nc_max, n - jc), nslivers = ceil_div(nc, NR);
        for (index_t pc = 0; pc < k; pc += kc_max) {
            const index_t kc = std::min(kc_max, k - pc);
            const bool load_c = accumulate || pc > 0, last = pc + kc == k;
            pack_b(trans_b, b, ldb, pc, jc, nc, kc, NR, pb);
            for (index_t ic = 0; ic < m; ic += mc_max) {
                const index_t mc = std::min(mc_max, m - ic), mslivers = ceil_div(mc, MR);
                pack_a(trans_a, a, lda, ic, pc, mc, kc, MR, pa);
                for (index_t jr = 0; jr < nslivers; ++jr) {
                    const index_t j0 = jc + jr * NR, cols = std::min(NR, n - j0);
                    const T* bs = pb + jr * NR * kc;
                    for (index_t ir = 0; ir < mslivers; ++ir) {
                        const index_t i0 = ic + ir * MR, rows = std::min(MR, m - i0);
                        const T* as = pa + ir * MR * kc;
                        T* ct = c + i0 * ldc + j0;
                        if (cols == NR) {
                            uk.run(int(rows), kc, as, bs, ct, ldc, load_c,
                                   last && bias ? bias + j0 : nullptr, last && relu);
                            continue;
                        }
                        uk.run(int(rows), kc, as, bs, scratch, NR, false, nullptr, false);
                        for (index_t i = 0; i < rows; ++i)
                            for (index_t j = 0; j < cols; ++j)
                                ct[i * ldc + j] = finish(scratch[i * NR + j], ct + i * ldc + j, load_c,
                                                         last && bias ? bias + j0 + j : nullptr, last && relu);
                    }
                }
            }
        }
    }
}

}  // namespace

// ------------------------------------------------------------------ the driver: threads

template <class T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const T* a, index_t lda,
          const T* b, index_t ldb, T* c, index_t ldc, bool accumulate, const T* bias, bool relu) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {  // no products: C = (C or 0) + bias, then ReLU
        for (index_t i = 0; i < m; ++i)
            for (index_t j = 0; j < n; ++j)
                c[i * ldc + j] = finish<T>(accumulate ? c[i * ldc + j] : T(0), nullptr, false,
                                           bias ? bias + j : nullptr, relu);
        return;
    }
    const MicroKernel<T> uk = micro_kernel<T>();

    // Cut the larger of m and n into pieces of whole slivers (MR rows or NR columns): one per
    // thread, or, when that dimension is long, pieces of about CHUNK rows/columns that the
    // threads take in turn (so that a thread slowed down by another process does less of them).
    const bool split_n = n >= m;
    const index_t len = split_n ? n : m, unit = split_n ? uk.nr : uk.mr;
    const index_t slivers = ceil_div(len, unit);
    index_t threads = 1;
#ifdef _OPENMP
    if (!in_parallel() && 2.0 * m * n * k >= double(SERIAL_FLOPS))
        threads = std::min<index_t>(max_threads(), slivers);
#endif
    const index_t pieces = std::max(threads, std::min(slivers, len / CHUNK));
    auto piece = [&](index_t q) {   // slivers [slivers*q/pieces, slivers*(q+1)/pieces)
        const index_t lo = std::min(slivers * q / pieces * unit, len);
        const index_t hi = std::min(slivers * (q + 1) / pieces * unit, len);
        if (lo >= hi) return;
        if (split_n)   // columns [lo, hi): op(B)'s columns, C's columns, bias
            gemm_blocked(uk, trans_a, trans_b, m, hi - lo, k, a, lda, trans_b ? b + lo * ldb : b + lo,
                         ldb, c + lo, ldc, accumulate, bias ? bias + lo : nullptr, relu);
        else           // rows [lo, hi): op(A)'s rows, C's rows
            gemm_blocked(uk, trans_a, trans_b, hi - lo, n, k, trans_a ? a + lo : a + lo * lda, lda, b,
                         ldb, c + lo * ldc, ldc, accumulate, bias, relu);
    };
#ifdef _OPENMP
    if (threads > 1) {
#pragma omp parallel for num_threads(static_cast<int>(threads)) schedule(dynamic, 1)
        for (index_t q = 0; q < pieces; ++q) piece(q);
        return;
    }
#endif
    for (index_t q = 0; q < pieces; ++q) piece(q);
}

template void gemm<float>(bool, bool, index_t, index_t, index_t, const float*, index_t,
                          const float*, index_t, float*, index_t, bool, const float*, bool);
template void gemm<double>(bool, bool, index_t, index_t, index_t, const double*, index_t,
                           const double*, index_t, double*, index_t, bool, const double*, bool);

// ------------------------------------------------------------------ bindings

namespace {

// The shapes of one matmul call: op(a) is m x k, op(b) is k x n, over `batch` pairs of matrices
// (a or b may be one 2-D matrix shared by the whole batch).
struct MatmulArgs {
    py::array a, b, bias;
    bool has_bias = false;
    DType dt = DType::f32;
    index_t batch = 1, m = 0, n = 0, k = 0;
    bool a_batched = false, b_batched = false;
};

MatmulArgs matmul_args(const char* op, py::handle a, py::handle b, bool trans_a, bool trans_b,
                       py::handle bias, bool batched) {
    MatmulArgs r;
    r.a = array_arg(op, "a", a);
    r.b = array_arg(op, "b", b);
    r.has_bias = !bias.is_none();
    if (r.has_bias) r.bias = array_arg(op, "bias", bias);
    r.dt = r.has_bias ? same_float_dtype(op, {{"a", &r.a}, {"b", &r.b}, {"bias", &r.bias}})
                      : same_float_dtype(op, {{"a", &r.a}, {"b", &r.b}});
    if (!batched) {
        expect_ndim(op, "a", r.a, 2);
        expect_ndim(op, "b", r.b, 2);
    } else {
        for (auto [name, x] : {std::pair<const char*, py::array*>{"a", &r.a}, {"b", &r.b}})
            if (x->ndim() != 2 && x->ndim() != 3)
                value_error(op, std::string(name) + " must have 2 or 3 dimensions, got shape " +
                                    shape_str(*x));
        r.a_batched = r.a.ndim() == 3;
        r.b_batched = r.b.ndim() == 3;
        if (!r.a_batched && !r.b_batched)
            value_error(op, "a or b must have 3 dimensions (a batch), got shapes " + shape_str(r.a) +
                                " and " + shape_str(r.b));
        if (r.a_batched && r.b_batched && dim(r.a, 0) != dim(r.b, 0))
            value_error(op, "a and b must have the same batch size, got shapes " + shape_str(r.a) +
                                " and " + shape_str(r.b));
        r.batch = r.a_batched ? dim(r.a, 0) : dim(r.b, 0);
    }
    const int da = r.a.ndim() - 2, db = r.b.ndim() - 2;   // the matrix axes
    r.m = dim(r.a, da + (trans_a ? 1 : 0));
    r.k = dim(r.a, da + (trans_a ? 0 : 1));
    const index_t kb = dim(r.b, db + (trans_b ? 1 : 0));
    r.n = dim(r.b, db + (trans_b ? 0 : 1));
    if (kb != r.k)
        value_error(op, "the inner dimensions differ: op(a) is " + std::to_string(r.m) + " x " +
                            std::to_string(r.k) + ", op(b) is " + std::to_string(kb) + " x " +
                            std::to_string(r.n) + " (a " + shape_str(r.a) + ", b " + shape_str(r.b) +
                            ", trans_a=" + (trans_a ? "True" : "False") +
                            ", trans_b=" + (trans_b ? "True" : "False") + ")");
    if (r.has_bias) expect_shape(op, "bias", r.bias, {r.n});
    return r;
}

// out[i] = op(a[i]) @ op(b[i]) (+ bias) (ReLU) for every i of the batch. Many small products
// run one per thread (each GEMM then serial); otherwise one after another, each threaded.
py::array run_matmul(const MatmulArgs& r, bool trans_a, bool trans_b, bool relu, bool batched) {
    py::array out = batched ? new_array(r.dt, {r.batch, r.m, r.n}) : new_array(r.dt, {r.m, r.n});
    dispatch(r.dt, [&](auto zero) {
        using T = decltype(zero);
        const T* a = cptr<T>(r.a);
        const T* b = cptr<T>(r.b);
        const T* bias = r.has_bias ? cptr<T>(r.bias) : nullptr;
        T* c = ptr<T>(out);
        const index_t m = r.m, n = r.n, k = r.k;
        const index_t sa = r.a_batched ? m * k : 0, sb = r.b_batched ? k * n : 0;   // batch strides
        const index_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
        py::gil_scoped_release release;
        auto one = [&](index_t i) {
            gemm<T>(trans_a, trans_b, m, n, k, a + i * sa, lda, b + i * sb, ldb, c + i * m * n, n,
                    false, bias, relu);
        };
        if (r.batch > 1 && 2.0 * m * n * k < double(1 << 22)) {
            parallel_for(r.batch, 1, [&](index_t begin, index_t end) {
                for (index_t i = begin; i < end; ++i) one(i);
            });
        } else {
            for (index_t i = 0; i < r.batch; ++i) one(i);
        }
    });
    return out;
}

}  // namespace

void register_gemm(py::module_& m) {
    m.def("matmul", [](py::handle a, py::handle b, bool trans_a, bool trans_b, py::handle bias,
                       bool relu) {
        MatmulArgs r = matmul_args("matmul", a, b, trans_a, trans_b, bias, false);
        return run_matmul(r, trans_a, trans_b, relu, false);
    }, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
       py::arg("bias") = py::none(), py::arg("relu") = false,
       "op(a) @ op(b) (+ bias) (then ReLU) for 2-D a and b (op transposes when trans_*); bias "
       "None or (n,); all float32 or all float64, C-contiguous. Returns a new (m, n) array.");
    m.def("matmul_batched", [](py::handle a, py::handle b, bool trans_a, bool trans_b,
                               py::handle bias, bool relu) {
        MatmulArgs r = matmul_args("matmul_batched", a, b, trans_a, trans_b, bias, true);
        return run_matmul(r, trans_a, trans_b, relu, true);
    }, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
       py::arg("bias") = py::none(), py::arg("relu") = false,
       "matmul over a batch: a (B, ., .) or 2-D, b (B, ., .) or 2-D (a 2-D operand is shared by "
       "the batch), at least one 3-D. Returns a new (B, m, n) array.");
    // tg::gemm itself, writing into c: what the convolutions and the LSTM call, for tests and
    // benchmarks (accumulate has no counterpart in the specification's matmul).
    m.def("gemm", [](py::handle a, py::handle b, py::handle c, bool trans_a, bool trans_b,
                     bool accumulate, py::handle bias, bool relu) {
        MatmulArgs r = matmul_args("gemm", a, b, trans_a, trans_b, bias, false);
        py::array out = array_arg("gemm", "c", c, true);
        expect_dtype("gemm", "c", out, r.dt);
        expect_shape("gemm", "c", out, {r.m, r.n});
        dispatch(r.dt, [&](auto zero) {
            using T = decltype(zero);
            const T* bias_p = r.has_bias ? cptr<T>(r.bias) : nullptr;
            py::gil_scoped_release release;
            gemm<T>(trans_a, trans_b, r.m, r.n, r.k, cptr<T>(r.a), trans_a ? r.m : r.k, cptr<T>(r.b),
                    trans_b ? r.k : r.n, ptr<T>(out), r.n, accumulate, bias_p, relu);
        });
    }, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
       py::arg("trans_b") = false, py::arg("accumulate") = false, py::arg("bias") = py::none(),
       py::arg("relu") = false,
       "c = op(a) @ op(b) (+ c if accumulate) (+ bias) (then ReLU), in place: tg::gemm, as the "
       "other kernels call it. c: (m, n), C-contiguous, writeable, the dtype of a and b.");
}

}  // namespace tg
