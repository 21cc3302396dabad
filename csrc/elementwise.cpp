// Elementwise kernels: unary ops, binary ops with NumPy broadcasting, pow by a scalar, ReLU's
// backward.
//
//   unary(op, x)        y = op(x): neg abs relu sqrt exp log tanh sigmoid erf sin cos
//   binary(op, a, b)    out = op(a, b), op one of add sub mul div maximum pow, a and b broadcast
//                       against each other as NumPy does (a Python scalar b arrives as a 0-d array)
//   pow_scalar(x, p)    y = x ** p
//   relu_bwd(grad, y)   0 where y <= 0, else grad (so a NaN y passes grad, as the specification)
//
// Cost: every kernel does O(1) FLOPs per element (exp, log, tanh, pow: one <cmath> call each)
// and moves (inputs + 1) * n * s bytes (s = 4 or 8 bytes per element; a broadcast operand is
// read once per use but stays in cache). The cheap ones (neg, abs, relu, add, mul, relu_bwd,
// ...) are bound by memory bandwidth: the point is a loop the compiler vectorises and enough
// threads to saturate memory, nothing more.
//
// Broadcasting. The output's shape is NumPy's: the shapes aligned on the right, each dimension
// the operands' common size or 1 broadcast to the other's. Each operand gets one stride per
// output dimension (in elements: its C-contiguous stride, or 0 where it is broadcast). Then
//   - dimensions of size 1 are dropped, and
//   - adjacent dimensions are merged where both operands step through them as one (stride of the
//     outer = stride of the inner * size of the inner, for a and for b),
// so same-shape operands become one dimension, a bias add (N,C,H,W)+(1,C,1,1) becomes
// (N, C, H*W) with b's strides (0, 1, 0), and (700,1024)+(1024,) becomes (700, 1024) with b's
// strides (0, 1). After merging, the innermost dimension's stride is 0 or 1 for each operand,
// so the inner loop is one of four contiguous loops (array-array, array-scalar, scalar-array,
// scalar-scalar), each vectorised.
//
// Threads: the output, flattened, is split into one contiguous range per thread (at least 32K
// elements each: below that a thread costs more than it saves); a range may start and end in the
// middle of an inner row, and an odometer over the outer dimensions walks the rows it covers.
// Every output element is computed by one thread from its inputs alone: the result does not
// depend on the thread count.
//
// Vector width: each loop is compiled three times (AVX-512, AVX2+FMA, portable x86-64) from one
// template body, through GCC's target attribute, and `simd()` picks one at run time.
#include "common.h"
#include "simd.h"
#include "vmath.h"

#include <cmath>
#include <cstring>
#include <string>

