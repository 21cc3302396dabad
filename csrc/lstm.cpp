// The LSTM layer (tilegrad.backends.numpy: lstm_cell_fwd, lstm_cell_bwd, lstm_seq_fwd,
// lstm_seq_bwd, lstm_bias_bwd). Gates in PyTorch's order i, f, g, o; B the batch, H the hidden
// size, G = 4H, T the steps.
//
// The cell's pointwise part, fused into one pass over the B x H elements (each element reads its
// four gates at columns j, H+j, 2H+j, 3H+j of its row):
//   forward  i, f, o = sigmoid, g = tanh; c = f*c_prev + i*g; h = o*tanh(c)
//            3 exp + 2 tanh + ~10 FLOPs per element; reads 5, writes 6 values (acts, c, h)
//   backward dc = grad_c + grad_h*o*(1 - tanh(c)^2), the four gate gradients and dc*f
//            1 tanh + ~20 FLOPs per element; reads 8, writes 5 values
// The arithmetic follows the NumPy backend's expressions operand by operand (sigmoid as
// 1/(1+exp(-x)), products left to right), so the two differ only by the rounding of exp/tanh.
//
// The recurrence runs entirely here: per step t of lstm_seq_fwd
//   gates = xproj[t] + h_t @ w_hh^T + b_hh     one GEMM (B x G x H: 2*B*G*H FLOPs), written into
//                                               acts[t] (copy of xproj[t], GEMM accumulating on it
//                                               with b_hh as its bias), then
//   the fused cell, in place on acts[t], writing h_{t+1} and c_{t+1};
// and per step of lstm_seq_bwd (backwards) the fused cell backward writing dgates[t], then
//   dh = dgates[t] @ w_hh                        one GEMM (B x H x G), skipped at t = 0 unless dh0
//                                               is wanted.
// So the sequence costs 2*T*B*G*H FLOPs each way in its GEMMs; the pointwise part is
// O(T*B*H) and memory-light (the per-step working set, B*(G+3H) values, stays in cache).
//
// Threads: the GEMMs (tg::gemm, called outside any parallel region) split their own work; each
// cell pass splits the B*H elements into contiguous ranges (static, so results do not depend on
// timing). lstm_bias_bwd sums the columns of dgates, each thread owning a range of columns and
// adding the rows in order (in double for float32 too: the sum runs over T*B rows, and double
// costs nothing here; the result is then rounded to the dtype).
#include "common.h"
#include "gemm.h"
#include "simd.h"
#include "vmath.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tg {

