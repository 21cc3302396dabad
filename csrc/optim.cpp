// Optimizer updates and the multi-tensor helpers (tilegrad.backends.numpy: sgd_step, adam_step,
// sgd_step_multi, adam_step_multi, fill_multi, norm_multi, clip_scale_multi). All in place.
//
// Each update is one pass over the n values of a parameter, reading and writing each array once
// (the NumPy backend makes several passes and temporaries):
//   SGD   reads p, g (and buf), writes p (and buf): 12 bytes/value in float32 (20 with momentum),
//         2-6 FLOPs.
//   Adam  reads p, g, m, v, writes p, m, v: 28 bytes/value in float32, ~12 FLOPs (a square root
//         and a double division among them). Memory-bound at ~19 GB/s: 4.2M float32 values (the
//         word LM's parameters, 119 MB of traffic) take about 6 ms; on one core of a faster
//         memory system the SSE2 double division (2 values per instruction) is the limit.
//   fill 4-8 bytes/value written; norm 4-8 read, 2 FLOPs; clip_scale 8-16 bytes, 1 FLOP.
//
// Rounding follows the NumPy backend operation by operation, so float32 results agree with it to
// the last bit or nearly: Python-float hyperparameters are rounded to the arrays' dtype before
// they multiply an array (NumPy 2 treats Python scalars as "weak"), while in Adam the
// denominator sqrt(v) / sqrt(1 - beta2^t) + eps is computed in double (np.sqrt of a Python
// float is a float64 scalar, which promotes), and so are the division by it and the update of
// p (then rounded to float32). One liberty: sqrt(v) is multiplied by 1/sqrt(1 - beta2^t) rather
// than divided by it, which halves the double divisions (2-wide in SSE2: they, not memory,
// bounded the pass) and moves the double result by at most an ulp, far below float32's rounding
// (float32 results stay within 1e-6 relative, nearly always bit-identical; float64 within an
// ulp or two). Separate statements keep the compiler from fusing a*b + c into one FMA where the
// ISA has one (none in baseline x86-64, which setup.py targets).
//
// The multi-tensor forms take Python lists (one call per parameter group): every array of every
// list is checked first, then the GIL is released and the parameters are updated one after
// another, as the NumPy backend's loop does (so a parameter listed twice is updated twice).
// norm_multi sums squares in double over fixed chunks of 16384 values, then adds the chunks'
// sums in order: the result is the same for any thread count.
//
// Threads: every pass splits the values of each array into contiguous ranges (parallel_for).
#include "common.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace tg {