namespace tg {
namespace {

constexpr index_t kGrain = 32 * 1024;   // elements per thread, at least

// ------------------------------------------------------------------ the ops
// Each op is a struct whose call operator is inlined into the vector loops.

struct Neg {
    template <class T> TG_INLINE T operator()(T x) const { return -x; }
};
struct Abs {
    template <class T> TG_INLINE T operator()(T x) const { return std::fabs(x); }
};
struct Relu {   // np.maximum(x, 0): a NaN stays NaN (the comparison is false for it)
    template <class T> TG_INLINE T operator()(T x) const { return x < T(0) ? T(0) : x; }
};
struct Sqrt {
    template <class T> TG_INLINE T operator()(T x) const { return std::sqrt(x); }
};
struct Exp {
    template <class T> TG_INLINE T operator()(T x) const { return exp_fast(x); }
};
struct Log {
    template <class T> TG_INLINE T operator()(T x) const { return std::log(x); }
};
struct Tanh {
    template <class T> TG_INLINE T operator()(T x) const { return tanh_fast(x); }
};
struct Sigmoid {   // the specification's formula: 1 / (1 + exp(-x)); exp overflows to inf -> 0
    template <class T> TG_INLINE T operator()(T x) const { return sigmoid_fast(x); }
};
struct Erf {   // GELU's default form needs it; a <cmath> call per element (not vectorised)
    template <class T> TG_INLINE T operator()(T x) const { return std::erf(x); }
};
struct Sin {   // positional encodings and the like; a <cmath> call per element, as Erf
    template <class T> TG_INLINE T operator()(T x) const { return std::sin(x); }
};
struct Cos {
    template <class T> TG_INLINE T operator()(T x) const { return std::cos(x); }
};
struct PowScalar {
    double p;
    template <class T> TG_INLINE T operator()(T x) const { return std::pow(x, static_cast<T>(p)); }
};
struct Square {   // pow(x, 2) is x * x exactly (both correctly rounded)
    template <class T> TG_INLINE T operator()(T x) const { return x * x; }
};
struct Reciprocal {   // pow(x, -1) = 1 / x, with pow's signed infinities at +-0
    template <class T> TG_INLINE T operator()(T x) const { return T(1) / x; }
};
struct Identity {
    template <class T> TG_INLINE T operator()(T x) const { return x; }
};

struct Add {
    template <class T> TG_INLINE T operator()(T a, T b) const { return a + b; }
};
struct Sub {
    template <class T> TG_INLINE T operator()(T a, T b) const { return a - b; }
};
struct Mul {
    template <class T> TG_INLINE T operator()(T a, T b) const { return a * b; }
};
struct Div {
    template <class T> TG_INLINE T operator()(T a, T b) const { return a / b; }
};
struct Maximum {   // np.maximum: NaN if either is NaN
    template <class T> TG_INLINE T operator()(T a, T b) const {
        return (a > b || a != a) ? a : b;
    }
};
struct Pow {
    template <class T> TG_INLINE T operator()(T a, T b) const { return std::pow(a, b); }
};
struct ReluBwd {   // a = grad, b = y
    template <class T> TG_INLINE T operator()(T g, T y) const { return y <= T(0) ? T(0) : g; }
};

// ------------------------------------------------------------------ unary loop

template <class T, class Op>
TG_INLINE void unary_body(const T* __restrict x, T* __restrict y, index_t n, Op op) {
    for (index_t i = 0; i < n; ++i) y[i] = op(x[i]);
}

template <class T, class Op>
TG_TARGET_AVX512 void unary_avx512(const T* x, T* y, index_t n, Op op) { unary_body(x, y, n, op); }
template <class T, class Op>
TG_TARGET_AVX2 void unary_avx2(const T* x, T* y, index_t n, Op op) { unary_body(x, y, n, op); }
template <class T, class Op>
void unary_portable(const T* x, T* y, index_t n, Op op) { unary_body(x, y, n, op); }

template <class T, class Op> void unary_run(const T* x, T* y, index_t n, Op op) {
    parallel_for(n, kGrain, [&](index_t begin, index_t end) {
        switch (simd()) {
            case Simd::avx512: unary_avx512(x + begin, y + begin, end - begin, op); break;
            case Simd::avx2: unary_avx2(x + begin, y + begin, end - begin, op); break;
            default: unary_portable(x + begin, y + begin, end - begin, op);
        }
    });
}

// ------------------------------------------------------------------ broadcasting

// The merged iteration space of a broadcast binary op (see the top of the file): dims[0] is the
// outermost; sa[k], sb[k] are the operands' strides in elements (0 where broadcast).
struct Plan {
    std::vector<index_t> dims, sa, sb;
    index_t total = 1;
};

// C-contiguous strides of `shape` aligned to the output's `nd` dimensions on the right, 0 where
// the operand has size 1 or lacks the dimension.
static std::vector<index_t> bcast_strides(const std::vector<index_t>& shape, size_t nd) {
    std::vector<index_t> s(nd, 0);
    index_t step = 1;
    for (size_t i = 0; i < shape.size(); ++i) {
        size_t k = shape.size() - 1 - i;           // the operand's dimension, from the right
        s[nd - 1 - i] = shape[k] == 1 ? 0 : step;
        step *= shape[k];
    }
    return s;
}

static Plan make_plan(const std::vector<index_t>& out, const std::vector<index_t>& a_shape,
                      const std::vector<index_t>& b_shape) {
    std::vector<index_t> sa = bcast_strides(a_shape, out.size());
    std::vector<index_t> sb = bcast_strides(b_shape, out.size());
    Plan p;
    for (size_t k = 0; k < out.size(); ++k) {
        p.total *= out[k];
        if (out[k] == 1) continue;                 // size 1: no step at all
        if (!p.dims.empty() && p.sa.back() == sa[k] * out[k] && p.sb.back() == sb[k] * out[k]) {
            // the previous (outer) dimension continues this one for both operands: merge
            p.dims.back() *= out[k];
            p.sa.back() = sa[k];
            p.sb.back() = sb[k];
            continue;
        }
        p.dims.push_back(out[k]);
        p.sa.push_back(sa[k]);
        p.sb.push_back(sb[k]);
    }
    if (p.dims.empty()) {                          // 0-d or all sizes 1: one element
        p.dims = {1};
        p.sa = {0};
        p.sb = {0};
    }
    return p;
}

// One inner row: n elements, each operand contiguous (step 1) or one value (step 0).
template <class T, class Op>
TG_INLINE void binary_row(const T* __restrict a, const T* __restrict b, T* __restrict out,
                          index_t n, bool a_vec, bool b_vec, Op op) {
    if (a_vec && b_vec) {
        for (index_t i = 0; i < n; ++i) out[i] = op(a[i], b[i]);
    } else if (a_vec) {
        const T bv = *b;
        for (index_t i = 0; i < n; ++i) out[i] = op(a[i], bv);
    } else if (b_vec) {
        const T av = *a;
        for (index_t i = 0; i < n; ++i) out[i] = op(av, b[i]);
    } else {
        const T v = op(*a, *b);
        for (index_t i = 0; i < n; ++i) out[i] = v;
    }
}

// Output elements [begin, end) of the flattened output: the odometer `idx` holds the outer
// dimensions' indices of the current row, `j` the position in it.
template <class T, class Op>
TG_INLINE void binary_body(const Plan& p, const T* a, const T* b, T* out, index_t begin,
                           index_t end, Op op) {
    const int nd = static_cast<int>(p.dims.size());
    const index_t inner = p.dims[nd - 1];
    const bool a_vec = p.sa[nd - 1] != 0, b_vec = p.sb[nd - 1] != 0;
    index_t idx[64];                               // NumPy arrays have at most 64 dimensions
    index_t row = begin / inner, j = begin % inner, offa = 0, offb = 0;
    for (int k = nd - 2; k >= 0; --k) {
        idx[k] = row % p.dims[k];
        row /= p.dims[k];
        offa += idx[k] * p.sa[k];
        offb += idx[k] * p.sb[k];
    }
    for (index_t pos = begin; pos < end;) {
        index_t len = inner - j < end - pos ? inner - j : end - pos;
        binary_row(a + offa + (a_vec ? j : 0), b + offb + (b_vec ? j : 0), out + pos, len, a_vec,
                   b_vec, op);
        pos += len;
        j = 0;
        for (int k = nd - 2; k >= 0; --k) {       // next row: advance the odometer
            offa += p.sa[k];
            offb += p.sb[k];
            if (++idx[k] < p.dims[k]) break;
            offa -= p.sa[k] * p.dims[k];
            offb -= p.sb[k] * p.dims[k];
            idx[k] = 0;
        }
    }
}

template <class T, class Op>
TG_TARGET_AVX512 void binary_avx512(const Plan& p, const T* a, const T* b, T* out, index_t begin,
                                    index_t end, Op op) {
    binary_body(p, a, b, out, begin, end, op);
}
template <class T, class Op>
TG_TARGET_AVX2 void binary_avx2(const Plan& p, const T* a, const T* b, T* out, index_t begin,
                                index_t end, Op op) {
    binary_body(p, a, b, out, begin, end, op);
}
template <class T, class Op>
void binary_portable(const Plan& p, const T* a, const T* b, T* out, index_t begin, index_t end,
                     Op op) {
    binary_body(p, a, b, out, begin, end, op);
}

template <class T, class Op> void binary_run(const Plan& p, const T* a, const T* b, T* out, Op op) {
    parallel_for(p.total, kGrain, [&](index_t begin, index_t end) {
        switch (simd()) {
            case Simd::avx512: binary_avx512(p, a, b, out, begin, end, op); break;
            case Simd::avx2: binary_avx2(p, a, b, out, begin, end, op); break;
            default: binary_portable(p, a, b, out, begin, end, op);
        }
    });
}

// ------------------------------------------------------------------ bindings

enum class UOp { neg, abs, relu, sqrt, exp, log, tanh, sigmoid, erf, sin, cos };
enum class BOp { add, sub, mul, div, maximum, pow };

UOp unary_op(const std::string& op) {
    static const std::pair<const char*, UOp> names[] = {
        {"neg", UOp::neg}, {"abs", UOp::abs},   {"relu", UOp::relu}, {"sqrt", UOp::sqrt},
        {"exp", UOp::exp}, {"log", UOp::log},   {"tanh", UOp::tanh}, {"sigmoid", UOp::sigmoid},
        {"erf", UOp::erf}, {"sin", UOp::sin},   {"cos", UOp::cos}};
    for (auto& [name, u] : names)
        if (op == name) return u;
    value_error("unary",
                "op must be one of neg, abs, relu, sqrt, exp, log, tanh, sigmoid, erf, sin, cos, "
                "got '" + op + "'");
}

BOp binary_op(const std::string& op) {
    static const std::pair<const char*, BOp> names[] = {
        {"add", BOp::add}, {"sub", BOp::sub},         {"mul", BOp::mul},
        {"div", BOp::div}, {"maximum", BOp::maximum}, {"pow", BOp::pow}};
    for (auto& [name, b] : names)
        if (op == name) return b;
    value_error("binary", "op must be one of add, sub, mul, div, maximum, pow, got '" + op + "'");
}

py::array unary(const std::string& op, py::handle x_) {
    UOp u = unary_op(op);
    py::array x = array_arg("unary", "x", x_);
    DType dt = float_dtype("unary", "x", x);
    py::array y = new_array(dt, shape_of(x));
    index_t n = numel(x);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* xp = cptr<T>(x);
        T* yp = ptr<T>(y);
        py::gil_scoped_release release;
        switch (u) {
            case UOp::neg: unary_run(xp, yp, n, Neg{}); break;
            case UOp::abs: unary_run(xp, yp, n, Abs{}); break;
            case UOp::relu: unary_run(xp, yp, n, Relu{}); break;
            case UOp::sqrt: unary_run(xp, yp, n, Sqrt{}); break;
            case UOp::exp: unary_run(xp, yp, n, Exp{}); break;
            case UOp::log: unary_run(xp, yp, n, Log{}); break;
            case UOp::tanh: unary_run(xp, yp, n, Tanh{}); break;
            case UOp::sigmoid: unary_run(xp, yp, n, Sigmoid{}); break;
            case UOp::erf: unary_run(xp, yp, n, Erf{}); break;
            case UOp::sin: unary_run(xp, yp, n, Sin{}); break;
            case UOp::cos: unary_run(xp, yp, n, Cos{}); break;
        }
    });
    return y;
}

