// 2-D convolution (cross-correlation, as PyTorch's conv2d without groups or dilation) on the CPU:
// forward, backward-data and backward-weight, all three as GEMMs (tg::gemm, gemm.h) on im2col
// columns.
//
// Shapes: x (N, C, H, W), w (F, C, KH, KW), out (N, F, Ho, Wo), Ho = (H + 2*ph - KH) / sh + 1;
// P = Ho*Wo output positions per image, K = C*KH*KW (the GEMMs' inner size for forward).
// For one image, cols (K x P) holds in row (c, i, j) and column (oh, ow) the input element
// x[c, oh*sh - ph + i, ow*sw - pw + j] (0 in the padding). Then
//   forward          out[n]  (F x P) = w (F x K) @ cols[n] (K x P) + bias          2*N*F*K*P FLOPs
//   backward-weight  dw      (F x K) = sum over n of grad_out[n] (F x P) @ cols[n]^T  2*N*F*K*P
//   backward-data    dcols   (K x P) = w^T (K x F) @ grad_out[n] (F x P), then col2im    2*N*F*K*P
// where col2im adds every column entry back onto the input element it was copied from.
// Bytes: the GEMMs read and write x, w, out once each (4 or 8 bytes per element); im2col writes
// K*P per image (KH*KW times the image) into a workspace that stays in the cache, as col2im reads
// it. For the CNN's 3x3 layers that copy is ~1/(2F) of the GEMM's FLOPs: small, but it must be a
// plain streaming copy (it is: contiguous runs of each input row, zeros at the ends).
//
// Blocking: the columns are built a tile at a time, never for the whole batch: a tile is either
// a group of whole images (small images: their columns side by side, so that the GEMM gets at
// least kTargetCols columns, e.g. 4 images of 7x7) or some output rows of one image (large
// images: the workspace stays under kMaxWorkspace elements). A 1x1 convolution with stride 1 and
// no padding needs no columns: the image is its own cols.
//
// Threads: the batch is cut into one contiguous range of images per thread (static), and each
// thread runs its tiles with its own workspace: im2col, GEMM (which runs single-threaded inside
// a parallel region) and col2im, with no synchronisation and the columns hot in its cache. With
// fewer images than threads (batch 1, say) the tiles run one after another on the calling
// thread instead, and the GEMM and im2col/col2im (split over channels) use the threads.
// Deterministic: backward-weight sums each thread's images into a partial dw of its own (thread
// 0's is the output), and the partials are added in thread order at the end; col2im adds the
// taps of one image in a fixed order, on one thread per channel; no float atomics anywhere.
#include "common.h"
#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace tg {
namespace {

// Group small images until the GEMM has this many columns. Forward and backward-data pack the
// weights (the GEMM's A) once per call of the GEMM, so more columns per call amortise that: 512
// measured ~8% faster than 192 on the CNN's 14x14 and 7x7 layers (2 threads, AMD EPYC); the
// backward-weight GEMM packs the columns themselves (its B) and was a little faster at 192.
constexpr index_t kTargetCols = 512;
constexpr index_t kTargetColsWeight = 192;
constexpr index_t kMaxWorkspace = 1 << 20;  // elements of cols per thread (4 MB in float32), at least one output row

struct Geom {
    index_t n, c, h, w;      // input
    index_t f, kh, kw;       // filters
    index_t sh, sw, ph, pw;  // stride, padding
    index_t ho, wo;          // output
    index_t target = kTargetCols;   // columns a tile of small images aims at (see kTargetCols)
    index_t k() const { return c * kh * kw; }
    index_t p() const { return ho * wo; }
    // cols would be a copy of the image: the GEMMs read (or write) the image directly.
    bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

// Images [n0, n0 + g), output rows [r0, r1) of each: either g == 1 or the rows are all Ho.
struct Tile {
    index_t n0, g, r0, r1;
    index_t cols(const Geom& s) const { return g * (r1 - r0) * s.wo; }
    bool direct(const Geom& s) const { return g == 1 && s.pointwise(); }
};

// The tiles of images [begin, end), in order: f(tile).
template <class Fn> void for_tiles(const Geom& s, index_t begin, index_t end, Fn&& f) {
    index_t max_cols = std::max(s.wo, kMaxWorkspace / std::max<index_t>(s.k(), 1));
    index_t p = s.p();
    if (p <= max_cols) {
        index_t g = std::max<index_t>(1, std::min((s.target + p - 1) / p, max_cols / p));
        for (index_t n = begin; n < end; n += g) f(Tile{n, std::min(g, end - n), 0, s.ho});
    } else {
        index_t rows = std::max<index_t>(1, max_cols / s.wo);
        for (index_t n = begin; n < end; ++n)
            for (index_t r = 0; r < s.ho; r += rows) f(Tile{n, 1, r, std::min(s.ho, r + rows)});
    }
}

// The largest tile for_tiles makes, in columns: the workspace each thread allocates.
index_t max_tile_cols(const Geom& s) {
    index_t max_cols = std::max(s.wo, kMaxWorkspace / std::max<index_t>(s.k(), 1));
    index_t p = s.p();
    if (p <= max_cols) {
        index_t g = std::max<index_t>(1, std::min((s.target + p - 1) / p, max_cols / p));
        return std::min(g, std::max<index_t>(s.n, 1)) * p;
    }
    return std::max<index_t>(1, max_cols / s.wo) * s.wo;
}

// Output columns ow whose tap j lands inside the input row: [lo, hi) (ow*sw - pw + j in [0, W)).
inline void valid_cols(const Geom& s, index_t j, index_t& lo, index_t& hi) {
    lo = s.pw > j ? (s.pw - j + s.sw - 1) / s.sw : 0;
    index_t last = s.w - 1 + s.pw - j;          // the largest ow*sw that is still inside
    hi = last >= 0 ? last / s.sw + 1 : 0;
    lo = std::min(lo, s.wo);
    hi = std::max(lo, std::min(hi, s.wo));
}

template <class T> T* uninitialized(index_t n) { return new T[static_cast<size_t>(std::max<index_t>(n, 1))]; }

// cols (K x tile columns) of `tile` from x; rows of cols split over channels when not already
// inside a parallel region.
template <class T> void im2col(const Geom& s, const T* x, const Tile& t, T* cols) {
    index_t ncols = t.cols(s), seg = (t.r1 - t.r0) * s.wo, hw = s.h * s.w;
    parallel_for(s.c, 1, [&](index_t c0, index_t c1) {
        for (index_t c = c0; c < c1; ++c)
            for (index_t i = 0; i < s.kh; ++i)
                for (index_t j = 0; j < s.kw; ++j) {
                    T* row = cols + ((c * s.kh + i) * s.kw + j) * ncols;
                    index_t lo, hi;
                    valid_cols(s, j, lo, hi);
                    for (index_t g = 0; g < t.g; ++g) {
                        const T* plane = x + ((t.n0 + g) * s.c + c) * hw;
                        for (index_t oh = t.r0; oh < t.r1; ++oh) {
                            T* d = row + g * seg + (oh - t.r0) * s.wo;
                            index_t ih = oh * s.sh - s.ph + i;
                            if (ih < 0 || ih >= s.h) {
                                std::fill(d, d + s.wo, T(0));
                                continue;
                            }
                            // Input column of output column ow: ow*sw - pw + j (>= 0 from lo on).
                            const T* src = plane + ih * s.w + (lo * s.sw - s.pw + j);
                            // Plain loops: the runs are short (Wo), a library call costs more.
                            for (index_t ow = 0; ow < lo; ++ow) d[ow] = T(0);
                            if (s.sw == 1)
                                for (index_t ow = lo; ow < hi; ++ow) d[ow] = src[ow - lo];
                            else
                                for (index_t ow = lo; ow < hi; ++ow) d[ow] = src[(ow - lo) * s.sw];
                            for (index_t ow = hi; ow < s.wo; ++ow) d[ow] = T(0);
                        }
                    }
                }
    });
}

// dx += the columns of `tile` put back where im2col took them from: each channel on one thread,
// its taps added in the fixed order (i, j, image, oh, ow).
template <class T> void col2im(const Geom& s, const T* cols, const Tile& t, T* dx) {
    index_t ncols = t.cols(s), seg = (t.r1 - t.r0) * s.wo, hw = s.h * s.w;
    parallel_for(s.c, 1, [&](index_t c0, index_t c1) {
        for (index_t c = c0; c < c1; ++c)
            for (index_t i = 0; i < s.kh; ++i)
                for (index_t j = 0; j < s.kw; ++j) {
                    const T* row = cols + ((c * s.kh + i) * s.kw + j) * ncols;
                    index_t lo, hi;
                    valid_cols(s, j, lo, hi);
                    for (index_t g = 0; g < t.g; ++g) {
                        T* plane = dx + ((t.n0 + g) * s.c + c) * hw;
                        for (index_t oh = t.r0; oh < t.r1; ++oh) {
                            index_t ih = oh * s.sh - s.ph + i;
                            if (ih < 0 || ih >= s.h) continue;
                            const T* src = row + g * seg + (oh - t.r0) * s.wo;
                            T* d = plane + ih * s.w + (lo * s.sw - s.pw + j);
                            if (s.sw == 1)
                                for (index_t ow = lo; ow < hi; ++ow) d[ow - lo] += src[ow];
                            else
                                for (index_t ow = lo; ow < hi; ++ow) d[(ow - lo) * s.sw] += src[ow];
                        }
                    }
                }
    });
}

// tg::gemm, with the empty cases (nothing to compute, or an empty sum) handled here.
template <class T>
void mm(bool ta, bool tb, index_t m, index_t n, index_t k, const T* a, index_t lda, const T* b,
        index_t ldb, T* c, index_t ldc, bool accumulate) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (!accumulate)
            for (index_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
        return;
    }
    gemm<T>(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate, nullptr, false);
}

// The (F x tile columns) block of an (N, F, Ho, Wo) array for `tile`: a pointer into it with its
// row distance when the tile is one image, else copied into `buf` (columns side by side).
template <class T>
const T* gather_rows(const Geom& s, const T* a, const Tile& t, T* buf, index_t& ld) {
    index_t p = s.p();
    if (t.g == 1) {
        ld = p;
        return a + t.n0 * s.f * p + t.r0 * s.wo;
    }
    ld = t.cols(s);
    for (index_t f = 0; f < s.f; ++f)
        for (index_t g = 0; g < t.g; ++g) {
            const T* src = a + ((t.n0 + g) * s.f + f) * p;
            std::copy(src, src + p, buf + f * ld + g * p);
        }
    return buf;
}

// One contiguous range of images per thread: f(thread, begin, end). With fewer images than
// threads, or inside a parallel region already, one range on the calling thread, whose GEMMs
// and im2col/col2im then use the threads.
index_t image_ranges(index_t n) {
    if (in_parallel() || n < max_threads()) return 1;
    return max_threads();
}

template <class Fn> void for_image_ranges(index_t n, index_t ranges, Fn&& f) {
    if (ranges <= 1) {
        if (n > 0) f(index_t{0}, index_t{0}, n);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(ranges))
    for (index_t t = 0; t < ranges; ++t) f(t, n * t / ranges, n * (t + 1) / ranges);
}

// ------------------------------------------------------------------ kernels

template <class T> void forward(const Geom& s, const T* x, const T* w, const T* bias, T* out) {
    index_t k = s.k(), p = s.p(), cap = max_tile_cols(s);
    for_image_ranges(s.n, image_ranges(s.n), [&](index_t, index_t begin, index_t end) {
        std::unique_ptr<T[]> cols(uninitialized<T>(k * cap));   // uninitialized: untouched pages cost nothing
        std::unique_ptr<T[]> tmp(uninitialized<T>(s.f * cap));   // grouped tiles' output
        for_tiles(s, begin, end, [&](const Tile& t) {
            index_t ncols = t.cols(s);
            const T* b = cols.get();
            index_t ldb = ncols;
            if (t.direct(s)) {
                b = x + t.n0 * s.c * p + t.r0 * s.wo;
                ldb = p;
            } else {
                im2col(s, x, t, cols.get());
            }
            if (t.g == 1) {
                T* c = out + t.n0 * s.f * p + t.r0 * s.wo;
                mm<T>(false, false, s.f, ncols, k, w, k, b, ldb, c, p, false);
                if (bias)
                    for (index_t f = 0; f < s.f; ++f)
                        for (index_t q = 0; q < ncols; ++q) c[f * p + q] += bias[f];
                return;
            }
            // Several images: the GEMM's columns are image-major; copy them out per image.
            mm<T>(false, false, s.f, ncols, k, w, k, b, ldb, tmp.get(), ncols, false);
            for (index_t g = 0; g < t.g; ++g)
                for (index_t f = 0; f < s.f; ++f) {
                    const T* src = tmp.get() + f * ncols + g * p;
                    T* dst = out + ((t.n0 + g) * s.f + f) * p;
                    T add = bias ? bias[f] : T(0);
                    for (index_t q = 0; q < p; ++q) dst[q] = src[q] + add;
                }
        });
    });
}

template <class T> void backward_data(const Geom& s, const T* grad_out, const T* w, T* dx) {
    index_t k = s.k(), p = s.p(), cap = max_tile_cols(s), hw = s.h * s.w;
    for_image_ranges(s.n, image_ranges(s.n), [&](index_t, index_t begin, index_t end) {
        std::unique_ptr<T[]> dcols(uninitialized<T>(k * cap));   // uninitialized: untouched pages cost nothing
        std::unique_ptr<T[]> tmp(uninitialized<T>(s.f * cap));   // grouped tiles' grad_out
        for_tiles(s, begin, end, [&](const Tile& t) {
            index_t ncols = t.cols(s), ldb;
            const T* b = gather_rows(s, grad_out, t, tmp.get(), ldb);
            if (t.direct(s)) {     // dx[n] is its own cols: the GEMM writes it, no col2im
                mm<T>(true, false, k, ncols, s.f, w, k, b, ldb, dx + t.n0 * s.c * p + t.r0 * s.wo,
                      p, false);
                return;
            }
            if (t.r0 == 0)          // first tile of these images: col2im adds onto zeros
                std::fill(dx + t.n0 * s.c * hw, dx + (t.n0 + t.g) * s.c * hw, T(0));
            mm<T>(true, false, k, ncols, s.f, w, k, b, ldb, dcols.get(), ncols, false);
            col2im(s, dcols.get(), t, dx);
        });
    });
}

template <class T> void backward_weight(const Geom& geom, const T* grad_out, const T* x, T* dw) {
    Geom s = geom;
    s.target = kTargetColsWeight;
    index_t k = s.k(), p = s.p(), cap = max_tile_cols(s), size = s.f * k;
    index_t ranges = image_ranges(s.n);
    std::fill(dw, dw + size, T(0));     // the result for an empty batch
    // Ranges 1.. sum into partials of their own; range 0 into dw.
    std::unique_ptr<T[]> partial(uninitialized<T>((ranges - 1) * size));
    for_image_ranges(s.n, ranges, [&](index_t r, index_t begin, index_t end) {
        T* acc = r == 0 ? dw : partial.get() + (r - 1) * size;
        std::unique_ptr<T[]> cols(uninitialized<T>(k * cap));   // uninitialized: untouched pages cost nothing
        std::unique_ptr<T[]> tmp(uninitialized<T>(s.f * cap));
        bool first = true;
        for_tiles(s, begin, end, [&](const Tile& t) {
            index_t ncols = t.cols(s), lda;
            const T* a = gather_rows(s, grad_out, t, tmp.get(), lda);
            const T* b = cols.get();
            index_t ldb = ncols;
            if (t.direct(s)) {
                b = x + t.n0 * s.c * p + t.r0 * s.wo;
                ldb = p;
            } else {
                im2col(s, x, t, cols.get());
            }
            // dw (F x K) += grad_out tile (F x cols) @ cols^T; cols is K x cols: B transposed.
            mm<T>(false, true, s.f, k, ncols, a, lda, b, ldb, acc, k, !first);
            first = false;
        });
    });
    if (ranges > 1) {
        T* parts = partial.get();
        parallel_for(size, 4096, [&](index_t b, index_t e) {
            for (index_t r = 0; r + 1 < ranges; ++r)
                for (index_t i = b; i < e; ++i) dw[i] += parts[r * size + i];
        });
    }
}

// ------------------------------------------------------------------ argument checks

// Geometry from the input and kernel shapes, stride and padding; checks that the kernel fits.
Geom geometry(const char* op, const std::vector<index_t>& xs, const std::vector<index_t>& ws,
              py::handle stride, py::handle padding) {
    auto st = ints_arg(op, "stride", stride, 2, 1);
    auto pd = ints_arg(op, "padding", padding, 2, 0);
    Geom s{xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], st[0], st[1], pd[0], pd[1], 0, 0};
    if (xs[1] != ws[1])
        value_error(op, "the input has " + std::to_string(xs[1]) + " channels, the weight " +
                            std::to_string(ws[1]) + " (input " + shape_str(xs) + ", weight " +
                            shape_str(ws) + ")");
    if (s.kh < 1 || s.kw < 1) value_error(op, "the kernel must be at least 1x1, got weight " + shape_str(ws));
    if (s.h + 2 * s.ph < s.kh || s.w + 2 * s.pw < s.kw)
        value_error(op, "kernel (" + std::to_string(s.kh) + ", " + std::to_string(s.kw) +
                            ") is larger than the padded input (" + std::to_string(s.h + 2 * s.ph) +
                            ", " + std::to_string(s.w + 2 * s.pw) + ")");
    s.ho = (s.h + 2 * s.ph - s.kh) / s.sh + 1;
    s.wo = (s.w + 2 * s.pw - s.kw) / s.sw + 1;
    return s;
}