namespace {


// Elements per thread at least: a cell element costs a few ns (five exps, vectorised).
constexpr index_t kCellGrain = 4096;

// f(b, j0, j1) over the rows and column ranges that make up the flat range [begin, end) of a
// B x H grid, so that a thread's share of the elements can start and stop mid-row.
template <class F> inline void for_rows(index_t begin, index_t end, index_t hs, F&& f) {
    for (index_t k = begin; k < end;) {
        index_t b = k / hs, j0 = k % hs, j1 = std::min(hs, j0 + (end - k));
        f(b, j0, j1);
        k += j1 - j0;
    }
}

// Columns [j0, j1) of one row of the cell, forward: gr, ar rows of gates and acts (4H wide), cp,
// cr, hr rows of c_prev, c and h. ar may be gr itself: column j of each gate is read before it is
// written, and no iteration touches another's columns, so the loop vectorises safely (ivdep).
struct CellFwd {
    template <class T>
    static TG_INLINE void body(const T* gr, const T* cp, T* ar, T* cr, T* hr, index_t hs,
                               index_t j0, index_t j1) {
#pragma GCC ivdep
        for (index_t j = j0; j < j1; ++j) {
            T i = sigmoid_fast(gr[j]), f = sigmoid_fast(gr[hs + j]);
            T gg = tanh_fast(gr[2 * hs + j]), o = sigmoid_fast(gr[3 * hs + j]);
            T cn = f * cp[j] + i * gg;
            ar[j] = i;
            ar[hs + j] = f;
            ar[2 * hs + j] = gg;
            ar[3 * hs + j] = o;
            cr[j] = cn;
            hr[j] = o * tanh_fast(cn);
        }
    }
};

// gates (B, G) -> acts (B, G) (may be the same array), c (B, H), h (B, H).
template <class T>
void cell_fwd(const T* gates, const T* c_prev, T* acts, T* c, T* h, index_t bs, index_t hs) {
    index_t g = 4 * hs;
    parallel_for(bs * hs, kCellGrain, [&](index_t begin, index_t end) {
        for_rows(begin, end, hs, [&](index_t b, index_t j0, index_t j1) {
            run_simd<CellFwd>(gates + b * g, c_prev + b * hs, acts + b * g, c + b * hs, h + b * hs,
                              hs, j0, j1);
        });
    });
}

// Columns [j0, j1) of row r (= b * hs) of the cell's backward (see cell_bwd); dr the row of
// dgates. dc_prev may be grad_c itself: as in CellFwd, the loop vectorises safely. Whether
// grad_h2 and grad_c are there is a template parameter, so that no test is left in the loop.
template <bool HasH2, bool HasC>
struct CellBwd {
    template <class T>
    static TG_INLINE void body(const T* grad_h1, const T* grad_h2, const T* grad_c, const T* ar,
                               const T* c, const T* c_prev, T* dr, T* dc_prev, index_t r,
                               index_t hs, index_t j0, index_t j1) {
#pragma GCC ivdep
        for (index_t j = j0; j < j1; ++j) {
            T gh = grad_h1[r + j];
            if constexpr (HasH2) gh = gh + grad_h2[r + j];
            T i = ar[j], f = ar[hs + j], gg = ar[2 * hs + j], o = ar[3 * hs + j];
            T tc = tanh_fast(c[r + j]);
            T dc = gh * o * (T(1) - tc * tc);
            if constexpr (HasC) dc = grad_c[r + j] + dc;
            dr[j] = dc * gg * i * (T(1) - i);
            dr[hs + j] = dc * c_prev[r + j] * f * (T(1) - f);
            dr[2 * hs + j] = dc * i * (T(1) - gg * gg);
            dr[3 * hs + j] = gh * tc * o * (T(1) - o);
            dc_prev[r + j] = dc * f;
        }
    }
};

// The cell's backward. grad_h is grad_h1 + grad_h2 (grad_h2 may be nullptr: the sequence's
// dL/dy[t] added to the recurrent dh, as the NumPy backend adds them first); grad_c may be
// nullptr (zero). Writes dgates (B, G) and dc_prev (B, H); dc_prev may be grad_c itself (each
// element is read before it is written).
template <class T>
void cell_bwd(const T* grad_h1, const T* grad_h2, const T* grad_c, const T* acts, const T* c,
              const T* c_prev, T* dgates, T* dc_prev, index_t bs, index_t hs) {
    index_t g = 4 * hs;
    parallel_for(bs * hs, kCellGrain, [&](index_t begin, index_t end) {
        for_rows(begin, end, hs, [&](index_t b, index_t j0, index_t j1) {
            auto run = [&](auto kernel) {
                run_simd<decltype(kernel)>(grad_h1, grad_h2, grad_c, acts + b * g, c, c_prev,
                                           dgates + b * g, dc_prev, b * hs, hs, j0, j1);
            };
            if (grad_h2 && grad_c) run(CellBwd<true, true>{});
            else if (grad_h2) run(CellBwd<true, false>{});
            else if (grad_c) run(CellBwd<false, true>{});
            else run(CellBwd<false, false>{});
        });
    });
}

// ------------------------------------------------------------------ argument checks

// None, or a C-contiguous array of `dt` and `shape`.
py::object optional_arg(const char* op, const char* name, py::handle h, DType dt,
                        const std::vector<index_t>& shape) {
    if (h.is_none()) return py::none();
    py::array a = array_arg(op, name, h);
    expect_dtype(op, name, a, dt);
    expect_shape(op, name, a, shape);
    return std::move(a);
}

// The data of an optional argument, nullptr for None.
template <class T> const T* opt_ptr(const py::object& a) {
    return a.is_none() ? nullptr : static_cast<const T*>(py::reinterpret_borrow<py::array>(a).data());
}

// ------------------------------------------------------------------ bindings

py::tuple lstm_cell_fwd(py::handle gates_h, py::handle c_prev_h) {
    const char* op = "lstm_cell_fwd";
    py::array gates = array_arg(op, "gates", gates_h), c_prev = array_arg(op, "c_prev", c_prev_h);
    DType dt = same_float_dtype(op, {{"gates", &gates}, {"c_prev", &c_prev}});
    expect_ndim(op, "c_prev", c_prev, 2);
    index_t bs = dim(c_prev, 0), hs = dim(c_prev, 1);
    expect_shape(op, "gates", gates, {bs, 4 * hs});
    py::array h = new_array(dt, {bs, hs}), c = new_array(dt, {bs, hs});
    py::array acts = new_array(dt, {bs, 4 * hs});
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T *gp = cptr<T>(gates), *cp = cptr<T>(c_prev);
        T *ap = ptr<T>(acts), *cn = ptr<T>(c), *hn = ptr<T>(h);
        py::gil_scoped_release release;
        cell_fwd(gp, cp, ap, cn, hn, bs, hs);
    });
    return py::make_tuple(h, c, acts);
}

