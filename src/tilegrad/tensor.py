"""Tensor: an array on a device, with the graph that made it for reverse-mode autograd."""
import collections

import numpy as np

from . import autograd, dtypes
from .backends import get_device
from .inplace import InplaceOps
from .ops import elementwise as E
from .ops import nn as N
from .ops import shape as S

_Scalar = (int, float, bool, np.integer, np.floating)
MaxResult = collections.namedtuple("max", ["values", "indices"])


def _shape_args(shape, op):
    """``f(2, 3)`` and ``f((2, 3))`` both mean the shape (2, 3)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(isinstance(n, (int, np.integer)) for n in shape):
        raise TypeError(f"{op}: a shape is made of integers, got {shape}")
    return tuple(int(n) for n in shape)



def check_can_require_grad(dtype):
    """Refuse gradients for a tensor of ``dtype`` unless it is floating-point."""
    if dtype not in dtypes.FLOATING:
        raise TypeError(f"requires_grad: only floating-point tensors can require gradients, "
                        f"this one is {dtype}")

class Tensor(InplaceOps):
    """An n-dimensional array on a device that can record how it was computed.

    Make one with ``tilegrad.tensor``, ``zeros``, ``randn`` and the like. Arithmetic follows
    NumPy broadcasting; when ``requires_grad`` is set, ``backward()`` fills ``.grad`` of every
    leaf it depends on.
    """

    __array_priority__ = 1000   # so that ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, device, requires_grad=False):
        self.data = data
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
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        if value:
            check_can_require_grad(self.dtype)
        if not value and self._ctx is not None:
            raise ValueError("requires_grad: cannot turn off gradients of a non-leaf tensor; "
                             "use .detach()")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return len(self.data.shape)

    def dim(self):
        return self.ndim

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def _be(self):
        return self.device.backend

    # ------------------------------------------------------------ conversion
    def numpy(self):
        """A NumPy copy of the values (on any device)."""
        return self._be.to_numpy(self.data)

    def tolist(self):
        return self.numpy().tolist()

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"item: only a tensor with one element can be converted to a "
                             f"Python number, this one has shape {self.shape}")
        return self.numpy().reshape(()).item()

    def detach(self):
        """The same values, cut from the graph. It shares the storage (and so the version
        counter): changing it in place changes ``self``."""
        out = Tensor(self.data, self.device, False)
        out._version_counter, out._base = self._version_counter, self._base
        return out

    def clone(self):
        return self + 0 if self.dtype in dtypes.FLOATING else Tensor(self._be.copy(self.data), self.device)

    def to(self, device=None, dtype=None):
        """A copy on ``device`` and/or with ``dtype``; ``self`` where nothing changes.

        ``t.to("cuda")``, ``t.to(tilegrad.float64)``. Moving between devices is differentiable.
        """
        if device is not None and not isinstance(device, str) and not hasattr(device, "backend"):
            device, dtype = None, device
        out = self
        if dtype is not None:
            dtype = dtypes.as_dtype(dtype, "to")
            if dtype != self.dtype:
                out = S.Cast.apply(out, dtype)
        if device is not None:
            dev = get_device(device)
            if dev != self.device:
                dev.backend   # raises if the device is unavailable
                out = S.ToDevice.apply(out, dev)
        return out

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to(dtype=dtypes.float32)

    def double(self):
        return self.to(dtype=dtypes.float64)

    def long(self):
        return self.to(dtype=dtypes.int64)

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = ""
        if self.dtype not in (dtypes.get_default_dtype(), dtypes.int64, dtypes.bool_):
            extra += f", dtype={self.dtype}"
        if self.device.name != "cpu":
            extra += f", device='{self.device}'"
        if self._ctx is not None:
            extra += f", grad_fn=<{type(self._ctx).__name__}Backward>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ------------------------------------------------------------ autograd
    def backward(self, gradient=None, retain_graph=None, create_graph=False):
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
                raise ValueError(f"backward: gradient has shape {gradient.shape}, the tensor {self.shape}")
            if gradient.dtype != self.dtype:
                raise TypeError(f"backward: gradient has dtype {gradient.dtype}, the tensor {self.dtype}")
            if gradient.device != self.device:
                raise ValueError(f"backward: gradient is on {gradient.device}, the tensor on {self.device}")
            g = gradient.data
        autograd.backward(self, g, retain_graph=bool(retain_graph))

    def _zero_grad(self, set_to_none=True):
        if set_to_none or self.grad is None:
            self.grad = None
        else:
            self.grad = Tensor(self._be.full(self.shape, 0, self.dtype), self.device)

    def _accumulate(self, g):
        if self.grad is None:
            self.grad = Tensor(self._be.copy(g), self.device)
        else:
            self.grad = Tensor(self._be.binary("add", self.grad.data, g), self.device)

    # ------------------------------------------------------------ arithmetic
    def _floating(self):
        """``self`` as a floating-point tensor: integer and bool ones become the default dtype,
        as torch promotes them for division, float scalars and transcendental functions."""
        return self if self.dtype in dtypes.FLOATING else self.to(dtype=dtypes.get_default_dtype())

    def _binary(self, fn, other, reverse=False):
        """``self op other`` (``other op self`` with ``reverse``). A Python scalar takes the
        tensor's dtype; integer tensors are promoted to floating point first where the result
        is not an integer (a float scalar, or division), as in torch."""
        if fn is E.Div or isinstance(other, (float, np.floating)):
            self = self._floating()
            if isinstance(other, Tensor) and other.dtype not in dtypes.FLOATING and fn is E.Div:
                other = other._floating()
        elif self.dtype == dtypes.bool_ and isinstance(other, _Scalar):
            self = self.to(dtype=dtypes.int64)
        if isinstance(other, _Scalar) and not reverse:
            return fn.apply(self, other)
        a, b = (other, self) if reverse else (self, other)
        a, b = _as_tensor(a, self), _as_tensor(b, self)
        _check_binary(fn.op_name(), a, b)
        return fn.apply(a, b)

    def __add__(self, o):
        return self._binary(E.Add, o)

    def __radd__(self, o):
        return self._binary(E.Add, o)

    def __sub__(self, o):
        return self._binary(E.Sub, o)

    def __rsub__(self, o):
        return -self + o if isinstance(o, _Scalar) else self._binary(E.Sub, o, reverse=True)

    def __mul__(self, o):
        return self._binary(E.Mul, o)

    def __rmul__(self, o):
        return self._binary(E.Mul, o)

    def __truediv__(self, o):
        return self._binary(E.Div, o)

    def __rtruediv__(self, o):
        if isinstance(o, _Scalar):
            return self._floating() ** -1 * o
        return self._binary(E.Div, o, reverse=True)

    def __neg__(self):
        return E.Neg.apply(self)

    def __pow__(self, p):
        if not isinstance(p, _Scalar):
            raise TypeError(f"pow: the exponent must be a Python number, got {type(p).__name__}")
        if isinstance(p, (float, np.floating)):
            return E.PowScalar.apply(self._floating(), p)
        if p < 0 and self.dtype not in dtypes.FLOATING:
            raise ValueError(f"pow: integers to negative integer powers are not allowed "
                             f"({self.dtype} tensor ** {p})")
        return E.PowScalar.apply(self, p)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(_as_tensor(other, self), self)

    def maximum(self, other):
        return self._binary(E.Maximum, other)

    def _compare(self, op, other):
        """Elementwise comparison: a bool tensor, outside the graph."""
        if isinstance(other, Tensor):
            if other.device != self.device:
                raise ValueError(f"{op}: tensors are on different devices ({self.device} and {other.device})")
            try:
                np.broadcast_shapes(self.shape, other.shape)
            except ValueError:
                raise ValueError(f"{op}: shapes {self.shape} and {other.shape} do not broadcast") from None
            other = other.data
        elif not isinstance(other, _Scalar):
            return NotImplemented
        return Tensor(self._be.binary(op, self.data, other), self.device)

    def __eq__(self, other):
        return self._compare("eq", other)

    def __ne__(self, other):
        return self._compare("ne", other)

    def __gt__(self, other):
        return self._compare("gt", other)

    def __ge__(self, other):
        return self._compare("ge", other)

    def __lt__(self, other):
        return self._compare("lt", other)

    def __le__(self, other):
        return self._compare("le", other)

    __hash__ = object.__hash__

    def __bool__(self):
        if self.numel() != 1:
            raise ValueError(f"bool: the truth value of a tensor of shape {self.shape} is "
                             f"ambiguous; use .any() or .all() on its numpy()")
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def exp(self):
        return E.Exp.apply(self._floating())

    def log(self):
        return E.Log.apply(self._floating())

    def tanh(self):
        return E.Tanh.apply(self._floating())

    def sigmoid(self):
        return E.Sigmoid.apply(self._floating())

    def relu(self):
        return E.ReLU.apply(self)

    def sqrt(self):
        return self ** 0.5

    # ------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        axes = E.normalize_axes(axis if dim is None else dim, self.ndim, "sum")
        return E.Sum.apply(self, axes, bool(keepdims if keepdims is not None else keepdim))

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        axes = E.normalize_axes(axis if dim is None else dim, self.ndim, "mean")
        count = int(np.prod([self.shape[a] for a in axes], dtype=np.int64))
        return self.sum(axes, keepdim, keepdims=keepdims) / count

    def amax(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        axes = E.normalize_axes(axis if dim is None else dim, self.ndim, "amax")
        if self.numel() == 0:
            raise ValueError(f"amax: cannot reduce an empty tensor of shape {self.shape}")
        return E.Amax.apply(self, axes, bool(keepdims if keepdims is not None else keepdim))

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """``t.max()``: the largest element. ``t.max(dim)``: ``(values, indices)`` along ``dim``,
        as in PyTorch. A tuple of dims gives the values only (as ``amax``)."""
        dim = axis if dim is None else dim
        values = self.amax(dim, keepdim, keepdims=keepdims)
        if not isinstance(dim, (int, np.integer)):
            return values
        return MaxResult(values, self.argmax(dim, keepdim if keepdims is None else keepdims))

    def argmax(self, dim=None, keepdim=False):
        if dim is None:
            flat = self._be.reshape(self.data, (-1,))
            return Tensor(self._be.argmax(flat, 0, False), self.device)
        (axis,) = E.normalize_axes(dim, self.ndim, "argmax")
        return Tensor(self._be.argmax(self.data, axis, bool(keepdim)), self.device)

    # ------------------------------------------------------------ shape
    def reshape(self, *shape):
        shape = _shape_args(shape, "reshape")
        known = int(np.prod([n for n in shape if n != -1], dtype=np.int64))
        if shape.count(-1) > 1 or (-1 not in shape and known != self.numel()) or \
                (-1 in shape and (known == 0 or self.numel() % known)):
            raise ValueError(f"reshape: shape {shape} is invalid for a tensor of shape "
                             f"{self.shape} ({self.numel()} elements)")
        if -1 in shape:
            shape = tuple(self.numel() // known if n == -1 else n for n in shape)
        return self if shape == self.shape else S.Reshape.apply(self, shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        s, e = E.normalize_axes((start_dim, end_dim), self.ndim, "flatten") \
            if start_dim % self.ndim != end_dim % self.ndim else (start_dim % self.ndim,) * 2
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        return self.reshape(self.shape[:s] + (-1,) + self.shape[e + 1:])

    def unsqueeze(self, dim):
        dim = dim % (self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        (d,) = E.normalize_axes(dim, self.ndim, "squeeze")
        return self if self.shape[d] != 1 else self.reshape(self.shape[:d] + self.shape[d + 1:])

    def unbind(self, dim=0):
        """The slices along ``dim``, as a tuple of tensors (one backward for all of them)."""
        (axis,) = E.normalize_axes(dim, self.ndim, "unbind")
        out = S.Unbind.apply(self, axis)
        return out if isinstance(out, tuple) else (out,)

    def permute(self, *dims):
        dims = _shape_args(dims, "permute")
        if sorted(d % max(self.ndim, 1) for d in dims) != list(range(self.ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of the {self.ndim} "
                             f"dimensions of a tensor of shape {self.shape}")
        dims = tuple(d % self.ndim for d in dims)
        return self if dims == tuple(range(self.ndim)) else S.Permute.apply(self, dims)

    def transpose(self, dim0, dim1):
        a, b = (d % max(self.ndim, 1) for d in (dim0, dim1))
        if max(a, b) >= max(self.ndim, 1) or min(dim0, dim1) < -self.ndim:
            raise ValueError(f"transpose: dimensions ({dim0}, {dim1}) out of range for shape {self.shape}")
        dims = list(range(self.ndim))
        dims[a], dims[b] = dims[b], dims[a]
        return self.permute(*dims)

    def t(self):
        if self.ndim > 2:
            raise ValueError(f"t: expects a tensor of at most 2 dimensions, got shape {self.shape}")
        return self.transpose(0, 1) if self.ndim == 2 else self

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    def expand(self, *shape):
        shape = _shape_args(shape, "expand")
        shape = shape[:len(shape) - self.ndim] + tuple(
            s if n == -1 else n for n, s in zip(shape[len(shape) - self.ndim:], self.shape))
        try:
            np.broadcast_shapes(self.shape, shape)
        except ValueError:
            raise ValueError(f"expand: cannot expand shape {self.shape} to {shape}") from None
        return self if shape == self.shape else S.Expand.apply(self, shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        # Checked first on a stand-in of the same shape, with host copies of index tensors (a
        # GPU array cannot index a NumPy one); the backend takes the key as it is.
        host = tuple(k.numpy() if isinstance(k, Tensor) else k for k in key)
        key = tuple(k.data if isinstance(k, Tensor) else k for k in key)
        try:
            np.empty(self.shape, dtype=np.bool_)[host]
        except IndexError as e:
            raise IndexError(f"getitem: {e} (tensor of shape {self.shape})") from None
        return S.Index.apply(self, key)


def _as_tensor(x, like):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, _Scalar):
        return Tensor(like._be.full((), x, like.dtype), like.device)
    return _creation().tensor(x, device=like.device)


def _creation():
    from . import creation   # creation builds Tensors, so it imports this module
    return creation


def _check_binary(op, a, b):
    if a.device != b.device:
        raise ValueError(f"{op}: tensors are on different devices ({a.device} and {b.device})")
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: dtype mismatch ({a.dtype} and {b.dtype}); convert one with .to()")
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None


def matmul(a, b):
    """Matrix product with NumPy's rules: 1-D operands are vectors, leading dimensions broadcast."""
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"matmul: expects two tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
    if a.device != b.device:
        raise ValueError(f"matmul: tensors are on different devices ({a.device} and {b.device})")
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: dtype mismatch ({a.dtype} and {b.dtype})")
    k_a, k_b = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied ({k_a} != {k_b})")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast") from None
    a2 = a.unsqueeze(0) if a.ndim == 1 else a
    b2 = b.unsqueeze(-1) if b.ndim == 1 else b
    out = N.MatMul.apply(a2, b2)
    if b.ndim == 1:
        out = out.squeeze(-1)
    if a.ndim == 1:
        out = out.squeeze(-2 if b.ndim > 1 else -1)
    return out


def cat(tensors, dim=0):
    """Concatenate tensors of the same dtype and device along ``dim``."""
    tensors = list(tensors)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError("cat: expects a non-empty sequence of tensors")
    first = tensors[0]
    (axis,) = E.normalize_axes(dim, first.ndim, "cat")
    for t in tensors[1:]:
        if t.device != first.device or t.dtype != first.dtype:
            raise TypeError(f"cat: tensors differ in dtype or device ({first.dtype} on {first.device}"
                            f" and {t.dtype} on {t.device})")
        if t.ndim != first.ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, first.shape))
                                       if k != axis):
            raise ValueError(f"cat: shapes {first.shape} and {t.shape} differ outside dimension {dim}")
    return S.Cat.apply(*tensors, axis=axis)


def stack(tensors, dim=0):
    """Stack tensors of one shape along a new dimension ``dim``."""
    tensors = list(tensors)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError("stack: expects a non-empty sequence of tensors")
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack: all tensors need one shape, got {[t.shape for t in tensors]}")
    dim = dim % (tensors[0].ndim + 1)
    return cat([t.unsqueeze(dim) for t in tensors], dim)
