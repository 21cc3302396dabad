// Log-softmax and the fused softmax cross-entropy over the last axis, forward and backward.
//
//   log_softmax_fwd(x)            y = x - m - log(sum(exp(x - m))), m the row's maximum
//   log_softmax_bwd(grad, y)      grad - exp(y) * sum(grad)
//   cross_entropy_fwd(logits, target, reduction, ignore_index)
//                                 loss[n] = log(s) - (x[n, t] - m), s = sum(exp(x[n] - m)):
//                                 the N losses ('none'), their sum ('sum') or mean ('mean')
//   cross_entropy_bwd(logits, target, grad_loss, reduction, ignore_index)
//                                 (softmax(x[n]) - onehot(t)) * g[n], g[n] = grad_loss[n]
//                                 ('none') or the one element grad_loss (/ K for 'mean')
//
// A row whose target t equals ignore_index (default -100, PyTorch's) has loss 0 (its row is
// not read) and g[n] = 0 (its gradient softmax * 0: 0, or NaN for a NaN row, as PyTorch's);
// 'mean' divides by K, the number of rows not ignored (0/0 = NaN when every row is).
//
// An input (..., C) is R = size / C rows of length C, each handled by one thread from start
// to end, every pass over the row after the first reading it from L1/L2 (a row of C = 10000
// float32 is 40 KB):
//
//   kernel              passes over a row                         DRAM bytes (s per element)
//   log_softmax_fwd     max; sum exp(x - m); write y              2*R*C*s
//   log_softmax_bwd     sum grad; write grad - exp(y) * sum       3*R*C*s
//   cross_entropy_fwd   max; sum exp(x - m)                       R*C*s + R*(8 + s)
//   cross_entropy_bwd   max; e = exp(x - m) written to the        2*R*C*s + R*(8 + s)
//                       output, summed; output *= g / s, -g at t
//
// FLOPs: about 5 per element plus one exp (about 20 vector instructions per vector of results:
// R*C exps per kernel); a log per row. At the
// language model's 700 x 10000 float32 that is 28 MB read per forward, 56 MB moved per
// backward, and 7M exps: memory-bound on a core only if the exp costs a few cycles per vector,
// so exp is computed here (exp_fast) rather than by std::exp, whose calls do not vectorise.
//
// exp_fast(x): x = n*ln2 + r with n = round(x / ln2) and |r| <= ln2/2 (ln2 in two parts, so
// n*ln2 is exact), e^r by its Taylor polynomial (degree 6 in float32: relative error below
// 2.5e-7, 2 ulp; degree 12 in float64: below 4e-16), times 2^n built in the exponent bits (as two
// factors 2^n1 * 2^n2, so that n down to -150 gives subnormals or 0 and up to 129 gives inf,
// never a wrapped exponent). NaN stays NaN; -inf gives 0, +inf gives inf. All branch-free, so
// the loops that call it vectorise.
//
// Sums of a row: 32 partial sums in the input's type per block of 1024 elements, the blocks
// added in double (as reduce.cpp). NaN and infinity follow the specification's formulas: a row
// with a NaN gives NaN everywhere; a row of -inf gives NaN (x - m = -inf - -inf).
//
// Threads: rows split among the threads in contiguous ranges (at least 32K elements per
// thread). The 'sum' and 'mean' losses are summed in order over the rows after the parallel
// part: results are bit-identical for any thread count.
//
// Targets must lie in [0, C) or equal ignore_index: checked before anything is computed (the
// same scan counts K); one outside raises tilegrad.errors.IndexRangeError (an IndexError), as
// the Tensor layer does.
#include "common.h"
#include "simd.h"
#include "vmath.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

