// 2-D max-pooling on the CPU: forward (the maximum of each window and where it was) and backward
// (each output's gradient added to the input element that was its maximum).
//
// Shapes: x (N, C, H, W) -> out (N, C, Ho, Wo) and argmax (N, C, Ho, Wo) int64, the flat index
// ih*W + iw of the maximum in its (H, W) plane; Ho = (H + 2*ph - KH) / sh + 1.
// The specification (NumPy backend) pads with -inf and takes numpy.argmax over the window's taps
// in the order k = i*KW + j: the first maximum wins a tie, and the first NaN wins outright. A
// padded cell can therefore win too (a window wholly in the padding, or one whose real cells are
// all -inf and come after a padded one); its index, computed as for any tap, is then outside
// [0, H*W), exactly as the specification's is, and the backward rejects it.
//
// Cost: forward N*C*Ho*Wo*KH*KW comparisons, reading x once and writing out and argmax:
// (s*H*W + (s + 8)*Ho*Wo) bytes per plane (s = 4 or 8): memory-bound. Backward writes the
// gradient plane (zeros, then one add per output) and reads grad_out and argmax:
// (s*H*W + (s + 8)*Ho*Wo) bytes per plane too.
// The CNN's 2x2 stride-2 windows inside the plane run 4 (float) or 2 (double) at a time with SSE2
// selects (no branches: the winner of random data is unpredictable); the rest, and the border
// windows (with -inf taps), run a scalar loop in the same tap order.
// Threads: planes (n, c) split statically over the threads; a plane is one thread's, so the
// backward's adds into it happen in output order: deterministic, no atomics.
#include "common.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace tg {
namespace {

// Whether tap value v replaces the running maximum `best` as numpy.argmax decides: v is larger,
// or v is the first NaN (once best is NaN nothing replaces it).
// `&`, not `&&`: no short-circuit branch, so the compiler can turn the selects below into
// conditional moves or blends.
template <class T> inline bool replaces(T v, T best) { return !(v <= best) & (best == best); }

// The 2x2 windows of output columns [lo, hi) of one output row, all inside the plane: row0 and
// row1 are the window's two input rows at column 0, base the flat index of row0[0]. Unrolled and
// without branches (selects): on random data the winner is unpredictable, and mispredicted
// branches would cost more than the memory traffic. SW is the stride when known (2), else 0.
template <class T, int SW>
void pool_row_2x2(const T* row0, const T* row1, index_t base, index_t w, index_t sw, index_t lo,
                  index_t hi, T* out, std::int64_t* arg) {
    if (SW) sw = SW;
    for (index_t ow = lo; ow < hi; ++ow) {
        index_t c = ow * sw;
        T v0 = row0[c], v1 = row0[c + 1], v2 = row1[c], v3 = row1[c + 1];
        T best = v0;
        std::int64_t k = 0;                   // the winning tap's offset from the window's corner
        bool u = replaces(v1, best);
        best = u ? v1 : best, k = u ? 1 : k;
        u = replaces(v2, best);
        best = u ? v2 : best, k = u ? w : k;
        u = replaces(v3, best);
        best = u ? v3 : best, k = u ? w + 1 : k;
        out[ow] = best;
        arg[ow] = base + c + k;
    }
}

#if defined(__SSE2__)
// The same for stride 2 with SSE2 (every x86-64 has it), 4 float or 2 double windows at a time:
// a window's taps (0,0), (0,1) are the even and odd elements of row0 (deinterleaved by shuffles),
// (1,0), (1,1) those of row1; each tap replaces the running maximum under the same mask as
// `replaces` (~(v <= best) & (best == best)), and its offset (0, 1, w, w+1) the running k.
// Returns the first column left for the scalar loop.
inline index_t pool_row_2x2_s2_sse(const float* row0, const float* row1, index_t base, index_t w,
                                   index_t lo, index_t hi, float* out, std::int64_t* arg) {
    if (w + 1 > 0x7fffffff) return lo;     // the offsets are 32-bit lanes here
    const __m128i zero = _mm_setzero_si128();
    const __m128i off[3] = {_mm_set1_epi32(1), _mm_set1_epi32(static_cast<int>(w)),
                            _mm_set1_epi32(static_cast<int>(w + 1))};
    index_t ow = lo;
    for (; ow + 4 <= hi; ow += 4) {
        __m128 a0 = _mm_loadu_ps(row0 + 2 * ow), a1 = _mm_loadu_ps(row0 + 2 * ow + 4);
        __m128 b0 = _mm_loadu_ps(row1 + 2 * ow), b1 = _mm_loadu_ps(row1 + 2 * ow + 4);
        __m128 taps[3] = {_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)),
                          _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)),
                          _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1))};
        __m128 best = _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0));
        __m128i k = zero;
        for (int t = 0; t < 3; ++t) {
            __m128 m = _mm_andnot_ps(_mm_cmple_ps(taps[t], best), _mm_cmpeq_ps(best, best));
            best = _mm_or_ps(_mm_and_ps(m, taps[t]), _mm_andnot_ps(m, best));
            __m128i mi = _mm_castps_si128(m);
            k = _mm_or_si128(_mm_and_si128(mi, off[t]), _mm_andnot_si128(mi, k));
        }
        _mm_storeu_ps(out + ow, best);
        index_t c = base + 2 * ow;            // flat index of window ow's corner
        _mm_storeu_si128(reinterpret_cast<__m128i*>(arg + ow),
                         _mm_add_epi64(_mm_unpacklo_epi32(k, zero), _mm_set_epi64x(c + 2, c)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(arg + ow + 2),
                         _mm_add_epi64(_mm_unpackhi_epi32(k, zero), _mm_set_epi64x(c + 6, c + 4)));
    }
    return ow;
}

