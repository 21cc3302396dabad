"""In-place operations on tensors, with PyTorch's autograd rules.

Each in-place operation computes its result out of place (so type promotion, broadcasting and
errors are those of the ordinary operation), checks that the result fits the tensor it changes,
then writes it into that tensor's storage and bumps the storage's version counter. When a graph
is being recorded, the tensor takes the result's history (it becomes the output of the
operation, as ``y.add_(1)`` makes ``y``'s ``grad_fn`` an add in PyTorch).

What is refused, before anything is written (all RuntimeError, as in PyTorch):

- changing a leaf tensor that requires grad while gradients are recorded (write parameter updates
  inside ``tilegrad.no_grad()``);
- giving a history to a view (``reshape``/``view``) while gradients are recorded: the tensor it
  views would not see that history;
- changing a tensor that PyTorch would return as a view but tilegrad returns as a copy
  (``permute``, ``transpose``, ``t``, ``T``, ``expand``, ``unbind``, basic indexing), because the
  change would not reach the original; ``.clone()`` it first to say a copy is meant;
- a result whose shape or dtype cannot be stored in the tensor (``int_tensor.add_(0.5)``, or a
  ``(3,)`` tensor plus a ``(2, 3)`` one).

``x[key] = value`` (``__setitem__``) is one of these operations: the new tensor is computed out
of place by the ``index_put`` primitive (``ops.shape.IndexPut``), then written back. The random
fills ``uniform_`` and ``normal_`` draw on the host from tilegrad's generator, as ``rand`` and
``randn`` do.

Backward later refuses to use a tensor that a node saved and that was changed in place since (see
``tilegrad.autograd``).
"""
import warnings
from typing import Any

import numpy as np

from . import autograd, dtypes
from .errors import DtypeError, ShapeError


def _bound(value, op, name):
    if value is None or hasattr(value, "shape") or isinstance(value, (int, float, np.number)):
        return value
    raise TypeError(f"{op}: {name} must be a number or a tensor, got {type(value).__name__}")