py::tuple lstm_cell_bwd(py::handle grad_h_h, py::handle grad_c_h, py::handle acts_h,
                        py::handle c_h, py::handle c_prev_h) {
    const char* op = "lstm_cell_bwd";
    py::array grad_h = array_arg(op, "grad_h", grad_h_h), grad_c = array_arg(op, "grad_c", grad_c_h);
    py::array acts = array_arg(op, "acts", acts_h), c = array_arg(op, "c", c_h);
    py::array c_prev = array_arg(op, "c_prev", c_prev_h);
    DType dt = same_float_dtype(op, {{"grad_h", &grad_h}, {"grad_c", &grad_c}, {"acts", &acts},
                                     {"c", &c}, {"c_prev", &c_prev}});
    expect_ndim(op, "c", c, 2);
    index_t bs = dim(c, 0), hs = dim(c, 1);
    expect_shape(op, "grad_h", grad_h, {bs, hs});
    expect_shape(op, "grad_c", grad_c, {bs, hs});
    expect_shape(op, "acts", acts, {bs, 4 * hs});
    expect_shape(op, "c_prev", c_prev, {bs, hs});
    py::array dgates = new_array(dt, {bs, 4 * hs}), dc_prev = new_array(dt, {bs, hs});
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T *gh = cptr<T>(grad_h), *gc = cptr<T>(grad_c), *ap = cptr<T>(acts);
        const T *cp = cptr<T>(c), *pp = cptr<T>(c_prev);
        T *dg = ptr<T>(dgates), *dc = ptr<T>(dc_prev);
        py::gil_scoped_release release;
        cell_bwd<T>(gh, nullptr, gc, ap, cp, pp, dg, dc, bs, hs);
    });
    return py::make_tuple(dgates, dc_prev);
}

py::tuple lstm_seq_fwd(py::handle xproj_h, py::handle h0_h, py::handle c0_h, py::handle w_hh_h,
                       py::handle b_hh_h) {
    const char* op = "lstm_seq_fwd";
    py::array xproj = array_arg(op, "xproj", xproj_h), w_hh = array_arg(op, "w_hh", w_hh_h);
    DType dt = same_float_dtype(op, {{"xproj", &xproj}, {"w_hh", &w_hh}});
    expect_ndim(op, "xproj", xproj, 3);
    index_t steps = dim(xproj, 0), bs = dim(xproj, 1), g = dim(xproj, 2);
    if (g % 4) value_error(op, "xproj's last dimension must be 4*H, got " + shape_str(xproj));
    index_t hs = g / 4;
    expect_shape(op, "w_hh", w_hh, {g, hs});
    py::object h0 = optional_arg(op, "h0", h0_h, dt, {bs, hs});
    py::object c0 = optional_arg(op, "c0", c0_h, dt, {bs, hs});
    py::object b_hh = optional_arg(op, "b_hh", b_hh_h, dt, {g});

    py::array hs_all = new_array(dt, {steps + 1, bs, hs}), cs = new_array(dt, {steps + 1, bs, hs});
    py::array acts = new_array(dt, {steps, bs, g});
    py::array h_n = new_array(dt, {bs, hs}), c_n = new_array(dt, {bs, hs});
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T *xp = cptr<T>(xproj), *w = cptr<T>(w_hh), *bias = opt_ptr<T>(b_hh);
        const T *h0p = opt_ptr<T>(h0), *c0p = opt_ptr<T>(c0);
        T *hp = ptr<T>(hs_all), *cp = ptr<T>(cs), *ap = ptr<T>(acts);
        T *hn = ptr<T>(h_n), *cn = ptr<T>(c_n);
        py::gil_scoped_release release;
        size_t state = static_cast<size_t>(bs * hs) * sizeof(T);
        if (h0p) std::memcpy(hp, h0p, state); else std::memset(hp, 0, state);
        if (c0p) std::memcpy(cp, c0p, state); else std::memset(cp, 0, state);
        for (index_t t = 0; t < steps; ++t) {
            T* gates = ap + t * bs * g;   // the pre-activations, then (in place) the activations
            std::memcpy(gates, xp + t * bs * g, static_cast<size_t>(bs * g) * sizeof(T));
            // gates += h_t @ w_hh^T (+ b_hh): w_hh is (G, H), so op(B) = w_hh^T is read transposed
            gemm<T>(false, true, bs, g, hs, hp + t * bs * hs, hs, w, hs, gates, g, true, bias, false);
            cell_fwd(gates, cp + t * bs * hs, gates, cp + (t + 1) * bs * hs, hp + (t + 1) * bs * hs,
                     bs, hs);
        }
        std::memcpy(hn, hp + steps * bs * hs, state);
        std::memcpy(cn, cp + steps * bs * hs, state);
    });
    // y = h_1..h_T and h_prev = h_0..h_{T-1}: views of the one (T+1, B, H) array, as the spec.
    py::object y = hs_all[py::slice(1, steps + 1, 1)];
    py::object h_prev = hs_all[py::slice(0, steps, 1)];
    return py::make_tuple(y, h_n, c_n, h_prev, cs, acts);
}

