"""The LSTM layer on the C++ kernels (``csrc/lstm.cpp``): the cell's fused pointwise part, the
whole recurrence of a sequence forward and backward, the bias gradients.

float32 and float64 arrays of one dtype go to ``tilegrad._cpu`` (made C-contiguous first; the
optional arguments may be None, as in the specification); anything else goes to the NumPy
backend. The results have the specification's structure: lstm_seq_fwd's y and h_prev are views
of one (T+1, B, H) array.
"""
from tilegrad import _cpu as ext
from tilegrad.backends import numpy as spec
from tilegrad.backends.cpu._util import contiguous, same_float


PRIMITIVES = ("lstm_cell_fwd", "lstm_cell_bwd", "lstm_seq_fwd", "lstm_seq_bwd", "lstm_bias_bwd")


def _present(*arrays):
    return [a for a in arrays if a is not None]


def _c(x):
    return None if x is None else contiguous(x)


def lstm_cell_fwd(gates, c_prev):
    if not same_float(gates, c_prev) or c_prev.ndim != 2 or \
            gates.shape != (c_prev.shape[0], 4 * c_prev.shape[1]):
        return spec.lstm_cell_fwd(gates, c_prev)
    return ext.lstm_cell_fwd(contiguous(gates), contiguous(c_prev))


def lstm_cell_bwd(grad_h, grad_c, acts, c, c_prev):
    if not same_float(grad_h, grad_c, acts, c, c_prev) or c.ndim != 2 or \
            not grad_h.shape == grad_c.shape == c.shape == c_prev.shape or \
            acts.shape != (c.shape[0], 4 * c.shape[1]):
        return spec.lstm_cell_bwd(grad_h, grad_c, acts, c, c_prev)
    return ext.lstm_cell_bwd(contiguous(grad_h), contiguous(grad_c), contiguous(acts),
                             contiguous(c), contiguous(c_prev))


def lstm_seq_fwd(xproj, h0, c0, w_hh, b_hh):
    if not same_float(xproj, w_hh, *_present(h0, c0, b_hh)) or xproj.ndim != 3 \
            or xproj.shape[2] % 4:
        return spec.lstm_seq_fwd(xproj, h0, c0, w_hh, b_hh)
    return ext.lstm_seq_fwd(contiguous(xproj), _c(h0), _c(c0), contiguous(w_hh), _c(b_hh))


def lstm_seq_bwd(grad_y, grad_hn, grad_cn, cs, acts, w_hh, need_dh0):
    if not same_float(acts, cs, w_hh, *_present(grad_y, grad_hn, grad_cn)) or acts.ndim != 3 \
            or acts.shape[2] % 4:
        return spec.lstm_seq_bwd(grad_y, grad_hn, grad_cn, cs, acts, w_hh, need_dh0)
    return ext.lstm_seq_bwd(_c(grad_y), _c(grad_hn), _c(grad_cn), contiguous(cs),
                            contiguous(acts), contiguous(w_hh), bool(need_dh0))


def lstm_bias_bwd(grad_gates):
    if not same_float(grad_gates) or grad_gates.ndim < 1:
        return spec.lstm_bias_bwd(grad_gates)
    return ext.lstm_bias_bwd(contiguous(grad_gates))