inline index_t pool_row_2x2_s2_sse(const double* row0, const double* row1, index_t base, index_t w,
                                   index_t lo, index_t hi, double* out, std::int64_t* arg) {
    const __m128i off[3] = {_mm_set1_epi64x(1), _mm_set1_epi64x(w), _mm_set1_epi64x(w + 1)};
    index_t ow = lo;
    for (; ow + 2 <= hi; ow += 2) {
        __m128d a0 = _mm_loadu_pd(row0 + 2 * ow), a1 = _mm_loadu_pd(row0 + 2 * ow + 2);
        __m128d b0 = _mm_loadu_pd(row1 + 2 * ow), b1 = _mm_loadu_pd(row1 + 2 * ow + 2);
        __m128d taps[3] = {_mm_unpackhi_pd(a0, a1), _mm_unpacklo_pd(b0, b1), _mm_unpackhi_pd(b0, b1)};
        __m128d best = _mm_unpacklo_pd(a0, a1);
        __m128i k = _mm_setzero_si128();
        for (int t = 0; t < 3; ++t) {
            __m128d m = _mm_andnot_pd(_mm_cmple_pd(taps[t], best), _mm_cmpeq_pd(best, best));
            best = _mm_or_pd(_mm_and_pd(m, taps[t]), _mm_andnot_pd(m, best));
            __m128i mi = _mm_castpd_si128(m);
            k = _mm_or_si128(_mm_and_si128(mi, off[t]), _mm_andnot_si128(mi, k));
        }
        _mm_storeu_pd(out + ow, best);
        index_t c = base + 2 * ow;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(arg + ow), _mm_add_epi64(k, _mm_set_epi64x(c + 2, c)));
    }
    return ow;
}
#endif