py::array pow_scalar(py::handle x_, double p) {
    py::array x = array_arg("pow_scalar", "x", x_);
    DType dt = float_dtype("pow_scalar", "x", x);
    py::array y = new_array(dt, shape_of(x));
    index_t n = numel(x);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* xp = cptr<T>(x);
        T* yp = ptr<T>(y);
        py::gil_scoped_release release;
        const T pt = static_cast<T>(p);      // the specification's x.dtype.type(p)
        if (pt == T(0.5)) unary_run(xp, yp, n, Sqrt{});   // NumPy's too: (-inf) ** 0.5 = NaN
        else if (pt == T(2)) unary_run(xp, yp, n, Square{});
        else if (pt == T(1)) unary_run(xp, yp, n, Identity{});
        else if (pt == T(-1)) unary_run(xp, yp, n, Reciprocal{});
        else unary_run(xp, yp, n, PowScalar{static_cast<double>(pt)});
    });
    return y;
}

// NumPy's broadcast shape of a and b, or a ValueError naming `op`.
std::vector<index_t> broadcast_shape(const char* op, const py::array& a, const py::array& b) {
    std::vector<index_t> sa = shape_of(a), sb = shape_of(b);
    size_t nd = sa.size() > sb.size() ? sa.size() : sb.size();
    std::vector<index_t> out(nd);
    for (size_t i = 0; i < nd; ++i) {
        index_t da = i < sa.size() ? sa[sa.size() - 1 - i] : 1;
        index_t db = i < sb.size() ? sb[sb.size() - 1 - i] : 1;
        if (da != db && da != 1 && db != 1)
            value_error(op, "shapes " + shape_str(sa) + " and " + shape_str(sb) +
                                " do not broadcast");
        out[nd - 1 - i] = da == 1 ? db : da;
    }
    return out;
}

