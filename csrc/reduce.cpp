// Reductions over any set of axes: sum(x, axes, keepdims) and amax(x, axes, keepdims).
//
// Cost: n - (outputs) additions or comparisons, n*s bytes read once (s = 4 or 8), the outputs
// written once; bound by memory bandwidth wherever the input is bigger than the caches.
//
// Plan. Dimensions of size 1 are dropped and adjacent dimensions that are both reduced or both
// kept are merged, so the array becomes alternating groups, say (K0, R1, K2, R3): every
// reduction is a chain of two passes, each over contiguous memory, repeated until no reduced
// group is left:
//   - the last group is reduced (..., R): a ROW pass, each of the rows of length R to one value
//     (x.sum(-1), a whole-array sum, the H*W of a bias gradient);
//   - the last group is kept (..., A, R, B): a COLUMN pass, out[a, b] = sum over r of
//     x[a, r, b], rows of B added into B accumulators (x.sum(0) of an (N, C) bias gradient).
// A bias gradient over (N, C, H, W), axes (0, 2, 3), is a row pass over N*C rows of H*W into
// N*C partial sums, then a column pass over N rows of C. Passes between the first and the last
// keep their partial results in the accumulator type.
//
// Precision (sum). The accumulator is double for float32 and float64 inputs: a row is summed in
// blocks of 1024 elements, each by 32 partial sums in the input's type (lane j takes elements
// j, j+32, ...: the compiler turns the 32 lanes into vector registers without reassociating
// anything) combined by a fixed tree; the blocks' sums are added in double. A column pass adds
// 32 rows at a time in the input's type (vectorised across the columns), each such partial
// then into double. Closer to the exact sum than NumPy's float32 summation, at no cost that
// shows next to memory traffic.
//
// Threads: a row pass splits its rows among the threads; a row pass over fewer rows than
// threads (a whole-array sum) splits each row's blocks, stores the 1024-element block sums and
// adds them in order; a column pass splits its (a, 256-column tile) work items. Each output
// element is computed in an order fixed by the shape alone: results are bit-identical for any
// thread count and any vector width.
//
// amax is the same plan with max instead of +, in the input's type (exact), NaN winning as in
// np.max; a reduction over a dimension of size 0 is an error, as in NumPy.
#include "common.h"
#include "simd.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace tg {
namespace {


constexpr index_t kLanes = 32;        // partial results per block (the tree below assumes 32)
constexpr index_t kBlock = 1024;      // elements per block of a row
constexpr index_t kTile = 256;        // columns per work item of a column pass
constexpr index_t kRowBlock = 32;     // rows per block of a column pass
constexpr index_t kGrain = 32 * 1024; // elements per thread, at least

// ------------------------------------------------------------------ the two reductions

// One block of n <= kBlock contiguous values by `op`: 32 lanes, a fixed tree, then the tail
// in order. Every step is a plain add or compare-select, so each level is one vector operation.
template <class S, class Op> TG_INLINE S block_lanes(const S* __restrict x, index_t n, S init, Op op) {
    S lane[kLanes];
    for (index_t j = 0; j < kLanes; ++j) lane[j] = init;
    index_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (index_t j = 0; j < kLanes; ++j) lane[j] = op(lane[j], x[i + j]);
    for (index_t j = 0; j < 16; ++j) lane[j] = op(lane[j], lane[j + 16]);
    for (index_t j = 0; j < 8; ++j) lane[j] = op(lane[j], lane[j + 8]);
    for (index_t j = 0; j < 4; ++j) lane[j] = op(lane[j], lane[j + 4]);
    for (index_t j = 0; j < 2; ++j) lane[j] = op(lane[j], lane[j + 2]);
    S r = op(lane[0], lane[1]);
    for (; i < n; ++i) r = op(r, x[i]);
    return r;
}

struct Plus {
    template <class S> TG_INLINE S operator()(S acc, S x) const { return acc + x; }
};
struct Larger {   // ignores a NaN x (Max::block looks for NaNs apart)
    template <class S> TG_INLINE S operator()(S acc, S x) const { return x > acc ? x : acc; }
};

// ------------------------------------------------------------------ the two reductions
// Each has an accumulator type, an identity, `op` (combining two partial results) and
// `block` (the reduction of one block of a row).

template <class T> struct Sum {
    using Acc = double;
    template <class S> static TG_INLINE S identity() { return S(0); }
    template <class S> static TG_INLINE S op(S acc, S x) { return acc + x; }
    template <class S> static TG_INLINE S block(const S* x, index_t n) {
        return block_lanes(x, n, S(0), Plus{});
    }
};

template <class T> struct Max {
    using Acc = T;                     // a maximum is exact in any type
    template <class S> static TG_INLINE S identity() { return -std::numeric_limits<S>::infinity(); }
    // np.max: NaN wins, whichever side it is on
    template <class S> static TG_INLINE S op(S acc, S x) { return (x > acc) | (x != x) ? x : acc; }
    // 32 lanes of compare-select (one max instruction each, which drops a NaN x) and beside
    // them 32 flags that note NaNs; the same tree and tail as block_lanes. No branch: all of
    // it vectorises.
    template <class S> static TG_INLINE S block(const S* __restrict x, index_t n) {
        using Flag = std::conditional_t<sizeof(S) == 4, std::int32_t, std::int64_t>;
        S lane[kLanes];
        Flag nan[kLanes];
        for (index_t j = 0; j < kLanes; ++j) lane[j] = identity<S>(), nan[j] = 0;
        index_t i = 0;
        for (; i + kLanes <= n; i += kLanes)
            for (index_t j = 0; j < kLanes; ++j) {
                const S v = x[i + j];
                lane[j] = v > lane[j] ? v : lane[j];
                nan[j] |= v != v;
            }
        Flag any = 0;
        for (index_t j = 0; j < kLanes; ++j) any |= nan[j];
        S m = identity<S>();
        for (index_t j = 0; j < kLanes; ++j) m = lane[j] > m ? lane[j] : m;
        for (; i < n; ++i) {
            m = x[i] > m ? x[i] : m;
            any |= x[i] != x[i];
        }
        return any ? std::numeric_limits<S>::quiet_NaN() : m;
    }
};

// A row of L values: its blocks in order, combined in the accumulator type.
template <class R, class S> TG_INLINE typename R::Acc row_value(const S* x, index_t L) {
    using Acc = typename R::Acc;
    Acc acc = R::template identity<Acc>();
    for (index_t b = 0; b < L; b += kBlock)
        acc = R::op(acc, static_cast<Acc>(R::block(x + b, std::min(kBlock, L - b))));
    return acc;
}

// ------------------------------------------------------------------ the kernels

// Rows [r0, r1) of length L: out[r] = reduction of row r.
template <class R, class S, class D> struct Rows {
    static TG_INLINE void body(const S* x, D* out, index_t L, index_t r0, index_t r1) {
        for (index_t r = r0; r < r1; ++r) out[r] = static_cast<D>(row_value<R>(x + r * L, L));
    }
};

// Blocks [b0, b1) of one row of length L: partial[b] = the block's reduction.
template <class R, class S> struct Blocks {
    static TG_INLINE void body(const S* x, typename R::Acc* partial, index_t L, index_t b0,
                               index_t b1) {
        for (index_t b = b0; b < b1; ++b)
            partial[b] = R::block(x + b * kBlock, std::min(kBlock, L - b * kBlock));
    }
};

// Work items [i0, i1) of a column pass over x (A, Rn, B): item i is a = i / tiles and the
// columns [t*kTile, t*kTile + kTile) of t = i % tiles. As a row, a column is added in blocks:
// kRowBlock rows in the input's type (`part`, vectorised across the columns), each block's
// result then added to `acc` in the accumulator type.
template <class R, class S, class D> struct Cols {
    static TG_INLINE void body(const S* x, D* out, index_t Rn, index_t B, index_t i0, index_t i1) {
        using Acc = typename R::Acc;
        const index_t tiles = (B + kTile - 1) / kTile;
        Acc acc[kTile];
        S part[kTile];
        for (index_t i = i0; i < i1; ++i) {
            const index_t a = i / tiles, c0 = (i % tiles) * kTile;
            const index_t w = std::min(kTile, B - c0);
            for (index_t c = 0; c < w; ++c) acc[c] = R::template identity<Acc>();
            const S* xa = x + a * Rn * B + c0;
            for (index_t r0 = 0; r0 < Rn; r0 += kRowBlock) {
                for (index_t c = 0; c < w; ++c) part[c] = R::template identity<S>();
                for (index_t r = r0; r < std::min(Rn, r0 + kRowBlock); ++r) {
                    const S* __restrict row = xa + r * B;
                    for (index_t c = 0; c < w; ++c) part[c] = R::op(part[c], row[c]);
                }
                for (index_t c = 0; c < w; ++c) acc[c] = R::op(acc[c], static_cast<Acc>(part[c]));
            }
            D* __restrict o = out + a * B + c0;
            for (index_t c = 0; c < w; ++c) o[c] = static_cast<D>(acc[c]);
        }
    }
};

// ------------------------------------------------------------------ the passes

template <class R, class S, class D> void row_pass(const S* x, D* out, index_t rows, index_t L) {
    using Acc = typename R::Acc;
    if (rows < max_threads() && L >= 2 * kGrain) {
        // few long rows: each row's blocks in parallel, then added in the order row_value uses
        const index_t nb = (L + kBlock - 1) / kBlock;
        std::vector<Acc> partial(static_cast<size_t>(nb));
        for (index_t r = 0; r < rows; ++r) {
            const S* xr = x + r * L;
            parallel_for(nb, kGrain / kBlock, [&](index_t b0, index_t b1) {
                run_simd<Blocks<R, S>>(xr, partial.data(), L, b0, b1);
            });
            Acc acc = R::template identity<Acc>();
            for (index_t b = 0; b < nb; ++b) acc = R::op(acc, partial[b]);
            out[r] = static_cast<D>(acc);
        }
        return;
    }
    parallel_for(rows, std::max<index_t>(1, kGrain / L), [&](index_t r0, index_t r1) {
        run_simd<Rows<R, S, D>>(x, out, L, r0, r1);
    });
}

template <class R, class S, class D>
void col_pass(const S* x, D* out, index_t A, index_t Rn, index_t B) {
    const index_t tiles = (B + kTile - 1) / kTile;
    const index_t per_item = Rn * std::min(kTile, B);
    parallel_for(A * tiles, std::max<index_t>(1, kGrain / per_item), [&](index_t i0, index_t i1) {
        run_simd<Cols<R, S, D>>(x, out, Rn, B, i0, i1);
    });
}

struct Group {
    index_t n;
    bool reduced;
};

// Reduces x (T) into out (T) through the groups' passes (see the top of the file).
template <template <class> class Red, class T>
void reduce(const T* x, T* out, std::vector<Group> groups) {
    using R = Red<T>;
    using Acc = typename R::Acc;
    int left = 0;
    for (auto& g : groups) left += g.reduced;
    if (left == 0) {                       // nothing to reduce over: a copy
        index_t n = 1;
        for (auto& g : groups) n *= g.n;
        std::memcpy(out, x, static_cast<size_t>(n) * sizeof(T));
        return;
    }
    std::vector<Acc> src_buf, dst_buf;     // the partial results between passes
    const Acc* src = nullptr;              // nullptr: the source is x itself
    for (; left > 0; --left) {
        const bool last = left == 1;
        index_t outer = 1;
        Acc* dst = nullptr;
        if (groups.back().reduced) {                                  // ..., R: rows
            for (size_t k = 0; k + 1 < groups.size(); ++k) outer *= groups[k].n;
            const index_t L = groups.back().n;
            if (!last) {
                dst_buf.resize(static_cast<size_t>(outer));
                dst = dst_buf.data();
            }
            if (src == nullptr && last) row_pass<R>(x, out, outer, L);
            else if (src == nullptr) row_pass<R>(x, dst, outer, L);
            else if (last) row_pass<R>(src, out, outer, L);
            else row_pass<R>(src, dst, outer, L);
            groups.pop_back();
        } else {                                                      // ..., A, R, B: columns
            const size_t j = groups.size() - 2;                       // alternating: reduced
            for (size_t k = 0; k < j; ++k) outer *= groups[k].n;
            const index_t Rn = groups[j].n, B = groups.back().n;
            if (!last) {
                dst_buf.resize(static_cast<size_t>(outer * B));
                dst = dst_buf.data();
            }
            if (src == nullptr && last) col_pass<R>(x, out, outer, Rn, B);
            else if (src == nullptr) col_pass<R>(x, dst, outer, Rn, B);
            else if (last) col_pass<R>(src, out, outer, Rn, B);
            else col_pass<R>(src, dst, outer, Rn, B);
            groups.erase(groups.begin() + static_cast<std::ptrdiff_t>(j));
            if (j > 0) {                                              // two kept groups meet
                groups[j - 1].n *= groups[j].n;
                groups.erase(groups.begin() + static_cast<std::ptrdiff_t>(j));
            }
        }
        std::swap(src_buf, dst_buf);
        src = src_buf.data();
    }
}

// ------------------------------------------------------------------ bindings

// The axes as flags per dimension: a tuple or list of ints in [-ndim, ndim), none repeated.
std::vector<bool> parse_axes(const char* op, py::handle axes, int ndim) {
    if (!py::isinstance<py::tuple>(axes) && !py::isinstance<py::list>(axes))
        type_error(op, "axes must be a tuple of ints, got " +
                           py::str(py::type::of(axes).attr("__name__")).cast<std::string>());
    std::vector<bool> reduced(static_cast<size_t>(ndim), false);
    for (py::handle h : axes) {
        if (!py::isinstance<py::int_>(h) || py::isinstance<py::bool_>(h))
            type_error(op, "axes must be ints, got " +
                               py::str(py::type::of(h).attr("__name__")).cast<std::string>());
        long long a = h.cast<long long>();
        if (a < -ndim || a >= ndim)
            value_error(op, "axis " + std::to_string(a) + " is out of range for " +
                                std::to_string(ndim) + " dimensions");
        if (a < 0) a += ndim;
        if (reduced[static_cast<size_t>(a)])
            value_error(op, "axis " + std::to_string(a) + " is repeated");
        reduced[static_cast<size_t>(a)] = true;
    }
    return reduced;
}

template <template <class> class Red>
py::array reduce_binding(const char* op, py::handle x_, py::handle axes, bool keepdims) {
    py::array x = array_arg(op, "x", x_);
    DType dt = float_dtype(op, "x", x);
    const int nd = static_cast<int>(x.ndim());
    std::vector<bool> reduced = parse_axes(op, axes, nd);
    std::vector<index_t> shape = shape_of(x), out_shape;
    std::vector<Group> groups;
    for (int k = 0; k < nd; ++k) {
        if (reduced[k] && keepdims) out_shape.push_back(1);
        if (!reduced[k]) out_shape.push_back(shape[k]);
        if (shape[k] == 1) continue;
        if (!groups.empty() && groups.back().reduced == reduced[k]) groups.back().n *= shape[k];
        else groups.push_back({shape[k], reduced[k]});
    }
    if (numel(x) == 0) {
        py::array out = new_zeros(dt, out_shape);          // an empty sum is 0
        // as NumPy: a maximum over no elements is an error, unless there are no outputs either
        if (std::is_same<Red<float>, Max<float>>::value && numel(out) > 0)
            value_error(op, "reduction over a dimension of size 0, which has no maximum (shape " +
                                shape_str(x) + ")");
        return out;
    }
    py::array out = new_array(dt, out_shape);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* xp = cptr<T>(x);
        T* op_ = ptr<T>(out);
        py::gil_scoped_release release;
        reduce<Red>(xp, op_, groups);
    });
    return out;
}

}  // namespace

void register_reduce(py::module_& m) {
    m.def("sum", [](py::handle x, py::handle axes, bool keepdims) {
        return reduce_binding<Sum>("sum", x, axes, keepdims);
    }, py::arg("x"), py::arg("axes"), py::arg("keepdims"),
          "Sum over axes (a tuple of ints, possibly empty: then a copy), accumulated in double.");
    m.def("amax", [](py::handle x, py::handle axes, bool keepdims) {
        return reduce_binding<Max>("amax", x, axes, keepdims);
    }, py::arg("x"), py::arg("axes"), py::arg("keepdims"),
          "Maximum over axes (a tuple of ints); NaN wins, as np.max.");
}

}  // namespace tg
