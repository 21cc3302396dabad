"""The NumPy backend: the specification every other backend is tested against.

Each function is a few plain, vectorised lines, dtype-generic (float32 and float64),
written to be read and never tuned. Arrays are ``numpy.ndarray``; the Tensor layer
checks shapes, dtypes and devices before calling in, so these functions assume valid input.

The list of primitives (every backend exposes the same names and arguments):

- memory: ``empty``, ``zeros``, ``full``, ``from_numpy``, ``to_numpy``, ``copy``, ``copy_into``
- elementwise: ``unary`` (neg exp log tanh sigmoid relu sqrt abs erf sin cos), ``binary``,
  ``pow_scalar``, ``relu_bwd``, ``where_mask``
- reductions: ``sum``, ``amax``, ``argmax``
- layout: ``reshape``, ``permute``, ``broadcast_to``, ``index``, ``index_bwd``, ``index_put``,
  ``concat``
- ``matmul`` with transposed-operand flags and an optional fused bias and ReLU
- ``conv2d_fwd``, ``conv2d_bwd_data``, ``conv2d_bwd_weight``
- ``max_pool2d_fwd`` (with argmax), ``max_pool2d_bwd``
- ``lstm_cell_fwd``, ``lstm_cell_bwd`` (the pointwise part of the cell)
- ``lstm_seq_fwd``, ``lstm_seq_bwd``, ``lstm_bias_bwd`` (an LSTM layer's recurrence over T steps,
  and its bias gradients)
- ``log_softmax_fwd``, ``log_softmax_bwd``, ``cross_entropy_fwd``, ``cross_entropy_bwd``
  (with ``reduction`` 'none', 'sum' or 'mean': the reduced loss in the forward, its
  gradient read as one element in the backward; and ``ignore_index``, default -100: rows
  with that target give loss 0 and gradient 0 and are not counted by 'mean')
- ``embedding_fwd``, ``embedding_bwd``
- ``batch_norm_fwd`` (batch statistics of x (N, C, L) per channel; updates running statistics in
  place if given), ``batch_norm_bwd``; ``layer_norm_fwd`` (statistics of each row of x (M, D)),
  ``layer_norm_bwd``: sums accumulated in float64 for float32 inputs too
- ``dropout_fwd`` (mask drawn from a Philox4x32-10 counter generator whose state, a uint64
  array ``[seed, offset, 0]``, it advances), ``dropout_bwd``
- ``sgd_step``, ``adam_step`` (fused, in place); ``sgd_step_multi``, ``adam_step_multi`` (every
  parameter of a group at once, learning rate and step counts in device arrays)
- multi-tensor, over a list of arrays: ``fill_multi`` (in place), ``norm_multi`` (the joint 2-norm),
  ``clip_scale_multi`` (in place, by a clip coefficient read from a device array)
"""
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

name = "numpy"

# ---------------------------------------------------------------- memory

def empty(shape, dtype):
    return np.empty(shape, dtype=dtype)


def zeros(shape, dtype):
    return np.zeros(shape, dtype=dtype)


def full(shape, value, dtype):
    return np.full(shape, value, dtype=dtype)


def from_numpy(a):
    """A device array holding a copy of the NumPy array ``a``."""
    return np.array(a, copy=True, order="C")


def to_numpy(x):
    """A NumPy copy of the device array ``x``."""
    return np.array(x, copy=True)


def copy(x):
    return np.array(x, copy=True, order="C")


def copy_into(dst, src):
    """Write ``src`` into the existing array ``dst`` (same shape and dtype)."""
    dst[...] = src


def astype(x, dtype):
    return x.astype(dtype)

# ---------------------------------------------------------------- elementwise

# NumPy has no erf: Python's math.erf (correctly rounded to float64 in practice) mapped over the
# elements, in float64 for a float32 input too. Slow (a Python call per element), as this
# backend may be: it is the specification.
_erf_object = np.frompyfunc(math.erf, 1, 1)


def _erf(x):
    return np.asarray(_erf_object(np.asarray(x, dtype=np.float64)), dtype=np.float64)  # 0-d too


_UNARY = {
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, 0),
    "sqrt": np.sqrt,
    "abs": np.abs,
    "erf": _erf,
    "sin": np.sin,
    "cos": np.cos,
}

_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "maximum": np.maximum,
    "pow": np.power,
    "eq": np.equal,
    "ne": np.not_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "lt": np.less,
    "le": np.less_equal,
}