py::array binary(const std::string& op, py::handle a_, py::handle b_) {
    BOp o = binary_op(op);
    py::array a = array_arg("binary", "a", a_);
    py::array b = array_arg("binary", "b", b_);
    DType dt = same_float_dtype("binary", {{"a", &a}, {"b", &b}});
    std::vector<index_t> shape = broadcast_shape("binary", a, b);
    py::array out = new_array(dt, shape);
    Plan p = make_plan(shape, shape_of(a), shape_of(b));
    if (p.total == 0) return out;
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* ap = cptr<T>(a);
        const T* bp = cptr<T>(b);
        T* op_ = ptr<T>(out);
        py::gil_scoped_release release;
        if (o == BOp::pow && numel(b) == 1 && *bp == T(0.5)) {
            // NumPy takes a one-element exponent of 0.5 as sqrt ((-inf) ** 0.5 = NaN, not
            // pow's inf); b then only adds leading dimensions: out holds a's elements in order
            unary_run(ap, op_, p.total, Sqrt{});
            return;
        }
        switch (o) {
            case BOp::add: binary_run(p, ap, bp, op_, Add{}); break;
            case BOp::sub: binary_run(p, ap, bp, op_, Sub{}); break;
            case BOp::mul: binary_run(p, ap, bp, op_, Mul{}); break;
            case BOp::div: binary_run(p, ap, bp, op_, Div{}); break;
            case BOp::maximum: binary_run(p, ap, bp, op_, Maximum{}); break;
            case BOp::pow: binary_run(p, ap, bp, op_, Pow{}); break;
        }
    });
    return out;
}

