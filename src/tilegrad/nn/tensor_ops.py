"""``one_hot``, ``pad`` and ``avg_pool2d`` as in ``torch.nn.functional`` (which re-exports them),
composed of existing ops: comparisons for ``one_hot``; slicing, concatenation and gathers for
``pad``; a convolution with a constant kernel for ``avg_pool2d``."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import dtypes
from ..errors import ArgumentError, DtypeError, ShapeError
from ..tensor import Tensor, cat
from . import _args as A
from . import functional as F    # conv2d; read at call time

_IntPair = int | tuple[int, int]


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 tensor of shape ``tensor.shape + (num_classes,)``: 1 at each value's index, else 0.

    Args:
        tensor: int64 class values, each in [0, num_classes).
        num_classes: the length of the new last dimension; -1 means ``tensor.max() + 1`` (read
            from the device).

    Values are range-checked on "cpu" (RuntimeError); on "cuda", as PyTorch's, only when
    ``num_classes`` is -1 (an out-of-range value there gives a row of zeros).
    """
    A.check_tensors("one_hot", tensor)
    if not A.is_int(num_classes):
        raise TypeError(f"one_hot: num_classes must be an int, got {num_classes!r}")
    if tensor.dtype != dtypes.int64:
        raise DtypeError(f"one_hot: is only applicable to int64 index tensors, got {tensor.dtype}")
    if num_classes < -1:
        raise ArgumentError(f"one_hot: num_classes must be -1 or at least 0, got {num_classes}")
    values = None
    if num_classes == -1 or tensor.device.name == "cpu":
        values = tensor.numpy()
    if num_classes == -1:
        if values.size == 0:
            raise ArgumentError("one_hot: cannot infer the number of classes from an empty "
                                "tensor")
        num_classes = int(values.max()) + 1
    if values is not None and values.size:
        if values.min() < 0:
            raise ArgumentError("one_hot: class values must be non-negative")
        if values.max() >= num_classes:
            raise ArgumentError(f"one_hot: class values must be smaller than num_classes "
                                f"({num_classes}), got {values.max()}")
    classes = Tensor(tensor._be.from_numpy(np.arange(num_classes, dtype=np.int64)), tensor.device)
    return (tensor.unsqueeze(-1) == classes).to(dtype=dtypes.int64)


def _fill(shape, value, like):
    return Tensor(like._be.full(tuple(shape), value, like.dtype), like.device)


def _along(ndim, d, key):
    """An indexing key that applies ``key`` to dimension ``d`` of ``ndim`` and keeps the rest."""
    return (slice(None),) * d + (key,) + (slice(None),) * (ndim - d - 1)


def _pad_constant(input, pairs, value):
    out = input
    for d, (left, right) in pairs:
        n = out.shape[d]
        if left < 0 or right < 0:      # negative padding crops
            out = out[_along(out.ndim, d, slice(max(-left, 0), n - max(-right, 0)))]
        sides = [_fill(out.shape[:d] + (count,) + out.shape[d + 1:], value, out)
                 if count > 0 else None for count in (left, right)]
        if sides != [None, None]:
            out = cat([t for t in (sides[0], out, sides[1]) if t is not None], d)
    return out


def _source_positions(mode, n, left, right):
    """For each output position along one dimension, the input position it copies."""
    p = np.arange(-left, n + right, dtype=np.int64)
    if mode == "replicate":
        return np.clip(p, 0, n - 1)
    if mode == "circular":
        return p % n
    p = np.abs(p)                                  # reflect about 0 ...
    return np.where(p > n - 1, 2 * (n - 1) - p, p)  # ... and about n - 1