py::array conv2d_fwd(py::handle x_, py::handle w_, py::handle bias_, py::handle stride,
                     py::handle padding) {
    const char* op = "conv2d_fwd";
    py::array x = array_arg(op, "x", x_), w = array_arg(op, "w", w_);
    DType dt = same_float_dtype(op, {{"x", &x}, {"w", &w}});
    expect_ndim(op, "x", x, 4);
    expect_ndim(op, "w", w, 4);
    Geom s = geometry(op, shape_of(x), shape_of(w), stride, padding);
    py::array bias;
    bool has_bias = !bias_.is_none();
    if (has_bias) {
        bias = array_arg(op, "bias", bias_);
        expect_dtype(op, "bias", bias, dt);
        expect_shape(op, "bias", bias, {s.f});
    }
    py::array out = new_array(dt, {s.n, s.f, s.ho, s.wo});
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* xp = cptr<T>(x);
        const T* wp = cptr<T>(w);
        const T* bp = has_bias ? cptr<T>(bias) : nullptr;
        T* op_ = ptr<T>(out);
        py::gil_scoped_release release;
        forward<T>(s, xp, wp, bp, op_);
    });
    return out;
}

py::array conv2d_bwd_data(py::handle grad_out_, py::handle w_, py::handle x_shape,
                          py::handle stride, py::handle padding) {
    const char* op = "conv2d_bwd_data";
    py::array g = array_arg(op, "grad_out", grad_out_), w = array_arg(op, "w", w_);
    DType dt = same_float_dtype(op, {{"grad_out", &g}, {"w", &w}});
    expect_ndim(op, "grad_out", g, 4);
    expect_ndim(op, "w", w, 4);
    auto xs = ints_arg(op, "x_shape", x_shape, 4, 0);
    Geom s = geometry(op, xs, shape_of(w), stride, padding);
    expect_shape(op, "grad_out", g, {s.n, s.f, s.ho, s.wo});
    py::array dx = new_array(dt, xs);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* gp = cptr<T>(g);
        const T* wp = cptr<T>(w);
        T* dp = ptr<T>(dx);
        py::gil_scoped_release release;
        if (s.f == 0 || s.ho * s.wo == 0) {
            std::fill(dp, dp + s.n * s.c * s.h * s.w, T(0));
            return;
        }
        backward_data<T>(s, gp, wp, dp);
    });
    return dx;
}

