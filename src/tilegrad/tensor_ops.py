"""More of PyTorch's tensor methods (mixed into ``Tensor``), built from the existing Functions.

``min``/``amin`` reduce an order-reversed copy with ``amax``/``argmax`` (``-x`` for floats, which
is exact and differentiable; ``-1 - x`` or ``255 - x`` for integers, which cannot overflow);
``var``/``std``, ``where``, ``masked_fill``, ``triu``/``tril``, ``isclose`` are a few existing
operations each; ``sin``/``cos`` are Functions of ``ops/activation.py``; ``multinomial``
draws on the host (``sampling.py``); ``type`` and ``new`` are PyTorch's legacy spellings of
``to`` and ``new_*``. ``tilegrad.where``, ``tilegrad.abs`` and the other functions of the torch
namespace at the bottom call these methods.
"""
from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _checks as C
from . import dtypes
from .errors import ArgumentError, DtypeError, ShapeError
from .ops import activation as A
from .ops import elementwise as E

if TYPE_CHECKING:   # tensor.py imports this module
    from .tensor import Tensor

_Scalar = (int, float, bool, np.integer, np.floating, np.bool_)
_Dims = int | tuple[int, ...] | None
_Other = Any   # a Tensor or a Python number


def _tensor_class():
    from .tensor import Tensor
    return Tensor


