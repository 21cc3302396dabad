// Shared pieces of the C++ CPU backend (tilegrad._cpu): argument checks, dtype dispatch,
// output allocation, threads. Every binding follows the same three steps:
//
//   1. check every argument with the helpers below, before touching any data: a wrong type or
//      dtype raises TypeError, a wrong shape, size or layout ValueError, each message starting
//      with the op's name ("matmul: b must be ...");
//   2. allocate the outputs (NumPy arrays, C-contiguous) while holding the GIL;
//   3. release the GIL (py::gil_scoped_release) and run the kernel on raw pointers.
//
// Arrays are taken as they are (zero-copy): a binding never converts or copies its input, so a
// non-contiguous or wrongly typed array is an error here, and the Python wrapper in
// tilegrad/backends/cpu/ makes it contiguous first where the framework can hand over a view.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

namespace tg {

using index_t = std::int64_t;

enum class DType { f32, f64 };

// ------------------------------------------------------------------ errors

[[noreturn]] void type_error(const std::string& op, const std::string& what);
[[noreturn]] void value_error(const std::string& op, const std::string& what);

std::string shape_str(const py::array& a);                 // "(3, 4)"
std::string shape_str(const std::vector<index_t>& shape);
std::string dtype_str(const py::array& a);                 // "float32"

// ------------------------------------------------------------------ argument checks

// `h` as a NumPy array that is C-contiguous and aligned (and writeable if `writable`), or a
// TypeError (not an ndarray) / ValueError (layout) naming `op` and the argument `name`.
py::array array_arg(const char* op, const char* name, py::handle h, bool writable = false);

// float32 or float64, else TypeError naming the dtype found.
DType float_dtype(const char* op, const char* name, const py::array& a);

// The dtype of the first array, every other one required to have it.
DType same_float_dtype(const char* op, std::initializer_list<std::pair<const char*, const py::array*>> args);

void expect_ndim(const char* op, const char* name, const py::array& a, int ndim);
void expect_shape(const char* op, const char* name, const py::array& a, const std::vector<index_t>& shape);
void expect_dtype(const char* op, const char* name, const py::array& a, DType dt);
// An integer index array (int32 or int64), C-contiguous; returns true for int64.
bool index_dtype(const char* op, const char* name, const py::array& a);

// A Python int (not a bool; NumPy integer scalars are fine), else TypeError naming `op`.
index_t int_arg(const char* op, const std::string& name, py::handle h);
// A tuple or list of `count` ints, each in [lo, 2^40] (larger ones would overflow the index
// arithmetic, and no array is that big): the kernel size, stride and padding pairs.
std::vector<index_t> ints_arg(const char* op, const char* name, py::handle h, size_t count, index_t lo);

// A bool (Python or NumPy; also the ints 0 and 1), else TypeError naming `op`.
bool bool_arg(const char* op, const char* name, py::handle h);
// A Python or NumPy number as a double, else TypeError naming `op`.
double number_arg(const char* op, const char* name, py::handle h);
// The name of h's type, for messages.
std::string type_name(py::handle h);

// A size or count that must be >= 0 (or >= 1 when `positive`).
index_t size_arg(const char* op, const char* name, index_t v, bool positive = false);

inline index_t dim(const py::array& a, int i) { return static_cast<index_t>(a.shape(i)); }
inline index_t numel(const py::array& a) { return static_cast<index_t>(a.size()); }
inline std::vector<index_t> shape_of(const py::array& a) {
    return std::vector<index_t>(a.shape(), a.shape() + a.ndim());
}

// ------------------------------------------------------------------ outputs and pointers

py::array new_array(DType dt, const std::vector<index_t>& shape);
py::array new_zeros(DType dt, const std::vector<index_t>& shape);

template <class T> T* ptr(py::array& a) { return static_cast<T*>(a.mutable_data()); }
template <class T> const T* cptr(const py::array& a) { return static_cast<const T*>(a.data()); }

// Calls f(float{}) or f(double{}): one template body serves both dtypes.
template <class F> decltype(auto) dispatch(DType dt, F&& f) {
    if (dt == DType::f32) return f(float{});
    return f(double{});
}

// ------------------------------------------------------------------ threads

int max_threads();
bool in_parallel();

// f(begin, end) over [0, n) in contiguous chunks, one per thread, when n is at least `grain`
// per thread and we are not already inside a parallel region; else one call on this thread.
template <class F> void parallel_for(index_t n, index_t grain, F&& f) {
#ifdef _OPENMP
    index_t threads = max_threads();
    if (grain < 1) grain = 1;
    if (threads > n / grain) threads = n / grain;
    if (threads > 1 && !in_parallel()) {
#pragma omp parallel num_threads(static_cast<int>(threads))
        {
            index_t t = omp_get_thread_num(), nt = omp_get_num_threads();
            index_t begin = n * t / nt, end = n * (t + 1) / nt;
            if (begin < end) f(begin, end);
        }
        return;
    }
#endif
    if (n > 0) f(index_t{0}, n);
}

// ------------------------------------------------------------------ vector width
// Chosen at run time from what the CPU reports (never by -march=native at build time): the
// kernels that have one variant per width ask `simd()` which to run. `set_simd` lowers it, for
// tests and benchmarks of each variant on one machine; asking for more than the CPU has is an error.
enum class Simd { portable = 0, avx2 = 1, avx512 = 2 };
Simd simd();
Simd simd_supported();
void set_simd(Simd level);
const char* simd_name(Simd level);

// ------------------------------------------------------------------ families
// Each kernel family's file defines its register function; module.cpp calls them all.
void register_gemm(py::module_& m);
void register_conv(py::module_& m);
void register_pool(py::module_& m);
void register_elementwise(py::module_& m);
void register_reduce(py::module_& m);
void register_softmax(py::module_& m);
void register_embedding(py::module_& m);
void register_lstm(py::module_& m);
void register_optim(py::module_& m);

}  // namespace tg