namespace {

constexpr index_t kGrain = 32768;   // values per thread at least (~0.3 MB of Adam traffic)

// ------------------------------------------------------------------ arguments

// The items of a list or tuple.
std::vector<py::handle> list_arg(const char* op, const char* name, py::handle h) {
    if (!PyList_Check(h.ptr()) && !PyTuple_Check(h.ptr()))
        type_error(op, std::string(name) + " must be a list of arrays, got " + type_name(h));
    std::vector<py::handle> items;
    for (py::handle item : py::reinterpret_borrow<py::sequence>(h)) items.push_back(item);
    return items;
}

// Each item of list `name` as a writable (if `writable`) C-contiguous array of dtype `dt` and
// the shape of the corresponding item of `like` (when given); the message names the item.
std::vector<py::array> arrays_arg(const char* op, const char* name, py::handle h, DType dt,
                                  bool writable, const std::vector<py::array>* like) {
    std::vector<py::handle> items = list_arg(op, name, h);
    if (like && items.size() != like->size())
        value_error(op, std::string(name) + " must have " + std::to_string(like->size()) +
                            " arrays (one per parameter), got " + std::to_string(items.size()));
    std::vector<py::array> out;
    for (size_t k = 0; k < items.size(); ++k) {
        std::string item = std::string(name) + "[" + std::to_string(k) + "]";
        py::array a = array_arg(op, item.c_str(), items[k], writable);
        expect_dtype(op, item.c_str(), a, dt);
        if (like) expect_shape(op, item.c_str(), a, shape_of((*like)[k]));
        out.push_back(a);
    }
    return out;
}

// The dtype of the first array of a non-empty list of float arrays, all required to have it.
DType list_dtype(const char* op, const char* name, py::handle h) {
    std::vector<py::handle> items = list_arg(op, name, h);
    if (items.empty()) value_error(op, std::string(name) + " must not be empty");
    std::string first = std::string(name) + "[0]";
    return float_dtype(op, first.c_str(), array_arg(op, first.c_str(), items[0]));
}

// A 0-d array of dtype `dt` (writable if `writable`).
py::array scalar_arg(const char* op, const char* name, py::handle h, DType dt, bool writable) {
    py::array a = array_arg(op, name, h, writable);
    expect_dtype(op, name, a, dt);
    expect_shape(op, name, a, {});
    return a;
}

// steps: 0-d float32 arrays, one per parameter, updated in place.
std::vector<float*> steps_arg(const char* op, py::handle h, size_t count) {
    std::vector<py::handle> items = list_arg(op, "steps", h);
    if (items.size() != count)
        value_error(op, "steps must have " + std::to_string(count) +
                            " arrays (one per parameter), got " + std::to_string(items.size()));
    std::vector<float*> out;
    for (size_t k = 0; k < items.size(); ++k) {
        std::string item = "steps[" + std::to_string(k) + "]";
        py::array a = scalar_arg(op, item.c_str(), items[k], DType::f32, true);
        out.push_back(static_cast<float*>(a.mutable_data()));
    }
    return out;
}

// ------------------------------------------------------------------ SGD

struct SgdOptions {
    double momentum, dampening, weight_decay;
    bool nesterov;
};

// One pass of torch.optim.SGD's update over n values, as the NumPy backend's sgd_step:
//   d = g + wd*p;  buf = first ? d : buf*momentum + (1-dampening)*d;
//   d = nesterov ? d + momentum*buf : buf;  p -= lr*d
// (with the weight decay and momentum parts skipped when they are 0, as `if weight_decay:`).
template <class T>
void sgd_kernel(T* param, const T* grad, T* buf, index_t n, T lr, const SgdOptions& o, bool first) {
    const T wd = static_cast<T>(o.weight_decay), mom = static_cast<T>(o.momentum);
    const T damp = static_cast<T>(1 - o.dampening);
    const bool decay = o.weight_decay != 0, momentum = o.momentum != 0;
    parallel_for(n, kGrain, [&](index_t begin, index_t end) {
        for (index_t k = begin; k < end; ++k) {
            T d = grad[k];
            if (decay) {
                T t = wd * param[k];
                d = d + t;
            }
            if (momentum) {
                T b;
                if (first) {
                    b = d;
                } else {
                    b = buf[k] * mom;
                    T t = damp * d;
                    b = b + t;
                }
                buf[k] = b;
                if (o.nesterov) {
                    T t = mom * b;
                    d = d + t;
                } else {
                    d = b;
                }
            }
            T step = lr * d;
            param[k] = param[k] - step;
        }
    });
}

SgdOptions sgd_options(const char* op, py::handle momentum, py::handle dampening,
                       py::handle weight_decay, py::handle nesterov) {
    return {number_arg(op, "momentum", momentum), number_arg(op, "dampening", dampening),
            number_arg(op, "weight_decay", weight_decay), bool_arg(op, "nesterov", nesterov)};
}

void sgd_step(py::handle param_h, py::handle grad_h, py::handle buf_h, py::handle lr_h,
              py::handle momentum, py::handle dampening, py::handle weight_decay,
              py::handle nesterov, py::handle first_h) {
    const char* op = "sgd_step";
    py::array param = array_arg(op, "param", param_h, true), grad = array_arg(op, "grad", grad_h);
    DType dt = same_float_dtype(op, {{"param", &param}, {"grad", &grad}});
    expect_shape(op, "grad", grad, shape_of(param));
    double lr = number_arg(op, "lr", lr_h);
    SgdOptions o = sgd_options(op, momentum, dampening, weight_decay, nesterov);
    bool first = bool_arg(op, "first", first_h);
    py::array buf;
    if (o.momentum != 0) {
        buf = array_arg(op, "buf", buf_h, true);
        expect_dtype(op, "buf", buf, dt);
        expect_shape(op, "buf", buf, shape_of(param));
    }
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        T *p = ptr<T>(param), *b = o.momentum != 0 ? ptr<T>(buf) : nullptr;
        const T* g = cptr<T>(grad);
        index_t n = numel(param);
        py::gil_scoped_release release;
        sgd_kernel(p, g, b, n, static_cast<T>(lr), o, first);
    });
}

