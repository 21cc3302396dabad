// Batch normalisation and layer normalisation, forward and backward (training mode).
//
//   batch_norm_fwd(x, weight, bias, running_mean, running_var, momentum, eps)
//       x (N, C, L); per channel c over N and L: mean, biased var, invstd = 1/sqrt(var + eps),
//       y = (x - mean) * invstd * w + b; running stats (if given) updated in place with the
//       unbiased var * n/(n-1), n = N*L. Returns (y, mean, invstd).
//   batch_norm_bwd(grad, x, weight, mean, invstd)
//       xhat = (x - mean) * invstd; dbias = sum(grad), dweight = sum(grad * xhat) per channel;
//       dx = w * invstd * (grad - dbias/n - xhat * dweight/n). Returns (dx, dweight, dbias).
//   layer_norm_fwd(x, weight, bias, eps)     x (M, D): the same per row. Returns (y, mean, rstd).
//   layer_norm_bwd(grad, x, weight, mean, rstd)
//       gw = grad * w; dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)) per row;
//       dweight = sum over rows of grad * xhat, dbias = sum of grad. Returns (dx, dweight, dbias).
//
// Threads: batch norm splits the channels among threads, layer norm the rows (dx) and the
// columns (dweight, dbias: each thread walks every row over its own columns, so a column's sum
// is added in row order). Every sum is made in a fixed order whatever the thread count, so the
// results are bit-identical for any number of threads.
//
// Sums are accumulated in double (8 lanes, added by a fixed tree, so that the loop vectorises
// without reassociating), as the specification; the elementwise passes run in the input's type
// with the statistics rounded to it. Passes over a channel or row: 3 forward (sum, squared
// deviations, output), 2 backward; after the first they read from cache when the group fits
// (a channel of 64 x 32 x 32 float32 is 256 KB). DRAM bytes (s per element): forward 2*size*s,
// backward 3*size*s, plus layer norm's parameter pass 2*M*D*s; about 7-10 FLOPs per element.
// BatchNorm1d's (N, C) input has L = 1: each channel is a column read with stride C.
#include "common.h"
#include "simd.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tg {
namespace {

constexpr index_t kLanes = 8;          // partial sums of a loop, in double
constexpr index_t kGrain = 32 * 1024;  // elements per thread, at least

// The sum in double of f(0..n-1): 8 lanes, then a fixed tree, the tail in order.
template <class F> TG_INLINE double lanes_sum(index_t n, F f) {
    double lane[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
    index_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (index_t j = 0; j < kLanes; ++j) lane[j] += static_cast<double>(f(i + j));
    double r = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
    for (; i < n; ++i) r += static_cast<double>(f(i));
    return r;
}

// ------------------------------------------------------------------ batch norm (channels [c0, c1))

template <class T> struct BatchNormFwd {
    static TG_INLINE void body(const T* x, const T* w, const T* b, T* y, T* mean, T* invstd,
                               T* run_mean, T* run_var, double momentum, double eps, index_t N,
                               index_t C, index_t L, index_t c0, index_t c1) {
        const index_t n = N * L;
        for (index_t c = c0; c < c1; ++c) {
            double s = 0;
            for (index_t k = 0; k < N; ++k) {
                const T* xs = x + (k * C + c) * L;
                s += lanes_sum(L, [&](index_t i) { return xs[i]; });
            }
            const double m = s / static_cast<double>(n);
            double q = 0;
            for (index_t k = 0; k < N; ++k) {
                const T* xs = x + (k * C + c) * L;
                q += lanes_sum(L, [&](index_t i) { const double d = xs[i] - m; return d * d; });
            }
            const double var = q / static_cast<double>(n);
            const double inv = 1.0 / std::sqrt(var + eps);
            const T mt = static_cast<T>(m);
            const T scale = static_cast<T>(w ? inv * w[c] : inv);
            const T shift = b ? b[c] : T(0);
            for (index_t k = 0; k < N; ++k) {
                const T* __restrict xs = x + (k * C + c) * L;
                T* __restrict ys = y + (k * C + c) * L;
                for (index_t i = 0; i < L; ++i) ys[i] = (xs[i] - mt) * scale + shift;
            }
            mean[c] = mt;
            invstd[c] = static_cast<T>(inv);
            if (run_mean) {
                const double unbiased = n > 1 ? var * n / static_cast<double>(n - 1) : var;
                run_mean[c] = static_cast<T>((1 - momentum) * run_mean[c] + momentum * m);
                run_var[c] = static_cast<T>((1 - momentum) * run_var[c] + momentum * unbiased);
            }
        }
    }
};

template <class T> struct BatchNormBwd {
    static TG_INLINE void body(const T* g, const T* x, const T* w, const T* mean, const T* invstd,
                               T* dx, T* dw, T* db, index_t N, index_t C, index_t L, index_t c0,
                               index_t c1) {
        const double n = static_cast<double>(N * L);
        for (index_t c = c0; c < c1; ++c) {
            const T m = mean[c];
            const double inv = invstd[c];
            double sg = 0, sgx = 0;
            for (index_t k = 0; k < N; ++k) {
                const T* gs = g + (k * C + c) * L;
                const T* xs = x + (k * C + c) * L;
                sg += lanes_sum(L, [&](index_t i) { return gs[i]; });
                sgx += lanes_sum(L, [&](index_t i) { return static_cast<double>(gs[i]) * (xs[i] - m); });
            }
            sgx *= inv;                                   // sum(grad * xhat)
            const double scale = w ? inv * w[c] : inv;
            // dx = scale * (g - sg/n - (x - m) * inv * sgx/n) = a*g + k*(x - m) + e
            const T a = static_cast<T>(scale), k2 = static_cast<T>(-scale * inv * sgx / n),
                    e = static_cast<T>(-scale * sg / n);
            for (index_t k = 0; k < N; ++k) {
                const T* __restrict gs = g + (k * C + c) * L;
                const T* __restrict xs = x + (k * C + c) * L;
                T* __restrict out = dx + (k * C + c) * L;
                for (index_t i = 0; i < L; ++i) out[i] = a * gs[i] + k2 * (xs[i] - m) + e;
            }
            dw[c] = static_cast<T>(sgx);
            db[c] = static_cast<T>(sg);
        }
    }
};

// ------------------------------------------------------------------ layer norm (rows [r0, r1))

template <class T> struct LayerNormFwd {
    static TG_INLINE void body(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd,
                               double eps, index_t D, index_t r0, index_t r1) {
        for (index_t r = r0; r < r1; ++r) {
            const T* __restrict xr = x + r * D;
            T* __restrict yr = y + r * D;
            const double m = lanes_sum(D, [&](index_t i) { return xr[i]; }) / static_cast<double>(D);
            const double var = lanes_sum(D, [&](index_t i) { const double d = xr[i] - m; return d * d; }) /
                               static_cast<double>(D);
            const double inv = 1.0 / std::sqrt(var + eps);
            const T mt = static_cast<T>(m), it = static_cast<T>(inv);
            if (w && b) for (index_t i = 0; i < D; ++i) yr[i] = (xr[i] - mt) * it * w[i] + b[i];
            else if (w) for (index_t i = 0; i < D; ++i) yr[i] = (xr[i] - mt) * it * w[i];
            else if (b) for (index_t i = 0; i < D; ++i) yr[i] = (xr[i] - mt) * it + b[i];
            else for (index_t i = 0; i < D; ++i) yr[i] = (xr[i] - mt) * it;
            mean[r] = mt;
            rstd[r] = it;
        }
    }
};

template <class T> struct LayerNormBwd {
    static TG_INLINE void body(const T* g, const T* x, const T* w, const T* mean, const T* rstd,
                               T* dx, index_t D, index_t r0, index_t r1) {
        const double d = static_cast<double>(D);
        for (index_t r = r0; r < r1; ++r) {
            const T* __restrict gr = g + r * D;
            const T* __restrict xr = x + r * D;
            T* __restrict out = dx + r * D;
            const T m = mean[r];
            const double inv = rstd[r];
            auto gw = [&](index_t i) { return w ? static_cast<double>(gr[i]) * w[i] : static_cast<double>(gr[i]); };
            const double s1 = lanes_sum(D, gw) / d;                                     // mean(gw)
            const double s2 = lanes_sum(D, [&](index_t i) { return gw(i) * (xr[i] - m); }) * inv / d;
            // dx = inv * (gw - s1 - (x - m) * inv * s2)
            const T it = static_cast<T>(inv), k2 = static_cast<T>(-inv * inv * s2),
                    e = static_cast<T>(-inv * s1);
            if (w) for (index_t i = 0; i < D; ++i) out[i] = it * gr[i] * w[i] + k2 * (xr[i] - m) + e;
            else for (index_t i = 0; i < D; ++i) out[i] = it * gr[i] + k2 * (xr[i] - m) + e;
        }
    }
};

// Columns [j0, j1): every row in order, so each column's sums are added in row order.
template <class T> struct LayerNormParamBwd {
    static TG_INLINE void body(const T* g, const T* x, const T* mean, const T* rstd, double* sw,
                               double* sb, index_t M, index_t D, index_t j0, index_t j1) {
        for (index_t r = 0; r < M; ++r) {
            const T* __restrict gr = g + r * D;
            const T* __restrict xr = x + r * D;
            const double m = mean[r], inv = rstd[r];
            for (index_t j = j0; j < j1; ++j) {
                const double gv = gr[j];
                sw[j] += gv * ((xr[j] - m) * inv);
                sb[j] += gv;
            }
        }
    }
};

// ------------------------------------------------------------------ bindings

// None, or a C-contiguous array of `dt` and shape (n,) (writeable if asked).
py::object optional_vec(const char* op, const char* name, py::handle h, DType dt, index_t n,
                        bool writable = false) {
    if (h.is_none()) return py::none();
    py::array a = array_arg(op, name, h, writable);
    expect_dtype(op, name, a, dt);
    expect_shape(op, name, a, {n});
    return std::move(a);
}

template <class T> T* opt(py::object& a) {
    return a.is_none() ? nullptr : static_cast<T*>(py::reinterpret_borrow<py::array>(a).mutable_data());
}

template <class T> const T* copt(const py::object& a) {
    return a.is_none() ? nullptr : static_cast<const T*>(py::reinterpret_borrow<py::array>(a).data());
}

// Groups (channels or rows) of `size` elements each: at least kGrain elements per thread.
index_t grain_for(index_t size) { return std::max<index_t>(1, kGrain / std::max<index_t>(size, 1)); }

py::tuple batch_norm_fwd(py::handle x_, py::handle w_, py::handle b_, py::handle rm_,
                         py::handle rv_, py::handle momentum_, py::handle eps_) {
    const char* op = "batch_norm_fwd";
    py::array x = array_arg(op, "x", x_);
    DType dt = float_dtype(op, "x", x);
    expect_ndim(op, "x", x, 3);
    const index_t N = dim(x, 0), C = dim(x, 1), L = dim(x, 2);
    py::object w = optional_vec(op, "weight", w_, dt, C), b = optional_vec(op, "bias", b_, dt, C);
    py::object rm = optional_vec(op, "running_mean", rm_, dt, C, true);
    py::object rv = optional_vec(op, "running_var", rv_, dt, C, true);
    if (rm.is_none() != rv.is_none())
        value_error(op, "running_mean and running_var must both be given or both be None");
    const double momentum = rm.is_none() ? 0.0 : number_arg(op, "momentum", momentum_);
    const double eps = number_arg(op, "eps", eps_);
    py::array y = new_array(dt, shape_of(x));
    py::array mean = new_array(dt, {C}), invstd = new_array(dt, {C});
    if (C == 0) return py::make_tuple(y, mean, invstd);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T *xp = cptr<T>(x), *wp = copt<T>(w), *bp = copt<T>(b);
        T *yp = ptr<T>(y), *mp = ptr<T>(mean), *ip = ptr<T>(invstd), *rmp = opt<T>(rm), *rvp = opt<T>(rv);
        py::gil_scoped_release release;
        parallel_for(C, grain_for(N * L), [&](index_t c0, index_t c1) {
            run_simd<BatchNormFwd<T>>(xp, wp, bp, yp, mp, ip, rmp, rvp, momentum, eps, N, C, L, c0, c1);
        });
    });
    return py::make_tuple(y, mean, invstd);
}