py::tuple lstm_seq_bwd(py::handle grad_y_h, py::handle grad_hn_h, py::handle grad_cn_h,
                       py::handle cs_h, py::handle acts_h, py::handle w_hh_h, py::handle need_dh0_h) {
    const char* op = "lstm_seq_bwd";
    py::array cs = array_arg(op, "cs", cs_h), acts = array_arg(op, "acts", acts_h);
    py::array w_hh = array_arg(op, "w_hh", w_hh_h);
    DType dt = same_float_dtype(op, {{"acts", &acts}, {"cs", &cs}, {"w_hh", &w_hh}});
    expect_ndim(op, "acts", acts, 3);
    index_t steps = dim(acts, 0), bs = dim(acts, 1), g = dim(acts, 2);
    if (g % 4) value_error(op, "acts' last dimension must be 4*H, got " + shape_str(acts));
    index_t hs = g / 4;
    expect_shape(op, "cs", cs, {steps + 1, bs, hs});
    expect_shape(op, "w_hh", w_hh, {g, hs});
    py::object grad_y = optional_arg(op, "grad_y", grad_y_h, dt, {steps, bs, hs});
    py::object grad_hn = optional_arg(op, "grad_hn", grad_hn_h, dt, {bs, hs});
    py::object grad_cn = optional_arg(op, "grad_cn", grad_cn_h, dt, {bs, hs});
    bool need_dh0 = bool_arg(op, "need_dh0", need_dh0_h);

    py::array dgates = new_array(dt, {steps, bs, g});
    py::array dh = new_array(dt, {bs, hs}), dc = new_array(dt, {bs, hs});
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T *gy = opt_ptr<T>(grad_y), *ghn = opt_ptr<T>(grad_hn), *gcn = opt_ptr<T>(grad_cn);
        const T *cp = cptr<T>(cs), *ap = cptr<T>(acts), *w = cptr<T>(w_hh);
        T *dg = ptr<T>(dgates), *dhp = ptr<T>(dh), *dcp = ptr<T>(dc);
        py::gil_scoped_release release;
        size_t state = static_cast<size_t>(bs * hs) * sizeof(T);
        // dh holds the gradient flowing into h_{t+1} from step t+1 (None: zero, and then the
        // last step reads grad_y alone); dc is updated in place from step to step.
        bool dh_zero = ghn == nullptr;
        if (!dh_zero) std::memcpy(dhp, ghn, state);
        if (gcn) std::memcpy(dcp, gcn, state); else std::memset(dcp, 0, state);
        for (index_t t = steps - 1; t >= 0; --t) {
            const T* y_t = gy ? gy + t * bs * hs : nullptr;
            const T* h1 = dh_zero ? y_t : dhp;
            const T* h2 = dh_zero ? nullptr : y_t;
            T* dg_t = dg + t * bs * g;
            if (h1) {
                cell_bwd<T>(h1, h2, dcp, ap + t * bs * g, cp + (t + 1) * bs * hs, cp + t * bs * hs,
                            dg_t, dcp, bs, hs);
            } else {   // no gradient reaches h_{t+1}: grad_h is zero
                std::memset(dhp, 0, state);
                cell_bwd<T>(dhp, nullptr, dcp, ap + t * bs * g, cp + (t + 1) * bs * hs,
                            cp + t * bs * hs, dg_t, dcp, bs, hs);
            }
            if (t > 0 || need_dh0)   // dh = dgates[t] @ w_hh, w_hh (G, H) as it is
                gemm<T>(false, false, bs, hs, g, dg_t, g, w, hs, dhp, hs, false, nullptr, false);
            dh_zero = false;
        }
        if (steps == 0 && need_dh0 && dh_zero) std::memset(dhp, 0, state);
    });
    return py::make_tuple(dgates, need_dh0 ? py::object(dh) : py::object(py::none()), dc);
}

