"""What ``Tensor.grad_fn`` returns: a read-only view of one node of the graph, as PyTorch shows it.

tilegrad's nodes are ``autograd.Function`` objects whose ``name`` attribute is the op's own name
("mul"), so the node is shown through a small object with torch's interface: ``name()`` gives
torch's class name ("MulBackward0") and ``next_functions`` the nodes the gradient goes to next,
as (node, output index) pairs; a leaf that requires grad appears as its ``AccumulateGrad`` node,
an input that needs no gradient as (None, 0). The view of a node is made once, so
``y.grad_fn is y.grad_fn``, and ``z.grad_fn.next_functions[0][0] is y.grad_fn`` where z uses y.
"""
from __future__ import annotations

import re
from typing import Any

# tilegrad's Function class -> the name of the node torch makes for the same operation; a
# class not listed is shown as "<ClassName>Backward0".
_TORCH_NAMES = {
    "ReLU": "ReluBackward0", "PowScalar": "PowBackward0", "RPowScalar": "PowBackward2",
    "MatMul": "MmBackward0", "Conv2d": "ConvolutionBackward0",
    "MaxPool2d": "MaxPool2DWithIndicesBackward0", "CrossEntropy": "NllLossBackward0",
    "Reshape": "ViewBackward0", "Index": "IndexBackward0", "Cast": "ToCopyBackward0",
    "ToDevice": "ToCopyBackward0", "Dropout": "NativeDropoutBackward0",
}


def torch_name(fn: Any) -> str:
    """torch's name for the node ``fn`` (a Function)."""
    cls = type(fn).__name__
    if cls == "Sum":   # torch: x.sum() is SumBackward0, x.sum(dim) SumBackward1
        every = len(fn.axes) == len(fn.in_shape) and not fn.keepdims
        return "SumBackward0" if every else "SumBackward1"
    if cls == "Amax" and getattr(fn, "nans_share", False):
        return "MaxBackward1"   # x.max() of all elements
    if cls == "Linear":
        if getattr(fn, "relu", False):
            return "ReluBackward0"
        return "AddmmBackward0" if getattr(fn, "has_bias", True) else "MmBackward0"
    if cls in _TORCH_NAMES:
        return _TORCH_NAMES[cls]
    camel = re.sub(r"^_+", "", cls)
    return camel[:1].upper() + camel[1:] + "Backward0"


class GradFn:
    """One graph node as ``Tensor.grad_fn`` shows it (torch.autograd.graph.Node's basics)."""

    __slots__ = ("_fn", "__weakref__")

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def name(self) -> str:
        """torch's name for this node, e.g. "MulBackward0"."""
        return torch_name(self._fn)

    @property
    def next_functions(self) -> tuple[tuple[Any, int], ...]:
        """(node, output index) for each tensor input: where its gradient goes next."""
        return tuple(_next(edge) for edge in self._fn.edges)

    def __repr__(self) -> str:
        return f"<{self.name()} object at {id(self):#x}>"


class AccumulateGrad:
    """The node that accumulates into a leaf's ``.grad``; ``variable`` is the leaf."""

    __slots__ = ("variable", "__weakref__")

    next_functions = ()

    def __init__(self, variable: Any) -> None:
        self.variable = variable

    def name(self) -> str:
        return "torch::autograd::AccumulateGrad"

    def __repr__(self) -> str:
        return f"<AccumulateGrad object at {id(self):#x}>"


def view_of(fn: Any) -> GradFn:
    """The one view of the node ``fn``."""
    if fn._view is None:
        fn._view = GradFn(fn)
    return fn._view


def _next(edge):
    if edge is None:
        return (None, 0)
    node, k = edge
    if hasattr(node, "edges"):   # a Function
        return (view_of(node), k)
    if node._grad_accumulator is None:
        node._grad_accumulator = AccumulateGrad(node)
    return (node._grad_accumulator, 0)