// One (H, W) plane: out and argmax of every window.
template <class T>
void pool_plane(const T* x, T* out, std::int64_t* arg, index_t h, index_t w, index_t ho, index_t wo,
                index_t kh, index_t kw, index_t sh, index_t sw, index_t ph, index_t pw) {
    const T ninf = -std::numeric_limits<T>::infinity();
    // Output columns whose windows lie inside the input's columns: [lo, hi).
    index_t lo = std::min(wo, (pw + sw - 1) / sw);
    index_t hi = w + pw >= kw ? std::min(wo, (w + pw - kw) / sw + 1) : 0;
    hi = std::max(lo, hi);
    for (index_t oh = 0; oh < ho; ++oh) {
        index_t h0 = oh * sh - ph;
        T* o = out + oh * wo;
        std::int64_t* a = arg + oh * wo;
        bool inside = h0 >= 0 && h0 + kh <= h;
        auto border = [&](index_t ow) {
            // Padded taps are -inf, taken in the same order as the real ones.
            index_t w0 = ow * sw - pw, bi = 0, bj = 0;
            auto tap = [&](index_t i, index_t j) {
                index_t r = h0 + i, c = w0 + j;
                return r >= 0 && r < h && c >= 0 && c < w ? x[r * w + c] : ninf;
            };
            T best = tap(0, 0);
            for (index_t i = 0; i < kh; ++i)
                for (index_t j = 0; j < kw; ++j) {
                    T v = tap(i, j);
                    if (replaces(v, best)) best = v, bi = i, bj = j;
                }
            o[ow] = best;
            a[ow] = (h0 + bi) * w + (w0 + bj);
        };
        if (!inside) {
            for (index_t ow = 0; ow < wo; ++ow) border(ow);
            continue;
        }
        for (index_t ow = 0; ow < lo; ++ow) border(ow);
        const T* row = x + h0 * w - pw;       // window ow starts at row[ow * sw]
        if (kh == 2 && kw == 2 && sw == 2) {
            index_t done = lo;
#if defined(__SSE2__)
            done = pool_row_2x2_s2_sse(row, row + w, h0 * w - pw, w, lo, hi, o, a);
#endif
            pool_row_2x2<T, 2>(row, row + w, h0 * w - pw, w, sw, done, hi, o, a);
        }
        else if (kh == 2 && kw == 2)
            pool_row_2x2<T, 0>(row, row + w, h0 * w - pw, w, sw, lo, hi, o, a);
        else
            for (index_t ow = lo; ow < hi; ++ow) {
                const T* win = row + ow * sw;
                T best = win[0];
                index_t bi = 0, bj = 0;
                for (index_t i = 0; i < kh; ++i)
                    for (index_t j = 0; j < kw; ++j)
                        if (replaces(win[i * w + j], best)) best = win[i * w + j], bi = i, bj = j;
                o[ow] = best;
                a[ow] = (h0 + bi) * w + (ow * sw - pw + bj);
            }
        for (index_t ow = hi; ow < wo; ++ow) border(ow);
    }
}

// At least ~16K bytes of work per thread before splitting.
index_t plane_grain(index_t plane_elems) { return std::max<index_t>(1, 4096 / std::max<index_t>(plane_elems, 1)); }

py::tuple max_pool2d_fwd(py::handle x_, py::handle kernel, py::handle stride, py::handle padding) {
    const char* op = "max_pool2d_fwd";
    py::array x = array_arg(op, "x", x_);
    DType dt = float_dtype(op, "x", x);
    expect_ndim(op, "x", x, 4);
    auto k = ints_arg(op, "kernel", kernel, 2, 1);
    auto st = ints_arg(op, "stride", stride, 2, 1);
    auto pd = ints_arg(op, "padding", padding, 2, 0);
    index_t n = dim(x, 0), c = dim(x, 1), h = dim(x, 2), w = dim(x, 3);
    if (h + 2 * pd[0] < k[0] || w + 2 * pd[1] < k[1])
        value_error(op, "kernel " + shape_str(k) + " is larger than the padded input (" +
                            std::to_string(h + 2 * pd[0]) + ", " + std::to_string(w + 2 * pd[1]) + ")");
    index_t ho = (h + 2 * pd[0] - k[0]) / st[0] + 1, wo = (w + 2 * pd[1] - k[1]) / st[1] + 1;
    py::array out = new_array(dt, {n, c, ho, wo});
    py::array arg = py::array_t<std::int64_t>(std::vector<py::ssize_t>{n, c, ho, wo});
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* xp = cptr<T>(x);
        T* op_ = ptr<T>(out);
        std::int64_t* ap = ptr<std::int64_t>(arg);
        py::gil_scoped_release release;
        parallel_for(n * c, plane_grain(h * w + ho * wo * k[0] * k[1]), [&](index_t b, index_t e) {
            for (index_t p = b; p < e; ++p)
                pool_plane<T>(xp + p * h * w, op_ + p * ho * wo, ap + p * ho * wo, h, w, ho, wo,
                              k[0], k[1], st[0], st[1], pd[0], pd[1]);
        });
    });
    return py::make_tuple(out, arg);
}

