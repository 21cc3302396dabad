"""LSTMCell and LSTM with PyTorch's parameter names and gate order (i, f, g, o)."""
import math
import numbers

import numpy as np

from ..creation import zeros
from ..errors import ShapeError
from ..tensor import stack
from . import functional as F
from . import init
from .layers import _size
from .module import Module, Parameter


class LSTMCell(Module):
    """One LSTM step: ``(h', c') = cell(x, (h, c))``.

    Args: input_size, hidden_size, bias=True, device, dtype.
    Parameters: ``weight_ih`` (4*hidden, input), ``weight_hh`` (4*hidden, hidden), ``bias_ih``,
    ``bias_hh`` (4*hidden,), rows in gate order i, f, g, o; all U(-1/sqrt(hidden), 1/sqrt(hidden)).
    Shape: input (B, input_size), h and c (B, hidden_size); hx defaults to zeros.
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        input_size = _size(input_size, "input_size", "LSTMCell")
        hidden_size = _size(hidden_size, "hidden_size", "LSTMCell")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        g = 4 * hidden_size
        self.weight_ih = Parameter(zeros(g, input_size, device=device, dtype=dtype))
        self.weight_hh = Parameter(zeros(g, hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias_ih", Parameter(zeros(g, device=device, dtype=dtype)) if bias else None)
        self.register_parameter("bias_hh", Parameter(zeros(g, device=device, dtype=dtype)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def forward(self, input, hx=None):
        if hx is None:
            h = zeros(input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)
            hx = (h, h)
        return F.lstm_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class LSTM(Module):
    """A multi-layer LSTM over a sequence, as torch.nn.LSTM (unidirectional).

    Args: input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0
    (between layers, in training), device, dtype.
    Parameters per layer k: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``.
    Shape: input (T, B, input_size) ((B, T, input_size) with batch_first); ``hx = (h_0, c_0)``, each
    (num_layers, B, hidden_size), zeros if not given. Returns ``output, (h_n, c_n)``; output is
    (T, B, hidden_size) (or batch first).

    Each layer projects the inputs of all T steps in one GEMM, then runs T steps of the hidden GEMM
    and the fused pointwise cell.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, device=None, dtype=None):
        super().__init__()
        # As PyTorch's: sizes and num_layers must be integers of at least 1 (ValueError for 0,
        # unlike LSTMCell's), dropout a number in [0, 1] (ValueError for any other value).
        input_size = _size(input_size, "input_size", "LSTM", least=1)
        hidden_size = _size(hidden_size, "hidden_size", "LSTM", least=1)
        num_layers = _size(num_layers, "num_layers", "LSTM", least=1)
        if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, numbers.Real) or \
                not 0 <= dropout <= 1:
            raise ValueError(f"LSTM: dropout must be a number in [0, 1], got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        g = 4 * hidden_size
        for k in range(num_layers):
            n_in = input_size if k == 0 else hidden_size
            setattr(self, f"weight_ih_l{k}", Parameter(zeros(g, n_in, device=device, dtype=dtype)))
            setattr(self, f"weight_hh_l{k}", Parameter(zeros(g, hidden_size, device=device, dtype=dtype)))
            if bias:
                setattr(self, f"bias_ih_l{k}", Parameter(zeros(g, device=device, dtype=dtype)))
                setattr(self, f"bias_hh_l{k}", Parameter(zeros(g, device=device, dtype=dtype)))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _layer_params(self, k):
        get = lambda n: getattr(self, f"{n}_l{k}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def forward(self, input, hx=None):
        if input.ndim != 3 or input.shape[2] != self.input_size:
            raise ShapeError(f"LSTM: expects input of shape (T, B, {self.input_size})"
                             f"{' with batch_first (B, T, ...)' if self.batch_first else ''}, "
                             f"got {input.shape}")
        x = input.transpose(0, 1) if self.batch_first else input
        steps, batch = x.shape[:2]
        state_shape = (self.num_layers, batch, self.hidden_size)
        if hx is None:
            h0 = zeros(state_shape, dtype=x.dtype, device=x.device)
            hx = (h0, h0)
        if hx[0].shape != state_shape or hx[1].shape != state_shape:
            raise ShapeError(f"LSTM: hx must be two tensors of shape {state_shape}, got "
                             f"{hx[0].shape} and {hx[1].shape}")
        h_n, c_n = [], []
        for k in range(self.num_layers):
            if k > 0 and self.dropout:
                x = F.dropout(x, self.dropout, self.training)
            x, (h, c) = self._run_layer(k, x, hx[0][k], hx[1][k])
            h_n.append(h)
            c_n.append(c)
        out = x.transpose(0, 1) if self.batch_first else x
        return out, (stack(h_n), stack(c_n))

    def _run_layer(self, k, x, h, c):
        w_ih, w_hh, b_ih, b_hh = self._layer_params(k)
        steps, batch = x.shape[:2]
        # All T input projections in one GEMM: (T*B, in) @ w_ih.T -> (T, B, 4H).
        xproj = F.linear(x.reshape(steps * batch, x.shape[2]), w_ih, b_ih).reshape(steps, batch, -1)
        outputs = []
        for x_t in xproj.unbind(0):
            gates = x_t + F.linear(h, w_hh, b_hh)
            h, c = F.lstm_cell_pointwise(gates, c)
            outputs.append(h)
        return stack(outputs), (h, c)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s + ("" if self.bias else ", bias=False")