void sgd_step_multi(py::handle params_h, py::handle grads_h, py::handle bufs_h, py::handle steps_h,
                    py::handle lr_h, py::handle momentum, py::handle dampening,
                    py::handle weight_decay, py::handle nesterov) {
    const char* op = "sgd_step_multi";
    DType dt = list_dtype(op, "params", params_h);
    std::vector<py::array> params = arrays_arg(op, "params", params_h, dt, true, nullptr);
    std::vector<py::array> grads = arrays_arg(op, "grads", grads_h, dt, false, &params);
    py::array lr = scalar_arg(op, "lr", lr_h, dt, false);
    SgdOptions o = sgd_options(op, momentum, dampening, weight_decay, nesterov);
    std::vector<py::array> bufs;
    std::vector<float*> steps;
    if (o.momentum != 0) {
        bufs = arrays_arg(op, "bufs", bufs_h, dt, true, &params);
        steps = steps_arg(op, steps_h, params.size());
    }
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        std::vector<T*> p, b;
        std::vector<const T*> g;
        std::vector<index_t> n;
        for (size_t k = 0; k < params.size(); ++k) {
            p.push_back(ptr<T>(params[k]));
            g.push_back(cptr<T>(grads[k]));
            b.push_back(o.momentum != 0 ? ptr<T>(bufs[k]) : nullptr);
            n.push_back(numel(params[k]));
        }
        const T rate = *cptr<T>(lr);
        py::gil_scoped_release release;
        for (size_t k = 0; k < p.size(); ++k) {
            bool first = false;
            if (o.momentum != 0) {   // the count is float32, incremented as the NumPy backend's
                *steps[k] = *steps[k] + 1.0f;
                first = *steps[k] == 1.0f;
            }
            sgd_kernel(p[k], g[k], b[k], n[k], rate, o, first);
        }
    });
}

// ------------------------------------------------------------------ Adam

struct AdamOptions {
    double beta1, beta2, eps, weight_decay;
};

// Square roots of x[0..n) in place. The compiler cannot vectorise std::sqrt without
// -fno-math-errno (it must be able to set errno for a negative argument), so on x86-64 this uses
// SSE2's sqrtps/sqrtpd, which round correctly as std::sqrt does (and give NaN where it does).
inline void sqrt_inplace(float* x, index_t n) {
    index_t k = 0;
#ifdef __SSE2__
    for (; k + 4 <= n; k += 4) _mm_storeu_ps(x + k, _mm_sqrt_ps(_mm_loadu_ps(x + k)));
#endif
    for (; k < n; ++k) x[k] = std::sqrt(x[k]);
}

inline void sqrt_inplace(double* x, index_t n) {
    index_t k = 0;
#ifdef __SSE2__
    for (; k + 2 <= n; k += 2) _mm_storeu_pd(x + k, _mm_sqrt_pd(_mm_loadu_pd(x + k)));
#endif
    for (; k < n; ++k) x[k] = std::sqrt(x[k]);
}