class TensorOps:
    """Tensor methods of PyTorch's beyond the core ones of ``tensor.py``."""

    # ------------------------------------------------------------ arithmetic by name
    def add(self, other: _Other, *, alpha: builtins.float = 1) -> Tensor:
        """``self + alpha * other``."""
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other: _Other, *, alpha: builtins.float = 1) -> Tensor:
        """``self - alpha * other``."""
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other: _Other) -> Tensor:
        return self * other

    def div(self, other: _Other) -> Tensor:
        return self / other

    def pow(self, exponent: builtins.float) -> Tensor:
        return self ** exponent

    def neg(self) -> Tensor:
        return -self

    def matmul(self, other: Tensor) -> Tensor:
        return self @ other

    def abs(self) -> Tensor:
        """``|x|``; the gradient is 0 at 0, as PyTorch's."""
        C.not_bool("abs", self)
        return E.Abs.apply(self)

    def sin(self) -> Tensor:
        """``sin(x)`` (integer tensors in the default float dtype)."""
        return A.Sin.apply(self._floating())

    def cos(self) -> Tensor:
        """``cos(x)`` (integer tensors in the default float dtype)."""
        return A.Cos.apply(self._floating())

    # ------------------------------------------------------------ comparisons
    def _compared(self, op, other):
        out = self._compare(op, other)
        if out is NotImplemented:
            raise TypeError(f"{op}: expects a tensor or a number, got {type(other).__name__}")
        return out

    def eq(self, other: _Other) -> Tensor:
        return self._compared("eq", other)

    def ne(self, other: _Other) -> Tensor:
        return self._compared("ne", other)

    def gt(self, other: _Other) -> Tensor:
        return self._compared("gt", other)

    def ge(self, other: _Other) -> Tensor:
        return self._compared("ge", other)

    def lt(self, other: _Other) -> Tensor:
        return self._compared("lt", other)

    def le(self, other: _Other) -> Tensor:
        return self._compared("le", other)

    def isclose(self, other: Tensor, rtol: builtins.float = 1e-05, atol: builtins.float = 1e-08,
                equal_nan: bool = False) -> Tensor:
        """``|self - other| <= atol + rtol * |other|`` elementwise (bool), as ``torch.isclose``:
        infinities are close only to themselves, NaN to NaN only with ``equal_nan``."""
        if not isinstance(other, _tensor_class()):
            raise TypeError(f"isclose: expects a tensor, got {type(other).__name__}")
        C.binary_operands("isclose", self, other)
        be = self._be
        a, b = self._data, other._data
        if self.dtype not in dtypes.FLOATING:    # compared as numbers, not wrapping integers
            a, b = be.astype(a, dtypes.float64), be.astype(b, dtypes.float64)
        # inf - inf is NaN on purpose. (Numba's simulator runs kernels in threads of their own,
        # which np.errstate does not reach: there NumPy warns.)
        with np.errstate(invalid="ignore"):
            same = be.binary("eq", a, b)                   # inf == inf, and exact equality
            diff = be.unary("abs", be.binary("sub", a, b))
            bound = be.binary("add", be.binary("mul", be.unary("abs", b), rtol), atol)
            finite = be.binary("le", diff, float(np.finfo(a.dtype).max))   # not inf, not NaN
            close = be.where_mask(be.binary("le", diff, bound), finite, False)
            close = be.where_mask(same, same, close)
            if equal_nan:
                both_nan = be.where_mask(be.binary("ne", a, a), be.binary("ne", b, b), False)
                close = be.where_mask(both_nan, both_nan, close)
        return self._make(close, self.device, False)

    def allclose(self, other: Tensor, rtol: builtins.float = 1e-05,
                 atol: builtins.float = 1e-08, equal_nan: bool = False) -> bool:
        """True if every element is ``isclose`` to ``other``'s (a Python bool)."""
        return bool(self.isclose(other, rtol, atol, equal_nan).all())

    def all(self, dim: _Dims = None, keepdim: bool = False) -> Tensor:
        """True where every element (over ``dim``) is nonzero (a bool tensor)."""
        axes = C.dims(dim, self.shape, "all")
        count = int(np.prod([self.shape[a] for a in axes], dtype=np.int64))
        return self.ne(0).sum(axes, keepdim) == count

    def any(self, dim: _Dims = None, keepdim: bool = False) -> Tensor:
        """True where some element (over ``dim``) is nonzero (a bool tensor)."""
        return self.ne(0).sum(C.dims(dim, self.shape, "any"), keepdim) > 0

    def minimum(self, other: Tensor) -> Tensor:
        """Elementwise minimum (NaN wins; ties share the gradient, as ``torch.minimum``)."""
        if not isinstance(other, _tensor_class()):
            raise TypeError(f"minimum: expects a tensor, got {type(other).__name__}")
        return self._flip().maximum(other._flip())._flip()

    # ------------------------------------------------------------ min and friends
    def _flip(self):
        """An order-reversing copy, its own inverse: ``-x`` for floats (differentiable; NaN stays
        NaN), ``top - x`` for integers (``top`` = -1 or the unsigned maximum: no overflow)."""
        if self.dtype in dtypes.FLOATING:
            return -self
        top = -1 if self.dtype.kind == "i" else np.iinfo(self.dtype).max
        flipped = self._be.binary("sub", self._be.full((), top, self.dtype), self._data)
        return self._make(flipped, self.device, False)

    def _ordered(self):
        """``self`` in a dtype that ``_flip`` can reverse (bool as int64)."""
        return self.long() if self.dtype == dtypes.bool_ else self

    def _back(self, out):
        return out.to(dtype=dtypes.bool_) if self.dtype == dtypes.bool_ else out

    def amin(self, dim: _Dims = None, keepdim: bool = False, *, axis: _Dims = None,
             keepdims: bool | None = None) -> Tensor:
        """The minimum over ``dim``; the gradient is shared equally among tied minima."""
        x = self._ordered()._flip()
        out = x._amax(axis if dim is None else dim, C.keepdim(keepdim, keepdims), "amin")
        return self._back(out._flip())

    def min(self, dim: _Dims | Tensor = None, keepdim: bool = False, *, axis: _Dims = None,
            keepdims: bool | None = None) -> Any:
        """``t.min()``: the smallest element. ``t.min(dim)``: ``(values, indices)`` along
        ``dim`` (the gradient goes to the element ``indices`` names). ``t.min(other)``: the
        elementwise ``minimum``. As ``max``."""
        from .tensor import MinResult, _arange_index
        if isinstance(dim, _tensor_class()):
            return self.minimum(dim)
        dim, keepdim = axis if dim is None else dim, C.keepdim(keepdim, keepdims)
        if not C.is_int(dim):
            x = self._ordered()._flip()
            return self._back(x._amax(dim, keepdim, "min", nans_share=dim is None)._flip())
        d = C.dim(dim, self.shape, "min")
        C.nonempty_reduction(self.shape, (d,) if self.ndim else (), True, "min")
        indices = self._ordered()._flip()._argmax(d, True)
        key = tuple(indices if k == d else _arange_index(self, k) for k in range(self.ndim))
        values = self[key]
        if not keepdim and self.ndim:
            kept = self.shape[:d] + self.shape[d + 1:]
            values, indices = values.reshape(kept), indices.reshape(kept)
        return MinResult(values, indices)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """The index of the (first) minimum, over all elements or along ``dim``."""
        C.not_bool("argmin", self)
        return self._flip().argmax(dim, keepdim)

    def var(self, dim: _Dims | bool = None, unbiased: bool | None = None, keepdim: bool = False,
            *, correction: builtins.float | None = None) -> Tensor:
        """The variance over ``dim``: ``sum((x - mean)^2) / (N - correction)``, ``correction``
        1 by default (``unbiased=False`` is 0). ``t.var(False)`` is ``t.var(unbiased=False)``.
        With ``N - correction <= 0`` the result is NaN or inf, as PyTorch's."""
        if isinstance(dim, bool):
            dim, unbiased = None, dim
        if unbiased is not None and correction is not None:
            raise ArgumentError("var: give either unbiased or correction, not both")
        if self.dtype not in dtypes.FLOATING:
            raise DtypeError(f"var: std and var only support floating point dtypes, got "
                             f"{self.dtype} (shape {self.shape})")
        c = correction if correction is not None else 0 if unbiased is False else 1
        axes = C.dims(dim, self.shape, "var")
        n = int(np.prod([self.shape[a] for a in axes], dtype=np.int64))
        centred = self - self.mean(axes, keepdim=True)
        with np.errstate(divide="ignore", invalid="ignore"):   # N - c = 0: inf or NaN
            return (centred * centred).sum(axes, keepdim) / builtins.max(n - c, 0)

    def std(self, dim: _Dims | bool = None, unbiased: bool | None = None, keepdim: bool = False,
            *, correction: builtins.float | None = None) -> Tensor:
        """The standard deviation over ``dim``: ``var(...).sqrt()`` (same arguments)."""
        return self.var(dim, unbiased, keepdim, correction=correction).sqrt()

    # ------------------------------------------------------------ selection
    def where(self, condition: Tensor, other: _Other) -> Tensor:
        """``self`` where ``condition`` else ``other`` (``torch.where(condition, self, other)``)."""
        return where(condition, self, other)

    def masked_fill(self, mask: Tensor, value: _Other) -> Tensor:
        """``value`` (a number or a 0-d tensor, taken in this dtype) where the bool ``mask`` is
        True, ``self`` elsewhere; ``mask`` and ``self`` broadcast."""
        if not isinstance(mask, _tensor_class()) or mask.dtype != dtypes.bool_:
            what = mask.dtype if hasattr(mask, "dtype") else type(mask).__name__
            raise DtypeError(f"masked_fill: only supports boolean masks, got {what}")
        if isinstance(value, _tensor_class()):
            if value.ndim:
                raise ShapeError(f"masked_fill: only supports a 0-dimensional value tensor, got "
                                 f"shape {value.shape}")
            value = value.to(self.device, self.dtype)
        elif isinstance(value, _Scalar):
            value = self._make(self._be.full((), value, self.dtype), self.device, False)
        else:
            raise TypeError(f"masked_fill: the value must be a number or a tensor, got "
                            f"{type(value).__name__}")
        C.same_device("masked_fill", self, mask)
        C.broadcast("masked_fill", mask.shape, self.shape)
        return E.Where.apply(mask, value, self)

    # ------------------------------------------------------------ shape
    def view_as(self, other: Tensor) -> Tensor:
        return self.view(other.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(other.shape)

    def narrow(self, dim: int, start: int, length: int) -> Tensor:
        """Elements ``start`` to ``start + length`` along ``dim`` (a copy here; PyTorch's is a
        view, so in-place changes of it are refused)."""
        if self.ndim == 0:
            raise ShapeError("narrow: cannot be applied to a 0-dim tensor")
        d = C.dim(dim, self.shape, "narrow")
        n = self.shape[d]
        if not -n <= start <= n:
            raise IndexError(f"narrow: start out of range (expected to be in range of "
                             f"[{-n}, {n}], but got {start}) for a tensor of shape {self.shape}")
        start = start + n if start < 0 else start
        if length < 0 or start + length > n:
            raise ArgumentError(f"narrow: start ({start}) + length ({length}) exceeds dimension "
                                f"size ({n}) of a tensor of shape {self.shape}")
        return self[(slice(None),) * d + (slice(start, start + length),)]

    def contiguous(self) -> Tensor:
        """``self`` (tilegrad's storage is always contiguous), or a copy where PyTorch would
        have had a non-contiguous view (``t()``, ``permute``...), so that it can be changed in
        place as PyTorch's ``contiguous()`` copy can."""
        return self if self._copy_of is None else self.clone()

    def is_contiguous(self) -> bool:
        return True

    # ------------------------------------------------------------ new tensors like this one
    def _like(self, dtype, device):
        return {"dtype": self.dtype if dtype is None else dtype,
                "device": self.device if device is None else device}

    def new_zeros(self, *size: int | Sequence[int], dtype: npt.DTypeLike | None = None,
                  device: Any = None, requires_grad: bool = False) -> Tensor:
        """Zeros of ``size``, of this tensor's dtype and device unless told."""
        from .creation import zeros
        return zeros(*size, requires_grad=requires_grad, **self._like(dtype, device))

    def new_ones(self, *size: int | Sequence[int], dtype: npt.DTypeLike | None = None,
                 device: Any = None, requires_grad: bool = False) -> Tensor:
        from .creation import ones
        return ones(*size, requires_grad=requires_grad, **self._like(dtype, device))

    def new_empty(self, *size: int | Sequence[int], dtype: npt.DTypeLike | None = None,
                  device: Any = None, requires_grad: bool = False) -> Tensor:
        from .creation import empty
        return empty(*size, requires_grad=requires_grad, **self._like(dtype, device))

    def new_full(self, size: Sequence[int], fill_value: builtins.float,
                 dtype: npt.DTypeLike | None = None, device: Any = None,
                 requires_grad: bool = False) -> Tensor:
        from .creation import full
        return full(size, fill_value, requires_grad=requires_grad, **self._like(dtype, device))

    def new_tensor(self, data: Any, dtype: npt.DTypeLike | None = None, device: Any = None,
                   requires_grad: bool = False) -> Tensor:
        """A copy of ``data`` with this tensor's dtype and device unless told."""
        from .creation import tensor
        return tensor(data, requires_grad=requires_grad, **self._like(dtype, device))

    def new(self, *args: Any) -> Tensor:
        """PyTorch's legacy constructor: ``t.new(2, 3)`` is ``t.new_empty(2, 3)``, ``t.new(data)``
        ``t.new_tensor(data)``, ``t.new()`` an empty 1-D tensor; this dtype and device."""
        if not args:
            return self.new_empty(0)
        if builtins.all(C.is_int(a) for a in args):   # the module has its own all()
            return self.new_empty(args)
        if len(args) == 1:
            return self.new_tensor(args[0])
        raise TypeError(f"new: expects sizes (ints) or one sequence of data, got {args}")

    def multinomial(self, num_samples: int, replacement: bool = False, *,
                    generator: Any = None) -> Tensor:
        """Category indices drawn in proportion to this tensor's rows of weights (int64); see
        ``tilegrad.multinomial``."""
        from .sampling import multinomial
        return multinomial(self, num_samples, replacement, generator=generator)

    # ------------------------------------------------------------ dtypes and devices
    def type(self, dtype: Any = None, non_blocking: bool = False) -> Any:
        """Without ``dtype``, PyTorch's type name ("torch.FloatTensor", "torch.cuda.LongTensor"),
        so that code comparing it runs unchanged; with a dtype or such a name, ``to`` it
        (``self`` if nothing changes)."""
        if dtype is None:
            name = _TYPE_NAMES.get(np.dtype(self.dtype))
            if name is None:
                raise DtypeError(f"type: no PyTorch type name for {self.dtype}")
            return ("torch.cuda." if self.device.name == "cuda" else "torch.") + name
        if isinstance(dtype, str):
            names = {v: k for k, v in _TYPE_NAMES.items()}
            device = "cuda" if dtype.startswith("torch.cuda.") else "cpu"
            base = dtype.rsplit(".", 1)[-1]
            if not dtype.startswith("torch.") or base not in names:
                raise ValueError(f"type: invalid type {dtype!r} (expected a name such as "
                                 f"'torch.FloatTensor')")
            return self.to(device, names[base])
        return self.to(dtype=dtype)

    def cuda(self, device: Any = None) -> Tensor:
        """A copy on "cuda" (``self`` if it is there already)."""
        return self.to("cuda" if device is None or C.is_int(device) else device)

    @property
    def is_cuda(self) -> bool:
        return self.device.name == "cuda"

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(dtype=other.dtype)

    def int(self) -> Tensor:
        return self.to(dtype=dtypes.int32)

    def bool(self) -> Tensor:
        return self.to(dtype=dtypes.bool_)


# PyTorch's legacy type names, as ``Tensor.type()`` gives them.
_TYPE_NAMES = {np.dtype(np.float32): "FloatTensor", np.dtype(np.float64): "DoubleTensor",
               np.dtype(np.float16): "HalfTensor", np.dtype(np.int64): "LongTensor",
               np.dtype(np.int32): "IntTensor", np.dtype(np.int16): "ShortTensor",
               np.dtype(np.int8): "CharTensor", np.dtype(np.uint8): "ByteTensor",
               np.dtype(np.bool_): "BoolTensor"}


# ---------------------------------------------------------------- functions of the namespace
def where(condition: Tensor, input: _Other, other: _Other) -> Tensor:
    """``input`` where the bool ``condition`` is True, ``other`` elsewhere, broadcast together
    (``torch.where``). Either may be a Python number; the result has their promoted dtype and is
    differentiable in both."""
    T = _tensor_class()
    if not isinstance(condition, T) or condition.dtype != dtypes.bool_:
        what = condition.dtype if hasattr(condition, "dtype") else type(condition).__name__
        raise DtypeError(f"where: expected condition to be a boolean tensor, got {what}")
    for x in (input, other):
        if isinstance(x, T):
            C.same_device("where", condition, x)
        elif not isinstance(x, _Scalar):
            raise TypeError(f"where: input and other are tensors or numbers, got "
                            f"{type(x).__name__}")
    dtype = _where_dtype(input, other, T)
    a, b = (x.to(dtype=dtype) if isinstance(x, T) else
            T(condition._be.full((), C.scalar(x, dtype), dtype), condition.device)
            for x in (input, other))
    C.broadcast("where", condition.shape, a.shape, b.shape)
    return E.Where.apply(condition, a, b)


def _where_dtype(a, b, T):
    if isinstance(a, T) and isinstance(b, T):
        return C.result_type(a, b)
    if isinstance(a, T) or isinstance(b, T):
        t, s = (a, b) if isinstance(a, T) else (b, a)
        return C.result_type_scalar(t.dtype, s)
    cat = builtins.max(C.scalar_category(a), C.scalar_category(b))   # two numbers
    return dtypes.bool_ if cat == C.scalar_category(True) else \
        dtypes.int64 if cat == C.scalar_category(1) else dtypes.get_default_dtype()


def _triangle(x, diagonal, op, upper):
    if not isinstance(x, _tensor_class()):
        raise TypeError(f"{op}: expects a tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ShapeError(f"{op}: input tensor must have at least 2 dimensions, got shape "
                         f"{x.shape}")
    rows, cols = np.indices(x.shape[-2:])
    keep = cols - rows >= diagonal if upper else cols - rows <= diagonal
    mask = x._make(x._be.from_numpy(keep), x.device, False)
    zero = x._make(x._be.full((), 0, x.dtype), x.device, False)
    return E.Where.apply(mask, x, zero)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """The upper triangle of the last two dimensions (on and above ``diagonal``), zeros below."""
    return _triangle(input, diagonal, "triu", True)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """The lower triangle of the last two dimensions (on and below ``diagonal``), zeros above."""
    return _triangle(input, diagonal, "tril", False)


def _method(name):
    """``tilegrad.<name>(input, ...)``: ``input.<name>(...)``, as the torch namespace has it."""
    def function(input: Tensor, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(input, _tensor_class()):
            raise TypeError(f"{name}: expects a tensor, got {type(input).__name__}")
        return getattr(input, name)(*args, **kwargs)
    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"``tilegrad.{name}(input, ...)`` is ``input.{name}(...)``."
    return function


# The torch functions that are a tensor's method of the same name.
FUNCTIONS = ("abs", "clamp", "clip", "exp", "log", "tanh", "sigmoid", "sqrt", "relu", "neg",
             "add", "sub", "mul", "div", "pow", "sum", "mean", "std", "var", "max", "min", "amax",
             "amin", "argmax", "argmin", "maximum", "minimum", "eq", "ne", "gt", "ge", "lt", "le",
             "isclose", "allclose", "masked_fill", "flatten", "reshape", "squeeze", "unsqueeze",
             "transpose", "permute", "t", "narrow", "unbind", "all", "any", "sin", "cos")
# Made here rather than written out one by one: each is the same two lines.
globals().update({name: _method(name) for name in FUNCTIONS})
