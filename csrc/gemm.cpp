// (a plain stand-in until the blocked GEMM lands)
#include "gemm.h"

namespace tg {

template <class T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const T* a, index_t lda,
          const T* b, index_t ldb, T* c, index_t ldc, bool accumulate, const T* bias, bool relu) {
    for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n; ++j) {
            T s = accumulate ? c[i * ldc + j] : T(0);
            for (index_t p = 0; p < k; ++p)
                s += (trans_a ? a[p * lda + i] : a[i * lda + p]) *
                     (trans_b ? b[j * ldb + p] : b[p * ldb + j]);
            if (bias) s += bias[j];
            if (relu && s < T(0)) s = T(0);   // NaN stays NaN, as np.maximum
            c[i * ldc + j] = s;
        }
}

template void gemm<float>(bool, bool, index_t, index_t, index_t, const float*, index_t,
                          const float*, index_t, float*, index_t, bool, const float*, bool);
template void gemm<double>(bool, bool, index_t, index_t, index_t, const double*, index_t,
                           const double*, index_t, double*, index_t, bool, const double*, bool);

void register_gemm(py::module_&) {}

}  // namespace tg