// One pass of torch.optim.Adam's update over n values at step `step`, as adam_step:
//   g += wd*p;  m += (1-beta1)*(g - m);  v = v*beta2 + (1-beta2)*g*g;
//   p -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// the denominator, the division and the subtraction in double (see the top of the file). In blocks
// of 256 values (a few KB, in L1): the moments, then the block's square roots (sqrt_inplace),
// then the parameters, so that each of the three loops vectorises.
template <class T>
void adam_kernel(T* param, const T* grad, T* m, T* v, index_t n, double step, double lr,
                 const AdamOptions& o) {
    constexpr index_t kBlock = 256;
    const T wd = static_cast<T>(o.weight_decay), one_b1 = static_cast<T>(1 - o.beta1);
    const T b2 = static_cast<T>(o.beta2), one_b2 = static_cast<T>(1 - o.beta2);
    const bool decay = o.weight_decay != 0;
    const T step_size = static_cast<T>(lr / (1 - std::pow(o.beta1, step)));
    const double bc2 = std::sqrt(1 - std::pow(o.beta2, step)), inv_bc2 = 1 / bc2, eps = o.eps;
    parallel_for(n, kGrain, [&](index_t begin, index_t end) {
        T root[kBlock];
        for (index_t k0 = begin; k0 < end; k0 += kBlock) {
            const index_t len = std::min(kBlock, end - k0);
            T *pb = param + k0, *mb = m + k0, *vb = v + k0;
            const T* gb = grad + k0;
            for (index_t j = 0; j < len; ++j) {
                T g = gb[j];
                if (decay) {
                    T t = wd * pb[j];
                    g = g + t;
                }
                T mk = mb[j];
                T dm = one_b1 * (g - mk);
                mb[j] = mk + dm;
                T vk = vb[j] * b2;
                T dv = one_b2 * g;
                dv = dv * g;
                vk = vk + dv;
                vb[j] = vk;
                root[j] = vk;
            }
            sqrt_inplace(root, len);
            for (index_t j = 0; j < len; ++j) {
                double denom = static_cast<double>(root[j]) * inv_bc2;
                denom = denom + eps;
                T num = step_size * mb[j];
                double delta = static_cast<double>(num) / denom;
                pb[j] = static_cast<T>(static_cast<double>(pb[j]) - delta);
            }
        }
    });
}

AdamOptions adam_options(const char* op, py::handle beta1, py::handle beta2, py::handle eps,
                         py::handle weight_decay) {
    return {number_arg(op, "beta1", beta1), number_arg(op, "beta2", beta2),
            number_arg(op, "eps", eps), number_arg(op, "weight_decay", weight_decay)};
}

// The NumPy backend divides by 1 - beta1^t in Python, which raises ZeroDivisionError at 0.
void check_bias_correction(const char* op, double step, double beta1) {
    if (1 - std::pow(beta1, step) == 0)
        value_error(op, "1 - beta1 ** step is 0 (step " + std::to_string(step) +
                            "): the step count must be at least 1");
}

void adam_step(py::handle param_h, py::handle grad_h, py::handle m_h, py::handle v_h,
               py::handle step_h, py::handle lr_h, py::handle beta1, py::handle beta2,
               py::handle eps, py::handle weight_decay) {
    const char* op = "adam_step";
    py::array param = array_arg(op, "param", param_h, true), grad = array_arg(op, "grad", grad_h);
    py::array m = array_arg(op, "m", m_h, true), v = array_arg(op, "v", v_h, true);
    DType dt = same_float_dtype(op, {{"param", &param}, {"grad", &grad}, {"m", &m}, {"v", &v}});
    for (auto [name, a] : {std::pair<const char*, py::array*>{"grad", &grad}, {"m", &m}, {"v", &v}})
        expect_shape(op, name, *a, shape_of(param));
    double step = number_arg(op, "step", step_h), lr = number_arg(op, "lr", lr_h);
    AdamOptions o = adam_options(op, beta1, beta2, eps, weight_decay);
    check_bias_correction(op, step, o.beta1);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        T *p = ptr<T>(param), *mp = ptr<T>(m), *vp = ptr<T>(v);
        const T* g = cptr<T>(grad);
        index_t n = numel(param);
        py::gil_scoped_release release;
        adam_kernel(p, g, mp, vp, n, step, lr, o);
    });
}

