// tilegrad._cpu: the hand-written C++ CPU kernels behind device "cpu".
// This file holds the module's own functions (threads, vector width, build facts); each kernel
// family registers its bindings from its own file (gemm.cpp, conv.cpp, ...).
#include "common.h"

#include <cstdlib>
#include <cstring>

namespace tg {

void register_norm(py::module_& m);     // norm.cpp (declared here: common.h lists the others)

static Simd detect() {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        return Simd::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Simd::avx2;
#endif
    return Simd::portable;
}

static Simd& current() {
    static Simd level = detect();
    return level;
}

Simd simd_supported() {
    static Simd best = detect();
    return best;
}

Simd simd() { return current(); }

void set_simd(Simd level) {
    if (static_cast<int>(level) > static_cast<int>(simd_supported()))
        value_error("set_simd", std::string("this CPU supports at most ") +
                                    simd_name(simd_supported()) + ", not " + simd_name(level));
    current() = level;
}

const char* simd_name(Simd level) {
    switch (level) {
        case Simd::avx512: return "avx512";
        case Simd::avx2: return "avx2";
        default: return "portable";
    }
}

static Simd parse_simd(const std::string& name) {
    for (Simd s : {Simd::portable, Simd::avx2, Simd::avx512})
        if (name == simd_name(s)) return s;
    value_error("set_simd", "expected 'avx512', 'avx2' or 'portable', got '" + name + "'");
}

}  // namespace tg

PYBIND11_MODULE(_cpu, m) {
    using namespace tg;
    m.doc() = "tilegrad's hand-written C++ CPU kernels (see tilegrad.backends.cpu)";

    m.def("set_num_threads", [](int n) {
        size_arg("set_num_threads", "n", n, true);
#ifdef _OPENMP
        omp_set_num_threads(n);
#endif
    }, py::arg("n"), "Threads the kernels use from now on (OpenMP); 1 without OpenMP.");
    m.def("get_num_threads", &max_threads, "Threads the kernels use.");
    m.def("simd", [] { return std::string(simd_name(simd())); },
          "The vector width the kernels run: 'avx512', 'avx2' or 'portable'.");
    m.def("simd_supported", [] { return std::string(simd_name(simd_supported())); },
          "The widest vector width this CPU has.");
    m.def("set_simd", [](const std::string& name) { set_simd(parse_simd(name)); }, py::arg("name"),
          "Run the variants of this width (at most simd_supported()).");
#ifdef _OPENMP
    m.attr("openmp") = true;
#else
    m.attr("openmp") = false;
#endif
#if defined(__clang__)
    m.attr("compiler") = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    m.attr("compiler") = std::string("gcc ") + __VERSION__;
#else
    m.attr("compiler") = std::string("unknown");
#endif
#ifdef TG_SANITIZE
    m.attr("sanitized") = true;
#else
    m.attr("sanitized") = false;
#endif

    register_gemm(m);
    register_conv(m);
    register_pool(m);
    register_elementwise(m);
    register_reduce(m);
    register_softmax(m);
    register_embedding(m);
    register_lstm(m);
    register_optim(m);
    register_norm(m);
}