py::tuple batch_norm_bwd(py::handle g_, py::handle x_, py::handle w_, py::handle mean_,
                         py::handle invstd_) {
    const char* op = "batch_norm_bwd";
    py::array g = array_arg(op, "grad", g_), x = array_arg(op, "x", x_);
    py::array mean = array_arg(op, "mean", mean_), invstd = array_arg(op, "invstd", invstd_);
    DType dt = same_float_dtype(op, {{"grad", &g}, {"x", &x}, {"mean", &mean}, {"invstd", &invstd}});
    expect_ndim(op, "x", x, 3);
    expect_shape(op, "grad", g, shape_of(x));
    const index_t N = dim(x, 0), C = dim(x, 1), L = dim(x, 2);
    expect_shape(op, "mean", mean, {C});
    expect_shape(op, "invstd", invstd, {C});
    py::object w = optional_vec(op, "weight", w_, dt, C);
    py::array dx = new_array(dt, shape_of(x));
    py::array dw = new_zeros(dt, {C}), db = new_zeros(dt, {C});
    if (C == 0) return py::make_tuple(dx, dw, db);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T *gp = cptr<T>(g), *xp = cptr<T>(x), *wp = copt<T>(w), *mp = cptr<T>(mean),
                *ip = cptr<T>(invstd);
        T *dxp = ptr<T>(dx), *dwp = ptr<T>(dw), *dbp = ptr<T>(db);
        py::gil_scoped_release release;
        parallel_for(C, grain_for(N * L), [&](index_t c0, index_t c1) {
            run_simd<BatchNormBwd<T>>(gp, xp, wp, mp, ip, dxp, dwp, dbp, N, C, L, c0, c1);
        });
    });
    return py::make_tuple(dx, dw, db);
}