namespace tg {
namespace {

constexpr index_t kLanes = 32;         // partial sums per block (as reduce.cpp)
constexpr index_t kBlock = 1024;       // elements per block of a row
constexpr index_t kGrain = 32 * 1024;  // elements per thread, at least

// ------------------------------------------------------------------ row helpers

// 32 lanes over blocks of 1024, then a fixed tree, the tail in order; `f(i)` is element i.
template <class T, class F> TG_INLINE T lanes_block_sum(index_t n, F f) {
    T lane[kLanes];
    for (index_t j = 0; j < kLanes; ++j) lane[j] = T(0);
    index_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (index_t j = 0; j < kLanes; ++j) lane[j] += f(i + j);
    for (index_t j = 0; j < 16; ++j) lane[j] += lane[j + 16];
    for (index_t j = 0; j < 8; ++j) lane[j] += lane[j + 8];
    for (index_t j = 0; j < 4; ++j) lane[j] += lane[j + 4];
    for (index_t j = 0; j < 2; ++j) lane[j] += lane[j + 2];
    T r = lane[0] + lane[1];
    for (; i < n; ++i) r += f(i);
    return r;
}

// The sum of f(0..C-1): blocks of 1024 by lanes_block_sum, the blocks added in double.
template <class T, class F> TG_INLINE double row_sum(index_t C, F f) {
    double s = 0;
    for (index_t b = 0; b < C; b += kBlock)
        s += lanes_block_sum<T>(std::min(kBlock, C - b), [&](index_t i) { return f(b + i); });
    return s;
}

// The row's maximum, NaN if it has one (as np.max): 32 lanes of compare-select (one max
// instruction each, which drops a NaN) and beside them 32 flags noting NaNs, in one pass with
// no branch, so that it vectorises.
template <class T> TG_INLINE T row_max(const T* __restrict x, index_t C) {
    using Flag = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
    const T lowest = -std::numeric_limits<T>::infinity();
    T lane[kLanes];
    Flag nan[kLanes];
    for (index_t j = 0; j < kLanes; ++j) lane[j] = lowest, nan[j] = 0;
    index_t i = 0;
    for (; i + kLanes <= C; i += kLanes)
        for (index_t j = 0; j < kLanes; ++j) {
            const T v = x[i + j];
            lane[j] = v > lane[j] ? v : lane[j];
            nan[j] |= v != v;
        }
    T m = lowest;
    Flag any = 0;
    for (index_t j = 0; j < kLanes; ++j) {
        m = lane[j] > m ? lane[j] : m;
        any |= nan[j];
    }
    for (; i < C; ++i) {
        m = x[i] > m ? x[i] : m;
        any |= x[i] != x[i];
    }
    return any ? std::numeric_limits<T>::quiet_NaN() : m;
}

// ------------------------------------------------------------------ kernels (rows [r0, r1))

template <class T> struct LogSoftmaxFwd {
    static TG_INLINE void body(const T* x, T* y, index_t C, index_t r0, index_t r1) {
        for (index_t r = r0; r < r1; ++r) {
            const T* __restrict xr = x + r * C;
            T* __restrict yr = y + r * C;
            const T m = row_max(xr, C);
            const T s = static_cast<T>(row_sum<T>(C, [&](index_t c) { return exp_fast(xr[c] - m); }));
            const T ls = std::log(s);
            for (index_t c = 0; c < C; ++c) yr[c] = (xr[c] - m) - ls;
        }
    }
};

template <class T> struct LogSoftmaxBwd {
    static TG_INLINE void body(const T* g, const T* y, T* out, index_t C, index_t r0, index_t r1) {
        for (index_t r = r0; r < r1; ++r) {
            const T* __restrict gr = g + r * C;
            const T* __restrict yr = y + r * C;
            T* __restrict o = out + r * C;
            const T sg = static_cast<T>(row_sum<T>(C, [&](index_t c) { return gr[c]; }));
            for (index_t c = 0; c < C; ++c) o[c] = gr[c] - exp_fast(yr[c]) * sg;
        }
    }
};

// loss[r] for rows [r0, r1); the targets are in range or ignored (checked by the binding).
template <class T, class I> struct CrossEntropyFwd {
    static TG_INLINE void body(const T* x, const I* target, std::int64_t ignore, T* loss,
                               index_t C, index_t r0, index_t r1) {
        for (index_t r = r0; r < r1; ++r) {
            if (target[r] == ignore) {
                loss[r] = T(0);
                continue;
            }
            const T* __restrict xr = x + r * C;
            const T m = row_max(xr, C);
            const T s = static_cast<T>(row_sum<T>(C, [&](index_t c) { return exp_fast(xr[c] - m); }));
            loss[r] = -((xr[target[r]] - m) - std::log(s));
        }
    }
};

// g_step 1: g[r] per row ('none'); g_step 0: the one value g[0] for all rows, divided by
// `divisor` ('sum': 1, 'mean': K). An ignored row takes g = 0 and no onehot.
template <class T, class I> struct CrossEntropyBwd {
    static TG_INLINE void body(const T* x, const I* target, std::int64_t ignore, const T* g,
                               index_t g_step, T divisor, T* out, index_t C, index_t r0,
                               index_t r1) {
        for (index_t r = r0; r < r1; ++r) {
            const T* __restrict xr = x + r * C;
            T* __restrict o = out + r * C;
            const T m = row_max(xr, C);
            const T s = static_cast<T>(row_sum<T>(C, [&](index_t c) {
                const T e = exp_fast(xr[c] - m);
                o[c] = e;
                return e;
            }));
            const bool kept = target[r] != ignore;
            const T gr = !kept ? T(0) : g_step ? g[r] : g[0] / divisor;
            const T scale = gr / s;
            for (index_t c = 0; c < C; ++c) o[c] *= scale;
            if (kept) o[target[r]] -= gr;
        }
    }
};

// ------------------------------------------------------------------ bindings

enum class Reduction { none, sum, mean };

Reduction reduction_arg(const char* op, const std::string& r) {
    if (r == "none") return Reduction::none;
    if (r == "sum") return Reduction::sum;
    if (r == "mean") return Reduction::mean;
    value_error(op, "reduction must be 'none', 'sum' or 'mean', got '" + r + "'");
}

[[noreturn]] void index_range_error(const std::string& what) {
    // tilegrad.errors.IndexRangeError, an IndexError: what the Tensor layer raises
    py::object cls;
    try {
        cls = py::module_::import("tilegrad.errors").attr("IndexRangeError");
    } catch (py::error_already_set&) {
        throw py::index_error(what);
    }
    PyErr_SetString(cls.ptr(), what.c_str());
    throw py::error_already_set();
}

// (logits, target) checked: logits (N, C) float, target (N,) int32 or int64 with every value in
// [0, C) or equal to `ignore`. Returns whether target is int64; `kept` gets the number of rows
// not ignored.
bool check_ce(const char* op, const py::array& logits, const py::array& target,
              std::int64_t ignore, index_t& kept) {
    float_dtype(op, "logits", logits);
    expect_ndim(op, "logits", logits, 2);
    bool i64 = index_dtype(op, "target", target);
    expect_shape(op, "target", target, {dim(logits, 0)});
    const index_t N = dim(logits, 0), C = dim(logits, 1);
    kept = 0;
    auto scan = [&](auto* t) {
        for (index_t n = 0; n < N; ++n) {
            if (t[n] == ignore) continue;
            if (t[n] < 0 || t[n] >= C)
                index_range_error(std::string(op) + ": target " + std::to_string(t[n]) +
                                  " is out of range for " + std::to_string(C) + " classes");
            ++kept;
        }
    };
    if (i64) scan(cptr<std::int64_t>(target));
    else scan(cptr<std::int32_t>(target));
    return i64;
}

template <class K, class... A> void rows_parallel(index_t rows, index_t C, A... a) {
    parallel_for(rows, std::max<index_t>(1, kGrain / std::max<index_t>(C, 1)),
                 [&](index_t r0, index_t r1) { run_simd<K>(a..., C, r0, r1); });
}

py::array log_softmax_fwd(py::handle x_) {
    const char* op = "log_softmax_fwd";
    py::array x = array_arg(op, "x", x_);
    DType dt = float_dtype(op, "x", x);
    if (x.ndim() < 1) value_error(op, "x must have at least 1 dimension, got shape ()");
    const index_t C = dim(x, static_cast<int>(x.ndim()) - 1);
    py::array y = new_array(dt, shape_of(x));
    if (numel(x) == 0) return y;
    const index_t rows = numel(x) / C;
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* xp = cptr<T>(x);
        T* yp = ptr<T>(y);
        py::gil_scoped_release release;
        rows_parallel<LogSoftmaxFwd<T>>(rows, C, xp, yp);
    });
    return y;
}