def _pad_gather(input, pairs, mode):
    pad_dims = len(pairs)
    if input.ndim not in (pad_dims + 1, pad_dims + 2) or pad_dims > 3:
        raise NotImplementedError(f"pad: mode {mode!r} pads the last 1 to 3 dimensions of an "
                                  f"input with 1 or 2 more (as PyTorch); got {pad_dims} padded "
                                  f"dimensions of an input of shape {input.shape}")
    out = input
    for d, (left, right) in pairs:
        # Negative padding crops first, and the rest pads the cropped tensor (so 'circular'
        # wraps around what is left, as PyTorch).
        if left < 0 or right < 0:
            n = out.shape[d]
            out = out[_along(out.ndim, d, slice(max(-left, 0), n - max(-right, 0)))]
        left, right, n = max(left, 0), max(right, 0), out.shape[d]
        limit = n - 1 if mode == "reflect" else n
        if (mode != "replicate" and max(left, right) > limit) or n == 0:
            raise ArgumentError(f"pad: padding ({left}, {right}) of mode {mode!r} must be at "
                                f"most {limit} for dimension {d} of size {n} (input "
                                f"{input.shape})")
        idx = _source_positions(mode, n, left, right)
        out = out[_along(out.ndim, d, Tensor(out._be.from_numpy(idx), out.device))]
    return out


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant",
        value: float | None = None) -> Tensor:
    """Pad the last ``len(pad) // 2`` dimensions: ``pad = (left_last, right_last, left_prev,
    right_prev, ...)``, as ``torch.nn.functional.pad``.

    Args:
        input: any tensor.
        pad: an even number of ints; negative ones crop (mode 'constant').
        mode: 'constant' (``value``, default 0), 'reflect' (mirror without repeating the edge),
            'replicate' (repeat the edge) or 'circular' (wrap around); the last three pad 1 to 3
            dimensions of an input with 1 or 2 more, as PyTorch.
        value: the fill of 'constant'.
    """
    A.check_tensors("pad", input)
    pad = A.ints(tuple(pad) if isinstance(pad, list) else pad, "pad", "pad")
    if len(pad) % 2:
        raise ArgumentError(f"pad: the padding's length must be even, got {len(pad)}")
    if len(pad) // 2 > input.ndim:
        raise ArgumentError(f"pad: {len(pad)} values pad {len(pad) // 2} dimensions, more than "
                            f"the input's {input.ndim}")
    pairs = [(input.ndim - 1 - k, (pad[2 * k], pad[2 * k + 1])) for k in range(len(pad) // 2)]
    for d, (left, right) in pairs:
        if input.shape[d] + left + right < 0:
            raise ShapeError(f"pad: padding ({left}, {right}) of dimension {d} of size "
                             f"{input.shape[d]} gives a negative size")
    if mode == "constant":
        return _pad_constant(input, pairs, 0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode must be 'constant', 'reflect', 'replicate' or "
                                  f"'circular', got {mode!r}")
    if value not in (None, 0):
        raise ArgumentError(f"pad: mode {mode!r} takes no value (got {value})")
    return _pad_gather(input, pairs, mode)


def avg_pool2d(input: Tensor, kernel_size: _IntPair, stride: _IntPair | None = None,
               padding: _IntPair = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """Mean over each window, as ``torch.nn.functional.avg_pool2d`` (``ceil_mode`` False only):
    each channel convolved with a constant kernel.

    Args:
        input: (N, C, H, W) or (C, H, W).
        kernel_size, stride (default kernel_size), padding (zeros, at most half the kernel):
            ints or pairs.
        count_include_pad: the padded zeros count in each window's mean (else only the input's
            elements do).
        divisor_override: divide each window's sum by this instead.
    """
    kernel = A.pair(kernel_size, "kernel_size", "avg_pool2d")
    stride = kernel if stride is None or stride == () else A.pair(stride, "stride", "avg_pool2d")
    padding = A.pair(padding, "padding", "avg_pool2d")
    A.check_tensors("avg_pool2d", input)
    if ceil_mode:
        raise NotImplementedError("avg_pool2d: ceil_mode=True is not supported")
    if input.ndim not in (3, 4):
        raise ShapeError(f"avg_pool2d: expects a 3-D or 4-D input, got shape {input.shape}")
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0 or \
            padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ArgumentError(f"avg_pool2d: kernel {kernel} and stride {stride} must be positive "
                            f"and padding {padding} from 0 to half the kernel")
    if divisor_override is not None and (not A.is_int(divisor_override) or divisor_override < 1):
        raise ArgumentError(f"avg_pool2d: divisor_override must be a positive int, got "
                            f"{divisor_override!r}")
    A.check_same("avg_pool2d", input)
    lead, (h, w) = input.shape[:-2], input.shape[-2:]
    planes = input.reshape(-1, 1, h, w)
    ones = _fill((1, 1) + kernel, 1, input)
    sums = F.conv2d(planes, ones, None, stride, padding)
    if divisor_override is not None:
        out = sums / divisor_override
    elif count_include_pad or padding == (0, 0):
        out = sums / (kernel[0] * kernel[1])
    else:                                          # each window's count of input elements
        out = sums / F.conv2d(_fill((1, 1, h, w), 1, input), ones, None, stride, padding)
    return out.reshape(lead + out.shape[-2:])
