// Embedding lookup and its gradient (tilegrad.backends.numpy: embedding_fwd, embedding_bwd).
//
//   embedding_fwd(weight (V, D), idx (any shape, int32/int64)) -> out idx.shape + (D,)
//       out[n, :] = weight[idx[n], :]: a gather of N = idx.size rows, no FLOPs,
//       N*D*itemsize bytes read and written (plus N index reads).
//   embedding_bwd(grad_out idx.shape + (D,), idx, num_embeddings V) -> grad (V, D)
//       grad = 0; grad[idx[n], :] += grad_out[n, :] for n = 0 .. N-1 in that order:
//       N*D adds, V*D*itemsize bytes zeroed and N*D*itemsize read.
//
// Indices are checked first (every one in [0, V), negative ones included: no wrapping), so an
// out-of-range index raises IndexError before anything is written.
//
// Threads: the forward splits the N rows over the threads (each row one memcpy). The backward
// must not let two threads add into the same element (two equal indices), and must add in a
// fixed order for determinism, so it splits the D columns instead: each thread walks all N
// indices in order and adds only its slice of columns. Every element thus receives its terms in
// the order n = 0, 1, ... as np.add.at does, whatever the thread count (no float atomics).
//
// register_embedding also registers dropout's bindings (dropout.cpp): module.cpp has no family
// of its own for them.
#include "common.h"

#include <algorithm>
#include <cstring>

namespace tg {

void register_dropout(py::module_& m);   // dropout.cpp

namespace {

// The first index outside [0, rows), or -1 if all are in range (scanned in order, so the
// message names the first bad one, as the NumPy backend does).
template <class I> index_t first_bad(const I* idx, index_t n, index_t rows) {
    for (index_t k = 0; k < n; ++k)
        if (idx[k] < 0 || static_cast<index_t>(idx[k]) >= rows) return k;
    return -1;
}

void check_indices(const char* op, const py::array& idx, bool i64, index_t rows) {
    index_t n = numel(idx);
    index_t bad = i64 ? first_bad(cptr<std::int64_t>(idx), n, rows)
                      : first_bad(cptr<std::int32_t>(idx), n, rows);
    if (bad >= 0) {
        long long value = i64 ? static_cast<long long>(cptr<std::int64_t>(idx)[bad])
                              : static_cast<long long>(cptr<std::int32_t>(idx)[bad]);
        throw py::index_error(std::string(op) + ": index " + std::to_string(value) +
                              " is out of range for " + std::to_string(rows) + " rows");
    }
}

template <class T, class I>
void gather_rows(const T* weight, const I* idx, T* out, index_t n, index_t d) {
    // About 16 KiB of rows per thread at least, so that small lookups stay on one thread.
    index_t grain = std::max<index_t>(1, 4096 / std::max<index_t>(d, 1));
    parallel_for(n, grain, [&](index_t begin, index_t end) {
        for (index_t k = begin; k < end; ++k)
            std::memcpy(out + k * d, weight + static_cast<index_t>(idx[k]) * d,
                        static_cast<size_t>(d) * sizeof(T));
    });
}

template <class T, class I>
void scatter_add_rows(const T* grad_out, const I* idx, T* grad, index_t n, index_t d, index_t rows) {
    // Zero the (V, D) result by rows (contiguous), then add by column slices (see the top).
    parallel_for(rows, std::max<index_t>(1, 16384 / std::max<index_t>(d, 1)),
                 [&](index_t begin, index_t end) {
        std::memset(grad + begin * d, 0, static_cast<size_t>((end - begin) * d) * sizeof(T));
    });
    // A slice of at least 16 columns (a 64-byte line of floats), and enough rows to be worth a
    // thread: the grain is counted in columns.
    index_t grain = std::max<index_t>(16, n > 0 ? 32768 / n : 16);
    parallel_for(d, grain, [&](index_t c0, index_t c1) {
        for (index_t k = 0; k < n; ++k) {
            T* dst = grad + static_cast<index_t>(idx[k]) * d;
            const T* src = grad_out + k * d;
            for (index_t c = c0; c < c1; ++c) dst[c] += src[c];
        }
    });
}

py::array embedding_fwd(py::handle weight_h, py::handle idx_h) {
    const char* op = "embedding_fwd";
    py::array weight = array_arg(op, "weight", weight_h);
    py::array idx = array_arg(op, "idx", idx_h);
    DType dt = float_dtype(op, "weight", weight);
    bool i64 = index_dtype(op, "idx", idx);
    expect_ndim(op, "weight", weight, 2);
    index_t rows = dim(weight, 0), d = dim(weight, 1), n = numel(idx);
    check_indices(op, idx, i64, rows);

    std::vector<index_t> shape = shape_of(idx);
    shape.push_back(d);
    py::array out = new_array(dt, shape);
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* w = cptr<T>(weight);
        T* o = ptr<T>(out);
        const void* ip = idx.data();
        py::gil_scoped_release release;
        if (i64) gather_rows(w, static_cast<const std::int64_t*>(ip), o, n, d);
        else gather_rows(w, static_cast<const std::int32_t*>(ip), o, n, d);
    });
    return out;
}

py::array embedding_bwd(py::handle grad_out_h, py::handle idx_h, py::handle num_embeddings) {
    const char* op = "embedding_bwd";
    py::array grad_out = array_arg(op, "grad_out", grad_out_h);
    py::array idx = array_arg(op, "idx", idx_h);
    DType dt = float_dtype(op, "grad_out", grad_out);
    bool i64 = index_dtype(op, "idx", idx);
    index_t rows = size_arg(op, "num_embeddings", int_arg(op, "num_embeddings", num_embeddings));
    if (grad_out.ndim() != idx.ndim() + 1)
        value_error(op, "grad_out must have shape idx.shape + (D,), got " + shape_str(grad_out) +
                            " for idx of shape " + shape_str(idx));
    index_t d = dim(grad_out, static_cast<int>(idx.ndim()));
    std::vector<index_t> expected = shape_of(idx);
    expected.push_back(d);
    expect_shape(op, "grad_out", grad_out, expected);
    index_t n = numel(idx);
    check_indices(op, idx, i64, rows);

    py::array grad = new_array(dt, {rows, d});
    dispatch(dt, [&](auto zero) {
        using T = decltype(zero);
        const T* g = cptr<T>(grad_out);
        T* out = ptr<T>(grad);
        const void* ip = idx.data();
        py::gil_scoped_release release;
        if (i64) scatter_add_rows(g, static_cast<const std::int64_t*>(ip), out, n, d, rows);
        else scatter_add_rows(g, static_cast<const std::int32_t*>(ip), out, n, d, rows);
    });
    return grad;
}

}  // namespace

void register_embedding(py::module_& m) {
    m.def("embedding_fwd", &embedding_fwd, py::arg("weight"), py::arg("idx"),
          "Rows of weight (V, D) gathered by the int32/int64 array idx: idx.shape + (D,).");
    m.def("embedding_bwd", &embedding_bwd, py::arg("grad_out"), py::arg("idx"),
          py::arg("num_embeddings"),
          "dL/dweight (num_embeddings, D): each row of grad_out added into row idx, in order.");
    register_dropout(m);
}

}  // namespace tg