py::array conv2d_bwd_weight(py::handle grad_out_, py::handle x_, py::handle w_shape,
                            py::handle stride, py::handle padding) {
    const char* op = "conv2d_bwd_weight";
    py::array g = array_arg(op, "grad_out", grad_out_), x = array_arg(op, "x", x_);
    DType dt = same_float_dtype(op, {{"grad_out", &g}, {"x", &x}});
    expect_ndim(op, "grad_out", g, 4);
    expect_ndim(op, "x", x, 4);
    auto ws = ints_arg(op, "w_shape", w_shape, 4, 0);
    Geom s = geometry(op, shape_of(x), ws, stride, padding);
    expect_shape(op, "grad_out", g, {s.n, s.f, s.ho, s.wo});
    py::array dw = new_array(dt, ws);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* gp = cptr<T>(g);
        const T* xp = cptr<T>(x);
        T* dp = ptr<T>(dw);
        py::gil_scoped_release release;
        backward_weight<T>(s, gp, xp, dp);
    });
    return dw;
}

}  // namespace

void register_conv(py::module_& m) {
    m.def("conv2d_fwd", &conv2d_fwd, py::arg("x"), py::arg("w"), py::arg("bias"),
          py::arg("stride"), py::arg("padding"),
          "x (N, C, H, W) cross-correlated with w (F, C, KH, KW), + bias (F,) or None; stride and "
          "padding (h, w) pairs. Returns (N, F, Ho, Wo).");
    m.def("conv2d_bwd_data", &conv2d_bwd_data, py::arg("grad_out"), py::arg("w"),
          py::arg("x_shape"), py::arg("stride"), py::arg("padding"),
          "dL/dx (x_shape) from grad_out (N, F, Ho, Wo) and w.");
    m.def("conv2d_bwd_weight", &conv2d_bwd_weight, py::arg("grad_out"), py::arg("x"),
          py::arg("w_shape"), py::arg("stride"), py::arg("padding"),
          "dL/dw (w_shape) from grad_out (N, F, Ho, Wo) and x.");
}

}  // namespace tg