def unary(op, x):
    """``op(x)`` elementwise, ``op`` one of ``_UNARY``."""
    return np.asarray(_UNARY[op](x), dtype=x.dtype)


def binary(op, a, b):
    """``op(a, b)`` elementwise with NumPy broadcasting; ``b`` may be a Python scalar."""
    if np.isscalar(b):
        b = np.asarray(b, dtype=a.dtype)
    return np.asarray(_BINARY[op](a, b))


def pow_scalar(x, p):
    return np.asarray(np.power(x, x.dtype.type(p)))


def relu_bwd(grad, y):
    """Gradient of ReLU given its output ``y``: 0 where ``y <= 0``, else ``grad`` (where ``y`` is
    NaN too, as PyTorch's threshold_backward)."""
    return np.where(y <= 0, 0, grad).astype(grad.dtype)


def where_mask(mask, a, b):
    """``a`` where ``mask`` else ``b`` (``b`` may be a scalar)."""
    return np.where(mask, a, b).astype(a.dtype)

# ---------------------------------------------------------------- reductions

def sum(x, axes, keepdims):
    """Sum over ``axes`` (a tuple, possibly empty)."""
    return np.asarray(np.sum(x, axis=axes, keepdims=keepdims))


def amax(x, axes, keepdims):
    return np.asarray(np.max(x, axis=axes, keepdims=keepdims))


def argmax(x, axis, keepdims):
    return np.asarray(np.argmax(x, axis=axis, keepdims=keepdims), dtype=np.int64)

# ---------------------------------------------------------------- layout

def reshape(x, shape):
    return np.reshape(x, shape)


# np.array(..., order="C") rather than np.ascontiguousarray, which turns a 0-d array into (1,).
def permute(x, axes):
    return np.array(np.transpose(x, axes), order="C")


def broadcast_to(x, shape):
    return np.array(np.broadcast_to(x, shape), order="C")


def index(x, key):
    return np.array(x[key], copy=True)


def index_bwd(grad, key, shape):
    """Gradient of ``x[key]``: ``grad`` scattered (with accumulation) into zeros of ``shape``."""
    out = np.zeros(shape, dtype=grad.dtype)
    np.add.at(out, key, grad)
    return out


def index_put(x, key, value):
    """A copy of ``x`` with ``x[key] = value``: ``value`` (of ``x``'s dtype) broadcast to the
    shape of ``x[key]``. Where an index tensor names one element more than once, the last write
    (in the C order of ``x[key]``) wins: NumPy's assignment leaves the order unspecified, so the
    flat offsets are cut to each element's last occurrence first."""
    out = np.array(x, copy=True, order="C")
    offsets = np.arange(x.size, dtype=np.int64).reshape(x.shape)[key]
    values = np.broadcast_to(value, offsets.shape).reshape(-1)
    offsets = offsets.reshape(-1)
    _, last = np.unique(offsets[::-1], return_index=True)   # first from the end = last write
    keep = offsets.size - 1 - last
    out.reshape(-1)[offsets[keep]] = values[keep]
    return out


def concat(xs, axis):
    return np.concatenate(xs, axis=axis)

# ---------------------------------------------------------------- matmul

