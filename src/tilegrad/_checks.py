"""Argument checks and dtype rules shared by the tensor operations, as PyTorch has them.

The errors are PyTorch's classes (IndexError for a dimension out of range, ``RuntimeError`` for
shapes and dtypes that do not fit) through ``tilegrad.errors``, whose classes are also the
``ValueError``/``TypeError`` tilegrad raised before; every message names the operation and the
shape of the tensor it was given.
"""
import numpy as np

from . import dtypes
from .errors import ArgumentError, DeviceMismatchError, DtypeError, ShapeError

# ---------------------------------------------------------------- dimensions


def is_int(x):
    """A Python or NumPy integer that is not a bool (``True`` is no dimension or size)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def dim(d, shape, op, scalar_ok=True):
    """The dimension ``d`` (negative counts from the end) of a tensor of ``shape``, in
    ``range(len(shape))``. As in PyTorch a 0-d tensor takes -1 and 0 (as if it had one
    dimension; the result is then 0) unless ``scalar_ok`` is False (``size``, ``unbind``)."""
    if not is_int(d):
        raise TypeError(f"{op}: a dimension must be an integer, got {type(d).__name__} "
                        f"(tensor of shape {shape})")
    if not shape and not scalar_ok:
        raise IndexError(f"{op}: dimension {d} given for a 0-d tensor (shape ())")
    n = max(len(shape), 1)
    if not -n <= d < n:
        raise IndexError(f"{op}: dimension {d} out of range for a tensor of shape {shape} "
                         f"(expected to be in range of [{-n}, {n - 1}])")
    return int(d) % n


def new_dim(d, shape, op):
    """The position of a new dimension inserted at ``d`` (``unsqueeze``, ``stack``): one more
    place than the tensor has dimensions."""
    if is_int(d) and not -len(shape) - 1 <= d <= len(shape):
        raise IndexError(f"{op}: dimension {d} out of range for a new dimension of a tensor of "
                         f"shape {shape} (expected to be in range of [{-len(shape) - 1}, "
                         f"{len(shape)}])")
    return dim(d, shape + (1,), op)


def dims(ds, shape, op, nonempty=False):
    """Reduction dimensions as a sorted tuple: None, or an empty sequence, means all of them
    (as PyTorch's ``sum(())``); an int or a sequence of them otherwise, none repeated. With
    ``nonempty`` (a reduction without identity: max, argmax), none may be of length 0, checked
    before the repeats as PyTorch does."""
    seq = () if ds is None else (ds,) if is_int(ds) else \
        tuple(ds) if isinstance(ds, (tuple, list)) else None
    if seq is None:
        raise TypeError(f"{op}: dim must be an int or a tuple of ints, got {type(ds).__name__}")
    if not seq:
        if nonempty:
            nonempty_reduction(shape, (), False, op)
        return tuple(range(len(shape)))
    out = [dim(d, shape, op) for d in seq]
    if nonempty:
        nonempty_reduction(shape, out if shape else (), True, op)
    if len(set(out)) != len(out):
        raise ArgumentError(f"{op}: a dimension appears more than once in {seq} (tensor of "
                            f"shape {shape})")
    return tuple(sorted(out)) if shape else ()


def nonempty_reduction(shape, axes, named, op, unnamed=ShapeError):
    """Refuse a reduction with no identity element (max, argmax) over no elements, as PyTorch
    does: IndexError for a named dimension of length 0; ``unnamed`` (RuntimeError for ``amax``
    and ``max``, IndexError for ``argmax``) when no dim was named and the tensor is empty."""
    if not named:
        if 0 in shape:
            raise unnamed(f"{op}: cannot reduce an empty tensor of shape {shape} over all its "
                          f"dimensions; name the dim to reduce")
        return
    for a in axes:
        if shape[a] == 0:
            raise IndexError(f"{op}: cannot reduce dimension {a} of length 0 (tensor of shape "
                             f"{shape})")


# ---------------------------------------------------------------- shapes


def broadcast(op, *shapes):
    """The broadcast shape of ``shapes``, or a ShapeError naming them."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        listed = " and ".join(str(tuple(s)) for s in shapes)
        raise ShapeError(f"{op}: shapes {listed} do not broadcast") from None


def same_device(op, a, b):
    if a.device != b.device:
        raise DeviceMismatchError(f"{op}: tensors are on different devices ({a.device} and "
                                  f"{b.device})")


def binary_operands(op, a, b):
    """Two tensors of one arithmetic operation: one device, one dtype, broadcasting shapes."""
    same_device(op, a, b)
    same_dtype(op, a, b)
    broadcast(op, a.shape, b.shape)


def tensor_list(tensors, op, cls):
    """The tensors (of class ``cls``) of ``cat`` or ``stack``, as a list: at least one, on one
    device, of one dtype."""
    tensors = list(tensors)
    if not tensors:
        raise ArgumentError(f"{op}: expects a non-empty sequence of tensors")
    if not all(isinstance(t, cls) for t in tensors):
        raise TypeError(f"{op}: expects a sequence of tensors, got "
                        f"{[type(t).__name__ for t in tensors]}")
    for t in tensors[1:]:
        same_device(op, tensors[0], t)
        same_dtype(op, tensors[0], t)
    return tensors


def keepdim(keepdim, keepdims):
    """PyTorch's ``keepdim`` or NumPy's ``keepdims`` (which wins when given)."""
    return bool(keepdims if keepdims is not None else keepdim)


def sizes(shape, op):
    """A shape of sizes, each an integer >= 0."""
    for n in shape:
        if n < 0:
            raise ShapeError(f"{op}: negative size {n} in shape {shape}")
    return shape

# ---------------------------------------------------------------- dtypes

# PyTorch orders dtypes in categories for promotion: a Python scalar of a higher category than
# the tensor (a float with an integer tensor, an int with a bool tensor) decides the result's
# category; otherwise the tensor keeps its dtype.
_BOOL, _INT, _FLOAT = 0, 1, 2


def category(dtype):
    return _BOOL if dtype == dtypes.bool_ else _FLOAT if dtype in dtypes.FLOATING else _INT


def scalar_category(s):
    return _BOOL if isinstance(s, (bool, np.bool_)) else \
        _FLOAT if isinstance(s, (float, np.floating)) else _INT


def result_type_scalar(dtype, s):
    """The dtype of ``tensor op s`` for a Python number ``s`` (PyTorch's rule)."""
    c = scalar_category(s)
    if c <= category(dtype):
        return dtype
    return dtypes.get_default_dtype() if c == _FLOAT else dtypes.int64


def promote_types(a, b):
    """``torch.promote_types``: the higher category wins (int64 with float32 is float32, where
    NumPy says float64); within one, the wider dtype (NumPy agrees there)."""
    ca, cb = category(a), category(b)
    if ca != cb:
        return a if ca > cb else b
    return np.promote_types(a, b)


def result_type(a, b):
    """The dtype two tensors promote to (PyTorch's rule). A 0-d tensor beside one with
    dimensions decides only where its category is higher: int64 0-d with uint8 (3,) compares in
    uint8, float64 0-d with float32 (3,) in float32, but float64 0-d with int64 (3,) in float64."""
    if (a.ndim == 0) == (b.ndim == 0):
        return promote_types(a.dtype, b.dtype)
    dim, zero = (a.dtype, b.dtype) if b.ndim == 0 else (b.dtype, a.dtype)
    if category(dim) == _FLOAT:
        return dim
    if category(dim) == _BOOL or category(zero) == _FLOAT:
        return promote_types(dim, zero)
    return dim


def same_dtype(op, a, b):
    """Refuse two tensors of different dtypes: tilegrad does not promote between tensors in
    arithmetic (``.to()`` one of them), where PyTorch would."""
    if a.dtype != b.dtype:
        raise DtypeError(f"{op}: dtype mismatch ({a.dtype} and {b.dtype}); convert one with "
                         f".to() (tensors of shapes {a.shape} and {b.shape})")


def scalar(s, dtype):
    """The Python number ``s`` converted to ``dtype`` as a C cast does (an integer wraps
    around: ``uint8_tensor - 7`` wraps, as in PyTorch), then as a plain Python number."""
    return np.array(s).astype(dtype).item()


def no_bool_sub(op, a, b):
    """PyTorch refuses to subtract with a bool operand, a tensor or a Python bool."""
    if op == "sub" and any(isinstance(x, (bool, np.bool_))
                           or getattr(x, "dtype", None) == dtypes.bool_
                           for x in (a, b)):
        shape = a.shape if hasattr(a, "shape") else b.shape
        raise DtypeError(f"sub: subtraction with a bool operand is not supported (tensor of "
                         f"shape {shape}); use ^ or logical_xor for masks")


def not_bool(op, t, what="a bool tensor"):
    if t.dtype == dtypes.bool_:
        raise DtypeError(f"{op}: not supported for {what} (shape {t.shape})")
