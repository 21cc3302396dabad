"""Tensor: an array on a device, with the graph that made it for reverse-mode autograd."""
from __future__ import annotations

import builtins
import collections
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _checks as C
from . import autograd, dtypes, hooks, interop
from .backends import Device, get_device
from .errors import ArgumentError, DtypeError, ShapeError
from .grad_fn import GradFn, view_of
from .inplace import InplaceOps
from .ops import elementwise as E
from .ops import nn as N
from .ops import shape as S
from .tensor_ops import TensorOps

_Scalar = (int, float, bool, np.integer, np.floating, np.bool_)
MaxResult = collections.namedtuple("max", ["values", "indices"])
MinResult = collections.namedtuple("min", ["values", "indices"])

# For annotations, here and in the modules that make tensors (inside Tensor, ``float`` names a
# method, hence builtins.float there).
_Number = int | float | bool
_Dims = int | tuple[int, ...] | None         # a reduction's dims: None or () for all of them
_DeviceLike = str | Device | None            # "cpu", "cuda", "cuda:0", a Device; None: default
_Size = int | Sequence[int]                  # f(2, 3) and f((2, 3))


def _shape_args(shape, op):
    """``f(2, 3)`` and ``f((2, 3))`` both mean the shape (2, 3)."""
    if not shape:   # f() is no shape (f(()) is the 0-d one), as in PyTorch
        raise TypeError(f"{op}: missing the shape argument")
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(C.is_int(n) for n in shape):
        raise TypeError(f"{op}: a shape is made of integers, got {shape}")
    return tuple(int(n) for n in shape)



def check_can_require_grad(dtype: np.dtype) -> None:
    """Refuse gradients for a tensor of ``dtype`` unless it is floating-point."""
    if dtype not in dtypes.FLOATING:   # DtypeError: PyTorch raises RuntimeError
        raise DtypeError(f"requires_grad: only floating-point tensors can require gradients, "
                         f"this one is {dtype}")