class InplaceOps:
    """The in-place methods of ``Tensor`` (mixed into it)."""

    # ------------------------------------------------------------ the rules
    def _check_writable(self, op):
        if self._copy_of is not None:
            raise RuntimeError(
                f"{op}: this tensor of shape {self.shape} is a copy made by {self._copy_of}, which "
                f"returns a view in PyTorch; changing it in place would not change the tensor it "
                f"came from. Use an out-of-place operation, or .clone() it first.")
        if autograd.is_grad_enabled() and self.requires_grad and self.is_leaf:
            raise RuntimeError(
                f"{op}: a leaf Variable that requires grad is being used in an in-place operation "
                f"(a leaf tensor of shape {self.shape} that requires grad cannot be changed in "
                f"place while gradients are recorded; do it inside tilegrad.no_grad(), as an "
                f"optimizer step does).")

    def _write(self, out, op, first_node):
        """Store ``out`` (the result, computed out of place) into ``self``; ``first_node`` is the
        sequence number of the first graph node the computation made."""
        if out.shape != self.shape:
            raise ShapeError(f"{op}: the result has shape {out.shape}, the tensor changed in place "
                             f"{self.shape} (an in-place operation cannot broadcast that tensor)")
        if not np.can_cast(out.dtype, self.dtype, "same_kind"):
            raise DtypeError(f"{op}: the result is {out.dtype}, which cannot be stored in place in "
                             f"a {self.dtype} tensor")
        if out.dtype != self.dtype:
            out = out.to(dtype=self.dtype)
        if out._ctx is not None and self._base is not None:
            raise RuntimeError(
                f"{op}: this tensor of shape {self.shape} is a view of a tensor of shape "
                f"{self._base.shape}; an in-place operation that records a gradient on a view is "
                f"not supported. Use an out-of-place operation.")
        if out._ctx is not None:   # nodes just made that saved our array need its old value
            for fn in _nodes_since(out._ctx, first_node):
                fn._protect(self._data, self._be)
        if out._data is not self._data:
            self._be.copy_into(self._data, out._data)
        self._version_counter.bump(op)
        if out._ctx is not None:
            self._ctx, self._out_index = out._ctx, out._out_index
            self._requires_grad = True
        return self

    def _inplace(self, op, compute):
        self._check_writable(op)
        first = autograd.Function.created
        return self._write(compute(), op, first)

    # ------------------------------------------------------------ the operations
    def add_(self, other, alpha=1):
        """``self += alpha * other`` in place; returns ``self``. PyTorch's old overload
        ``add_(alpha, other)`` (a number first, then a tensor) works too, with its warning."""
        if isinstance(other, (int, float, np.number)) and hasattr(alpha, "shape"):
            warnings.warn("add_(Number alpha, Tensor other) is deprecated, as in PyTorch: use "
                          "add_(other, alpha=alpha)", UserWarning, stacklevel=2)
            other, alpha = alpha, other
        return self._inplace("add_", lambda: self + (other if alpha == 1 else other * alpha))

    def sub_(self, other, alpha=1):
        """``self -= alpha * other`` in place; returns ``self``."""
        return self._inplace("sub_", lambda: self - (other if alpha == 1 else other * alpha))

    def mul_(self, other):
        return self._inplace("mul_", lambda: self * other)

    def div_(self, other):
        return self._inplace("div_", lambda: self / other)

    def clamp(self, min=None, max=None):
        """Each element limited to ``[min, max]`` (numbers or tensors, either may be None; ``max``
        wins if ``min > max``). The gradient passes where ``min <= x <= max``, as in PyTorch; a
        tensor bound gets it where it is the result."""
        min, max = _bound(min, "clamp", "min"), _bound(max, "clamp", "max")
        if min is None and max is None:
            raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
        if self.dtype.kind == "u":   # a bound below 0 would wrap around in uint8: in int64
            out = self.long().clamp(min, max)
            return out.to(dtype=self.dtype) if out.dtype == dtypes.int64 else out
        from . import _checks as C
        from .ops.elementwise import Clamp
        dtype = self.dtype
        for b in (min, max):
            if hasattr(b, "shape"):
                C.same_device("clamp", self, b)
                dtype = C.promote_types(dtype, b.dtype)
            elif b is not None:
                dtype = C.result_type_scalar(dtype, b)
        C.broadcast("clamp", *(t.shape for t in (self, min, max) if hasattr(t, "shape")))
        lo, hi = (None if b is None else b.to(dtype=dtype) if hasattr(b, "shape")
                  else C.scalar(b, dtype) for b in (min, max))
        return Clamp.apply(self.to(dtype=dtype), lo, hi)

    def clip(self, min=None, max=None):
        """``clamp``'s other name (NumPy's and PyTorch's)."""
        return self.clamp(min, max)

    def clip_(self, min=None, max=None):
        return self.clamp_(min, max)

    def clamp_(self, min=None, max=None):
        return self._inplace("clamp_", lambda: self.clamp(min, max))

    def fill_(self, value):
        """Every element set to ``value`` (a number, or a tensor of one element)."""
        if hasattr(value, "shape"):
            if value.numel() != 1:
                raise RuntimeError(f"fill_: the value must have one element, got shape "
                                   f"{tuple(value.shape)}")
            value = value.item()
        if not isinstance(value, (bool, int, float, np.number)):
            raise TypeError(f"fill_: the value must be a number, got {type(value).__name__}")

        def compute():
            from .tensor import Tensor
            filled = Tensor(self._be.full(self.shape, value, self.dtype), self.device)
            return Overwrite.apply(self, filled) if self.requires_grad else filled
        return self._inplace("fill_", compute)

    def zero_(self):
        return self.fill_(0)

    def masked_fill_(self, mask, value):
        """``value`` written where the bool tensor ``mask`` (broadcast to this shape) is True."""
        return self._inplace("masked_fill_", lambda: self.masked_fill(mask, value))

    def copy_(self, src):
        """The values of ``src`` (broadcast to this shape, cast to this dtype, moved to this
        device) written into ``self``; the gradient flows to ``src``."""
        from .ops.shape import Expand
        if not hasattr(src, "shape") or not hasattr(src, "_edge"):
            raise TypeError(f"copy_: expects a tensor, got {type(src).__name__}")
        try:
            fits = np.broadcast_shapes(src.shape, self.shape) == self.shape
        except ValueError:
            fits = False
        if not fits:
            raise ShapeError(f"copy_: a tensor of shape {src.shape} cannot be broadcast to "
                             f"{self.shape}")

        def compute():
            moved = src.to(self.device, self.dtype) if self.dtype in dtypes.FLOATING else \
                src.detach().to(self.device, self.dtype)
            out = Expand.apply(moved, self.shape)   # always a new array and a node
            return Overwrite.apply(self, out) if self.requires_grad else out
        return self._inplace("copy_", compute)

    # ------------------------------------------------------------ x[key] = value
    def __setitem__(self, key: Any, value: Any) -> None:
        """``self[key] = value`` in place, as PyTorch's: the keys of ``__getitem__``; ``value`` a
        number or a tensor that broadcasts to ``self[key]`` (leading dimensions of length 1 are
        dropped first), cast to this dtype. A tensor value with an index tensor or list in the
        key must have this dtype already, as in PyTorch. Where an index repeats, the last write
        wins (PyTorch leaves it unspecified). Differentiable: the old values' gradient is zero at
        the written positions, ``value``'s is the gradient there, summed to its shape."""
        from .ops.shape import IndexPut
        key = key if isinstance(key, tuple) else (key,)
        target = _indexed_shape(self, key)
        value = _setitem_value(self, key, value, target)
        arrays = tuple(k._data if hasattr(k, "_edge") else k for k in key)
        self._inplace("setitem", lambda: IndexPut.apply(self, value, arrays))

    # ------------------------------------------------------------ random fills
    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator: Any = None,
                 **bounds: float) -> Any:
        """Every element drawn uniformly from ``[a, b)`` (``from``/``to`` are PyTorch's keyword
        names for them); from ``generator``, else tilegrad's global generator."""
        a, b = bounds.pop("from", a), bounds.pop("to", b)
        if bounds:
            raise TypeError(f"uniform_: unexpected keyword arguments {sorted(bounds)}")
        if a > b:
            raise RuntimeError(f"uniform_: expects to return a [from, to) range, but found "
                               f"from={a} > to={b}")
        return self._random_fill("uniform_", lambda g, s: a + (b - a) * g.random(s), generator)

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> Any:
        """Every element drawn from the normal distribution of ``mean`` and ``std``."""
        if std < 0:
            raise RuntimeError(f"normal_: expects std >= 0.0, but found std {std}")
        return self._random_fill("normal_", lambda g, s: g.normal(mean, std, s), generator)

    def _random_fill(self, op, sample, generator):
        from .sampling import numpy_generator
        if self.dtype not in dtypes.FLOATING:
            raise DtypeError(f"{op}: expects a floating-point tensor, got {self.dtype}")
        rng = numpy_generator(generator, op)

        def compute():
            from .tensor import Tensor
            drawn = np.asarray(sample(rng, self.shape), dtype=self.dtype)
            filled = Tensor(self._be.from_numpy(drawn), self.device)
            return Overwrite.apply(self, filled) if self.requires_grad else filled
        return self._inplace(op, compute)

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)