// grad (planes x hw) from grad_out and argmax (planes x howo). An index outside [0, hw) is
// skipped and reported: the caller raises, and the half-written grad (a new array) is dropped,
// so the arguments are never changed and nothing outside grad is ever written.
template <class T, class I>
bool pool_backward(const T* go, const I* am, T* grad, index_t planes, index_t hw, index_t howo) {
    std::atomic<bool> bad{false};
    parallel_for(planes, plane_grain(hw + howo), [&](index_t b, index_t e) {
        bool local_bad = false;
        for (index_t p = b; p < e; ++p) {
            T* g = grad + p * hw;
            const T* src = go + p * howo;
            const I* idx = am + p * howo;
            std::fill(g, g + hw, T(0));
            for (index_t q = 0; q < howo; ++q) {
                index_t i = static_cast<index_t>(idx[q]);
                if (i < 0 || i >= hw) {
                    local_bad = true;
                    continue;
                }
                g[i] += src[q];
            }
        }
        if (local_bad) bad.store(true, std::memory_order_relaxed);
    });
    return bad.load();
}

py::array max_pool2d_bwd(py::handle grad_out_, py::handle argmax_, py::handle x_shape) {
    const char* op = "max_pool2d_bwd";
    py::array g = array_arg(op, "grad_out", grad_out_), am = array_arg(op, "argmax", argmax_);
    DType dt = float_dtype(op, "grad_out", g);
    bool i64 = index_dtype(op, "argmax", am);
    expect_ndim(op, "grad_out", g, 4);
    expect_shape(op, "argmax", am, shape_of(g));
    auto xs = ints_arg(op, "x_shape", x_shape, 4, 0);
    if (xs[0] != dim(g, 0) || xs[1] != dim(g, 1))
        value_error(op, "grad_out of shape " + shape_str(g) + " does not match x_shape " + shape_str(xs));
    index_t planes = xs[0] * xs[1], hw = xs[2] * xs[3], howo = dim(g, 2) * dim(g, 3);
    py::array grad = new_array(dt, xs);
    bool bad = dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* gp = cptr<T>(g);
        T* dp = ptr<T>(grad);
        py::gil_scoped_release release;
        if (i64) return pool_backward<T>(gp, cptr<std::int64_t>(am), dp, planes, hw, howo);
        return pool_backward<T>(gp, cptr<std::int32_t>(am), dp, planes, hw, howo);
    });
    if (bad) {   // name the first bad index
        index_t total = numel(am);
        for (index_t q = 0; q < total; ++q) {
            index_t i = i64 ? cptr<std::int64_t>(am)[q] : cptr<std::int32_t>(am)[q];
            if (i < 0 || i >= hw)
                throw py::index_error(std::string(op) + ": argmax index " + std::to_string(i) +
                                      " is out of range for an input plane of " +
                                      std::to_string(xs[2]) + "x" + std::to_string(xs[3]) + " = " +
                                      std::to_string(hw) + " elements");
        }
    }
    return grad;
}

}  // namespace

void register_pool(py::module_& m) {
    m.def("max_pool2d_fwd", &max_pool2d_fwd, py::arg("x"), py::arg("kernel"), py::arg("stride"),
          py::arg("padding"),
          "(out, argmax): the maximum of each (kh, kw) window of x (N, C, H, W) and its flat index "
          "into H*W (int64); kernel, stride, padding (h, w) pairs; padding is -inf.");
    m.def("max_pool2d_bwd", &max_pool2d_bwd, py::arg("grad_out"), py::arg("argmax"),
          py::arg("x_shape"),
          "dL/dx (x_shape): grad_out added at the argmax of max_pool2d_fwd.");
}

}  // namespace tg