py::tuple layer_norm_fwd(py::handle x_, py::handle w_, py::handle b_, py::handle eps_) {
    const char* op = "layer_norm_fwd";
    py::array x = array_arg(op, "x", x_);
    DType dt = float_dtype(op, "x", x);
    expect_ndim(op, "x", x, 2);
    const index_t M = dim(x, 0), D = dim(x, 1);
    py::object w = optional_vec(op, "weight", w_, dt, D), b = optional_vec(op, "bias", b_, dt, D);
    const double eps = number_arg(op, "eps", eps_);
    py::array y = new_array(dt, {M, D});
    py::array mean = new_array(dt, {M}), rstd = new_array(dt, {M});
    if (M == 0) return py::make_tuple(y, mean, rstd);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T *xp = cptr<T>(x), *wp = copt<T>(w), *bp = copt<T>(b);
        T *yp = ptr<T>(y), *mp = ptr<T>(mean), *rp = ptr<T>(rstd);
        py::gil_scoped_release release;
        parallel_for(M, grain_for(D), [&](index_t r0, index_t r1) {
            run_simd<LayerNormFwd<T>>(xp, wp, bp, yp, mp, rp, eps, D, r0, r1);
        });
    });
    return py::make_tuple(y, mean, rstd);
}

py::tuple layer_norm_bwd(py::handle g_, py::handle x_, py::handle w_, py::handle mean_,
                         py::handle rstd_) {
    const char* op = "layer_norm_bwd";
    py::array g = array_arg(op, "grad", g_), x = array_arg(op, "x", x_);
    py::array mean = array_arg(op, "mean", mean_), rstd = array_arg(op, "rstd", rstd_);
    DType dt = same_float_dtype(op, {{"grad", &g}, {"x", &x}, {"mean", &mean}, {"rstd", &rstd}});
    expect_ndim(op, "x", x, 2);
    expect_shape(op, "grad", g, shape_of(x));
    const index_t M = dim(x, 0), D = dim(x, 1);
    expect_shape(op, "mean", mean, {M});
    expect_shape(op, "rstd", rstd, {M});
    py::object w = optional_vec(op, "weight", w_, dt, D);
    py::array dx = new_array(dt, {M, D});
    py::array dw = new_zeros(dt, {D}), db = new_zeros(dt, {D});
    if (M == 0 || D == 0) return py::make_tuple(dx, dw, db);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T *gp = cptr<T>(g), *xp = cptr<T>(x), *wp = copt<T>(w), *mp = cptr<T>(mean),
                *rp = cptr<T>(rstd);
        T *dxp = ptr<T>(dx), *dwp = ptr<T>(dw), *dbp = ptr<T>(db);
        py::gil_scoped_release release;
        parallel_for(M, grain_for(D), [&](index_t r0, index_t r1) {
            run_simd<LayerNormBwd<T>>(gp, xp, wp, mp, rp, dxp, D, r0, r1);
        });
        std::vector<double> sw(static_cast<size_t>(D), 0.0), sb(static_cast<size_t>(D), 0.0);
        parallel_for(D, grain_for(M), [&](index_t j0, index_t j1) {
            run_simd<LayerNormParamBwd<T>>(gp, xp, mp, rp, sw.data(), sb.data(), M, D, j0, j1);
        });
        for (index_t j = 0; j < D; ++j) {
            dwp[j] = static_cast<T>(sw[static_cast<size_t>(j)]);
            dbp[j] = static_cast<T>(sb[static_cast<size_t>(j)]);
        }
    });
    return py::make_tuple(dx, dw, db);
}

}  // namespace

void register_norm(py::module_& m) {
    m.def("batch_norm_fwd", &batch_norm_fwd, py::arg("x"), py::arg("weight"), py::arg("bias"),
          py::arg("running_mean"), py::arg("running_var"), py::arg("momentum"), py::arg("eps"),
          "Batch norm of x (N, C, L) with batch statistics: (y, mean, invstd); running stats "
          "updated in place if given.");
    m.def("batch_norm_bwd", &batch_norm_bwd, py::arg("grad"), py::arg("x"), py::arg("weight"),
          py::arg("mean"), py::arg("invstd"), "(dx, dweight, dbias) of batch_norm_fwd.");
    m.def("layer_norm_fwd", &layer_norm_fwd, py::arg("x"), py::arg("weight"), py::arg("bias"),
          py::arg("eps"), "Layer norm of each row of x (M, D): (y, mean, rstd).");
    m.def("layer_norm_bwd", &layer_norm_bwd, py::arg("grad"), py::arg("x"), py::arg("weight"),
          py::arg("mean"), py::arg("rstd"), "(dx, dweight, dbias) of layer_norm_fwd.");
}

}  // namespace tg
