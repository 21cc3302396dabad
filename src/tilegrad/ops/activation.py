"""Autograd Functions of the activations that the elementwise ops do not already give: ``erf``
(for GELU's exact form) and leaky ReLU. The others (tanh, sigmoid, GELU's tanh form, softmax)
are compositions of existing Functions, in ``nn/activation.py``. ``sin`` and ``cos``, unary
primitives added the way ``erf`` was (a Transformer's positional encoding uses them), are here
too."""
import math

from ..autograd import Function

_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)


class Erf(Function):
    """The error function, ``2/sqrt(pi) * integral_0^x exp(-t^2) dt``; its gradient is
    ``2/sqrt(pi) * exp(-x^2)``."""
    name = "erf"

    def forward(self, x):
        self.save_for_backward(x)
        return self.backend.unary("erf", x)

    def backward(self, grad):
        be, (x,) = self.backend, self.saved
        density = be.unary("exp", be.unary("neg", be.binary("mul", x, x)))
        return be.binary("mul", grad, be.binary("mul", density, _TWO_OVER_SQRT_PI))


class Sin(Function):
    """``sin(x)``; its gradient is ``cos(x)``."""
    name = "sin"

    def forward(self, x):
        self.save_for_backward(x)
        return self.backend.unary("sin", x)

    def backward(self, grad):
        be, (x,) = self.backend, self.saved
        return be.binary("mul", grad, be.unary("cos", x))


class Cos(Function):
    """``cos(x)``; its gradient is ``-sin(x)``."""
    name = "cos"

    def forward(self, x):
        self.save_for_backward(x)
        return self.backend.unary("cos", x)

    def backward(self, grad):
        be, (x,) = self.backend, self.saved
        return be.binary("mul", grad, be.unary("neg", be.unary("sin", x)))


class LeakyReLU(Function):
    """``x`` where ``x > 0``, else ``slope * x``; the gradient is 1 or ``slope`` by the same
    test (so ``slope`` at 0, as PyTorch's)."""
    name = "leaky_relu"

    def forward(self, x, slope):
        self.slope = slope
        positive = self.backend.binary("gt", x, 0)
        self.save_for_backward(positive)
        return self.backend.where_mask(positive, x, self.backend.binary("mul", x, slope))

    def backward(self, grad):
        be, (positive,) = self.backend, self.saved
        return be.where_mask(positive, grad, be.binary("mul", grad, self.slope))
