"""Losses under torch.nn's names: the functions ``mse_loss``, ``l1_loss``, ``nll_loss``,
``binary_cross_entropy`` and ``binary_cross_entropy_with_logits`` (``nn.functional`` re-exports
them), cross-entropy's weighted, ignoring and label-smoothing forms (``F.cross_entropy`` calls in
here when those options are set), and the modules ``MSELoss``, ``L1Loss``, ``NLLLoss``,
``BCELoss`` and ``BCEWithLogitsLoss``.

Every loss is composed of differentiable Tensor ops. Reductions have PyTorch's meanings:
``'none'`` the elementwise losses, ``'sum'`` their sum, ``'mean'`` their mean, which for the
class losses with ``weight`` is the weighted mean ``sum(w[t_i] * l_i) / sum(w[t_i])`` over the
targets not ignored (NaN when all are, as PyTorch). The deprecated ``size_average`` and
``reduce`` arguments are mapped to a reduction as PyTorch maps them.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import dtypes
from ..errors import ArgumentError, IndexRangeError, ShapeError
from ..tensor import Tensor
from . import _args as A
from . import functional as F    # log_softmax; read at call time
from .module import Module

_REDUCTIONS = ("mean", "sum", "none")
_LOG_FLOOR = math.exp(-100)      # PyTorch clamps BCE's logs at -100


def reduction_of(op: str, reduction: str, size_average: bool | None = None,
                 reduce: bool | None = None) -> str:
    """The reduction a loss applies: ``reduction`` ('mean', 'sum' or 'none', else ValueError),
    or, where either deprecated argument is given, PyTorch's reading of them (``reduce=False``:
    'none'; else ``size_average=False``: 'sum'; else 'mean'), with its warning."""
    if size_average is not None or reduce is not None:
        warnings.warn(f"{op}: size_average and reduce are deprecated, as in PyTorch; use "
                      f"reduction", UserWarning, stacklevel=3)
        if reduce is False:
            return "none"
        return "sum" if size_average is False else "mean"
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _reduce(losses, reduction):
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()


def _pair(op, input, target):
    """``input`` and ``target`` floating, on one device and of one dtype, and of shapes that
    broadcast (PyTorch warns where they differ: broadcasting is rarely what a loss means)."""
    A.check_same(op, input, target)
    if A.broadcast_shape(input.shape, target.shape) is None:
        raise ShapeError(f"{op}: input of shape {input.shape} and target of shape "
                         f"{target.shape} do not broadcast")
    if input.shape != target.shape:
        warnings.warn(f"{op}: a target of shape {target.shape} differs from the input's "
                      f"{input.shape}; they are broadcast, which is likely wrong", UserWarning,
                      stacklevel=3)


def mse_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
             reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    """``(input - target)^2`` elementwise, reduced (the shapes broadcast)."""
    reduction = reduction_of("mse_loss", reduction, size_average, reduce)
    _pair("mse_loss", input, target)
    d = input - target
    return _reduce(d * d, reduction)


def l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
            reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    """``|input - target|`` elementwise, reduced (the shapes broadcast). The gradient at equal
    values is 0, as PyTorch's sign."""
    reduction = reduction_of("l1_loss", reduction, size_average, reduce)
    _pair("l1_loss", input, target)
    d = input - target
    return _reduce(d.relu() + (-d).relu(), reduction)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    """``-w * (t * log(x) + (1 - t) * log(1 - x))`` for probabilities ``x`` in [0, 1], each
    log at least -100 as in PyTorch (so 0 and 1 give finite losses and gradients).

    Args: input and target of one shape; weight, None or a tensor broadcasting to it.
    """
    reduction = reduction_of("binary_cross_entropy", reduction, size_average, reduce)
    A.check_same("binary_cross_entropy", input, target, weight)
    if input.shape != target.shape:
        raise ShapeError(f"binary_cross_entropy: the target's shape {target.shape} must be the "
                         f"input's {input.shape}")
    if input.device.name == "cpu" and input.numel():   # elsewhere it would read the device
        x = input.numpy()
        if not ((x >= 0) & (x <= 1)).all():
            raise ArgumentError("binary_cross_entropy: all elements of input should be between "
                                "0 and 1")
    # log(max(x, e^-100)) is max(log(x), -100), with a finite gradient at x = 0.
    losses = -(target * input.maximum(_LOG_FLOOR).log()
               + (1 - target) * (1 - input).maximum(_LOG_FLOOR).log())
    return _reduce(losses if weight is None else losses * weight, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """``binary_cross_entropy(sigmoid(input), target)`` computed stably from the logits:
    ``(1 - t) * x + (1 + (p - 1) * t) * softplus(-x)`` times ``weight``, ``p`` the
    ``pos_weight`` of the positive examples (broadcast along the last dimension, as PyTorch's)."""
    reduction = reduction_of("binary_cross_entropy_with_logits", reduction, size_average, reduce)
    A.check_same("binary_cross_entropy_with_logits", input, target, weight, pos_weight)
    if input.shape != target.shape:
        raise ShapeError(f"binary_cross_entropy_with_logits: the target's shape {target.shape} "
                         f"must be the input's {input.shape}")
    for name, w in (("weight", weight), ("pos_weight", pos_weight)):
        if w is not None and A.broadcast_shape(w.shape, input.shape) != input.shape:
            raise ShapeError(f"binary_cross_entropy_with_logits: {name} of shape {w.shape} does "
                             f"not broadcast to the input's {input.shape}")
    # softplus(-x) = log(1 + exp(-x)) = relu(-x) + log(1 + exp(-|x|)): no overflow.
    abs_x = input.relu() + (-input).relu()
    softplus_neg = (-input).relu() + ((-abs_x).exp() + 1).log()
    if pos_weight is not None:
        softplus_neg = softplus_neg * ((pos_weight - 1) * target + 1)
    losses = (1 - target) * input + softplus_neg
    return _reduce(losses if weight is None else losses * weight, reduction)


# ---------------------------------------------------------------- the class losses

def _check_class_weight(op, input, weight):
    n_classes = input.shape[0 if input.ndim == 1 else 1]
    if weight is not None and weight.shape != (n_classes,):
        raise ShapeError(f"{op}: weight of shape {weight.shape} must have one value for each of "
                         f"the {n_classes} classes (input {input.shape})")
    A.check_same(op, input, weight)


def check_targets_in_range(op: str, target: Tensor, n_classes: int, ignore_index: int) -> None:
    """On a device whose kernels do not check indices (the host reads its values anyway): a
    target outside [0, n_classes) that is not ``ignore_index`` raises IndexRangeError."""
    if getattr(target.device.backend, "CHECKS_INDICES", False) or not target.numel():
        return
    t = target.numpy().astype(np.int64)
    bad = t[(t != ignore_index) & ((t < 0) | (t >= n_classes))]
    if bad.size:
        raise IndexRangeError(f"{op}: target {bad[0]} is out of range for {n_classes} classes")


def class_rows(input: Tensor, target: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """``input`` as rows (M, C), the class dimension last, with their M int64 targets, and the
    shape of the per-element losses (the target's; () for an unbatched input)."""
    n_classes = input.shape[0 if input.ndim == 1 else 1]
    loss_shape = () if input.ndim == 1 else target.shape
    m = int(np.prod(loss_shape, dtype=np.int64))
    if input.ndim == 1:
        rows = input.reshape(1, n_classes)
    elif input.ndim == 2:
        rows = input
    else:
        rows = input.permute(0, *range(2, input.ndim), 1).reshape(m, n_classes)
    return rows, target.reshape(m).to(dtype=dtypes.int64), loss_shape


def _picked(rows, flat_target, weight, ignore_index):
    """``rows[i, t_i]`` for every row, and each row's weight ``w[t_i]`` (1 without ``weight``),
    0 where ``t_i`` is ``ignore_index``. One gather from the flattened rows (ignored targets read
    column 0): the device gathers and range-checks it without reading the targets back. The
    int64 index arithmetic is done on backend arrays: no gradient flows through it."""
    m, n_classes = rows.shape
    be = rows._be
    kept = flat_target != ignore_index
    safe = be.where_mask(kept._data, flat_target._data, 0)
    flat = be.binary("add", be.from_numpy(np.arange(m, dtype=np.int64) * n_classes), safe)
    if getattr(rows.device.backend, "CHECKS_INDICES", False):
        # A target outside [0, C) would read another row: send it past the end instead, where
        # the device's range check reports it at the next synchronisation.
        for test in ("ge", "lt"):
            inside = be.binary(test, safe, 0 if test == "ge" else n_classes)
            flat = be.where_mask(inside, flat, m * n_classes)
    safe = Tensor(safe, rows.device)
    picked = rows.reshape(m * n_classes)[Tensor(flat, rows.device)]
    w = kept.to(dtype=rows.dtype)
    return picked, w if weight is None else weight[safe] * w


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
             size_average: bool | None = None, ignore_index: int = -100,
             reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    """The negative log-likelihood of class indices: ``-w[t] * input[n, t]``, ``input`` holding
    log-probabilities (``log_softmax``'s output).

    Args:
        input: (N, C), (C,) unbatched, or (N, C, d1, ..., dk); floating.
        target: class indices (N,), () unbatched, or (N, d1, ..., dk), int64, each in [0, C) or
            ``ignore_index``.
        weight: None, or (C,): a weight per class.
        ignore_index: targets of this value contribute nothing (nor to the weighted mean).
        reduction: 'mean' (weighted: ``sum(w[t_i] * l_i) / sum(w[t_i])``), 'sum' or 'none'.

    A target out of range raises ``IndexRangeError``: at the call on "cpu", at the next
    synchronisation on "cuda".
    """
    reduction = reduction_of("nll_loss", reduction, size_average, reduce)
    A.check_tensors("nll_loss", input, target, weight)
    if input.ndim == 0:
        raise ShapeError("nll_loss: expects an input of 1 or more dimensions, got a 0-d one")
    A.check_same("nll_loss", input)
    A.check_class_target(input, target, "nll_loss")
    _check_class_weight("nll_loss", input, weight)
    check_targets_in_range("nll_loss", target, input.shape[0 if input.ndim == 1 else 1],
                           ignore_index)
    rows, flat_target, loss_shape = class_rows(input, target)
    picked, w = _picked(rows, flat_target, weight, ignore_index)
    losses = -picked * w
    if reduction == "none":
        return losses.reshape(loss_shape)
    return losses.sum() if reduction == "sum" else losses.sum() / w.sum()


def cross_entropy_general(input: Tensor, target: Tensor, weight: Tensor | None,
                          ignore_index: int, reduction: str, label_smoothing: float) -> Tensor:
    """``F.cross_entropy`` with class indices and any of weight, ignore_index or
    label_smoothing (arguments checked by the caller): ``(1 - e) * nll + e/C * smooth``, with
    ``smooth = -sum_c w_c * log_softmax(input)_c``, PyTorch's formula."""
    _check_class_weight("cross_entropy", input, weight)
    rows, flat_target, loss_shape = class_rows(input, target)
    logp = F.log_softmax(rows, 1)
    picked, w = _picked(logp, flat_target, weight, ignore_index)
    losses = -picked * w
    if label_smoothing:
        n_classes = rows.shape[1]
        smooth = -(logp if weight is None else logp * weight).sum(1)
        smooth = smooth * (flat_target != ignore_index).to(dtype=rows.dtype)
        losses = losses * (1 - label_smoothing) + smooth * (label_smoothing / n_classes)
    if reduction == "none":
        return losses.reshape(loss_shape)
    return losses.sum() if reduction == "sum" else losses.sum() / w.sum()


def cross_entropy_probabilities(input: Tensor, target: Tensor, weight: Tensor | None,
                                reduction: str, label_smoothing: float,
                                class_dim: int) -> Tensor:
    """``F.cross_entropy`` with class probabilities (``target`` of the input's shape), weight and
    label smoothing: ``-sum_c w_c * t'_c * log_softmax(input)_c`` with ``t' = (1 - e) * t + e/C``;
    'mean' divides by the number of rows, as PyTorch (not by the weights)."""
    _check_class_weight("cross_entropy", input, weight)
    A.check_same("cross_entropy", input, target)
    n_classes = input.shape[class_dim]
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / n_classes
    weighted = log_p = F.log_softmax(input, class_dim)
    if weight is not None:
        shape = [1] * input.ndim
        shape[class_dim] = n_classes
        weighted = log_p * weight.reshape(tuple(shape))
    losses = -(weighted * target).sum(class_dim)
    if reduction != "mean":
        return losses if reduction == "none" else losses.sum()
    rows = input.numel() // n_classes if input.numel() else 0
    return losses.sum() / rows if rows else losses.sum() * math.nan


def check_label_smoothing(label_smoothing: float) -> float:
    """A number in [0, 1] (TypeError, ArgumentError as PyTorch's RuntimeError)."""
    if isinstance(label_smoothing, (bool, np.bool_)) or \
            not isinstance(label_smoothing, (int, float, np.floating, np.integer)):
        raise TypeError(f"cross_entropy: label_smoothing must be a number, got "
                        f"{label_smoothing!r}")
    if not 0 <= label_smoothing <= 1:
        raise ArgumentError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got "
                            f"{label_smoothing}")
    return float(label_smoothing)


# ---------------------------------------------------------------- modules

class _Loss(Module):
    """A loss module: its reduction checked here (PyTorch checks it in the first forward)."""

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction_of(type(self).__name__, reduction, size_average, reduce)

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """``F.mse_loss``. Args: reduction ('mean', 'sum' or 'none')."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """``F.l1_loss``. Args: reduction ('mean', 'sum' or 'none')."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return l1_loss(input, target, reduction=self.reduction)


class _WeightedLoss(_Loss):
    """A loss with a ``weight`` tensor, a buffer as PyTorch's (in the state dict when given,
    moved by ``.to()``)."""

    def __init__(self, weight: Tensor | None = None, size_average: bool | None = None,
                 reduce: bool | None = None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        if weight is not None and not isinstance(weight, Tensor):
            raise TypeError(f"{type(self).__name__}: weight must be a tensor or None, got "
                            f"{type(weight).__name__}")
        self.register_buffer("weight", weight)


class NLLLoss(_WeightedLoss):
    """``F.nll_loss``. Args: weight=None, size_average, ignore_index=-100, reduce,
    reduction='mean'."""

    def __init__(self, weight: Tensor | None = None, size_average: bool | None = None,
                 ignore_index: int = -100, reduce: bool | None = None,
                 reduction: str = "mean") -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return nll_loss(input, target, self.weight, ignore_index=self.ignore_index,
                        reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """``F.binary_cross_entropy``. Args: weight=None, size_average, reduce, reduction."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_WeightedLoss):
    """``F.binary_cross_entropy_with_logits``. Args: weight=None, size_average, reduce,
    reduction='mean', pos_weight=None."""

    def __init__(self, weight: Tensor | None = None, size_average: bool | None = None,
                 reduce: bool | None = None, reduction: str = "mean",
                 pos_weight: Tensor | None = None) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        if pos_weight is not None and not isinstance(pos_weight, Tensor):
            raise TypeError(f"BCEWithLogitsLoss: pos_weight must be a tensor or None, got "
                            f"{type(pos_weight).__name__}")
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return binary_cross_entropy_with_logits(input, target, self.weight,
                                                reduction=self.reduction,
                                                pos_weight=self.pos_weight)

