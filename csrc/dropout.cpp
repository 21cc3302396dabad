// Dropout with the counter-based generator Philox4x32-10 (tilegrad.backends.numpy: dropout_fwd,
// dropout_bwd). Registered from register_embedding (embedding.cpp): module.cpp lists no dropout
// family.
//
//   dropout_fwd(x, p, state) -> (y, mask): state = [seed, offset, 0] (uint64, updated in place).
//       Draw i (0 <= i < x.size) is word i % 4 of Philox4x32-10 at the 64-bit counter
//       offset/4 + i/4 under the 64-bit key seed; element i is kept when the draw is
//       >= ceil(p * 2^32), and y = x * (kept ? 1/(1-p) : 0) with the scale rounded to x's dtype.
//       state[1] advances by x.size rounded up to 4. The mask is bit-identical to the NumPy
//       backend's (integer arithmetic only). Cost: 10 rounds of two 32x32->64-bit multiplies per
//       4 draws; bytes: x read, y and the bool mask written.
//   dropout_bwd(grad, mask, p) -> grad * (mask ? 1/(1-p) : 0).
//
// Threads: the counters are independent, so the groups of 4 elements are split over the threads
// in contiguous ranges; the result does not depend on the split.
#include "common.h"

#include <cmath>

namespace tg {

namespace {

struct Philox {
    std::uint32_t w[4];
};

// Philox4x32-10 of the counter (ctr low word, ctr high word, 0, 0) under key (k0, k1), as
// _philox4x32 of the NumPy backend (Random123's round: two multiplies, their halves swapped
// and XORed with the other words and the key; the key bumped by the Weyl constants).
inline Philox philox(std::uint64_t ctr, std::uint32_t k0, std::uint32_t k1) {
    std::uint32_t c0 = static_cast<std::uint32_t>(ctr), c1 = static_cast<std::uint32_t>(ctr >> 32);
    std::uint32_t c2 = 0, c3 = 0;
    for (int r = 0; r < 10; ++r) {
        if (r) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        std::uint64_t p0 = std::uint64_t{0xD2511F53u} * c0, p1 = std::uint64_t{0xCD9E8D57u} * c2;
        std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1 ^ k0;
        std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3 ^ k1;
        c1 = static_cast<std::uint32_t>(p1);
        c3 = static_cast<std::uint32_t>(p0);
        c0 = n0;
        c2 = n2;
    }
    return {{c0, c1, c2, c3}};
}

double probability(const char* op, py::handle p_h) {
    if (!py::isinstance<py::float_>(p_h) && !py::isinstance<py::int_>(p_h))
        type_error(op, "p must be a number, got " +
                           py::str(py::type::of(p_h).attr("__name__")).cast<std::string>());
    double p = p_h.cast<double>();
    if (!(p >= 0.0 && p < 1.0)) value_error(op, "p must be in [0, 1), got " + std::to_string(p));
    return p;
}

py::array bool_array(const std::vector<index_t>& shape) {
    std::vector<py::ssize_t> s(shape.begin(), shape.end());
    return py::array(py::dtype("bool"), s);
}

template <class T>
void dropout_kernel(const T* x, T* y, bool* mask, index_t n, std::uint64_t seed,
                    std::uint64_t offset, std::uint64_t threshold, T scale) {
    std::uint32_t k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
    index_t groups = (n + 3) / 4;
    parallel_for(groups, 1024, [&](index_t begin, index_t end) {
        for (index_t q = begin; q < end; ++q) {
            Philox r = philox(offset / 4 + static_cast<std::uint64_t>(q), k0, k1);
            index_t base = 4 * q;
            for (int w = 0; w < 4 && base + w < n; ++w) {
                bool keep = r.w[w] >= threshold;
                mask[base + w] = keep;
                y[base + w] = x[base + w] * (keep ? scale : T(0));   // x*0: inf and NaN give NaN
            }
        }
    });
}

py::tuple dropout_fwd(py::handle x_h, py::handle p_h, py::handle state_h) {
    const char* op = "dropout_fwd";
    py::array x = array_arg(op, "x", x_h);
    DType dt = float_dtype(op, "x", x);
    double p = probability(op, p_h);
    py::array state = array_arg(op, "state", state_h, true);
    if (!(state.dtype().kind() == 'u' && state.itemsize() == 8))
        type_error(op, "state must be uint64, got " + dtype_str(state));
    expect_shape(op, "state", state, {3});

    index_t n = numel(x);
    std::uint64_t* st = static_cast<std::uint64_t*>(state.mutable_data());
    std::uint64_t seed = st[0], offset = st[1];
    // ceil(p * 2^32) in double, exactly as math.ceil(p * 2.0 ** 32): at most 2^32, which keeps
    // nothing when p rounds up to it.
    std::uint64_t threshold = static_cast<std::uint64_t>(std::ceil(p * 4294967296.0));
    py::array y = new_array(dt, shape_of(x));
    py::array mask = bool_array(shape_of(x));
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* xp = cptr<T>(x);
        T* yp = ptr<T>(y);
        bool* mp = static_cast<bool*>(mask.mutable_data());
        T scale = static_cast<T>(1.0 / (1.0 - p));
        py::gil_scoped_release release;
        dropout_kernel(xp, yp, mp, n, seed, offset, threshold, scale);
    });
    st[1] = offset + 4 * static_cast<std::uint64_t>((n + 3) / 4);
    return py::make_tuple(y, mask);
}

py::array dropout_bwd(py::handle grad_h, py::handle mask_h, py::handle p_h) {
    const char* op = "dropout_bwd";
    py::array grad = array_arg(op, "grad", grad_h);
    py::array mask = array_arg(op, "mask", mask_h);
    DType dt = float_dtype(op, "grad", grad);
    if (mask.dtype().kind() != 'b') type_error(op, "mask must be bool, got " + dtype_str(mask));
    expect_shape(op, "mask", mask, shape_of(grad));
    double p = probability(op, p_h);
    index_t n = numel(grad);
    py::array out = new_array(dt, shape_of(grad));
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* g = cptr<T>(grad);
        const bool* mp = static_cast<const bool*>(mask.data());
        T* o = ptr<T>(out);
        T scale = static_cast<T>(1.0 / (1.0 - p));
        py::gil_scoped_release release;
        parallel_for(n, 16384, [&](index_t begin, index_t end) {
            for (index_t k = begin; k < end; ++k) o[k] = g[k] * (mp[k] ? scale : T(0));
        });
    });
    return out;
}

}  // namespace

void register_dropout(py::module_& m) {
    m.def("dropout_fwd", &dropout_fwd, py::arg("x"), py::arg("p"), py::arg("state"),
          "(x * mask / (1-p), mask), the mask drawn by Philox4x32-10 from state = [seed, offset, "
          "0] (uint64), whose offset advances by x.size rounded up to 4, in place.");
    m.def("dropout_bwd", &dropout_bwd, py::arg("grad"), py::arg("mask"), py::arg("p"),
          "grad * mask / (1 - p), the scale in grad's dtype.");
}

}  // namespace tg