py::array relu_bwd(py::handle grad_, py::handle y_) {
    py::array grad = array_arg("relu_bwd", "grad", grad_);
    py::array y = array_arg("relu_bwd", "y", y_);
    DType dt = same_float_dtype("relu_bwd", {{"grad", &grad}, {"y", &y}});
    expect_shape("relu_bwd", "y", y, shape_of(grad));
    py::array out = new_array(dt, shape_of(grad));
    Plan p = make_plan(shape_of(grad), shape_of(grad), shape_of(y));   // one dimension
    if (p.total == 0) return out;
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* gp = cptr<T>(grad);
        const T* yp = cptr<T>(y);
        T* op_ = ptr<T>(out);
        py::gil_scoped_release release;
        binary_run(p, gp, yp, op_, ReluBwd{});
    });
    return out;
}

}  // namespace

void register_elementwise(py::module_& m) {
    m.def("unary", &unary, py::arg("op"), py::arg("x"),
          "op(x) elementwise, op one of neg, abs, relu, sqrt, exp, log, tanh, sigmoid, erf, "
          "sin, cos.");
    m.def("binary", &binary, py::arg("op"), py::arg("a"), py::arg("b"),
          "op(a, b) elementwise with NumPy broadcasting, op one of add, sub, mul, div, maximum, "
          "pow; a and b arrays of one float dtype.");
    m.def("pow_scalar", &pow_scalar, py::arg("x"), py::arg("p"), "x ** p, p a number.");
    m.def("relu_bwd", &relu_bwd, py::arg("grad"), py::arg("y"),
          "ReLU's gradient given its output y: 0 where y <= 0, else grad.");
}

}  // namespace tg