void adam_step_multi(py::handle params_h, py::handle grads_h, py::handle ms_h, py::handle vs_h,
                     py::handle steps_h, py::handle lr_h, py::handle beta1, py::handle beta2,
                     py::handle eps, py::handle weight_decay) {
    const char* op = "adam_step_multi";
    DType dt = list_dtype(op, "params", params_h);
    std::vector<py::array> params = arrays_arg(op, "params", params_h, dt, true, nullptr);
    std::vector<py::array> grads = arrays_arg(op, "grads", grads_h, dt, false, &params);
    std::vector<py::array> ms = arrays_arg(op, "ms", ms_h, dt, true, &params);
    std::vector<py::array> vs = arrays_arg(op, "vs", vs_h, dt, true, &params);
    std::vector<float*> steps = steps_arg(op, steps_h, params.size());
    py::array lr = scalar_arg(op, "lr", lr_h, dt, false);
    AdamOptions o = adam_options(op, beta1, beta2, eps, weight_decay);
    for (float* s : steps) check_bias_correction(op, static_cast<double>(*s + 1.0f), o.beta1);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        std::vector<T*> p, m, v;
        std::vector<const T*> g;
        std::vector<index_t> n;
        for (size_t k = 0; k < params.size(); ++k) {
            p.push_back(ptr<T>(params[k]));
            g.push_back(cptr<T>(grads[k]));
            m.push_back(ptr<T>(ms[k]));
            v.push_back(ptr<T>(vs[k]));
            n.push_back(numel(params[k]));
        }
        const double rate = static_cast<double>(*cptr<T>(lr));
        py::gil_scoped_release release;
        for (size_t k = 0; k < p.size(); ++k) {
            *steps[k] = *steps[k] + 1.0f;   // float32, incremented first, as the NumPy backend
            adam_kernel(p[k], g[k], m[k], v[k], n[k], static_cast<double>(*steps[k]), rate, o);
        }
    });
}

// ------------------------------------------------------------------ multi-tensor helpers

void fill_multi(py::handle xs_h, py::handle value_h) {
    const char* op = "fill_multi";
    std::vector<py::handle> items = list_arg(op, "xs", xs_h);
    std::vector<py::array> xs;
    std::vector<DType> dts;
    for (size_t k = 0; k < items.size(); ++k) {   // each array in its own dtype
        std::string item = "xs[" + std::to_string(k) + "]";
        xs.push_back(array_arg(op, item.c_str(), items[k], true));
        dts.push_back(float_dtype(op, item.c_str(), xs.back()));
    }
    double value = number_arg(op, "value", value_h);
    std::vector<void*> data;
    std::vector<index_t> n;
    for (auto& x : xs) {
        data.push_back(x.mutable_data());
        n.push_back(numel(x));
    }
    py::gil_scoped_release release;
    for (size_t k = 0; k < xs.size(); ++k)
        dispatch(dts[k], [&](auto zero) {
            using T = decltype(zero);
            T* x = static_cast<T*>(data[k]);
            const T val = static_cast<T>(value);
            parallel_for(n[k], kGrain, [&](index_t begin, index_t end) {
                std::fill(x + begin, x + end, val);
            });
        });
}

constexpr index_t kNormChunk = 16384;

