// Argument checks and allocation shared by every binding (see common.h).
#include "common.h"

#include <cstring>
#include <sstream>

namespace tg {

void type_error(const std::string& op, const std::string& what) {
    throw py::type_error(op + ": " + what);
}

void value_error(const std::string& op, const std::string& what) {
    throw py::value_error(op + ": " + what);
}

std::string shape_str(const std::vector<index_t>& shape) {
    std::ostringstream s;
    s << "(";
    for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
    s << (shape.size() == 1 ? ",)" : ")");
    return s.str();
}

std::string shape_str(const py::array& a) { return shape_str(shape_of(a)); }

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

py::array array_arg(const char* op, const char* name, py::handle h, bool writable) {
    if (!py::isinstance<py::array>(h))
        type_error(op, std::string(name) + " must be a NumPy array, got " +
                           py::str(py::type::of(h).attr("__name__")).cast<std::string>());
    auto a = py::reinterpret_borrow<py::array>(h);
    int flags = py::detail::array_proxy(a.ptr())->flags;
    if (!(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_))
        value_error(op, std::string(name) + " must be C-contiguous, got a strided array of shape " +
                            shape_str(a));
    if (!(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
        value_error(op, std::string(name) + " must be aligned");
    if (writable && !(flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_))
        value_error(op, std::string(name) + " must be writeable (it is updated in place)");
    char order = a.dtype().byteorder();
    if (order != '=' && order != '|')
        type_error(op, std::string(name) + " must be in native byte order, got " + dtype_str(a));
    return a;
}

DType float_dtype(const char* op, const char* name, const py::array& a) {
    if (a.dtype().kind() == 'f' && a.itemsize() == 4) return DType::f32;
    if (a.dtype().kind() == 'f' && a.itemsize() == 8) return DType::f64;
    type_error(op, std::string(name) + " must be float32 or float64, got " + dtype_str(a));
}

DType same_float_dtype(const char* op,
                       std::initializer_list<std::pair<const char*, const py::array*>> args) {
    auto it = args.begin();
    DType dt = float_dtype(op, it->first, *it->second);
    for (++it; it != args.end(); ++it)
        if (float_dtype(op, it->first, *it->second) != dt)
            type_error(op, std::string(it->first) + " must have " + args.begin()->first +
                               "'s dtype " + dtype_str(*args.begin()->second) + ", got " +
                               dtype_str(*it->second));
    return dt;
}

void expect_ndim(const char* op, const char* name, const py::array& a, int ndim) {
    if (a.ndim() != ndim)
        value_error(op, std::string(name) + " must have " + std::to_string(ndim) +
                            " dimensions, got shape " + shape_str(a));
}

void expect_shape(const char* op, const char* name, const py::array& a,
                  const std::vector<index_t>& shape) {
    if (shape_of(a) != shape)
        value_error(op, std::string(name) + " must have shape " + shape_str(shape) + ", got " +
                            shape_str(a));
}

void expect_dtype(const char* op, const char* name, const py::array& a, DType dt) {
    if (float_dtype(op, name, a) != dt)
        type_error(op, std::string(name) + " must be " + (dt == DType::f32 ? "float32" : "float64") +
                           ", got " + dtype_str(a));
}

bool index_dtype(const char* op, const char* name, const py::array& a) {
    if (a.dtype().kind() == 'i' && a.itemsize() == 8) return true;
    if (a.dtype().kind() == 'i' && a.itemsize() == 4) return false;
    type_error(op, std::string(name) + " must be int64 or int32, got " + dtype_str(a));
}

index_t int_arg(const char* op, const std::string& name, py::handle h) {
    if (PyBool_Check(h.ptr()) || !PyIndex_Check(h.ptr()) ||
        (py::isinstance<py::array>(h) && py::reinterpret_borrow<py::array>(h).ndim() != 0))
        type_error(op, name + " must be an int, got " +
                           py::str(py::type::of(h).attr("__name__")).cast<std::string>());
    Py_ssize_t v = PyNumber_AsSsize_t(h.ptr(), nullptr);   // clipped to the Py_ssize_t range
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        type_error(op, name + " must be an int, got " + py::repr(h).cast<std::string>());
    }
    return static_cast<index_t>(v);
}

std::vector<index_t> ints_arg(const char* op, const char* name, py::handle h, size_t count,
                              index_t lo) {
    if (!py::isinstance<py::tuple>(h) && !py::isinstance<py::list>(h))
        type_error(op, std::string(name) + " must be a tuple of " + std::to_string(count) +
                           " ints, got " + py::str(py::type::of(h).attr("__name__")).cast<std::string>());
    auto seq = py::reinterpret_borrow<py::sequence>(h);
    if (seq.size() != count)
        value_error(op, std::string(name) + " must have " + std::to_string(count) + " ints, got " +
                            std::to_string(seq.size()));
    std::vector<index_t> v;
    for (size_t i = 0; i < count; ++i) {
        index_t x = int_arg(op, std::string(name) + "[" + std::to_string(i) + "]", seq[i]);
        if (x < lo || x > (index_t(1) << 40))
            value_error(op, std::string(name) + " must hold ints from " + std::to_string(lo) +
                                " on, got " + py::str(h).cast<std::string>());
        v.push_back(x);
    }
    return v;
}

std::string type_name(py::handle h) {
    return py::str(py::type::of(h).attr("__name__")).cast<std::string>();
}

static bool is_numpy(py::handle h, const char* type) {
    return py::isinstance(h, py::module_::import("numpy").attr(type));
}

bool bool_arg(const char* op, const char* name, py::handle h) {
    if (PyBool_Check(h.ptr()) || is_numpy(h, "bool_")) return PyObject_IsTrue(h.ptr()) == 1;
    if (PyLong_Check(h.ptr())) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(h.ptr(), &overflow);
        if (!overflow && (v == 0 || v == 1)) return v == 1;
    }
    type_error(op, std::string(name) + " must be a bool, got " + type_name(h));
}

double number_arg(const char* op, const char* name, py::handle h) {
    if (!PyFloat_Check(h.ptr()) && !PyLong_Check(h.ptr()) && !is_numpy(h, "number"))
        type_error(op, std::string(name) + " must be a number, got " + type_name(h));
    double v = PyFloat_AsDouble(h.ptr());
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        value_error(op, std::string(name) + " does not fit a double: " + py::repr(h).cast<std::string>());
    }
    return v;
}

index_t size_arg(const char* op, const char* name, index_t v, bool positive) {
    if (v < (positive ? 1 : 0))
        value_error(op, std::string(name) + " must be " + (positive ? "positive" : "non-negative") +
                            ", got " + std::to_string(v));
    if (v > (index_t(1) << 40))     // no array is that big; larger values overflow index arithmetic
        value_error(op, std::string(name) + " is too large: " + std::to_string(v));
    return v;
}

py::array new_array(DType dt, const std::vector<index_t>& shape) {
    std::vector<py::ssize_t> s(shape.begin(), shape.end());
    if (dt == DType::f32) return py::array_t<float>(s);
    return py::array_t<double>(s);
}

py::array new_zeros(DType dt, const std::vector<index_t>& shape) {
    py::array a = new_array(dt, shape);
    std::memset(a.mutable_data(), 0, static_cast<size_t>(a.nbytes()));
    return a;
}

int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

bool in_parallel() {
#ifdef _OPENMP
    return omp_in_parallel() != 0;
#else
    return false;
#endif
}

}  // namespace tg