class Tensor(InplaceOps, TensorOps):
    """An n-dimensional array on a device that can record how it was computed.

    Make one with ``tilegrad.tensor``, ``zeros``, ``randn`` and the like. Arithmetic follows
    NumPy broadcasting; when ``requires_grad`` is set, ``backward()`` fills ``.grad`` of every
    leaf it depends on.
    """

    __array_priority__ = 1000   # so that ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data: Any, device: Device, requires_grad: bool = False) -> None:
        self._data = data
        self.device = device
        self.grad = None
        self._ctx = None
        self._out_index = 0
        self._version_counter = autograd.Version()   # shared by tensors over the same storage
        self._base = None      # the tensor this one is a view of (reshape), if any
        self._copy_of = None   # the op, if PyTorch would have returned a view and we a copy
        self._requires_grad = False
        self.requires_grad = requires_grad

    @staticmethod
    def _make(data, device, requires_grad):
        return Tensor(data, device, requires_grad)

    @property
    def _version(self):
        """How many times this tensor's storage was changed in place (as PyTorch's)."""
        return self._version_counter.value

    def _edge(self):
        """Where a gradient for this tensor goes: the node that made it and which of its outputs
        this is, the tensor itself for a leaf, or None when it needs no gradient."""
        if not self.requires_grad:
            return None
        return (self, 0) if self._ctx is None else (self._ctx, self._out_index)

    # ------------------------------------------------------------ attributes
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value:
            check_can_require_grad(self.dtype)
        if not value and self._ctx is not None:
            raise ValueError("requires_grad: cannot turn off gradients of a non-leaf tensor; "
                             "use .detach()")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return len(self._data.shape)

    def dim(self) -> int:
        return self.ndim

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        return self.shape if dim is None else self.shape[C.dim(dim, self.shape, "size", False)]

    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def data(self) -> Tensor:
        """The same values outside the graph, sharing the storage (as PyTorch's ``.data``): an
        in-place change through it, such as ``p.data.add_(g, alpha=-lr)``, changes ``self``
        without being recorded. Prefer ``detach()`` and ``no_grad()`` in new code."""
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        # PyTorch's ``t.data = other``: ``t`` now holds ``other``'s storage (shape, dtype and
        # device may change), its graph and gradient left as they were.
        if not isinstance(value, Tensor):
            raise TypeError(f"Tensor.data: expects a Tensor, got {type(value).__name__}")
        self._data, self.device = value._data, value.device
        self._version_counter = value._version_counter

    @property
    def _be(self):
        return self.device.backend

    # ------------------------------------------------------------ conversion
    def numpy(self) -> np.ndarray:
        """A NumPy copy of the values (on any device)."""
        self._host_read("Tensor.numpy")
        return self._be.to_numpy(self._data)

    def tolist(self) -> list[Any] | _Number:
        self._host_read("Tensor.tolist")
        return self.numpy().tolist()

    def item(self) -> _Number:
        if self.numel() != 1:
            raise ShapeError(f"item: only a tensor with one element can be converted to a "
                             f"Python number, this one has shape {self.shape}")
        self._host_read("Tensor.item")
        return self.numpy().reshape(()).item()

    def _host_read(self, what):
        """A device that can capture CUDA graphs refuses host reads while it captures one."""
        forbid = getattr(self._be, "forbid_in_capture", None)
        if forbid is not None:
            forbid(f"{what}: reading a {self.device} tensor on the host")

    def detach(self) -> Tensor:
        """The same values, cut from the graph. It shares the storage (and so the version
        counter): changing it in place changes ``self``."""
        out = Tensor(self._data, self.device, False)
        out._version_counter, out._base = self._version_counter, self._base
        return out

    def clone(self) -> Tensor:
        # A cast to its own dtype: an exact copy (``self + 0`` would turn -0.0 into 0.0) that
        # passes the gradient through.
        return S.Cast.apply(self, self.dtype)

    def to(self, device: _DeviceLike | npt.DTypeLike = None,
           dtype: npt.DTypeLike | None = None) -> Tensor:
        """A copy on ``device`` and/or with ``dtype``; ``self`` where nothing changes.

        ``t.to("cuda")``, ``t.to(tilegrad.float64)``. Moving between devices is differentiable.
        """
        if device is not None and not isinstance(device, str) and not hasattr(device, "backend"):
            device, dtype = None, device
        out = self
        if dtype is not None:
            dtype = dtypes.as_dtype(dtype, "to")
            if dtype != self.dtype and dtype in dtypes.FLOATING:
                out = S.Cast.apply(out, dtype)
            elif dtype != self.dtype:   # an integer result has no gradient: outside the graph
                out = Tensor(self._be.astype(self._data, dtype), self.device)
        if device is not None:
            dev = get_device(device)
            if dev != self.device:
                dev.backend   # raises if the device is unavailable
                out = S.ToDevice.apply(out, dev)
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def float(self) -> Tensor:
        return self.to(dtype=dtypes.float32)

    def double(self) -> Tensor:
        return self.to(dtype=dtypes.float64)

    def long(self) -> Tensor:
        return self.to(dtype=dtypes.int64)

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = ""
        if self.dtype not in (dtypes.get_default_dtype(), dtypes.int64, dtypes.bool_):
            extra += f", dtype={self.dtype}"
        if self.device.name != "cpu":
            extra += f", device='{self.device}'"
        if self._ctx is not None:
            extra += f", grad_fn=<{self.grad_fn.name()}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ------------------------------------------------------------ interop: NumPy, DLPack, pickle
    # What shares memory and what copies: tilegrad/interop.py and docs/interop.md.
    def __array__(self, dtype: npt.DTypeLike | None = None,
                  copy: bool | None = None) -> np.ndarray:
        """``np.asarray(t)``: a "cpu" tensor's own storage (no copy), a host copy otherwise."""
        return interop.to_array(self, dtype, copy)

    def __dlpack__(self, *, stream: Any = None, max_version: tuple[int, int] | None = None,
                   dl_device: tuple[int, int] | None = None, copy: bool | None = None) -> Any:
        """A DLPack capsule of the storage (``torch.from_dlpack(t)``, ``np.from_dlpack(t)``)."""
        return interop.dlpack(self, stream, max_version, dl_device, copy)

    def __dlpack_device__(self) -> tuple[int, int]:
        return interop.dlpack_device(self)

    @property
    def __cuda_array_interface__(self) -> dict:
        """CuPy's interface for a "cuda" tensor on a GPU (AttributeError elsewhere)."""
        return interop.cuda_array_interface(self)

    def __reduce_ex__(self, protocol: int) -> tuple:
        """pickle: the values (a NumPy copy), the device by name, ``requires_grad``."""
        return interop.reduce_tensor(self)

    def __deepcopy__(self, memo: dict) -> Tensor:
        """copy.deepcopy: new storage on the same device, ``.grad`` copied too (leaves only)."""
        return interop.deepcopy_tensor(self, memo)

    # ------------------------------------------------------------ autograd
    def backward(self, gradient: Tensor | npt.ArrayLike | None = None,
                 retain_graph: bool | None = None, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires a gradient.

        Args:
            gradient: same shape as ``self``; required unless ``self`` has one element.
            retain_graph (bool): keep what the graph saved, so that backward can run through it
                again. By default it is freed, and a second backward raises RuntimeError.
            create_graph: only False (higher-order gradients are not supported).
        """
        if create_graph:
            raise NotImplementedError("backward: create_graph=True (gradients of gradients) is "
                                      "not supported")
        if not self.requires_grad:
            raise ValueError("backward: this tensor does not require grad and has no grad_fn")
        if gradient is None:
            if self.numel() != 1:
                raise ValueError(f"backward: grad can be implicitly created only for tensors "
                                 f"with one element; this one has shape {self.shape}, so pass "
                                 f"gradient=")
            g = self._be.full(self.shape, 1, self.dtype)
        else:
            if not isinstance(gradient, Tensor):
                gradient = _creation().tensor(gradient, dtype=self.dtype, device=self.device)
            if gradient.shape != self.shape:
                raise ValueError(f"backward: gradient has shape {gradient.shape}, "
                                 f"the tensor {self.shape}")
            if gradient.dtype != self.dtype:
                raise TypeError(f"backward: gradient has dtype {gradient.dtype}, "
                                f"the tensor {self.dtype}")
            if gradient.device != self.device:
                raise ValueError(f"backward: gradient is on {gradient.device}, "
                                 f"the tensor on {self.device}")
            g = gradient._data
        autograd.backward(self, g, retain_graph=bool(retain_graph))

    # hooks, retain_grad and grad_fn (the engine in autograd.py runs the hooks). Set only once
    # used: a tensor without hooks costs the backward pass nothing.
    _grad_hooks = None             # a leaf's hooks.GradHooks (a non-leaf's are on its node)
    _post_accumulate_hooks = None  # a leaf's {handle id: hook}
    _grad_accumulator = None       # the AccumulateGrad node next_functions shows for a leaf

    def _hooks_here(self, what):
        """The GradHooks of this tensor's gradient: the leaf's own, or its node's output's."""
        if not self.requires_grad:
            raise RuntimeError(f"{what}: cannot register a hook on a tensor that doesn't require "
                               f"gradient")
        if self._ctx is None:
            if self._grad_hooks is None:
                self._grad_hooks = hooks.GradHooks(self.device)
            return self._grad_hooks
        fn = self._ctx
        if fn._grad_hooks is None:
            fn._grad_hooks = {}
        if self._out_index not in fn._grad_hooks:
            fn._grad_hooks[self._out_index] = hooks.GradHooks(self.device)
        return fn._grad_hooks[self._out_index]

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> hooks.RemovableHandle:
        """Call ``hook(grad)`` with this tensor's gradient during every backward (once, with
        the whole gradient); a returned tensor replaces the gradient. On a leaf it runs before
        the gradient is accumulated into ``.grad``. Returns a handle with ``remove()``."""
        return self._hooks_here("register_hook").add(hook)

    def register_post_accumulate_grad_hook(
            self, hook: Callable[[Tensor], None]) -> hooks.RemovableHandle:
        """Call ``hook(self)`` on a leaf once per backward, after its ``.grad`` has received
        the last contribution of that backward (to start an update early, say)."""
        if self._ctx is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: post accumulate grad hooks "
                               "cannot be registered on non-leaf tensors")
        if not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: cannot register a hook on a "
                               "tensor that doesn't require gradient")
        if not callable(hook):
            raise TypeError(f"register_post_accumulate_grad_hook: expects a callable, got "
                            f"{type(hook).__name__}")
        if self._post_accumulate_hooks is None:
            self._post_accumulate_hooks = collections.OrderedDict()
        handle = hooks.RemovableHandle(self._post_accumulate_hooks)
        self._post_accumulate_hooks[handle.id] = hook
        return handle

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` after backward (accumulated, as a
        leaf's). A leaf keeps its gradient anyway."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: can't retain_grad on Tensor that has "
                               "requires_grad=False")
        if self._ctx is not None:
            self._hooks_here("retain_grad").retain = weakref.ref(self)

    @property
    def retains_grad(self) -> bool:
        """True for a non-leaf tensor that called ``retain_grad()``."""
        spots = self._ctx._grad_hooks if self._ctx is not None else None
        spot = spots.get(self._out_index) if spots else None
        return spot is not None and spot.retain is not None and spot.retain() is self

    @property
    def grad_fn(self) -> GradFn | None:
        """The node that made this tensor (None for a leaf): ``name()`` gives torch's name
        ("MulBackward0"), ``next_functions`` the (node, index) pairs its gradient goes to."""
        return None if self._ctx is None else view_of(self._ctx)

    def _zero_grad(self, set_to_none=True):
        if set_to_none or self.grad is None:
            self.grad = None
        else:
            self.grad = Tensor(self._be.full(self.shape, 0, self.dtype), self.device)

    def _accumulate(self, g, owned=False):
        """Add the array ``g`` into ``.grad``; the first one is copied unless ``owned`` (a new
        array nothing else refers to, which can become the gradient itself)."""
        if self.grad is None:
            self.grad = Tensor(g if owned else self._be.copy(g), self.device)
        else:
            self.grad = Tensor(self._be.binary("add", self.grad._data, g), self.device)

    # ------------------------------------------------------------ arithmetic
    def _floating(self):
        """``self`` as a floating-point tensor: integer and bool ones become the default dtype,
        as torch promotes them for division, float scalars and transcendental functions."""
        return self if self.dtype in dtypes.FLOATING else self.to(dtype=dtypes.get_default_dtype())

    def _binary(self, fn, other, reverse=False):
        """``self op other`` (``other op self`` with ``reverse``), with PyTorch's promotion for
        a Python scalar: it takes the tensor's dtype unless it is of a higher category (a float
        with an integer tensor gives the default float dtype, an int with a bool tensor int64);
        division is always floating-point. Two tensors must have one dtype: tilegrad does not
        promote between tensors (``.to()`` one of them)."""
        op = fn.op_name()
        if isinstance(other, _Scalar):
            C.no_bool_sub(op, self, other)
            x = self.to(dtype=C.result_type_scalar(self.dtype, other))
            x = x._floating() if fn is E.Div else x
            s = C.scalar(other, x.dtype)
            return fn.apply(_full(s, x), x) if reverse else fn.apply(x, s)
        a, b = (_as_tensor(other, self), self) if reverse else (self, _as_tensor(other, self))
        C.binary_operands(op, a, b)
        C.no_bool_sub(op, a, b)
        if fn is E.Div:
            a, b = a._floating(), b._floating()
        return fn.apply(a, b)

    def __add__(self, o: Tensor | npt.ArrayLike) -> Tensor:
        return self._binary(E.Add, o)

    def __radd__(self, o: Tensor | npt.ArrayLike) -> Tensor:
        return self._binary(E.Add, o)

    def __sub__(self, o: Tensor | npt.ArrayLike) -> Tensor:
        return self._binary(E.Sub, o)

    def __rsub__(self, o: Tensor | npt.ArrayLike) -> Tensor:
        return self._binary(E.Sub, o, reverse=True)

    def __mul__(self, o: Tensor | npt.ArrayLike) -> Tensor:
        return self._binary(E.Mul, o)

    def __rmul__(self, o: Tensor | npt.ArrayLike) -> Tensor:
        return self._binary(E.Mul, o)

    def __truediv__(self, o: Tensor | npt.ArrayLike) -> Tensor:
        return self._binary(E.Div, o)

    def __rtruediv__(self, o: Tensor | npt.ArrayLike) -> Tensor:
        return self._binary(E.Div, o, reverse=True)

    def __neg__(self) -> Tensor:
        C.not_bool("neg", self, "a bool tensor (use ~ or logical_not for a mask)")
        return E.Neg.apply(self)

    def __pow__(self, p: _Number | np.number | np.bool_) -> Tensor:
        if not isinstance(p, _Scalar):
            raise TypeError(f"pow: the exponent must be a Python number, got {type(p).__name__}")
        x = self.to(dtype=C.result_type_scalar(self.dtype, p))
        if x.dtype == dtypes.bool_:   # bool ** bool stays bool in PyTorch: x ** True is x
            return x.clone() if p else Tensor(self._be.full(self.shape, True, x.dtype), self.device)
        if p < 0 and x.dtype not in dtypes.FLOATING:
            raise ArgumentError(f"pow: integers to negative integer powers are not allowed "
                                f"({self.dtype} tensor of shape {self.shape} ** {p})")
        return E.PowScalar.apply(x, C.scalar(p, x.dtype))

    def __rpow__(self, s: _Number | np.number | np.bool_) -> Tensor:
        """``s ** self`` for a Python number ``s``, differentiable in the exponent."""
        if not isinstance(s, _Scalar):
            return NotImplemented
        x = self.to(dtype=C.result_type_scalar(self.dtype, s))
        C.not_bool("pow", x, "a bool base and a bool exponent")
        return E.RPowScalar.apply(x, C.scalar(s, x.dtype))

    def __matmul__(self, other: Tensor) -> Tensor:
        return matmul(self, other)

    def __rmatmul__(self, other: npt.ArrayLike) -> Tensor:
        return matmul(_as_tensor(other, self), self)

    def maximum(self, other: Tensor | _Number | np.number) -> Tensor:
        """Elementwise maximum (NaN wins). Unlike ``torch.maximum`` it also takes a Python
        number (``clamp`` uses that)."""
        return self._binary(E.Maximum, other)

    def _compare(self, op, other):
        """Elementwise comparison: a bool tensor, outside the graph. The operands are compared
        in the dtype they promote to, as in PyTorch (``int_tensor < 0.5`` compares as floats)."""
        if isinstance(other, Tensor):
            C.same_device(op, self, other)
            C.broadcast(op, self.shape, other.shape)
            dtype = C.result_type(self, other)
            b = other._data if other.dtype == dtype else self._be.astype(other._data, dtype)
        elif isinstance(other, _Scalar):
            dtype = C.result_type_scalar(self.dtype, other)
            b = C.scalar(other, dtype)
        else:
            return NotImplemented
        a = self._data if self.dtype == dtype else self._be.astype(self._data, dtype)
        return Tensor(self._be.binary(op, a, b), self.device)

    def __eq__(self, other: object) -> Tensor:  # type: ignore[override]
        return self._compare("eq", other)

    def __ne__(self, other: object) -> Tensor:  # type: ignore[override]
        return self._compare("ne", other)

    def __gt__(self, other: Tensor | _Number | np.number) -> Tensor:
        return self._compare("gt", other)

    def __ge__(self, other: Tensor | _Number | np.number) -> Tensor:
        return self._compare("ge", other)

    def __lt__(self, other: Tensor | _Number | np.number) -> Tensor:
        return self._compare("lt", other)

    def __le__(self, other: Tensor | _Number | np.number) -> Tensor:
        return self._compare("le", other)

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise ShapeError(f"bool: the truth value of a tensor of shape {self.shape} is "
                             f"ambiguous; use .any() or .all() on its numpy()")
        return bool(self.item())

    def __float__(self) -> builtins.float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        """An integer tensor of one element as a list index or slice bound (``words[t]``)."""
        if self.dtype.kind not in "iub" or self.numel() != 1:
            raise TypeError(f"only integer tensors of a single element can be converted to an "
                            f"index, this one is {self.dtype} of shape {self.shape}")
        return int(self.item())

    def exp(self) -> Tensor:
        return E.Exp.apply(self._floating())

    def log(self) -> Tensor:
        return E.Log.apply(self._floating())

    def tanh(self) -> Tensor:
        return E.Tanh.apply(self._floating())

    def sigmoid(self) -> Tensor:
        return E.Sigmoid.apply(self._floating())

    def relu(self) -> Tensor:
        C.not_bool("relu", self)
        return E.ReLU.apply(self)

    def sqrt(self) -> Tensor:
        return E.Sqrt.apply(self._floating())

    # ------------------------------------------------------------ reductions
    # ``dim`` (or NumPy's ``axis``): None or () for all dimensions, an int, or a tuple of them.
    def sum(self, dim: _Dims = None, keepdim: bool = False, *, axis: _Dims = None,
            keepdims: bool | None = None) -> Tensor:
        """Integer and bool tensors sum in int64, as in PyTorch."""
        axes = C.dims(axis if dim is None else dim, self.shape, "sum")
        x = self if self.dtype in dtypes.FLOATING else self.to(dtype=dtypes.int64)
        return E.Sum.apply(x, axes, C.keepdim(keepdim, keepdims))

    def mean(self, dim: _Dims = None, keepdim: bool = False, *, axis: _Dims = None,
             keepdims: bool | None = None) -> Tensor:
        if self.dtype not in dtypes.FLOATING:
            raise DtypeError(f"mean: expects a floating-point tensor, got {self.dtype} of shape "
                             f"{self.shape}; convert it with .float()")
        axes = C.dims(axis if dim is None else dim, self.shape, "mean")
        count = int(np.prod([self.shape[a] for a in axes], dtype=np.int64))
        return self.sum(axes, C.keepdim(keepdim, keepdims)) / count

    def amax(self, dim: _Dims = None, keepdim: bool = False, *, axis: _Dims = None,
             keepdims: bool | None = None) -> Tensor:
        """The maximum over ``dim``; the gradient is shared equally among tied maxima."""
        return self._amax(axis if dim is None else dim, C.keepdim(keepdim, keepdims), "amax")

    def _amax(self, dim, keepdim, op, nans_share=False):
        axes = C.dims(dim, self.shape, op, nonempty=True)
        return E.Amax.apply(self, axes, keepdim, nans_share)

    def max(self, dim: _Dims | Tensor = None, keepdim: bool = False, *, axis: _Dims = None,
            keepdims: bool | None = None) -> Tensor | MaxResult:
        """``t.max()``: the largest element (the gradient shared among ties, as ``amax``).
        ``t.max(dim)``: ``(values, indices)`` along ``dim``, as in PyTorch: the gradient goes to
        the element ``indices`` names. A tuple of dims gives the values only, as ``amax`` (an
        extension: PyTorch refuses a tuple here)."""
        if isinstance(dim, Tensor):   # torch.max(a, b): the elementwise maximum
            return self.maximum(dim)
        dim, keepdim = axis if dim is None else dim, C.keepdim(keepdim, keepdims)
        if not C.is_int(dim):
            return self._amax(dim, keepdim, "max", nans_share=dim is None)
        d = C.dim(dim, self.shape, "max")
        C.nonempty_reduction(self.shape, (d,) if self.ndim else (), True, "max")
        indices = self._argmax(d, True)
        # The values are gathered at the indices (x[i, j, indices[i, 0, k], k] for d = 2): the
        # gradient of that indexing goes to the chosen element only, not to every tie.
        key = tuple(indices if k == d else _arange_index(self, k) for k in range(self.ndim))
        values = self[key]
        if not keepdim and self.ndim:
            kept = self.shape[:d] + self.shape[d + 1:]
            values, indices = values.reshape(kept), indices.reshape(kept)
        return MaxResult(values, indices)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        C.not_bool("argmax", self)
        if dim is None:
            C.nonempty_reduction(self.shape, (), False, "argmax", unnamed=IndexError)
            return self._argmax(None, bool(keepdim))
        axis = C.dim(dim, self.shape, "argmax")
        C.nonempty_reduction(self.shape, (axis,) if self.ndim else (), True, "argmax")
        return self._argmax(axis, bool(keepdim))

    def _argmax(self, axis, keepdim):
        """The backend's argmax along ``axis``, or of the flattened tensor (None; also for a 0-d
        tensor, which has no axis to name), as an int64 tensor outside the graph."""
        if axis is None or self.ndim == 0:
            out = self._be.argmax(self._be.reshape(self._data, (-1,)), 0, False)
            return Tensor(self._be.reshape(out, (1,) * self.ndim) if keepdim else out, self.device)
        return Tensor(self._be.argmax(self._data, axis, keepdim), self.device)

    # ------------------------------------------------------------ shape
    def reshape(self, *shape: _Size) -> Tensor:
        shape = _shape_args(shape, "reshape")
        known = int(np.prod([n for n in shape if n != -1], dtype=np.int64))
        if shape.count(-1) > 1 or any(n < -1 for n in shape) or \
                (-1 not in shape and known != self.numel()) or \
                (-1 in shape and (known == 0 or self.numel() % known)):
            raise ShapeError(f"reshape: shape {shape} is invalid for a tensor of shape "
                             f"{self.shape} ({self.numel()} elements)")
        if -1 in shape:
            shape = tuple(self.numel() // known if n == -1 else n for n in shape)
        return self if shape == self.shape else S.Reshape.apply(self, shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        s, e = C.dim(start_dim, self.shape, "flatten"), C.dim(end_dim, self.shape, "flatten")
        if s > e:
            raise ArgumentError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                                f"(tensor of shape {self.shape})")
        if self.ndim == 0:
            return self.reshape(1)
        n = int(np.prod(self.shape[s:e + 1], dtype=np.int64))
        return self.reshape(self.shape[:s] + (n,) + self.shape[e + 1:])

    def unsqueeze(self, dim: int) -> Tensor:
        d = C.new_dim(dim, self.shape, "unsqueeze")
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def squeeze(self, dim: int | Sequence[int] | None = None) -> Tensor:
        """Without ``dim``, every dimension of length 1 removed; else those of ``dim`` (an int or
        a tuple) that have length 1."""
        if dim is None:
            axes = range(self.ndim)
        else:
            axes = []
            for d in dim if isinstance(dim, (tuple, list)) else (dim,):   # in order, as PyTorch
                axes.append(C.dim(d, self.shape, "squeeze"))
                if axes[-1] in axes[:-1]:
                    raise ArgumentError(f"squeeze: a dimension appears more than once in {dim} "
                                        f"(tensor of shape {self.shape})")
        shape = tuple(n for k, n in enumerate(self.shape) if n != 1 or k not in axes)
        return self if shape == self.shape else self.reshape(shape)

    def unbind(self, dim: int = 0) -> tuple[Tensor, ...]:
        """The slices along ``dim``, as a tuple of tensors (one backward for all of them)."""
        axis = C.dim(dim, self.shape, "unbind", scalar_ok=False)
        out = S.Unbind.apply(self, axis)
        return out if isinstance(out, tuple) else (out,)

    def permute(self, *dims: _Size) -> Tensor:
        dims = _shape_args(dims, "permute")
        if len(dims) != self.ndim:
            raise ShapeError(f"permute: {dims} names {len(dims)} dimensions, a tensor of shape "
                             f"{self.shape} has {self.ndim}")
        axes = []
        for d in dims:   # in order, as PyTorch: a repeat is reported before a later bad dim
            axes.append(C.dim(d, self.shape, "permute"))
            if axes[-1] in axes[:-1]:
                raise ArgumentError(f"permute: {dims} repeats a dimension (tensor of shape "
                                    f"{self.shape})")
        axes = tuple(axes)
        return self if axes == tuple(range(self.ndim)) else S.Permute.apply(self, axes)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        a, b = C.dim(dim0, self.shape, "transpose"), C.dim(dim1, self.shape, "transpose")
        if self.ndim == 0:
            return self
        dims = list(range(self.ndim))
        dims[a], dims[b] = dims[b], dims[a]
        return self.permute(*dims)

    def t(self) -> Tensor:
        if self.ndim > 2:
            raise ShapeError(f"t: expects a tensor of at most 2 dimensions, got shape {self.shape}")
        return self.transpose(0, 1) if self.ndim == 2 else self

    @property
    def T(self) -> Tensor:
        return self.permute(tuple(reversed(range(self.ndim))))

    def expand(self, *shape: _Size) -> Tensor:
        """A view of ``self`` broadcast to ``shape``; -1 keeps a dimension's length (not allowed
        for the new leading dimensions)."""
        asked = _shape_args(shape, "expand")
        lead = len(asked) - self.ndim
        if lead < 0:
            raise ShapeError(f"expand: {asked} has fewer sizes than the {self.ndim} dimensions "
                             f"of a tensor of shape {self.shape}")
        shape = asked[:lead] + tuple(have if n == -1 else n
                                     for n, have in zip(asked[lead:], self.shape))
        have = (1,) * lead + self.shape
        if any(n < 0 or (n != h and h != 1) for n, h in zip(shape, have)):
            raise ShapeError(f"expand: cannot expand shape {self.shape} to {asked}")
        return self if shape == self.shape else S.Expand.apply(self, shape)

    def __getitem__(self, key: Any) -> Tensor:
        key = key if isinstance(key, tuple) else (key,)
        # Checked first on a stand-in of the same shape, with host stand-ins of index tensors (a
        # GPU array cannot index a NumPy one); the backend takes the key as it is.
        host = tuple(_index_stand_in(k) if isinstance(k, Tensor) else k for k in key)
        key = tuple(k._data if isinstance(k, Tensor) else k for k in key)
        try:
            np.empty(self.shape, dtype=np.bool_)[host]
        except (IndexError, ValueError) as e:   # ValueError: a slice step of 0
            raise type(e)(f"getitem: {e} (tensor of shape {self.shape})") from None
        return S.Index.apply(self, key)


def _index_stand_in(k):
    """The host stand-in of index tensor ``k`` for ``__getitem__``'s check: a cpu tensor's values;
    on another device zeros of its shape and dtype, so that nothing is read back (its backend
    checks the values: the cuda kernels range-check an int64 index at the next sync)."""
    return k.numpy() if k.device.name == "cpu" else np.zeros(k.shape, k.dtype)


def _as_tensor(x, like):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, _Scalar):
        return Tensor(like._be.full((), x, like.dtype), like.device)
    return _creation().tensor(x, device=like.device)


def _creation():
    from . import creation   # creation builds Tensors, so it imports this module
    return creation


def _full(s, like):
    """A 0-d tensor holding ``s``, of ``like``'s dtype and device."""
    return Tensor(like._be.full((), s, like.dtype), like.device)