py::tuple lstm_bias_bwd(py::handle grad_gates_h) {
    const char* op = "lstm_bias_bwd";
    py::array grad = array_arg(op, "grad_gates", grad_gates_h);
    DType dt = float_dtype(op, "grad_gates", grad);
    if (grad.ndim() < 1) value_error(op, "grad_gates must have at least 1 dimension, got shape ()");
    index_t g = dim(grad, static_cast<int>(grad.ndim()) - 1);
    index_t rows = 1;   // the product of the leading dimensions
    for (int k = 0; k + 1 < grad.ndim(); ++k) rows *= dim(grad, k);
    py::array db = new_array(dt, {g}), db2 = new_array(dt, {g});
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* gp = cptr<T>(grad);
        T *out = ptr<T>(db), *out2 = ptr<T>(db2);
        py::gil_scoped_release release;
        // Columns per thread: at least 64, and ~64K values summed per thread.
        index_t grain = std::max<index_t>(64, rows > 0 ? 65536 / rows : 64);
        parallel_for(g, grain, [&](index_t c0, index_t c1) {
            std::vector<double> acc(static_cast<size_t>(c1 - c0), 0.0);
            for (index_t r = 0; r < rows; ++r) {
                const T* row = gp + r * g + c0;
                for (index_t c = 0; c < c1 - c0; ++c) acc[c] += static_cast<double>(row[c]);
            }
            for (index_t c = c0; c < c1; ++c) out[c] = out2[c] = static_cast<T>(acc[c - c0]);
        });
    });
    return py::make_tuple(db, db2);
}

}  // namespace

void register_lstm(py::module_& m) {
    m.def("lstm_cell_fwd", &lstm_cell_fwd, py::arg("gates"), py::arg("c_prev"),
          "(h, c, acts) of the LSTM cell from the pre-activation gates (B, 4H), order i, f, g, o.");
    m.def("lstm_cell_bwd", &lstm_cell_bwd, py::arg("grad_h"), py::arg("grad_c"), py::arg("acts"),
          py::arg("c"), py::arg("c_prev"), "(dgates (B, 4H), dc_prev (B, H)) of the LSTM cell.");
    m.def("lstm_seq_fwd", &lstm_seq_fwd, py::arg("xproj"), py::arg("h0"), py::arg("c0"),
          py::arg("w_hh"), py::arg("b_hh"),
          "An LSTM layer's T steps: (y, h_n, c_n, h_prev, cs, acts); y and h_prev are views of "
          "one (T+1, B, H) array. h0, c0, b_hh may be None.");
    m.def("lstm_seq_bwd", &lstm_seq_bwd, py::arg("grad_y"), py::arg("grad_hn"), py::arg("grad_cn"),
          py::arg("cs"), py::arg("acts"), py::arg("w_hh"), py::arg("need_dh0"),
          "(dgates (T, B, 4H), dh0 or None, dc0) back through lstm_seq_fwd; grad_y, grad_hn, "
          "grad_cn may be None (zero).");
    m.def("lstm_bias_bwd", &lstm_bias_bwd, py::arg("grad_gates"),
          "grad_gates (..., 4H) summed over all but its last axis, as two arrays.");
}

}  // namespace tg
