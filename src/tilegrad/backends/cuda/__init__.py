"""The CUDA backend: kernels written by hand with Numba CUDA, on memory that CuPy manages.

One file per kernel family, each holding its kernels, launchers and ``PTX_SIGNATURES``:
``elementwise`` (unary, binary with broadcasting, pow, relu backward, where), ``reduce`` (sum,
amax, argmax), ``matmul`` (the v1-v6 ladder and the shape-aware ``auto``; v5/v6's kernels in
``matmul_bigtile``), ``layout`` (permute, broadcast, index and its backward, concat, copies,
casts, fill), ``pool`` (max-pool with argmax and its backward), ``lstm`` (the cell's fused
pointwise part), ``softmax`` (log-softmax and fused softmax cross-entropy), ``embedding``
(gather, scatter-add), ``optim`` (fused SGD and Adam), ``conv`` (forward, backward-data and
backward-weight). Beside them: ``runtime`` (memory, streams, launches; no arithmetic),
``common`` (launch constants, grid helpers, dtype maps, block reductions as device functions),
``vector`` (128-bit loads and stores), ``ptx`` (compiles every listed kernel for sm_90 and
sm_80 and runs ``ptxas -v``) and ``sass`` (the instruction-mix report of the sm_90 code).

``backend`` gathers the launchers into one module under numpy.py's names (the versioned
families through ``tilegrad.kernels``); it is device "cuda". Under ``NUMBA_ENABLE_CUDASIM=1``
that device runs in Numba's simulator on NumPy arrays (how CI tests it); on a machine with a GPU,
CuPy and numba-cuda it runs on the GPU (``make gpu-check``). Without either it is a disabled
device that says why.
"""