py::array log_softmax_bwd(py::handle grad_, py::handle y_) {
    const char* op = "log_softmax_bwd";
    py::array grad = array_arg(op, "grad", grad_);
    py::array y = array_arg(op, "y", y_);
    DType dt = same_float_dtype(op, {{"grad", &grad}, {"y", &y}});
    if (grad.ndim() < 1) value_error(op, "grad must have at least 1 dimension, got shape ()");
    expect_shape(op, "y", y, shape_of(grad));
    const index_t C = dim(grad, static_cast<int>(grad.ndim()) - 1);
    py::array out = new_array(dt, shape_of(grad));
    if (numel(grad) == 0) return out;
    const index_t rows = numel(grad) / C;
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* gp = cptr<T>(grad);
        const T* yp = cptr<T>(y);
        T* op_ = ptr<T>(out);
        py::gil_scoped_release release;
        rows_parallel<LogSoftmaxBwd<T>>(rows, C, gp, yp, op_);
    });
    return out;
}

py::array cross_entropy_fwd(py::handle logits_, py::handle target_, const std::string& reduction,
                            std::int64_t ignore_index) {
    const char* op = "cross_entropy_fwd";
    Reduction red = reduction_arg(op, reduction);
    py::array logits = array_arg(op, "logits", logits_);
    py::array target = array_arg(op, "target", target_);
    DType dt = float_dtype(op, "logits", logits);
    index_t kept = 0;
    const bool i64 = check_ce(op, logits, target, ignore_index, kept);
    const index_t N = dim(logits, 0), C = dim(logits, 1);
    py::array out = red == Reduction::none ? new_array(dt, {N}) : new_array(dt, {});
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* xp = cptr<T>(logits);
        T* op_ = ptr<T>(out);
        const void* tp = target.data();
        py::gil_scoped_release release;
        std::vector<T> losses(red == Reduction::none ? 0 : static_cast<size_t>(N));
        T* lp = red == Reduction::none ? op_ : losses.data();
        if (i64) rows_parallel<CrossEntropyFwd<T, std::int64_t>>(N, C, xp, static_cast<const std::int64_t*>(tp), ignore_index, lp);
        else rows_parallel<CrossEntropyFwd<T, std::int32_t>>(N, C, xp, static_cast<const std::int32_t*>(tp), ignore_index, lp);
        if (red != Reduction::none) {
            double total = 0;                       // in order: the same for any thread count
            for (index_t n = 0; n < N; ++n) total += losses[static_cast<size_t>(n)];
            // 'mean' of no rows kept: 0/0 = NaN, as the specification
            *op_ = red == Reduction::mean ? static_cast<T>(total / static_cast<double>(kept))
                                          : static_cast<T>(total);
        }
    });
    return out;
}

