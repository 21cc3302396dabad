"""Error classes that keep both tilegrad's and PyTorch's ``except`` clauses working.

PyTorch reports most shape, dtype and device mismatches as ``RuntimeError``; tilegrad has always
raised ``ValueError`` (a bad shape or device) and ``TypeError`` (a bad dtype) for them. These
classes are both at once, so code written for either framework catches them:

>>> issubclass(ShapeError, ValueError) and issubclass(ShapeError, RuntimeError)
True
"""


class ShapeError(ValueError, RuntimeError):
    """Shapes that do not fit the operation (they do not broadcast, cannot be multiplied...)."""


class DeviceMismatchError(ValueError, RuntimeError):
    """Tensors of one operation on different devices."""


class DtypeError(TypeError, RuntimeError):
    """A dtype the operation does not accept, or two tensors whose dtypes differ."""


class ArgumentError(ValueError, RuntimeError):
    """An argument whose value the operation does not accept (a zero step, an integer tensor to a
    negative power, an empty list of tensors...), where PyTorch raises ``RuntimeError``."""


class IndexRangeError(IndexError, ValueError):
    """An index outside the rows it selects (an embedding index, a class target): PyTorch raises
    ``IndexError``; tilegrad raised ``ValueError`` for these before."""


class CaptureError(RuntimeError):
    """Host work (a copy to or from the host, a sync, a read of a device value) asked for while a
    CUDA graph is captured: the graph could not repeat it."""
