"""Elementwise, broadcasting and reduction Functions."""
import numpy as np

from ..autograd import Function


def unbroadcast(backend, grad, shape):
    """Sum ``grad`` down to ``shape``: the gradient of broadcasting an operand of ``shape``."""
    if tuple(grad.shape) == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + k for k, n in enumerate(shape) if n == 1 and grad.shape[lead + k] != 1)
    return backend.reshape(backend.sum(grad, axes, True), shape)


def _shape(x):
    return tuple(x.shape) if hasattr(x, "shape") else ()


class _Binary(Function):
    """``a op b`` with broadcasting; ``b`` may be a Python scalar (then it gets no gradient).
    Only the operands the gradient will read are saved (``_to_save``), as PyTorch does, so that
    changing another one in place afterwards is not an error."""

    def forward(self, a, b):
        self.a_shape, self.b_shape = _shape(a), _shape(b)
        self.b_is_array = hasattr(b, "shape")
        self.save_for_backward(*self._to_save(a, b))
        return self.backend.binary(self.name, a, b)

    def _to_save(self, a, b):
        return a, b

    def _b_needs_grad(self):
        return self.b_is_array and self.needs_input_grad[1]

    def _grads(self, grad, ga, gb):
        be = self.backend
        ga = None if ga is None else unbroadcast(be, ga, self.a_shape)
        if not self.b_is_array:
            return (ga,)
        gb = None if gb is None else unbroadcast(be, gb, self.b_shape)
        return ga, gb


class Add(_Binary):
    name = "add"

    def _to_save(self, a, b):
        return ()

    def backward(self, grad):
        return self._grads(grad, grad, grad)


class Sub(_Binary):
    name = "sub"

    def _to_save(self, a, b):
        return ()

    def backward(self, grad):
        gb = self.backend.unary("neg", grad) if self.b_is_array else None
        return self._grads(grad, grad, gb)


class Mul(_Binary):
    name = "mul"

    def _to_save(self, a, b):   # da needs b, db needs a
        keep_b = self.needs_input_grad[0] or not self.b_is_array
        return (a if self._b_needs_grad() else None), (b if keep_b else None)

    def backward(self, grad):
        a, b = self.saved
        be = self.backend
        ga = be.binary("mul", grad, b) if self.needs_input_grad[0] else None
        gb = be.binary("mul", grad, a) if self._b_needs_grad() else None
        return self._grads(grad, ga, gb)


class Div(_Binary):
    name = "div"

    def _to_save(self, a, b):   # da needs b, db needs a and b
        return (a if self._b_needs_grad() else None), b

    def backward(self, grad):
        a, b = self.saved
        be = self.backend
        ga = be.binary("div", grad, b) if self.needs_input_grad[0] else None
        gb = None
        if self._b_needs_grad():   # d(a/b)/db = -a / b^2
            gb = be.unary("neg", be.binary("div", be.binary("mul", grad, a), be.binary("mul", b, b)))
        return self._grads(grad, ga, gb)


class Maximum(_Binary):
    """Elementwise maximum; ties send the gradient to ``a``."""
    name = "maximum"

    def backward(self, grad):
        a, b = self.saved
        be = self.backend
        a_wins = be.binary("eq", be.binary("maximum", a, b), a)
        ga = be.where_mask(a_wins, grad, 0)
        gb = be.binary("sub", grad, ga) if self.b_is_array else None
        return self._grads(grad, ga, gb)


class Neg(Function):
    name = "neg"

    def forward(self, x):
        return self.backend.unary("neg", x)

    def backward(self, grad):
        return self.backend.unary("neg", grad)


class PowScalar(Function):
    name = "pow"

    def forward(self, x, p):
        self.p = p
        self.save_for_backward(x)
        return self.backend.pow_scalar(x, p)

    def backward(self, grad):
        (x,) = self.saved
        be = self.backend
        return be.binary("mul", be.binary("mul", grad, be.pow_scalar(x, self.p - 1)), self.p)


class Exp(Function):
    name = "exp"

    def forward(self, x):
        y = self.backend.unary("exp", x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        return self.backend.binary("mul", grad, self.saved[0])


class Log(Function):
    name = "log"

    def forward(self, x):
        self.save_for_backward(x)
        return self.backend.unary("log", x)

    def backward(self, grad):
        return self.backend.binary("div", grad, self.saved[0])


class Tanh(Function):
    name = "tanh"

    def forward(self, x):
        y = self.backend.unary("tanh", x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):   # 1 - tanh^2
        be, (y,) = self.backend, self.saved
        return be.binary("mul", grad, be.binary("sub", be.full((), 1, y.dtype), be.binary("mul", y, y)))


class Sigmoid(Function):
    name = "sigmoid"

    def forward(self, x):
        y = self.backend.unary("sigmoid", x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):   # s * (1 - s)
        be, (y,) = self.backend, self.saved
        one_minus = be.binary("sub", be.full((), 1, y.dtype), y)
        return be.binary("mul", grad, be.binary("mul", y, one_minus))


class ReLU(Function):
    name = "relu"

    def forward(self, x):
        y = self.backend.unary("relu", x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        return self.backend.relu_bwd(grad, self.saved[0])


class Sum(Function):
    name = "sum"

    def forward(self, x, axes, keepdims):
        self.in_shape, self.axes, self.keepdims = tuple(x.shape), axes, keepdims
        return self.backend.sum(x, axes, keepdims)

    def backward(self, grad):
        be = self.backend
        if not self.keepdims:
            grad = be.reshape(grad, _kept_shape(self.in_shape, self.axes))
        return be.broadcast_to(grad, self.in_shape)


class Amax(Function):
    """Maximum over axes; the gradient is shared equally among tied maxima (as torch.amax)."""
    name = "amax"

    def forward(self, x, axes, keepdims):
        self.in_shape, self.axes, self.keepdims = tuple(x.shape), axes, keepdims
        y = self.backend.amax(x, axes, True)
        self.save_for_backward(x, y)
        return y if keepdims else self.backend.reshape(y, _reduced_shape(self.in_shape, axes))

    def backward(self, grad):
        be = self.backend
        x, y = self.saved
        if not self.keepdims:
            grad = be.reshape(grad, _kept_shape(self.in_shape, self.axes))
        mask = be.where_mask(be.binary("eq", x, y), be.full(self.in_shape, 1, x.dtype), 0)
        count = be.sum(mask, self.axes, True)
        return be.binary("mul", mask, be.binary("div", grad, count))


def _kept_shape(shape, axes):
    return tuple(1 if k in axes else n for k, n in enumerate(shape))


def _reduced_shape(shape, axes):
    return tuple(n for k, n in enumerate(shape) if k not in axes)


def normalize_axes(axes, ndim, op):
    """``axes`` (None, an int or a sequence, negatives allowed) as a sorted tuple, checked."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    out = []
    for a in axes:
        if not -max(ndim, 1) <= a < max(ndim, 1):
            raise ValueError(f"{op}: dimension {a} out of range for a tensor of {ndim} dimensions")
        out.append(a % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated dimension in {tuple(axes)}")
    return tuple(sorted(out)) if ndim else ()