py::array cross_entropy_bwd(py::handle logits_, py::handle target_, py::handle grad_loss_,
                            const std::string& reduction, std::int64_t ignore_index) {
    const char* op = "cross_entropy_bwd";
    Reduction red = reduction_arg(op, reduction);
    py::array logits = array_arg(op, "logits", logits_);
    py::array target = array_arg(op, "target", target_);
    py::array grad_loss = array_arg(op, "grad_loss", grad_loss_);
    DType dt = same_float_dtype(op, {{"logits", &logits}, {"grad_loss", &grad_loss}});
    index_t kept = 0;
    const bool i64 = check_ce(op, logits, target, ignore_index, kept);
    const index_t N = dim(logits, 0), C = dim(logits, 1);
    if (red == Reduction::none) expect_shape(op, "grad_loss", grad_loss, {N});
    else if (numel(grad_loss) != 1)
        value_error(op, "grad_loss must hold one element for reduction '" + reduction +
                            "', got shape " + shape_str(grad_loss));
    py::array out = new_array(dt, {N, C});
    if (N == 0 || C == 0) return out;
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* xp = cptr<T>(logits);
        const T* gp = cptr<T>(grad_loss);
        T* op_ = ptr<T>(out);
        const void* tp = target.data();
        const index_t g_step = red == Reduction::none ? 1 : 0;
        // K = 0 only when every row is ignored, and then no row divides
        const T divisor = red == Reduction::mean ? static_cast<T>(std::max<index_t>(kept, 1)) : T(1);
        py::gil_scoped_release release;
        if (i64) rows_parallel<CrossEntropyBwd<T, std::int64_t>>(N, C, xp, static_cast<const std::int64_t*>(tp), ignore_index, gp, g_step, divisor, op_);
        else rows_parallel<CrossEntropyBwd<T, std::int32_t>>(N, C, xp, static_cast<const std::int32_t*>(tp), ignore_index, gp, g_step, divisor, op_);
    });
    return out;
}

}  // namespace

void register_softmax(py::module_& m) {
    m.def("log_softmax_fwd", &log_softmax_fwd, py::arg("x"), "log(softmax(x)) over the last axis.");
    m.def("log_softmax_bwd", &log_softmax_bwd, py::arg("grad"), py::arg("y"),
          "Given y = log_softmax(x): grad - exp(y) * sum(grad) over the last axis.");
    m.def("cross_entropy_fwd", &cross_entropy_fwd, py::arg("logits"), py::arg("target"),
          py::arg("reduction") = "none", py::arg("ignore_index") = -100,
          "Per-row logsumexp(logits[n]) - logits[n, target[n]] for logits (N, C), target (N,) "
          "int64 or int32: the N losses ('none'), their sum or their mean (0-d) over the rows "
          "whose target is not ignore_index (those have loss 0).");
    m.def("cross_entropy_bwd", &cross_entropy_bwd, py::arg("logits"), py::arg("target"),
          py::arg("grad_loss"), py::arg("reduction") = "none", py::arg("ignore_index") = -100,
          "(softmax(logits) - onehot(target)) * grad_loss[:, None] ('none'), or times the one "
          "element grad_loss (/ the rows not ignored for 'mean'); 0 for an ignored row.");
}

}  // namespace tg
