// The GEMM micro-kernel: one MR x NR tile of C from a packed sliver of op(A) and one of op(B).
//
// setup.py compiles this file three times (it is a *_isa.cpp), once per x86 vector width:
//   TG_ISA_AVX512   (-mavx512f ... -mfma): 512-bit vectors, 32 registers, FMA;
//   TG_ISA_AVX2     (-mavx2 -mfma):        256-bit vectors, 16 registers, FMA;
//   TG_ISA_PORTABLE (no flags):            128-bit vectors (SSE2 on x86-64, NEON on arm64),
//                                          16 registers, multiply then add.
// The kernel is written once, with GCC vector extensions (a `V` holds one register's worth of T
// and `x * v` multiplies every lane by the scalar x); each width instantiates it with its own
// tile shape. gemm.cpp (compiled for baseline x86-64) packs the operands, runs the loops around
// this kernel and picks the width at run time with tg::simd().
//
// Why every width lives in its own namespace (tg::gemm_avx512, ...) and nothing here includes a
// C++ standard header with inline code: the three copies of this file are compiled with
// different flags, and an inline function with the same name in two of them (std::min<long>,
// say) would be emitted in both and the linker would keep one of them, maybe the AVX-512 one,
// for every caller. With distinct namespaces and no std templates, every function here has one
// name per width. (<cstdint> only declares typedefs.)
//
// The micro-kernel. Packed op(A) is MR values per k (one column of the MR-row sliver), packed
// op(B) is NR = NV vectors per k (one row of the NR-column sliver); the MR x NR accumulators
// stay in registers for the whole kc loop:
//
//     for p in 0..kc:   load NV vectors of B;  for i in 0..MR: broadcast a[i], NV FMAs
//
// so each k step does MR*NV vector FMAs for NV vector loads + MR broadcast loads (one
// vbroadcastss per row, shared by its NV FMAs). Register budget: MR*NV accumulators + NV B
// vectors + 1 broadcast must fit the register file:
//   AVX-512: 14 x 2 vectors = 28 accumulators (of 32 zmm); float 14x32, double 14x16.
//            28 FMAs : 16 loads per k step. Zen 5 (and Skylake-X servers) issue 2 zmm FMAs and
//            up to 3-4 loads per cycle, so the FMAs set the pace: 14 cycles per k step, peak
//            64 float FLOPs per cycle (measured: ~266 GFLOP/s per core at ~4.1 GHz).
//   AVX2:     6 x 2 vectors = 12 accumulators (of 16 ymm); float 6x16, double 6x8.  12 : 8.
//   portable: 6 x 2 vectors = 12 accumulators (of 16 xmm); float 6x8, double 6x4.   12 : 8.
// FLOPs per call: 2*MR*NR*kc; bytes read: (MR + NR)*kc*sizeof(T) from the packed buffers, and
// the C tile read (when adding to C) and written once.
//
// The epilogue (per tile, after the kc loop): s = acc; if load_c, s = C + s; if bias, s += bias[j];
// if relu, s = (s < 0 ? 0 : s), which keeps NaN as np.maximum(s, 0) does. gemm.cpp calls it with
// bias/relu only for the last K block. The last rows (m not a multiple of MR) run an instance with
// fewer rows; the last columns (n not a multiple of NR) go to a scratch tile whose valid part
// gemm.cpp then finishes with the same formula, element by element.
#include <cstdint>

#if defined(TG_ISA_AVX512)
#define TG_GEMM_NS gemm_avx512
#define TG_VEC_BYTES 64
#define TG_MR 14
#elif defined(TG_ISA_AVX2)
#define TG_GEMM_NS gemm_avx2
#define TG_VEC_BYTES 32
#define TG_MR 6
#else
#define TG_GEMM_NS gemm_portable
#define TG_VEC_BYTES 16
#define TG_MR 6
#endif
#define TG_NV 2   // vectors per row of the tile: NR = TG_NV * (lanes of one vector)