template <class T> double sum_squares(const T* x, index_t n) {
    // Four running sums (element k into sum k % 4) for instruction-level parallelism; a fixed
    // assignment, so the result depends on nothing but the data.
    double s[4] = {0, 0, 0, 0};
    index_t k = 0;
    for (; k + 4 <= n; k += 4)
        for (int j = 0; j < 4; ++j) {
            double v = static_cast<double>(x[k + j]);
            s[j] += v * v;
        }
    for (; k < n; ++k) {
        double v = static_cast<double>(x[k]);
        s[k % 4] += v * v;
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

py::array norm_multi(py::handle xs_h) {
    const char* op = "norm_multi";
    DType dt = list_dtype(op, "xs", xs_h);
    std::vector<py::array> xs = arrays_arg(op, "xs", xs_h, dt, false, nullptr);
    py::array out = new_array(dt, {});
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        struct Chunk {
            const T* x;
            index_t n;
        };
        std::vector<Chunk> chunks;   // every array cut into chunks of kNormChunk values, in order
        for (auto& a : xs) {
            const T* x = cptr<T>(a);
            for (index_t k = 0, n = numel(a); k < n; k += kNormChunk)
                chunks.push_back({x + k, std::min(kNormChunk, n - k)});
        }
        double total = 0;
        {
            py::gil_scoped_release release;
            std::vector<double> partial(chunks.size());
            parallel_for(static_cast<index_t>(chunks.size()), 2, [&](index_t begin, index_t end) {
                for (index_t c = begin; c < end; ++c) partial[c] = sum_squares(chunks[c].x, chunks[c].n);
            });
            for (double s : partial) total += s;
        }
        *ptr<T>(out) = static_cast<T>(std::sqrt(total));
    });
    return out;
}

void clip_scale_multi(py::handle xs_h, py::handle total_h, py::handle max_norm_h) {
    const char* op = "clip_scale_multi";
    py::array total = array_arg(op, "total", total_h);
    DType dt = float_dtype(op, "total", total);
    expect_shape(op, "total", total, {});
    std::vector<py::array> xs = arrays_arg(op, "xs", xs_h, dt, true, nullptr);
    double max_norm = number_arg(op, "max_norm", max_norm_h);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        // min(max_norm / (total + 1e-6), 1) in total's dtype; NaN stays NaN (np.minimum).
        T denom = *cptr<T>(total) + static_cast<T>(1e-6);
        T q = static_cast<T>(max_norm) / denom;
        const T coef = (std::isnan(q) || q < T(1)) ? q : T(1);
        std::vector<T*> data;
        std::vector<index_t> n;
        for (auto& x : xs) {
            data.push_back(ptr<T>(x));
            n.push_back(numel(x));
        }
        py::gil_scoped_release release;
        for (size_t k = 0; k < data.size(); ++k) {
            T* x = data[k];
            parallel_for(n[k], kGrain, [&](index_t begin, index_t end) {
                for (index_t i = begin; i < end; ++i) x[i] = x[i] * coef;
            });
        }
    });
}

}  // namespace

void register_optim(py::module_& m) {
    m.def("sgd_step", &sgd_step, py::arg("param"), py::arg("grad"), py::arg("buf"), py::arg("lr"),
          py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
          py::arg("first"), "One SGD update of param (and buf) in place, as torch.optim.SGD.");
    m.def("adam_step", &adam_step, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
          py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
          py::arg("weight_decay"), "One Adam update of param, m, v in place, as torch.optim.Adam.");
    m.def("sgd_step_multi", &sgd_step_multi, py::arg("params"), py::arg("grads"), py::arg("bufs"),
          py::arg("steps"), py::arg("lr"), py::arg("momentum"), py::arg("dampening"),
          py::arg("weight_decay"), py::arg("nesterov"),
          "sgd_step on every parameter of a list; lr a 0-d array, steps 0-d float32 arrays.");
    m.def("adam_step_multi", &adam_step_multi, py::arg("params"), py::arg("grads"), py::arg("ms"),
          py::arg("vs"), py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),
          py::arg("eps"), py::arg("weight_decay"),
          "adam_step on every parameter of a list; lr a 0-d array, steps 0-d float32 arrays.");
    m.def("fill_multi", &fill_multi, py::arg("xs"), py::arg("value"),
          "Set every element of every array of xs to value, in place.");
    m.def("norm_multi", &norm_multi, py::arg("xs"),
          "The 2-norm of all of xs together, summed in double: a 0-d array of their dtype.");
    m.def("clip_scale_multi", &clip_scale_multi, py::arg("xs"), py::arg("total"),
          py::arg("max_norm"), "Multiply every array of xs by min(max_norm / (total + 1e-6), 1).");
}

}  // namespace tg
