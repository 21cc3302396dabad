"""The LSTM: the cell's pointwise part (rung 1), and a whole layer over a sequence (rung 2).

Gates are laid out as PyTorch's: columns ``[0, H)`` input gate i, ``[H, 2H)`` forget gate f,
``[2H, 3H)`` cell candidate g, ``[3H, 4H)`` output gate o, of a (B, 4H) pre-activation array.

Rung 1, one step (``lstm_cell_fwd``/``lstm_cell_bwd``, used by ``LSTMCell``): the cell's matmuls
(``x @ W_ih^T + h @ W_hh^T + b``) are ``matmul``'s; what is left is pointwise.

- ``lstm_cell_fwd_kernel1``: one thread per hidden unit (b, j) (grid-stride loop over ``B*H``).
  It reads its four gates ``gates[b, k*H + j]``, k = 0..3, activates them (sigmoid for i, f, o;
  tanh for g), and writes ``c = f*c_prev + i*g``, ``h = o*tanh(c)`` and the four activated gates
  (``acts``, which the backward needs). Consecutive threads own consecutive j, so every read and
  write is coalesced within each gate's column block.
- ``lstm_cell_bwd_kernel1``: the same ownership; from ``grad_h``, ``grad_c``, ``acts``, ``c`` and
  ``c_prev`` it writes the four pre-activation gate gradients and ``grad_c_prev = dc*f`` with
  ``dc = grad_c + grad_h*o*(1 - tanh(c)^2)``.

Rung 2, a layer of T steps (``lstm_seq_fwd``/``lstm_seq_bwd``/``lstm_bias_bwd``, used by ``LSTM``
through ``ops/rnn.py``). The input projection of all T steps, ``x @ W_ih^T + b_ih``, is one
``matmul`` before the loop, and the weight gradients and dx are ``matmul``s over all T*B rows after
it (in the autograd Function); the recurrence is two launches a step each way, writing straight
into (T, ...) buffers: no per-step slicing, concatenation or addition launches.

- ``lstm_gates_fwd_kernel1`` (made by ``make_lstm_gates_kernel``): the hidden GEMM of step t with
  its epilogue, ``acts[t] = h_{t-1} @ W_hh^T + b_hh + xproj[t]`` (B, 4H). A block computes a
  BM x BN tile of the output with BM*BN/TM threads; thread ``tid`` owns column ``tid % BN`` and
  the TM rows ``(tid // BN)*TM ..``. Per K-tile the block stages BM x BK of h and BK x BN of
  W_hh^T in shared memory (k-major, each row padded by one element so that the k-contiguous
  global loads, which become column-wise shared stores, hit distinct banks); index arithmetic is
  unsigned 32-bit (no negative-index fix-ups). Tiles of 32 x 8 give ``4H/8`` blocks (128 at
  H = 256, B <= 32): a B = 20 step is far too small to fill the GPU with big tiles, and its time is
  latency, so many small blocks beat few large ones.
- ``lstm_step_fwd_kernel1``: the cell of step t, as ``lstm_cell_fwd_kernel1``, reading the
  pre-activations the GEMM left in ``acts[t]`` and overwriting them with the activations (each
  thread reads its four, then writes them: no other thread touches them). It writes ``h_t`` into
  ``hs[t+1]`` and ``c_t`` into ``cs[t+1]`` of (T+1, B, H) buffers whose row 0 is the initial state
  (written by step 0, from h0 and c0 or zeros): the layer's output is the view ``hs[1:]`` and the
  hidden states the GEMMs read, h_0..h_{T-1}, the view ``hs[:-1]``, so the weight gradient of
  ``W_hh`` is one GEMM with no concatenation. The last step also writes h_n and c_n into arrays
  of their own (outputs that may be changed in place later).
- ``lstm_gates_bwd_kernel1``: the same GEMM kernel, W_hh not transposed and no epilogue:
  ``dh_{t-1} = dgates[t] @ W_hh`` (B, H), into one (B, H) buffer reused by every step.
- ``lstm_step_bwd_kernel1``: the cell's backward at step t: ``dh = grad_y[t] + dh_rec`` (the
  recurrent gradient from step t+1, or grad_h_n at the last step), ``dc`` from step t+1 (or
  grad_c_n), ``acts[t]``, ``c_t = cs[t+1]``, ``c_{t-1} = cs[t]``; writes ``dgates[t]`` and
  ``dc_{t-1}`` in place over dc (each thread reads its element before writing it). Absent
  gradients (None) are integer flags, uniform across the launch.
- ``lstm_bias_bwd_kernel1``: the bias gradient, ``dgates`` summed over its T*B rows, written to
  two arrays (b_ih's and b_hh's gradients are equal, and each parameter needs its own). A block
  owns 32 columns with 8 threads each: thread (r, j) sums rows r, r + 8, ... in order, then the
  first thread of each column adds the 8 partials in order: deterministic, no atomics.

Launches for one layer of T steps: forward 1 (the projection) + 2T; backward 2T (2T - 1 when h0
needs no gradient: step 0's dh GEMM is skipped) + 3 GEMMs (dx, dW_ih, dW_hh) + 1 bias kernel.

Cost (s = bytes per element; per step unless noted):

================  ==========================  ==============================================
kernel            FLOPs                       bytes moved (DRAM, ideal)
================  ==========================  ==============================================
cell fwd (each)   B*H*(~15 + 3 exp + 2 tanh)  B*H*(4 + 1) read, B*H*(2 + 4) written, *s
cell bwd (each)   B*H*(~25 + 1 tanh)          B*H*(2 + 4 + 2) read, B*H*(4 + 1) written, *s
gates fwd         2*B*4H*H                    (4H*H + B*H + B*4H) read, B*4H written, *s
gates bwd         2*B*H*4H                    (4H*H + B*4H) read, B*H written, *s
bias bwd (once)   T*B*4H                      T*B*4H read, 2*4H written, *s
================  ==========================  ==============================================

W_hh (4H*H*s, 1 MB at H = 256 in float32) is read by every step: it stays in L2 across steps.

Test (simulator, no GPU; 8 threads, at most 4 blocks, GEMM tiles 4 x 4 x 4)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_lstm.py \
        tests/test_lstm_sequence.py

Simulator note: the simulator raises on ``math.exp`` overflow where the GPU returns inf (which
gives sigmoid 0, as NumPy); the tests use gates in range.

``PTX_SIGNATURES`` at the end lists every kernel and signature the launchers use on a GPU.
"""
import functools
import math

