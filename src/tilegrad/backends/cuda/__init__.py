"""The CUDA backend: kernels written by hand with Numba CUDA, on memory that CuPy manages.

One file per kernel family, each holding its kernels, launchers and ``PTX_SIGNATURES``:
``runtime`` (memory, streams, launch helpers; no arithmetic), ``elementwise`` (unary, binary with
broadcasting, pow, relu backward, where), ``reduce`` (sum, amax, argmax), ``matmul`` (the v1-v4
ladder). ``ptx`` compiles every listed kernel for sm_90 and sm_80 and runs ``ptxas -v``.

Still to write before device "cuda" is enabled: conv2d, max-pool, the LSTM cell, softmax
cross-entropy, embedding, the fused optimizers, indexing and layout. Until then
``tilegrad.device("cuda")`` is a disabled device that says so.
"""
