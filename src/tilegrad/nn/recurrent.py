"""Elman RNN and GRU layers and cells with PyTorch's arguments, parameter names, layouts and
initialisation: ``RNNCell``, ``GRUCell``, ``RNN`` and ``GRU`` (the LSTM is in ``rnn.py``).

They are composed of differentiable Tensor ops, one time step after another: for each layer and
direction one GEMM projects the inputs of all T steps (``x @ W_ih.T + b_ih``), then each step
adds the hidden projection ``h @ W_hh.T + b_hh`` and applies the cell. The equations are
PyTorch's:

- RNN: ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or relu);
- GRU, gate rows in the order r, z, n: ``r = sigmoid(i_r + h_r)``, ``z = sigmoid(i_z + h_z)``,
  ``n = tanh(i_n + r * h_n)``, ``h' = (1 - z) * n + z * h``, where ``i_*`` are the input
  projection's blocks and ``h_*`` the hidden projection's (``b_hn`` inside the product with r).

Every weight and bias starts U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import numpy.typing as npt

from ..creation import zeros
from ..errors import ShapeError
from ..tensor import Tensor, _DeviceLike, cat, stack
from . import _args as A
from . import functional as F    # linear, relu, dropout; read at call time
from . import init
from .layers import _size
from .module import Module, Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}   # row blocks of W_ih and W_hh


def _step(mode: str, gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """One step from the input projection ``gi`` (B, G*H) and the state ``h`` (B, H)."""
    gh = F.linear(h, w_hh, b_hh)
    if mode == "RNN_TANH":
        return (gi + gh).tanh()
    if mode == "RNN_RELU":
        return F.relu(gi + gh)
    hidden = h.shape[-1]
    rz = (gi[:, :2 * hidden] + gh[:, :2 * hidden]).sigmoid()
    r, z = rz[:, :hidden], rz[:, hidden:]
    n = (gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:]).tanh()
    return n + z * (h - n)                       # (1 - z) * n + z * h


def rnn_layer(mode: str, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
              b_hh: Tensor | None, h0: Tensor, reverse: bool = False) -> tuple[Tensor, Tensor]:
    """One layer and direction over a sequence: returns ``(y, h_n)``.

    Args:
        mode: 'RNN_TANH', 'RNN_RELU' or 'GRU'.
        x: (T, B, I); w_ih: (G*H, I); w_hh: (G*H, H); b_ih, b_hh: (G*H,) or None; h0: (B, H).
        reverse: run from the last step to the first (a bidirectional layer's second half).

    Shape: y (T, B, H), the state after each step, in the input's time order; h_n (B, H), the
    state after the last step run.
    """
    gi = F.linear(x, w_ih, b_ih)                 # every step's input projection, one GEMM
    h, ys = h0, [None] * x.shape[0]
    for t in (reversed(range(x.shape[0])) if reverse else range(x.shape[0])):
        h = _step(mode, gi[t], h, w_hh, b_hh)
        ys[t] = h
    return stack(ys), h


def _check_dropout(dropout, layer):
    if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, numbers.Real) or \
            not 0 <= dropout <= 1:
        raise ValueError(f"{layer}: dropout must be a number in [0, 1], got {dropout!r}")


def _nonlinearity(nonlinearity, layer):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{layer}: unknown nonlinearity {nonlinearity!r} (expects 'tanh' or "
                         f"'relu')")
    return "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"


class _Cell(Module):
    """A single step (RNNCell, GRUCell, and rnn.py's LSTMCell): parameters ``weight_ih``
    (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih`` and ``bias_hh`` (G*H,)."""

    def __init__(self, mode, input_size, hidden_size, bias, device, dtype):
        super().__init__()
        layer = type(self).__name__
        self.input_size = _size(input_size, "input_size", layer)
        self.hidden_size = _size(hidden_size, "hidden_size", layer)
        self.bias, self._mode = bias, mode
        g = _GATES[mode] * self.hidden_size
        self.weight_ih = Parameter(zeros(g, self.input_size, device=device, dtype=dtype))
        self.weight_hh = Parameter(zeros(g, self.hidden_size, device=device, dtype=dtype))
        for name in ("bias_ih", "bias_hh"):
            self.register_parameter(
                name, Parameter(zeros(g, device=device, dtype=dtype)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        layer = type(self).__name__
        A.check_tensors(layer, input, hx)
        if input.ndim not in (1, 2):
            raise ShapeError(f"{layer}: expects a 1-D or 2-D input, got shape {input.shape}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        expect = (x.shape[0], self.hidden_size)
        if hx is None:
            h = zeros(*expect, dtype=input.dtype, device=input.device)
        else:
            h = hx if batched or hx.ndim != 1 else hx.unsqueeze(0)
            if h.shape != expect:
                want = expect if batched else expect[1:]
                raise ShapeError(f"{layer}: hx of shape {hx.shape} does not match the input of "
                                 f"shape {input.shape} (expects {want})")
        if x.shape[1] != self.input_size:
            raise ShapeError(f"{layer}: input of shape {input.shape} does not match input_size "
                             f"{self.input_size}")
        out = _step(self._mode, F.linear(x, self.weight_ih, self.bias_ih), h, self.weight_hh,
                    self.bias_hh)
        return out if batched else out.squeeze(0)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
        return s + (", nonlinearity='relu'" if self._mode == "RNN_RELU" else "")


class RNNCell(_Cell):
    """One Elman RNN step: ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or relu).

    Args: input_size, hidden_size, bias=True, nonlinearity='tanh' or 'relu', device, dtype.
    Shape: input (B, I) or (I,); hx (B, H) or (H,), zeros if not given; returns h' like hx.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device: _DeviceLike = None,
                 dtype: npt.DTypeLike | None = None) -> None:
        mode = _nonlinearity(nonlinearity, "RNNCell")
        super().__init__(mode, input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity


class GRUCell(_Cell):
    """One GRU step (gate rows r, z, n; see the module docstring).

    Args: input_size, hidden_size, bias=True, device, dtype.
    Shape: input (B, I) or (I,); hx (B, H) or (H,), zeros if not given; returns h' like hx.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: _DeviceLike = None, dtype: npt.DTypeLike | None = None) -> None:
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype)


class _Recurrent(Module):
    """A multi-layer, optionally bidirectional RNN or GRU over a sequence (see ``RNN``)."""

    def __init__(self, mode, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                 bidirectional, device, dtype):
        super().__init__()
        layer = type(self).__name__
        # As PyTorch's: sizes and num_layers of at least 1, dropout a number in [0, 1].
        self.input_size = _size(input_size, "input_size", layer, least=1)
        self.hidden_size = _size(hidden_size, "hidden_size", layer, least=1)
        self.num_layers = _size(num_layers, "num_layers", layer, least=1)
        _check_dropout(dropout, layer)
        if dropout > 0 and self.num_layers == 1:
            warnings.warn(f"{layer}: dropout applies between layers, so dropout={dropout} with "
                          f"num_layers=1 does nothing", UserWarning, stacklevel=3)
        self._mode, self.bias, self.batch_first = mode, bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)
        g = _GATES[mode] * self.hidden_size
        for k in range(self.num_layers):
            n_in = self.input_size if k == 0 else self.hidden_size * self._directions
            for sfx in self._suffixes(k):
                shapes = [("weight_ih", (g, n_in)), ("weight_hh", (g, self.hidden_size))]
                shapes += [("bias_ih", (g,)), ("bias_hh", (g,))] if bias else []
                for name, shape in shapes:
                    setattr(self, name + sfx, Parameter(zeros(shape, device=device, dtype=dtype)))
        self.reset_parameters()

    @property
    def _directions(self):
        return 2 if self.bidirectional else 1

    def _suffixes(self, k):
        return [f"_l{k}", f"_l{k}_reverse"][:self._directions]

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def flatten_parameters(self) -> None:
        """PyTorch's cuDNN weight-layout call: nothing to do here."""

    def _params(self, sfx):
        return tuple(getattr(self, f"{n}{sfx}", None)
                     for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, h0, batched = self._prepare(input, hx)
        h_n = []
        for k in range(self.num_layers):
            if k > 0 and self.dropout:
                x = F.dropout(x, self.dropout, self.training)
            ys = []
            for d, sfx in enumerate(self._suffixes(k)):
                start = h0[k * self._directions + d] if h0 is not None else \
                    zeros(x.shape[1], self.hidden_size, dtype=x.dtype, device=x.device)
                y, h = rnn_layer(self._mode, x, *self._params(sfx), start, reverse=d == 1)
                ys.append(y)
                h_n.append(h)
            x = ys[0] if len(ys) == 1 else cat(ys, 2)
        out, h_n = x, stack(h_n)
        if not batched:
            return out.squeeze(1), h_n.squeeze(1)
        return (out.transpose(0, 1) if self.batch_first else out), h_n

    def _prepare(self, input, hx):
        """The input as (T, B, I), the initial state as (L*D, B, H) or None, and whether the
        input was batched; shapes checked."""
        layer = type(self).__name__
        A.check_tensors(layer, input, hx)
        if input.ndim not in (2, 3):
            raise ShapeError(f"{layer}: expects a 2-D (unbatched) or 3-D input, got shape "
                             f"{input.shape}")
        batched = input.ndim == 3
        x = (input.transpose(0, 1) if self.batch_first else input) if batched \
            else input.unsqueeze(1)
        if x.shape[2] != self.input_size:
            raise ShapeError(f"{layer}: input of shape {input.shape} does not match input_size "
                             f"{self.input_size}")
        if x.shape[0] == 0:
            raise ShapeError(f"{layer}: expected sequence length to be larger than 0, got input "
                             f"of shape {input.shape}")
        if hx is None:
            return x, None, batched
        expect = (self.num_layers * self._directions, x.shape[1], self.hidden_size)
        if hx.shape != (expect if batched else expect[:1] + expect[2:]):
            raise ShapeError(f"{layer}: expected hidden size "
                             f"{expect if batched else expect[:1] + expect[2:]}, got {hx.shape}")
        return x, hx if batched else hx.unsqueeze(1), batched

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self._mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s


class RNN(_Recurrent):
    """A multi-layer Elman RNN, as torch.nn.RNN.

    Args: input_size, hidden_size, num_layers=1, nonlinearity='tanh' or 'relu', bias=True,
    batch_first=False, dropout=0.0 (on each layer's output but the last, in training),
    bidirectional=False, device, dtype.
    Parameters per layer k: ``weight_ih_l{k}`` (H, I; layers after the first take D*H inputs),
    ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (H,); the reverse direction's
    carry the suffix ``_reverse``.
    Shape: input (T, B, I) ((B, T, I) with batch_first, (T, I) unbatched); hx (L*D, B, H) (or
    (L*D, H)), zeros if not given. Returns ``output, h_n``: output (T, B, D*H) (batch first
    with batch_first), the last layer's states, both directions concatenated; h_n (L*D, B, H),
    each layer's and direction's last state.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device: _DeviceLike = None,
                 dtype: npt.DTypeLike | None = None) -> None:
        mode = _nonlinearity(nonlinearity, "RNN")
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype)
        self.nonlinearity = nonlinearity


class GRU(_Recurrent):
    """A multi-layer GRU, as torch.nn.GRU: ``RNN``'s arguments (without nonlinearity), shapes
    and parameter names, each weight and bias three row blocks (r, z, n): (3H, I), (3H, H),
    (3H,)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: _DeviceLike = None, dtype: npt.DTypeLike | None = None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype)