namespace tg {
using index_t = std::int64_t;   // as in common.h

namespace TG_GEMM_NS {

// One register of floats / doubles. The `_u` types are the same with the alignment of one
// element, for loads and stores of C and bias rows, which need not be vector-aligned.
typedef float vf __attribute__((vector_size(TG_VEC_BYTES)));
typedef double vd __attribute__((vector_size(TG_VEC_BYTES)));
typedef float vf_u __attribute__((vector_size(TG_VEC_BYTES), aligned(4), may_alias));
typedef double vd_u __attribute__((vector_size(TG_VEC_BYTES), aligned(8), may_alias));

template <class T> struct Vec;
template <> struct Vec<float> { typedef vf type; typedef vf_u unaligned; };
template <> struct Vec<double> { typedef vd type; typedef vd_u unaligned; };

// C[0:R, 0:NR] (rows ldc apart) from a (kc x MR, packed; the first R of each MR used) and b
// (kc x NR, packed, aligned to the vector size); see the epilogue above. R = MR for every full
// tile; the last rows of an m that is not a multiple of MR run with R < MR, so that they cost
// R/MR of a tile, not a whole one.
template <class T, int R>
static void micro_kernel(index_t kc, const T* __restrict a, const T* __restrict b, T* c,
                         index_t ldc, bool load_c, const T* bias, bool relu) {
    typedef typename Vec<T>::type V;
    typedef typename Vec<T>::unaligned VU;
    constexpr int MR = TG_MR, NV = TG_NV, W = TG_VEC_BYTES / sizeof(T), NR = NV * W;

    // Fetch the C tile (for writing; it is read too when adding to C) while the kc loop runs.
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
        __builtin_prefetch(c + i * ldc, 1);
        __builtin_prefetch(c + i * ldc + NR - 1, 1);
    }

    V acc[R][NV];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[i][j] = V{};

    for (index_t p = 0; p < kc; ++p) {
        V bv[NV];
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) bv[j] = *reinterpret_cast<const V*>(b + j * W);
#pragma GCC unroll 16
        for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
            for (int j = 0; j < NV; ++j) acc[i][j] += a[i] * bv[j];   // one FMA per vector
        a += MR;
        b += NR;
    }

#pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) {
            V s = acc[i][j];
            VU* cp = reinterpret_cast<VU*>(c + i * ldc + j * W);
            if (load_c) s = *cp + s;
            if (bias) s = s + *reinterpret_cast<const VU*>(bias + j * W);
            if (relu) s = s < V{} ? V{} : s;
            *cp = s;
        }
}

// The kernel for `rows` rows (1..MR): one instantiation per row count.
template <class T>
static void micro_kernel_rows(int rows, index_t kc, const T* a, const T* b, T* c, index_t ldc,
                              bool load_c, const T* bias, bool relu) {
    static_assert(TG_MR <= 16, "one case per row count below");
    switch (rows) {
#define TG_ROWS(R) \
    case R: \
        if constexpr (R <= TG_MR) micro_kernel<T, R>(kc, a, b, c, ldc, load_c, bias, relu); \
        return;
        TG_ROWS(1) TG_ROWS(2) TG_ROWS(3) TG_ROWS(4) TG_ROWS(5) TG_ROWS(6) TG_ROWS(7) TG_ROWS(8)
        TG_ROWS(9) TG_ROWS(10) TG_ROWS(11) TG_ROWS(12) TG_ROWS(13) TG_ROWS(14) TG_ROWS(15)
        TG_ROWS(16)
#undef TG_ROWS
    }
}

// What gemm.cpp calls: the tile shape and the two instantiations.
extern const int mr_f32 = TG_MR, nr_f32 = TG_NV * TG_VEC_BYTES / 4;
extern const int mr_f64 = TG_MR, nr_f64 = TG_NV * TG_VEC_BYTES / 8;

void kernel_f32(int rows, index_t kc, const float* a, const float* b, float* c, index_t ldc,
                bool load_c, const float* bias, bool relu) {
    micro_kernel_rows<float>(rows, kc, a, b, c, ldc, load_c, bias, relu);
}

void kernel_f64(int rows, index_t kc, const double* a, const double* b, double* c, index_t ldc,
                bool load_c, const double* bias, bool relu) {
    micro_kernel_rows<double>(rows, kc, a, b, c, ldc, load_c, bias, relu);
}

}  // namespace TG_GEMM_NS
}  // namespace tg
