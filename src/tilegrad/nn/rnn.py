"""LSTMCell and LSTM with PyTorch's parameter names and gate order (i, f, g, o)."""
from __future__ import annotations

import math
import numbers

import numpy as np
import numpy.typing as npt

from ..creation import zeros
from ..errors import ShapeError
from ..ops import rnn as R
from ..tensor import Tensor, _DeviceLike, stack
from . import _args as A
from . import functional as F
from . import init
from .layers import _size
from .module import Module, Parameter
from .recurrent import _Cell


class LSTMCell(_Cell):
    """One LSTM step: ``(h', c') = cell(x, (h, c))``.

    Args: input_size, hidden_size, bias=True, device, dtype.
    Parameters: ``weight_ih`` (4*hidden, input), ``weight_hh`` (4*hidden, hidden), ``bias_ih``,
    ``bias_hh`` (4*hidden,), rows in gate order i, f, g, o; all U(-1/sqrt(hidden), 1/sqrt(hidden)).
    Shape: input (B, input_size), h and c (B, hidden_size); hx defaults to zeros.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: _DeviceLike = None, dtype: npt.DTypeLike | None = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor,
                hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if hx is None:
            h = zeros(input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)
            hx = (h, h)
        return F.lstm_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class LSTM(Module):
    """A multi-layer LSTM over a sequence, as torch.nn.LSTM (unidirectional).

    Args: input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0
    (between layers, in training), device, dtype.
    Parameters per layer k: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}``.
    Shape: input (T, B, input_size) ((B, T, input_size) with batch_first); ``hx = (h_0, c_0)``, each
    (num_layers, B, hidden_size), zeros if not given. Returns ``output, (h_n, c_n)``; output is
    (T, B, hidden_size) (or batch first).

    Each layer is one autograd node (``lstm_layer``): one GEMM projects the inputs of all T steps,
    then each step is two launches (the hidden GEMM with the projection added in its epilogue,
    and the fused cell writing straight into the output); its backward is two launches a step and
    four after the loop (dx, dW_ih, dW_hh over all T*B rows, the bias gradients).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, device: _DeviceLike = None,
                 dtype: npt.DTypeLike | None = None) -> None:
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
            setattr(self, f"weight_hh_l{k}",
                    Parameter(zeros(g, hidden_size, device=device, dtype=dtype)))
            if bias:
                setattr(self, f"bias_ih_l{k}", Parameter(zeros(g, device=device, dtype=dtype)))
                setattr(self, f"bias_hh_l{k}", Parameter(zeros(g, device=device, dtype=dtype)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def flatten_parameters(self) -> None:
        """PyTorch's cuDNN weight-layout call: nothing to do here (as RNN's and GRU's)."""

    def _layer_params(self, k):
        get = lambda n: getattr(self, f"{n}_l{k}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if input.ndim != 3 or input.shape[2] != self.input_size:
            raise ShapeError(f"LSTM: expects input of shape (T, B, {self.input_size})"
                             f"{' with batch_first (B, T, ...)' if self.batch_first else ''}, "
                             f"got {input.shape}")
        x = input.transpose(0, 1) if self.batch_first else input
        steps, batch = x.shape[:2]
        if steps == 0:
            raise ShapeError(f"LSTM: expected sequence length to be larger than 0, got input of "
                             f"shape {input.shape}")
        state_shape = (self.num_layers, batch, self.hidden_size)
        if hx is not None and (hx[0].shape != state_shape or hx[1].shape != state_shape):
            raise ShapeError(f"LSTM: hx must be two tensors of shape {state_shape}, got "
                             f"{hx[0].shape} and {hx[1].shape}")
        h_n, c_n = [], []
        for k in range(self.num_layers):
            if k > 0 and self.dropout:
                x = F.dropout(x, self.dropout, self.training)
            h0, c0 = (None, None) if hx is None else self._layer_state(hx, k)
            x, h, c = lstm_layer(x, *self._layer_params(k), h0, c0)
            h_n.append(h)
            c_n.append(c)
        out = x.transpose(0, 1) if self.batch_first else x
        if self.num_layers == 1:              # a view: no stacking launch for one layer
            return out, (h_n[0].unsqueeze(0), c_n[0].unsqueeze(0))
        return out, (stack(h_n), stack(c_n))

    def _layer_state(self, hx, k):
        """Layer k's (h0, c0), each (B, H): with one layer a squeeze (a view), else an index."""
        if self.num_layers == 1:
            return hx[0].squeeze(0), hx[1].squeeze(0)
        return hx[0][k], hx[1][k]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s + ("" if self.bias else ", bias=False")


def lstm_layer(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
               b_hh: Tensor | None = None, h0: Tensor | None = None,
               c0: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer over a sequence (``ops.rnn.LSTMLayer``): returns ``(y, h_n, c_n)``.

    Args:
        x: (T, B, I), T >= 1; w_ih: (4H, I); w_hh: (4H, H); b_ih, b_hh: (4H,) or None;
        h0, c0: (B, H), or None for zeros.

    Shape: y (T, B, H), the hidden state of every step; h_n and c_n (B, H), the last state.
    """
    A.check_same("LSTM", x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    steps, batch, n_in = x.shape
    hidden = w_hh.shape[1]
    expect = {"x": (steps, batch, n_in), "w_ih": (4 * hidden, n_in), "w_hh": (4 * hidden, hidden),
              "b_ih": (4 * hidden,), "b_hh": (4 * hidden,), "h0": (batch, hidden),
              "c0": (batch, hidden)}
    for name, t in zip(expect, (x, w_ih, w_hh, b_ih, b_hh, h0, c0)):
        if t is not None and t.shape != expect[name]:
            raise ShapeError(f"LSTM: {name} has shape {t.shape}, expected {expect[name]} "
                             f"(input {x.shape}, w_hh {w_hh.shape})")
    return R.LSTMLayer.apply(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
