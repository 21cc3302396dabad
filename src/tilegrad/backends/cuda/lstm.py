"""The LSTM cell's pointwise part, forward and backward, each one fused kernel.

The matmuls of the cell (``x @ W_ih^T + h @ W_hh^T + b``) are ``matmul``'s; what is left is
pointwise over the pre-activation gates ``gates`` (B, 4H), laid out as PyTorch's: columns
``[0, H)`` input gate i, ``[H, 2H)`` forget gate f, ``[2H, 3H)`` cell candidate g, ``[3H, 4H)``
output gate o.

Versions:

- ``lstm_cell_fwd_kernel1``: one thread per hidden unit (b, j) (grid-stride loop over ``B*H``).
  It reads its four gates ``gates[b, k*H + j]``, k = 0..3, activates them (sigmoid for i, f, o;
  tanh for g), and writes ``c = f*c_prev + i*g``, ``h = o*tanh(c)`` and the four activated gates
  (``acts``, which the backward needs). Consecutive threads own consecutive j, so every read and
  write is coalesced within each gate's column block.
- ``lstm_cell_bwd_kernel1``: the same ownership; from ``grad_h``, ``grad_c``, ``acts``, ``c`` and
  ``c_prev`` it writes the four pre-activation gate gradients and ``grad_c_prev = dc*f`` with
  ``dc = grad_c + grad_h*o*(1 - tanh(c)^2)``.

One kernel each way instead of a chain of elementwise launches: the small reference LSTM is
launch-bound, and the fused kernels read each input once.

Cost per hidden unit (B*H of them; s = bytes per element):

==========  ===========================================  ===============================
kernel      FLOPs                                        bytes moved (DRAM, ideal)
==========  ===========================================  ===============================
forward     ~15 + 3 exp + 2 tanh                         (4 + 1) read, (2 + 4) written, *s
backward    ~25 + 1 tanh                                 (2 + 4 + 2) read, (4 + 1) written, *s
==========  ===========================================  ===============================

Test (simulator, no GPU; 8 threads and at most 4 blocks so the grid-stride loop wraps)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_lstm.py

Simulator note: the simulator raises on ``math.exp`` overflow where the GPU returns inf (which
gives sigmoid 0, as NumPy); the tests use gates in range.

``PTX_SIGNATURES`` at the end lists every kernel and signature the launchers use on a GPU.
"""
import math

from numba import cuda, float32, float64, int64

from . import runtime as rt
from .common import THREADS, flat, grid_blocks

# ---------------------------------------------------------------- kernels


@cuda.jit
def lstm_cell_fwd_kernel1(gates, c_prev, h_out, c_out, acts, hs, n):
    one = gates.dtype.type(1)            # constants in the dtype, so float32 math stays float32
    for t in range(cuda.grid(1), n, cuda.gridsize(1)):
        # Thread t owns unit (b, j) = (t // H, t % H); its gate k sits at row b, column k*H + j.
        b = t // hs
        g0 = t + 3 * b * hs              # = b*4H + j, gate i's offset in the (B, 4H) arrays
        i = one / (one + math.exp(-gates[g0]))
        f = one / (one + math.exp(-gates[g0 + hs]))
        g = math.tanh(gates[g0 + 2 * hs])
        o = one / (one + math.exp(-gates[g0 + 3 * hs]))
        c = f * c_prev[t] + i * g
        c_out[t] = c
        h_out[t] = o * math.tanh(c)
        acts[g0] = i
        acts[g0 + hs] = f
        acts[g0 + 2 * hs] = g
        acts[g0 + 3 * hs] = o


@cuda.jit
def lstm_cell_bwd_kernel1(grad_h, grad_c, acts, c, c_prev, grad_gates, grad_c_prev, hs, n):
    one = acts.dtype.type(1)
    for t in range(cuda.grid(1), n, cuda.gridsize(1)):
        b = t // hs                      # unit (b, j) as in the forward
        g0 = t + 3 * b * hs
        i = acts[g0]
        f = acts[g0 + hs]
        g = acts[g0 + 2 * hs]
        o = acts[g0 + 3 * hs]
        gh = grad_h[t]
        tc = math.tanh(c[t])
        dc = grad_c[t] + gh * o * (one - tc * tc)
        grad_gates[g0] = dc * g * i * (one - i)
        grad_gates[g0 + hs] = dc * c_prev[t] * f * (one - f)
        grad_gates[g0 + 2 * hs] = dc * i * (one - g * g)
        grad_gates[g0 + 3 * hs] = gh * tc * o * (one - o)
        grad_c_prev[t] = dc * f

# ---------------------------------------------------------------- launchers


def lstm_cell_fwd(gates, c_prev):
    """From pre-activation gates (B, 4H) in the order i, f, g, o and c_prev (B, H):

    ``i, f, o = sigmoid(.)``, ``g = tanh(.)``, ``c = f*c_prev + i*g``, ``h = o*tanh(c)``.
    Returns h, c (B, H) and the activated gates (B, 4H), which the backward pass needs.
    """
    bs, hs = c_prev.shape
    assert gates.shape == (bs, 4 * hs), f"lstm_cell_fwd: gates {gates.shape}, c_prev {c_prev.shape}"
    assert gates.dtype == c_prev.dtype, "lstm_cell_fwd: dtypes differ"
    h = rt.empty((bs, hs), gates.dtype)
    c = rt.empty((bs, hs), gates.dtype)
    acts = rt.empty((bs, 4 * hs), gates.dtype)
    n = bs * hs
    if n:
        rt.launch(lstm_cell_fwd_kernel1, grid_blocks(n), THREADS,
            flat(gates), flat(c_prev), h.reshape(-1), c.reshape(-1), acts.reshape(-1), hs, n)
    return h, c, acts


def lstm_cell_bwd(grad_h, grad_c, acts, c, c_prev):
    """Gradients of the pre-activation gates (B, 4H) and of c_prev (B, H), given dL/dh and dL/dc
    (B, H), the activated gates and the cell states of the forward."""
    bs, hs = c.shape
    assert acts.shape == (bs, 4 * hs), f"lstm_cell_bwd: acts {acts.shape}, c {c.shape}"
    assert grad_h.shape == grad_c.shape == c_prev.shape == c.shape, "lstm_cell_bwd: shapes differ"
    grad_gates = rt.empty((bs, 4 * hs), acts.dtype)
    grad_c_prev = rt.empty((bs, hs), acts.dtype)
    n = bs * hs
    if n:
        rt.launch(lstm_cell_bwd_kernel1, grid_blocks(n), THREADS,
                  flat(grad_h), flat(grad_c), flat(acts), flat(c), flat(c_prev),
                  grad_gates.reshape(-1), grad_c_prev.reshape(-1), hs, n)
    return grad_gates, grad_c_prev

# ---------------------------------------------------------------- compile check


def _signatures():
    sigs = []
    for f in (float32, float64):
        arr = f[::1]
        sigs += [
            (f"lstm_cell_fwd_kernel1_{f}", lstm_cell_fwd_kernel1,
             (arr, arr, arr, arr, arr, int64, int64)),
            (f"lstm_cell_bwd_kernel1_{f}", lstm_cell_bwd_kernel1,
             (arr,) * 7 + (int64, int64)),
        ]
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU.
PTX_SIGNATURES = _signatures()