from numba import cuda, float32, float64, int64, uint32

from . import runtime as rt
from .common import GPU_THREADS, NUMBA_DTYPES, THREADS, flat, grid_blocks, udivmod

U = uint32

# Tiles of the hidden GEMM (BM x BN outputs a block, K-tiles of BK, TM rows a thread) and of the
# bias sum (columns x rows of threads): GPU sizes, and tiny ones in the simulator, where each
# CUDA thread is a Python thread.
GPU_GATES = dict(bm=32, bn=8, bk=32, tm=2)
GATES = dict(bm=4, bn=4, bk=4, tm=2) if rt.SIMULATOR else GPU_GATES
GPU_BIAS = (32, 8)
BIAS_COLS, BIAS_ROWS = (4, 2) if rt.SIMULATOR else GPU_BIAS

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


@functools.lru_cache(maxsize=None)
def make_lstm_gates_kernel(bm, bn, bk, tm, trans_w, has_bias, has_add, dtype):
    """The hidden GEMM ``c[c_off:] = a[a_off:] @ op(w) (+ bias) (+ add[add_off:])`` for a (M, K),
    op(w) (K, N) and c (M, N), all row-major in flat arrays: ``trans_w`` reads w as (N, K) (the
    forward's W_hh^T), else as (K, N) (the backward's W_hh). Tile sizes, the transposition and the
    epilogue are compile-time constants. Forward: ``lstm_gates_fwd_kernel1``; backward (no
    transposition, no epilogue): ``lstm_gates_bwd_kernel1``."""
    threads = bm // tm * bn
    per_a, per_w = bm * bk // threads, bn * bk // threads     # tile elements each thread loads
    assert per_a * threads == bm * bk and per_w * threads == bn * bk, (bm, bn, bk, tm)
    BM, BN, BK, TM, THREADS_ = U(bm), U(bn), U(bk), U(tm), U(threads)
    a_cols, w_cols = bm + 1, bn + 1     # shared rows padded by one (see below)
    zero = dtype(0)

    @cuda.jit(device=True)
    def body(a, a_off, w, bias, add, add_off, c, c_off, m, n, k):
        # Shared tiles, k-major; the +1 column keeps the column-wise stores below conflict-free
        # (consecutive threads load consecutive k of one row, and store down a column).
        sa = cuda.shared.array((bk, a_cols), dtype)
        sw = cuda.shared.array((bk, w_cols), dtype)
        acc = cuda.local.array(tm, dtype)
        tid = U(cuda.threadIdx.x)
        tx, ty = tid % BN, tid // BN            # column tx, rows ty*TM .. ty*TM + TM-1
        row0, col0 = U(cuda.blockIdx.y) * BM, U(cuda.blockIdx.x) * BN
        mm, nn, kk = U(m), U(n), U(k)
        a0, add0, c0 = U(a_off), U(add_off), U(c_off)
        for r in range(tm):
            acc[r] = zero
        for kt in range((k + bk - 1) // bk):
            k0 = U(kt) * BK
            for q in range(per_a):              # a[row0 + r, k0 + p]: k fastest, coalesced
                e = tid + U(q) * THREADS_
                r, p = e // BK, e % BK
                i, kp = row0 + r, k0 + p
                sa[p, r] = a[a0 + i * kk + kp] if i < mm and kp < kk else zero
            for q in range(per_w):
                e = tid + U(q) * THREADS_
                if trans_w:                     # w (N, K): k fastest
                    s, p = e // BK, e % BK
                else:                           # w (K, N): j fastest
                    p, s = e // BN, e % BN
                j, kp = col0 + s, k0 + p
                if j < nn and kp < kk:
                    sw[p, s] = w[j * kk + kp] if trans_w else w[kp * nn + j]
                else:
                    sw[p, s] = zero
            cuda.syncthreads()                  # both tiles complete before anyone reads them
            for p in range(bk):
                wv = sw[p, tx]
                for r in range(tm):
                    acc[r] += sa[p, ty * TM + U(r)] * wv
            cuda.syncthreads()                  # everyone done reading before the next tile
        j = col0 + tx
        if j < nn:
            for r in range(tm):
                i = row0 + ty * TM + U(r)
                if i < mm:
                    v = acc[r]
                    if has_bias:
                        v += bias[j]
                    if has_add:
                        v += add[add0 + i * nn + j]
                    c[c0 + i * nn + j] = v

    if trans_w:
        @cuda.jit
        def lstm_gates_fwd_kernel1(a, a_off, w, bias, add, add_off, c, c_off, m, n, k):
            body(a, a_off, w, bias, add, add_off, c, c_off, m, n, k)
        return lstm_gates_fwd_kernel1

    @cuda.jit
    def lstm_gates_bwd_kernel1(a, a_off, w, bias, add, add_off, c, c_off, m, n, k):
        body(a, a_off, w, bias, add, add_off, c, c_off, m, n, k)
    return lstm_gates_bwd_kernel1


@cuda.jit
def lstm_step_fwd_kernel1(acts, hs, cs, h0, c0, h_n, c_n, t, steps, has_h0, has_c0, hsz, n):
    one = acts.dtype.type(1)
    zero = acts.dtype.type(0)
    for u in range(cuda.grid(1), n, cuda.gridsize(1)):
        # Thread u owns unit (b, j) = (u // H, u % H) of step t: hs, cs row t*n + u is its
        # previous state, row (t+1)*n + u its new one; its gate k at acts[t, b, k*H + j].
        b, _ = udivmod(u, hsz)           # 32-bit: n < 2**31 (a 64-bit division is a call)
        g0 = 4 * t * n + u + 3 * b * hsz
        if t == 0:                       # row 0 of hs and cs: the initial state
            c_prev = c0[u] if has_c0 else zero
            cs[u] = c_prev
            hs[u] = h0[u] if has_h0 else zero
        else:
            c_prev = cs[t * n + u]
        i = one / (one + math.exp(-acts[g0]))
        f = one / (one + math.exp(-acts[g0 + hsz]))
        g = math.tanh(acts[g0 + 2 * hsz])
        o = one / (one + math.exp(-acts[g0 + 3 * hsz]))
        c = f * c_prev + i * g
        h = o * math.tanh(c)
        cs[(t + 1) * n + u] = c
        hs[(t + 1) * n + u] = h
        acts[g0] = i
        acts[g0 + hsz] = f
        acts[g0 + 2 * hsz] = g
        acts[g0 + 3 * hsz] = o
        if t == steps - 1:
            h_n[u] = h
            c_n[u] = c


@cuda.jit
def lstm_step_bwd_kernel1(grad_y, has_gy, dh, has_dh, dc_in, has_dc, cs, acts, dgates, dc_out,
                          t, hsz, n):
    one = acts.dtype.type(1)
    zero = acts.dtype.type(0)
    for u in range(cuda.grid(1), n, cuda.gridsize(1)):
        b, _ = udivmod(u, hsz)           # unit (b, j) of step t, as in the forward
        g0 = 4 * t * n + u + 3 * b * hsz
        gh = zero
        if has_gy:
            gh += grad_y[t * n + u]
        if has_dh:
            gh += dh[u]
        dc_next = dc_in[u] if has_dc else zero   # read before dc_out[u] (maybe dc_in) is written
        i = acts[g0]
        f = acts[g0 + hsz]
        g = acts[g0 + 2 * hsz]
        o = acts[g0 + 3 * hsz]
        tc = math.tanh(cs[(t + 1) * n + u])
        dc = dc_next + gh * o * (one - tc * tc)
        dgates[g0] = dc * g * i * (one - i)
        dgates[g0 + hsz] = dc * cs[t * n + u] * f * (one - f)
        dgates[g0 + 2 * hsz] = dc * i * (one - g * g)
        dgates[g0 + 3 * hsz] = gh * tc * o * (one - o)
        dc_out[u] = dc * f


@cuda.jit
def lstm_bias_bwd_kernel1(grad, out_ih, out_hh, rows, n):
    # A block of BIAS_COLS x BIAS_ROWS threads owns BIAS_COLS columns; thread (r, jj) sums rows
    # r, r + BIAS_ROWS, ... of column j (consecutive threads read consecutive columns).
    partial = cuda.shared.array((BIAS_ROWS, BIAS_COLS), grad.dtype)
    tid = cuda.threadIdx.x
    jj, r0 = tid % BIAS_COLS, tid // BIAS_COLS
    j = cuda.blockIdx.x * BIAS_COLS + jj
    acc = grad.dtype.type(0)
    if j < n:
        for r in range(r0, rows, BIAS_ROWS):
            acc += grad[r * n + j]
    partial[r0, jj] = acc
    cuda.syncthreads()                   # every partial written before the column sums
    if r0 == 0 and j < n:
        total = partial[0, jj]
        for r in range(1, BIAS_ROWS):    # in order: the same sum on every run
            total += partial[r, jj]
        out_ih[j] = total
        out_hh[j] = total

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


def _gates_launch(kernel, a, a_off, w, bias, add, add_off, c, c_off, m, n, k):
    cfg = GATES
    grid = (rt.ceil_div(n, cfg["bn"]), rt.ceil_div(m, cfg["bm"]))
    rt.launch(kernel, grid, cfg["bm"] // cfg["tm"] * cfg["bn"],
              a, a_off, w, bias, add, add_off, c, c_off, m, n, k)


def lstm_seq_fwd(xproj, h0, c0, w_hh, b_hh):
    """An LSTM layer over T steps, as the NumPy backend's: from the input projections ``xproj``
    (T, B, 4H), the initial state h0, c0 (B, H) (None: zeros), W_hh (4H, H) and b_hh (4H,) or
    None. Returns ``y, h_n, c_n, h_prev, cs, acts``: y (T, B, H) = hs[1:] and h_prev = hs[:-1],
    views of one (T+1, B, H) buffer; h_n, c_n (B, H), arrays of their own; cs (T+1, B, H), c0
    then every c_t; acts (T, B, 4H), the activated gates. 2T launches."""
    steps, bs, g = xproj.shape
    hsz = g // 4
    dt = xproj.dtype
    assert g == 4 * hsz and w_hh.shape == (g, hsz), \
        f"lstm_seq_fwd: xproj {xproj.shape}, w_hh {w_hh.shape}"
    assert all(s is None or s.shape == (bs, hsz) for s in (h0, c0)), "lstm_seq_fwd: h0 or c0 shape"
    assert b_hh is None or b_hh.shape == (g,), f"lstm_seq_fwd: b_hh {b_hh.shape}"
    assert all(a is None or a.dtype == dt for a in (h0, c0, w_hh, b_hh)), "lstm_seq_fwd: dtypes"
    assert (steps + 1) * bs * g < 2 ** 31, "lstm_seq_fwd: 32-bit indices"
    hs = rt.empty((steps + 1, bs, hsz), dt)
    cs = rt.empty((steps + 1, bs, hsz), dt)
    acts = rt.empty((steps, bs, g), dt)
    h_n, c_n = rt.empty((bs, hsz), dt), rt.empty((bs, hsz), dt)
    n = bs * hsz
    if n:
        nd = NUMBA_DTYPES[dt]
        gates = make_lstm_gates_kernel(*GATES.values(), True, b_hh is not None, True, nd)
        none = rt.placeholder(dt)
        h0_, c0_ = (flat(s) if s is not None else none for s in (h0, c0))
        bias = flat(b_hh) if b_hh is not None else none
        w, x = flat(w_hh), flat(xproj)
        hs_, cs_, acts_ = hs.reshape(-1), cs.reshape(-1), acts.reshape(-1)
        for t in range(steps):
            # Step 0 reads h0 itself (hs[0] is written by step 0's cell kernel, after the GEMM);
            # without h0 its GEMM has K = 0: acts[0] = xproj[0] + b_hh.
            a, a_off, k = (h0_, 0, hsz if h0 is not None else 0) if t == 0 else (hs_, t * n, hsz)
            _gates_launch(gates, a, a_off, w, bias, x, t * bs * g, acts_, t * bs * g, bs, g, k)
            rt.launch(lstm_step_fwd_kernel1, grid_blocks(n), THREADS, acts_, hs_, cs_, h0_, c0_,
                      h_n.reshape(-1), c_n.reshape(-1), t, steps, int(h0 is not None),
                      int(c0 is not None), hsz, n)
    return hs[1:], h_n, c_n, hs[:-1], cs, acts


def lstm_seq_bwd(grad_y, grad_hn, grad_cn, cs, acts, w_hh, need_dh0):
    """Backward through ``lstm_seq_fwd``'s T steps, as the NumPy backend's: grad_y (T, B, H),
    grad_hn, grad_cn (B, H) (each None when nothing depends on it), its cs and acts, W_hh.
    Returns ``dgates, dh0, dc0``: dgates (T, B, 4H) the pre-activation gates' gradients; dh0 (B, H),
    or None unless ``need_dh0``; dc0 (B, H). 2T launches (2T - 1 without dh0)."""
    steps, bs, g = acts.shape
    hsz = g // 4
    dt = acts.dtype
    assert cs.shape == (steps + 1, bs, hsz) and w_hh.shape == (g, hsz), \
        f"lstm_seq_bwd: acts {acts.shape}, cs {cs.shape}, w_hh {w_hh.shape}"
    assert grad_y is None or grad_y.shape == (steps, bs, hsz), "lstm_seq_bwd: grad_y shape"
    assert all(s is None or s.shape == (bs, hsz) for s in (grad_hn, grad_cn)), \
        "lstm_seq_bwd: grad_hn or grad_cn shape"
    assert (steps + 1) * bs * g < 2 ** 31, "lstm_seq_bwd: 32-bit indices"
    dgates = rt.empty((steps, bs, g), dt)
    dh, dc = rt.empty((bs, hsz), dt), rt.empty((bs, hsz), dt)
    n = bs * hsz
    if n:
        gemm = make_lstm_gates_kernel(*GATES.values(), False, False, False, NUMBA_DTYPES[dt])
        none = rt.placeholder(dt)
        gy = flat(grad_y) if grad_y is not None else none
        dgates_, cs_, acts_, w = dgates.reshape(-1), flat(cs), flat(acts), flat(w_hh)
        dh_, dc_ = dh.reshape(-1), dc.reshape(-1)
        for t in range(steps - 1, -1, -1):
            last = t == steps - 1
            # The last step takes grad_h_n and grad_c_n (or nothing); earlier ones the dh the
            # GEMM of step t+1 left in dh, and the dc step t+1 left in dc (updated in place).
            dh_in = (flat(grad_hn) if grad_hn is not None else none) if last else dh_
            dc_in = (flat(grad_cn) if grad_cn is not None else none) if last else dc_
            has_dh = int(not last or grad_hn is not None)
            has_dc = int(not last or grad_cn is not None)
            rt.launch(lstm_step_bwd_kernel1, grid_blocks(n), THREADS, gy, int(grad_y is not None),
                      dh_in, has_dh, dc_in, has_dc, cs_, acts_, dgates_, dc_, t, hsz, n)
            if t > 0 or need_dh0:        # dh_{t-1} = dgates[t] @ W_hh
                _gates_launch(gemm, dgates_, t * bs * g, w, none, none, 0, dh_, 0, bs, hsz, g)
    return dgates, (dh if need_dh0 else None), dc


def lstm_bias_bwd(grad_gates):
    """The gradients of b_ih and b_hh from the gates' gradients (..., 4H): their sum over every
    row, written to two arrays (the values are equal). One launch."""
    g = grad_gates.shape[-1]
    rows = grad_gates.size // g if g else 0
    out_ih, out_hh = rt.empty((g,), grad_gates.dtype), rt.empty((g,), grad_gates.dtype)
    if g:
        rt.launch(lstm_bias_bwd_kernel1, rt.ceil_div(g, BIAS_COLS), BIAS_COLS * BIAS_ROWS,
                  flat(grad_gates), out_ih, out_hh, rows, g)
    return out_ih, out_hh

# ---------------------------------------------------------------- compile check


def _signatures():
    """Rung 1's kernels, then rung 2's: the hidden GEMM forward with and without b_hh and backward
    (GPU tiles, their threads per block as a 4th element), the step kernels and the bias sum."""
    sigs = []
    gemm_threads = GPU_GATES["bm"] // GPU_GATES["tm"] * GPU_GATES["bn"]
    for f in (float32, float64):
        arr = f[::1]
        gemm = (arr, int64, arr, arr, arr, int64, arr, int64, int64, int64, int64)
        sigs += [
            (f"lstm_cell_fwd_kernel1_{f}", lstm_cell_fwd_kernel1,
             (arr, arr, arr, arr, arr, int64, int64)),
            (f"lstm_cell_bwd_kernel1_{f}", lstm_cell_bwd_kernel1,
             (arr,) * 7 + (int64, int64)),
            (f"lstm_gates_fwd_kernel1_{f}",
             make_lstm_gates_kernel(*GPU_GATES.values(), True, True, True, f), gemm, gemm_threads),
            (f"lstm_gates_fwd_kernel1_{f}_nobias",
             make_lstm_gates_kernel(*GPU_GATES.values(), True, False, True, f), gemm,
             gemm_threads),
            (f"lstm_gates_bwd_kernel1_{f}",
             make_lstm_gates_kernel(*GPU_GATES.values(), False, False, False, f), gemm,
             gemm_threads),
            (f"lstm_step_fwd_kernel1_{f}", lstm_step_fwd_kernel1,
             (arr,) * 7 + (int64,) * 6, GPU_THREADS),
            (f"lstm_step_bwd_kernel1_{f}", lstm_step_bwd_kernel1,
             (arr, int64, arr, int64, arr, int64, arr, arr, arr, arr, int64, int64, int64),
             GPU_THREADS),
            (f"lstm_bias_bwd_kernel1_{f}", lstm_bias_bwd_kernel1,
             (arr, arr, arr, int64, int64), GPU_BIAS[0] * GPU_BIAS[1]),
        ]
    return sigs


# (name, kernel, numba signature[, threads per block]) for every kernel and dtype the launchers
# use on a GPU.
PTX_SIGNATURES = _signatures()