class Overwrite(autograd.Function):
    """``new`` in place of ``old``: the old history gets a zero gradient (as PyTorch's for
    ``fill_`` and ``copy_``), ``new`` the whole of it."""
    name = "overwrite"

    def forward(self, old, new):
        self.old_shape, self.old_dtype = tuple(old.shape), old.dtype
        return new

    def backward(self, grad):
        return self.backend.zeros(self.old_shape, self.old_dtype), grad


def _indexed_shape(x, key):
    """The shape of ``x[key]``, from a stand-in of ``x``'s shape and the index tensors' values
    (read on the host, so that a mask's count and an index's range are checked here, before
    anything is written)."""
    host = tuple(k.numpy() if hasattr(k, "_edge") else k for k in key)
    try:
        return np.empty(x.shape, dtype=np.bool_)[host].shape
    except (IndexError, ValueError) as e:   # ValueError: a slice step of 0
        raise type(e)(f"setitem: {e} (tensor of shape {x.shape})") from None


def _setitem_value(x, key, value, target):
    """``value`` as a tensor of ``x``'s dtype and device whose shape broadcasts to ``target``."""
    from .tensor import Tensor, _Scalar
    if isinstance(value, _Scalar):
        return Tensor(x._be.full((), value, x.dtype), x.device)
    if not isinstance(value, Tensor):
        raise TypeError(f"setitem: can't assign a {type(value).__name__} to a tensor (a number "
                        f"or a tensor is expected)")
    advanced = any(isinstance(k, (Tensor, list, np.ndarray)) for k in key)
    if advanced and value.dtype != x.dtype:
        raise DtypeError(f"setitem: Index put requires the source and destination dtypes match, "
                         f"got {x.dtype} for the destination and {value.dtype} for the source")
    while value.ndim > len(target) and value.shape[0] == 1:   # PyTorch drops leading 1s
        value = value.reshape(value.shape[1:])
    try:
        fits = np.broadcast_shapes(value.shape, target) == target
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"setitem: shape mismatch: value tensor of shape {value.shape} cannot "
                         f"be broadcast to indexing result of shape {target}")
    if x.dtype not in dtypes.FLOATING:   # an integer result carries no gradient
        value = value.detach()
    return value.to(x.device, x.dtype)


def _nodes_since(root, first):
    """The graph nodes reachable from ``root`` that were made at or after sequence ``first``."""
    found, stack, seen = [], [root], set()
    while stack:
        fn = stack.pop()
        if id(fn) in seen or fn.seq < first:
            continue
        seen.add(id(fn))
        found.append(fn)
        stack.extend(e[0] for e in fn.edges
                     if e is not None and isinstance(e[0], autograd.Function))
    return found
