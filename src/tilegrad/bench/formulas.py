"""FLOPs and bytes moved by each benchmarked op, as formulas of its shapes.

A multiply-add counts as 2 FLOPs. Bytes are the minimum traffic: every input read once and every
output written once (``itemsize`` bytes per element); real kernels move more, which is what the
fraction of peak bandwidth shows.
"""
import numpy as np


def numel(shape):
    return int(np.prod(shape, dtype=np.int64))


def matmul(m, n, k, itemsize=4, batch=1):
    """C (m, n) = A (m, k) @ B (k, n): 2*m*n*k FLOPs; reads A and B, writes C."""
    return 2 * batch * m * n * k, batch * (m * k + k * n + m * n) * itemsize


def conv2d_out(h, w, kh, kw, stride, padding):
    return ((h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1)


def conv2d(n, c, h, w, f, kh, kw, stride=1, padding=0, itemsize=4):
    """Forward: each of the n*f*ho*wo outputs is a c*kh*kw dot product. The two backward passes
    (data and weight) do the same number of multiply-adds; all three read and write the input,
    weight and output tensors once between them."""
    ho, wo = conv2d_out(h, w, kh, kw, stride, padding)
    flops = 2 * n * f * ho * wo * c * kh * kw
    return flops, (n * c * h * w + f * c * kh * kw + n * f * ho * wo) * itemsize


def max_pool2d(n, c, h, w, k, stride=None, itemsize=4, backward=False):
    """Forward reads the input and writes the output and its int64 argmax; backward reads the
    gradient and argmax and writes the input's gradient. Comparisons are not counted as FLOPs."""
    stride = stride or k
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    out = n * c * ho * wo
    if backward:
        return 0, out * (itemsize + 8) + n * c * h * w * itemsize
    return 0, n * c * h * w * itemsize + out * (itemsize + 8)


def relu(size, itemsize=4, backward=False):
    """Forward reads x and writes y; backward reads the gradient and y and writes one gradient."""
    return size, (3 if backward else 2) * size * itemsize


def cross_entropy(n, c, itemsize=4, backward=False):
    """Softmax cross-entropy over (n, c) logits: about 4 FLOPs per logit forward (max, subtract,
    exp, sum; the exp counted as one) and 3 more backward. Reads the logits (and the int64
    targets); writes n losses forward, the (n, c) gradient backward."""
    if backward:
        return 7 * n * c, (2 * n * c + n) * itemsize + n * 8
    return 4 * n * c, (n * c + n) * itemsize + n * 8


def lstm_pointwise(b, h, itemsize=4):
    """The cell's pointwise part: 4 activations and ~6 more FLOPs per hidden unit (counted as 10);
    reads the gates (b, 4h) and c (b, h), writes h, c and the activated gates."""
    return 10 * b * h, (4 * b * h + b * h + 2 * b * h + 4 * b * h) * itemsize


def lstm_step(b, i, h, itemsize=4):
    """One step: x @ W_ih^T and h @ W_hh^T (2*b*4h*(i+h) FLOPs), then the pointwise part."""
    f_mm, _ = matmul(b, 4 * h, i + h, itemsize)
    f_pw, b_pw = lstm_pointwise(b, h, itemsize)
    weights = 4 * h * (i + h) * itemsize
    return f_mm + f_pw, weights + b * (i + h) * itemsize + b_pw


def lstm_sequence(t, b, i, h, itemsize=4, backward=True):
    """T steps forward; backward costs twice the GEMM FLOPs of the forward (data and weight)."""
    f, by = lstm_step(b, i, h, itemsize)
    return (3 if backward else 1) * t * f, (3 if backward else 1) * t * by


def adam(size, itemsize=4):
    """Per element about 12 FLOPs; reads param, grad, m, v and writes param, m, v."""
    return 12 * size, 7 * size * itemsize