def _arange_index(t, k):
    """The int64 index tensor ``0..n-1`` along dimension ``k`` of ``t`` (length 1 on the
    others), to index ``t`` one element per position."""
    shape = [1] * t.ndim
    shape[k] = t.shape[k]
    return Tensor(t._be.from_numpy(np.arange(t.shape[k], dtype=np.int64).reshape(shape)), t.device)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy's rules: 1-D operands are vectors, leading dimensions broadcast."""
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("matmul: expects two tensors, "
                        f"got {type(a).__name__} and {type(b).__name__}")
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError("matmul: both operands need at least 1 dimension, "
                         f"got shapes {a.shape} and {b.shape}")
    C.same_device("matmul", a, b)
    C.same_dtype("matmul", a, b)
    C.not_bool("matmul", a, "bool tensors")
    if a.dtype not in dtypes.FLOATING and a.device.name != "cpu":
        raise DtypeError(f"matmul: integer tensors ({a.dtype}) are multiplied on the cpu only, "
                         f"not on {a.device} (shapes {a.shape} and {b.shape})")
    k_a, k_b = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
    if k_a != k_b:
        raise ShapeError(
            f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied ({k_a} != {k_b})")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ShapeError(
            f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast") from None
    a2 = a.unsqueeze(0) if a.ndim == 1 else a
    b2 = b.unsqueeze(-1) if b.ndim == 1 else b
    out = N.MatMul.apply(a2, b2)
    if b.ndim == 1:
        out = out.squeeze(-1)
    if a.ndim == 1:
        out = out.squeeze(-2 if b.ndim > 1 else -1)
    return out


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate tensors of the same dtype and device along ``dim``."""
    tensors = C.tensor_list(tensors, "cat", Tensor)
    first = tensors[0]
    for k, t in enumerate(tensors):
        if t.ndim == 0:
            raise ShapeError(f"cat: a 0-d tensor (at position {k}) cannot be concatenated")
    axis = C.dim(dim, first.shape, "cat")
    for t in tensors[1:]:
        if t.ndim != first.ndim or any(
                a != b for k, (a, b) in enumerate(zip(t.shape, first.shape)) if k != axis):
            raise ShapeError(
                f"cat: shapes {first.shape} and {t.shape} differ outside dimension {dim}")
    return S.Cat.apply(*tensors, axis=axis)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Stack tensors of one shape along a new dimension ``dim``."""
    tensors = C.tensor_list(tensors, "stack", Tensor)
    d = C.new_dim(dim, tensors[0].shape, "stack")
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ShapeError(f"stack: all tensors need one shape, got {[t.shape for t in tensors]}")
    return cat([t.unsqueeze(d) for t in tensors], d)
