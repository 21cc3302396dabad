// The GEMM that matmul, the convolutions and the LSTM run on (gemm.cpp).
#pragma once

#include "common.h"

namespace tg {

// C = op(A) @ op(B)  [+ C, if accumulate]  [+ bias[j] on every row]  [then max(., 0), if relu]
//
// Row-major, with leading dimensions (the distance between rows):
//   op(A) is m x k: A is m x k with rows lda apart, or with trans_a it is k x m, read transposed;
//   op(B) is k x n: B is k x n with rows ldb apart, or with trans_b it is n x k;
//   C is m x n with rows ldc apart; bias is n values or nullptr.
// Outside a parallel region it splits the work over the OpenMP threads; called from inside one
// (a convolution running one image per thread, say) it runs on the calling thread. The result is
// bit-identical for any number of threads. With k == 0, C = (C or 0) + bias, then ReLU. C must not
// overlap A or B. Each calling thread keeps its packing buffers (up to ~4.5 MB) for later calls.
// The blocked algorithm, its block sizes and its micro-kernels: gemm.cpp and gemm_isa.cpp.
template <class T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const T* a, index_t lda,
          const T* b, index_t ldb, T* c, index_t ldc, bool accumulate, const T* bias, bool relu);

}  // namespace tg