def matmul(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    """``op(a) @ op(b) (+ bias) (then ReLU)``, ``op`` transposing the last two axes if asked.

    Leading (batch) axes broadcast as in ``numpy.matmul``; ``bias`` broadcasts against the
    result (a row vector for a linear layer). FLOPs: 2*M*N*K per batch.
    """
    if trans_a:
        a = np.swapaxes(a, -1, -2)
    if trans_b:
        b = np.swapaxes(b, -1, -2)
    out = np.matmul(a, b)
    if bias is not None:
        out = out + bias
    if relu:
        out = np.maximum(out, 0)
    return out

# ---------------------------------------------------------------- conv2d

def _pad_hw(x, ph, pw, value=0.0):
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _windows(xp, kh, kw, sh, sw):
    """View of every (kh, kw) window of ``xp`` (N, C, H, W) at stride (sh, sw):
    (N, C, Ho, Wo, kh, kw)."""
    return sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def conv2d_fwd(x, w, bias, stride, padding):
    """Cross-correlation as in PyTorch: x (N, C, H, W), w (F, C, KH, KW) -> (N, F, Ho, Wo).

    ``Ho = (H + 2*ph - KH) // sh + 1``. FLOPs: 2*N*F*Ho*Wo*C*KH*KW.
    """
    (sh, sw), (ph, pw) = stride, padding
    kh, kw = w.shape[2:]
    win = _windows(_pad_hw(x, ph, pw), kh, kw, sh, sw)
    out = np.einsum("nchwij,fcij->nfhw", win, w, optimize=True)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return np.ascontiguousarray(out)


def conv2d_bwd_weight(grad_out, x, w_shape, stride, padding):
    """dL/dw: the windows of the padded input contracted with grad_out over N, Ho, Wo."""
    (sh, sw), (ph, pw) = stride, padding
    kh, kw = w_shape[2:]
    win = _windows(_pad_hw(x, ph, pw), kh, kw, sh, sw)
    ho, wo = grad_out.shape[2:]
    win = win[:, :, :ho, :wo]
    return np.einsum("nchwij,nfhw->fcij", win, grad_out, optimize=True)


def conv2d_bwd_data(grad_out, w, x_shape, stride, padding):
    """dL/dx: a stride-1 convolution of grad_out, dilated by the stride, with the flipped kernel.

    grad_out is dilated (stride-1 zeros between entries) and padded by KH-1-ph on each side
    (plus the rows the forward stride never reached on the bottom/right); padding larger than
    KH-1 becomes a crop. The result then has exactly the input's H x W.
    """
    if 0 in x_shape:          # an empty batch (its images may be empty too): nothing to window
        return np.zeros(x_shape, dtype=grad_out.dtype)
    (sh, sw), (ph, pw) = stride, padding
    n, c, h, wd = x_shape
    f, _, kh, kw = w.shape
    ho, wo = grad_out.shape[2:]
    dil = np.zeros((n, f, (ho - 1) * sh + 1, (wo - 1) * sw + 1), dtype=grad_out.dtype)
    dil[:, :, ::sh, ::sw] = grad_out
    rh = (h + 2 * ph - kh) - (ho - 1) * sh     # rows of the padded input below the last window
    rw = (wd + 2 * pw - kw) - (wo - 1) * sw
    before_h, after_h = kh - 1 - ph, kh - 1 - ph + rh
    before_w, after_w = kw - 1 - pw, kw - 1 - pw + rw
    dil = np.pad(dil, ((0, 0), (0, 0), (max(before_h, 0), max(after_h, 0)),
                       (max(before_w, 0), max(after_w, 0))))
    dil = dil[:, :, max(-before_h, 0):dil.shape[2] - max(-after_h, 0),
              max(-before_w, 0):dil.shape[3] - max(-after_w, 0)]
    win = _windows(dil, kh, kw, 1, 1)
    w_flip = w[:, :, ::-1, ::-1]
    return np.ascontiguousarray(np.einsum("nfhwij,fcij->nchw", win, w_flip, optimize=True))

# ---------------------------------------------------------------- max_pool2d

def max_pool2d_fwd(x, kernel, stride, padding):
    """Max over each window; also the flat index (into H*W of the input) of each maximum."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    win = _windows(_pad_hw(x, ph, pw, -np.inf), kh, kw, sh, sw)
    ho, wo = win.shape[2:4]
    flat = win.reshape(n, c, ho, wo, kh * kw)
    k = np.argmax(flat, axis=-1)
    out = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    # Window (i, j), tap k sits at padded row i*sh + k//kw, column j*sw + k%kw.
    rows = np.arange(ho)[:, None] * sh + k // kw - ph
    cols = np.arange(wo)[None, :] * sw + k % kw - pw
    return np.ascontiguousarray(out), (rows * w + cols).astype(np.int64)


def max_pool2d_bwd(grad_out, argmax, x_shape):
    """Each output's gradient added to the input element that was its maximum."""
    n, c, h, w = x_shape
    grad = np.zeros((n * c, h * w), dtype=grad_out.dtype)
    rows = np.arange(n * c)[:, None]
    plane = argmax.shape[2] * argmax.shape[3]          # not -1: n * c may be 0
    np.add.at(grad, (rows, argmax.reshape(n * c, plane)), grad_out.reshape(n * c, plane))
    return grad.reshape(x_shape)

# ---------------------------------------------------------------- LSTM cell (pointwise part)

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_cell_fwd(gates, c_prev):
    """From pre-activation gates (B, 4H) in the order i, f, g, o and c_prev (B, H):

    ``i, f, o = sigmoid(.)``, ``g = tanh(.)``, ``c = f*c_prev + i*g``, ``h = o*tanh(c)``.
    Returns h, c and the activated gates (B, 4H), which the backward pass needs.
    """
    hs = c_prev.shape[1]
    i, f, g, o = (gates[:, k * hs:(k + 1) * hs] for k in range(4))
    i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
    c = f * c_prev + i * g
    h = o * np.tanh(c)
    return h, c, np.concatenate([i, f, g, o], axis=1)


def lstm_cell_bwd(grad_h, grad_c, acts, c, c_prev):
    """Gradients of the pre-activation gates (B, 4H) and of c_prev, given dL/dh and dL/dc."""
    hs = c.shape[1]
    i, f, g, o = (acts[:, k * hs:(k + 1) * hs] for k in range(4))
    tc = np.tanh(c)
    dc = grad_c + grad_h * o * (1 - tc * tc)
    di = dc * g * i * (1 - i)
    df = dc * c_prev * f * (1 - f)
    dg = dc * i * (1 - g * g)
    do = grad_h * tc * o * (1 - o)
    return np.concatenate([di, df, dg, do], axis=1), dc * f


def lstm_seq_fwd(xproj, h0, c0, w_hh, b_hh):
    """An LSTM layer's T steps from the input projections ``xproj`` (T, B, 4H) (``x @ w_ih.T +
    b_ih``) and the initial state h0, c0 (B, H) (None: zeros): ``gates = xproj[t] + h @ w_hh.T
    (+ b_hh)``, then the cell as ``lstm_cell_fwd``.

    Returns ``y, h_n, c_n, h_prev, cs, acts``: the outputs h_1..h_T (T, B, H) and h_prev =
    h_0..h_{T-1}, views of one (T+1, B, H) array; h_n, c_n (B, H), arrays of their own; cs
    (T+1, B, H), c_0..c_T; acts (T, B, 4H), the activated gates of every step.
    """
    steps, bs, g = xproj.shape
    hs = np.zeros((steps + 1, bs, g // 4), xproj.dtype)
    cs = np.zeros((steps + 1, bs, g // 4), xproj.dtype)
    acts = np.empty_like(xproj)
    if h0 is not None:
        hs[0] = h0
    if c0 is not None:
        cs[0] = c0
    for t in range(steps):
        gates = xproj[t] + hs[t] @ w_hh.T
        if b_hh is not None:
            gates = gates + b_hh
        hs[t + 1], cs[t + 1], acts[t] = lstm_cell_fwd(gates, cs[t])
    return hs[1:], hs[-1].copy(), cs[-1].copy(), hs[:-1], cs, acts


def lstm_seq_bwd(grad_y, grad_hn, grad_cn, cs, acts, w_hh, need_dh0):
    """Back through ``lstm_seq_fwd``: from dL/dy (T, B, H), dL/dh_n and dL/dc_n (B, H) (each None
    for zero), its cs and acts, and w_hh. Returns ``dgates`` (T, B, 4H), the gradients of every
    step's pre-activation gates; dh0 (B, H), or None unless ``need_dh0``; dc0 (B, H)."""
    steps, bs, g = acts.shape
    zero = np.zeros((bs, g // 4), acts.dtype)
    dh = zero if grad_hn is None else grad_hn
    dc = zero if grad_cn is None else grad_cn
    dgates = np.empty_like(acts)
    for t in reversed(range(steps)):
        gh = dh if grad_y is None else dh + grad_y[t]
        dgates[t], dc = lstm_cell_bwd(gh, dc, acts[t], cs[t + 1], cs[t])
        dh = dgates[t] @ w_hh
    return dgates, (dh if need_dh0 else None), dc


def lstm_bias_bwd(grad_gates):
    """The gradients of b_ih and of b_hh: ``grad_gates`` (..., 4H) summed over all but its last
    axis, as two arrays (equal values; each parameter's gradient is its own)."""
    db = grad_gates.reshape(-1, grad_gates.shape[-1]).sum(axis=0)
    return db, db.copy()

# ---------------------------------------------------------------- softmax and cross-entropy

def log_softmax_fwd(x):
    """log(softmax(x)) over the last axis, stable: x - max - log(sum(exp(x - max)))."""
    if x.shape[-1] == 0:      # rows of length 0 have no maximum (np.max would raise)
        return np.empty_like(x)
    z = x - np.max(x, axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def log_softmax_bwd(grad, y):
    """Given y = log_softmax(x): dL/dx = grad - softmax(x) * sum(grad)."""
    return grad - np.exp(y) * np.sum(grad, axis=-1, keepdims=True)


def cross_entropy_fwd(logits, target, reduction="none", ignore_index=-100):
    """Per-row loss ``logsumexp(logits[n]) - logits[n, target[n]]`` for logits (N, C): the N
    losses for ``reduction`` 'none', else their sum or their mean (0-d). A row whose target is
    ``ignore_index`` has loss 0 and is not counted: 'mean' divides by the number of the other
    rows, and is NaN (0/0) when there are none, as PyTorch's."""
    kept = target != ignore_index
    picked = np.where(kept, target, 0)          # an ignored row reads column 0, then drops it
    log_p = log_softmax_fwd(logits)[np.arange(logits.shape[0]), picked]
    losses = np.where(kept, -log_p, 0).astype(logits.dtype)
    if reduction == "none":
        return losses
    count = np.count_nonzero(kept) if reduction == "mean" else 1
    with np.errstate(invalid="ignore"):         # every row ignored: 0/0 = NaN on purpose
        return np.asarray(np.sum(losses) / count, dtype=logits.dtype)


def cross_entropy_bwd(logits, target, grad_loss, reduction="none", ignore_index=-100):
    """dL/dlogits = (softmax(logits) - onehot(target)) * g[:, None], where g is grad_loss (N,)
    for 'none'; for 'sum' and 'mean' grad_loss is the reduced loss's gradient (one element),
    divided for 'mean' by the number of rows not ignored. A row whose target is
    ``ignore_index`` has g = 0: its gradient is ``softmax(logits[n]) * 0`` (0, or NaN where the
    row's softmax is NaN, as PyTorch's log_softmax backward gives)."""
    kept = target != ignore_index
    p = np.exp(log_softmax_fwd(logits))
    p[np.flatnonzero(kept), target[kept]] -= 1
    if reduction != "none":
        # max(.., 1): the count is 0 only when every row is ignored, and then no row uses it
        n = max(np.count_nonzero(kept), 1) if reduction == "mean" else 1
        grad_loss = np.full(len(target), grad_loss.reshape(()) / n, dtype=logits.dtype)
    g = np.where(kept, grad_loss, 0).astype(logits.dtype)
    return p * g[:, None]

# ---------------------------------------------------------------- embedding

def embedding_fwd(weight, idx):
    """Rows of ``weight`` (V, D) gathered by the integer array ``idx``: shape idx.shape + (D,)."""
    return weight[idx]


def embedding_bwd(grad_out, idx, num_embeddings):
    """dL/dweight: each row of grad_out added into row idx of a (V, D) zero array."""
    d = grad_out.shape[-1]
    grad = np.zeros((num_embeddings, d), dtype=grad_out.dtype)
    np.add.at(grad, idx.reshape(-1), grad_out.reshape(idx.size, d))   # not -1: D may be 0
    return grad

# ---------------------------------------------------------------- batch norm and layer norm
# Statistics and the backward's sums are accumulated in float64 whatever the input's dtype (torch
# sums float32 in float32, by Welford): more accurate, and on the devices a float64 add per
# element costs no more than the memory traffic these kernels are bound by. Results are cast back
# to the input's dtype.

def _affine(xhat, weight, bias):
    """``xhat * weight + bias``, each factor optional (None: 1 and 0); shapes broadcast."""
    y = xhat if weight is None else xhat * weight
    return y if bias is None else y + bias


def _column(a):
    """A per-channel (C,) array as a float64 (C, 1) column, for x (N, C, L); None stays None."""
    return None if a is None else a.astype(np.float64)[:, None]


def batch_norm_fwd(x, weight, bias, running_mean, running_var, momentum, eps):
    """Batch normalisation of x (N, C, L) with the statistics of each channel over N and L:
    ``y = (x - mean) * invstd * weight + bias``, ``invstd = 1 / sqrt(var + eps)``, var biased.
    weight and bias are (C,) or None. Returns ``(y, mean, invstd)``, mean and invstd (C,).

    If running_mean and running_var (C,) are given they are updated in place:
    ``running = (1 - momentum) * running + momentum * stat``, with the unbiased variance
    ``var * n / (n - 1)`` (n = N*L) as the variance's stat.
    """
    n = x.shape[0] * x.shape[2]
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2))
    var = np.square(x64 - mean[:, None]).mean(axis=(0, 2))
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x64 - mean[:, None]) * invstd[:, None]
    y = _affine(xhat, _column(weight), _column(bias)).astype(x.dtype)
    if running_mean is not None:
        running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        running_var[...] = (1 - momentum) * running_var + momentum * var * n / max(n - 1, 1)
    return y, mean.astype(x.dtype), invstd.astype(x.dtype)


def batch_norm_bwd(grad, x, weight, mean, invstd):
    """Gradients of ``batch_norm_fwd`` (training: the statistics depend on x) from dL/dy (N, C, L)
    and the forward's mean and invstd. With ``xhat = (x - mean) * invstd`` and n = N*L:
    ``dbias = sum(grad)``, ``dweight = sum(grad * xhat)`` over N and L, and
    ``dx = weight * invstd * (grad - dbias / n - xhat * dweight / n)``. Returns
    ``(dx, dweight, dbias)``, the last two (C,) (weight None: ones)."""
    n = x.shape[0] * x.shape[2]
    g = grad.astype(np.float64)
    xhat = (x.astype(np.float64) - mean.astype(np.float64)[:, None]) * invstd[:, None]
    dbias = g.sum(axis=(0, 2))
    dweight = (g * xhat).sum(axis=(0, 2))
    w = 1.0 if weight is None else weight.astype(np.float64)[:, None]
    dx = w * invstd[:, None] * (g - dbias[:, None] / n - xhat * dweight[:, None] / n)
    return dx.astype(x.dtype), dweight.astype(x.dtype), dbias.astype(x.dtype)


def layer_norm_fwd(x, weight, bias, eps):
    """Layer normalisation of each row of x (M, D): ``y = (x - mean) * rstd * weight + bias``,
    ``rstd = 1 / sqrt(var + eps)``, var biased; weight and bias (D,) or None. Returns
    ``(y, mean, rstd)``, mean and rstd (M,)."""
    x64 = x.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):    # D = 0: NaN statistics, as torch
        mean = x64.mean(axis=1) if x.shape[1] else np.full(x.shape[0], np.nan)
        var = np.square(x64 - mean[:, None]).mean(axis=1) if x.shape[1] else mean
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (x64 - mean[:, None]) * rstd[:, None]
    y = _affine(xhat, None if weight is None else weight.astype(np.float64),
                None if bias is None else bias.astype(np.float64))
    return y.astype(x.dtype), mean.astype(x.dtype), rstd.astype(x.dtype)


def layer_norm_bwd(grad, x, weight, mean, rstd):
    """Gradients of ``layer_norm_fwd`` from dL/dy (M, D) and the forward's mean and rstd. With
    ``xhat = (x - mean) * rstd`` and ``gw = grad * weight`` (weight None: grad), each row:
    ``dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat))``; over the rows
    ``dweight = sum(grad * xhat)``, ``dbias = sum(grad)``. Returns ``(dx, dweight, dbias)``, the
    last two (D,) (computed whether or not weight is given)."""
    d = max(x.shape[1], 1)
    g = grad.astype(np.float64)
    xhat = (x.astype(np.float64) - mean.astype(np.float64)[:, None]) * rstd[:, None]
    gw = g if weight is None else g * weight.astype(np.float64)
    dx = rstd[:, None] * (gw - gw.sum(axis=1, keepdims=True) / d
                          - xhat * (gw * xhat).sum(axis=1, keepdims=True) / d)
    return dx.astype(x.dtype), (g * xhat).sum(axis=0).astype(x.dtype), g.sum(axis=0).astype(
        x.dtype)

# ---------------------------------------------------------------- dropout

def _philox4x32(ctr, seed):
    """Philox4x32-10 (Random123) of the counters ``ctr`` (uint64 array; words 2 and 3 zero) under
    the 64-bit key ``seed``: four uint64 arrays of 32-bit words. As cuda/random.py."""
    low = np.uint64(0xFFFFFFFF)
    c0, c1, c2, c3 = ctr & low, ctr >> np.uint64(32), np.zeros_like(ctr), np.zeros_like(ctr)
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
        p0, p1 = np.uint64(0xD2511F53) * c0, np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0), p1 & low,
                          (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1), p0 & low)
    return c0, c1, c2, c3


def dropout_fwd(x, p, state):
    """``(x * mask / (1-p), mask)``, ``mask`` kept with probability 1-p: draw ``offset + i`` of
    the generator ``state = [seed, offset, 0]`` is word ``(offset+i) % 4`` of Philox at counter
    ``(offset+i) // 4``, kept if ``>= ceil(p * 2**32)``. The offset advances by ``x.size``
    rounded up to 4, in place."""
    seed, offset, groups = int(state[0]), int(state[1]), (x.size + 3) // 4
    ctr = np.arange(groups, dtype=np.uint64) + np.uint64(offset // 4)
    draws = np.stack(_philox4x32(ctr, seed), axis=1).reshape(-1)[:x.size]
    mask = (draws >= np.uint64(math.ceil(p * 2.0 ** 32))).reshape(x.shape)
    state[1] += np.uint64(4 * groups)
    scale = x.dtype.type(1 / (1 - p))
    return np.asarray(x * np.where(mask, scale, x.dtype.type(0))), mask


def dropout_bwd(grad, mask, p):
    """``grad * mask / (1 - p)``, the scale in grad's dtype as in the forward."""
    return np.asarray(grad * np.where(mask, grad.dtype.type(1 / (1 - p)), grad.dtype.type(0)))

# ---------------------------------------------------------------- optimizers (in place)

def sgd_step(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """One SGD update of ``param`` in place, as torch.optim.SGD; ``buf`` is the momentum buffer
    (ignored when momentum is 0), set to the gradient on the ``first`` step."""
    d = grad + weight_decay * param if weight_decay else grad
    if momentum:
        if first:
            buf[...] = d
        else:
            buf *= momentum
            buf += (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    param -= lr * d


def adam_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
    """One Adam update of ``param``, ``m`` and ``v`` in place, as torch.optim.Adam (step >= 1)."""
    if weight_decay:
        grad = grad + weight_decay * param
    m += (1 - beta1) * (grad - m)
    v *= beta2
    v += (1 - beta2) * grad * grad
    step_size = lr / (1 - beta1 ** step)
    denom = np.sqrt(v) / np.sqrt(1 - beta2 ** step) + eps
    param -= step_size * m / denom


def sgd_step_multi(params, grads, bufs, steps, lr, momentum, dampening, weight_decay, nesterov):
    """``sgd_step`` on every parameter of the list ``params`` (one dtype), ``lr`` a 0-d array of
    their dtype. With momentum, ``bufs`` are the momentum buffers and ``steps`` 0-d float32
    arrays counting each buffer's steps: each count is incremented first, and the parameter
    whose count becomes 1 takes its first step. Without momentum both are ignored."""
    for k, (param, grad) in enumerate(zip(params, grads)):
        first = False
        if momentum:
            steps[k] += 1
            first = steps[k] == 1
        sgd_step(param, grad, bufs[k] if momentum else None, lr[()], momentum, dampening,
                 weight_decay, nesterov, first)


def adam_step_multi(params, grads, ms, vs, steps, lr, beta1, beta2, eps, weight_decay):
    """``adam_step`` on every parameter of the list ``params``: ``steps`` are 0-d float32 arrays,
    each parameter's step count, incremented first; ``lr`` a 0-d array of the parameters'
    dtype."""
    for param, grad, m, v, step in zip(params, grads, ms, vs, steps):
        step += 1
        adam_step(param, grad, m, v, float(step), float(lr), beta1, beta2, eps, weight_decay)

# ---------------------------------------------------------------- multi-tensor (lists of arrays)

def fill_multi(xs, value):
    """Set every element of every array of ``xs`` to ``value``, in place."""
    for x in xs:
        x[...] = value


def norm_multi(xs):
    """The 2-norm of all of ``xs`` together, ``sqrt(sum of x*x)``, summed in float64: a 0-d array
    of their result dtype."""
    total = np.float64(0)
    for x in xs:
        total += np.sum(np.square(x, dtype=np.float64))
    return np.array(np.sqrt(total), dtype=np.result_type(*[x.dtype for x in xs]))


def clip_scale_multi(xs, total, max_norm):
    """Multiply every array of ``xs`` in place by ``min(max_norm / (total + 1e-6), 1)`` (NaN
    stays NaN), computed in the dtype of ``total``, a 0-d array (the norm)."""
    coef = np.minimum(max_norm / (total + 1e-6), 1)
    for x in xs:
        x *= coef
