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
            gb = be.unary("neg", be.binary("div", be.binary("mul", grad, a),
                                           be.binary("mul", b, b)))
        return self._grads(grad, ga, gb)


class Maximum(_Binary):
    """Elementwise maximum. Between two tensors, ties share the gradient half and half and a
    NaN sends all of it to both operands (``torch.maximum``'s rule: each operand gets what the
    other does not beat). Against a Python number (``clamp``'s use) ties send all of it to ``a``,
    as ``torch.clamp`` passes the gradient at its bounds."""
    name = "maximum"

    def backward(self, grad):
        a, b = self.saved
        be = self.backend
        if not self.b_is_array:
            a_wins = be.binary("eq", be.binary("maximum", a, b), a)
            return self._grads(grad, be.where_mask(a_wins, grad, 0), None)
        shared = be.where_mask(be.binary("eq", a, b), be.binary("mul", grad, 0.5), grad)
        ga = be.where_mask(be.binary("lt", a, b), be.zeros(shared.shape, grad.dtype), shared)
        gb = be.where_mask(be.binary("gt", a, b), be.zeros(shared.shape, grad.dtype), shared)
        return self._grads(grad, ga, gb)


class Neg(Function):
    name = "neg"

    def forward(self, x):
        return self.backend.unary("neg", x)

    def backward(self, grad):
        return self.backend.unary("neg", grad)


def _pow(be, x, p):
    """``x ** p`` for a number ``p``. For p = 0.5 and -0.5 PyTorch computes ``sqrt(x)`` and
    ``1 / sqrt(x)`` (its rsqrt), which differ from C's ``pow`` at -inf (NaN, not inf or 0) and
    the latter at -0.0 (-inf, not inf): so does this."""
    if p in (0.5, -0.5) and x.dtype.kind == "f":
        root = be.unary("sqrt", x)
        return root if p > 0 else be.binary("div", be.full((), 1, x.dtype), root)
    return be.pow_scalar(x, p)


class PowScalar(Function):
    name = "pow"

    def forward(self, x, p):
        self.p = p
        self.save_for_backward(x)
        return _pow(self.backend, x, p)

    def backward(self, grad):
        (x,) = self.saved
        be = self.backend
        if self.p == 0:   # x ** 0 is 1 everywhere: 0, not 0 * 0 ** -1 = NaN at x = 0 (as PyTorch)
            return be.zeros(tuple(x.shape), grad.dtype)
        return be.binary("mul", be.binary("mul", grad, _pow(be, x, self.p - 1)), self.p)


class RPowScalar(Function):
    """``s ** x`` for a Python number ``s``. The gradient is ``s ** x * log(s)``, and 0 where
    ``s`` is 0 and ``x >= 0`` (PyTorch's rule there: ``0 ** x`` is flat)."""
    name = "pow"

    def forward(self, x, s):
        be = self.backend
        self.s = s
        base = be.full((), s, x.dtype)
        if x.dtype.kind in "iu":
            # Integer powers as PyTorch's: a negative exponent gives 0 unless the base is 1 or
            # -1 (NumPy raises instead).
            if s in (1, -1):
                return be.binary("pow", base, be.unary("abs", x))
            y = be.binary("pow", base, be.binary("maximum", x, 0))
            return be.where_mask(be.binary("ge", x, 0), y, 0)
        y = be.binary("pow", base, x)
        self.save_for_backward(x, y)
        return y

    def backward(self, grad):
        x, y = self.saved
        be = self.backend
        with np.errstate(divide="ignore", invalid="ignore"):   # log(0) = -inf, log(-1) = NaN
            log_s = float(np.log(np.float64(self.s)))
        g = be.binary("mul", grad, be.binary("mul", y, log_s))
        if self.s == 0:   # 0 where x >= 0; elsewhere (x < 0, or NaN) the formula's inf or NaN
            g = be.where_mask(be.binary("ge", x, 0), be.zeros(tuple(g.shape), g.dtype), g)
        return g


class Exp(Function):
    name = "exp"

    def forward(self, x):
        y = self.backend.unary("exp", x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        return self.backend.binary("mul", grad, self.saved[0])


class Sqrt(Function):
    name = "sqrt"

    def forward(self, x):
        y = self.backend.unary("sqrt", x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):   # grad / (2 sqrt(x)), PyTorch's form (NaN below 0, also at -inf)
        be, (y,) = self.backend, self.saved
        return be.binary("div", grad, be.binary("mul", y, 2))


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
        one = be.full((), 1, y.dtype)
        return be.binary("mul", grad, be.binary("sub", one, be.binary("mul", y, y)))


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
    """Maximum over axes; the gradient is shared equally among tied maxima (as torch.amax).
    Where the maximum is NaN, no element equals it: the gradient is NaN (as torch.amax), or with
    ``nans_share`` shared among the NaNs (as torch's ``max()`` of all elements)."""
    name = "amax"

    def forward(self, x, axes, keepdims, nans_share=False):
        self.in_shape, self.axes, self.keepdims = tuple(x.shape), axes, keepdims
        self.nans_share = nans_share
        y = self.backend.amax(x, axes, True)
        self.save_for_backward(x, y)
        return y if keepdims else self.backend.reshape(y, _reduced_shape(self.in_shape, axes))

    def backward(self, grad):
        be = self.backend
        x, y = self.saved
        if not self.keepdims:
            grad = be.reshape(grad, _kept_shape(self.in_shape, self.axes))
        hit = be.binary("eq", x, y)
        if self.nans_share:   # a NaN maximum means a NaN among x: x != x marks those
            hit = be.binary("maximum", hit, be.binary("ne", x, x))
        mask = be.where_mask(hit, be.full(self.in_shape, 1, x.dtype), 0)
        count = be.sum(mask, self.axes, True)
        return be.binary("mul", mask, be.binary("div", grad, count))


def _kept_shape(shape, axes):
    return tuple(1 if k in axes else n for k, n in enumerate(shape))


def _reduced_shape(shape, axes):
    return tuple(n for k, n in enumerate(shape) if k not in axes)



class Abs(Function):
    """``|x|``. The gradient is ``grad * sign(x)``: 0 at x = 0, as PyTorch's."""
    name = "abs"

    def forward(self, x):
        self.save_for_backward(x)
        return self.backend.unary("abs", x)

    def backward(self, grad):
        be, (x,) = self.backend, self.saved
        up = be.where_mask(be.binary("gt", x, 0), grad, 0)
        return be.where_mask(be.binary("lt", x, 0), be.unary("neg", grad), up)


class Where(Function):
    """``a`` where ``mask`` else ``b``, the three broadcast together (``torch.where``); ``a`` and
    ``b`` share a dtype. Each gets the gradient where it was chosen, summed down to its shape."""
    name = "where"

    def forward(self, mask, a, b):
        self.a_shape, self.b_shape = tuple(a.shape), tuple(b.shape)
        self.save_for_backward(mask)
        return self.backend.where_mask(mask, a, b)

    def backward(self, grad):
        be, (mask,) = self.backend, self.saved
        ga = gb = None
        if self.needs_input_grad[1]:
            ga = unbroadcast(be, be.where_mask(mask, grad, 0), self.a_shape)
        if self.needs_input_grad[2]:
            zeros = be.zeros(tuple(grad.shape), grad.dtype)
            gb = unbroadcast(be, be.where_mask(mask, zeros, grad), self.b_shape)
        return None, ga, gb


class Clamp(Function):
    """``min(max(x, lo), hi)``; ``lo`` and ``hi`` are arrays of ``x``'s dtype, numbers or None.
    Gradients as ``torch.clamp``'s: ``x`` gets it where ``lo <= x <= hi`` (bounds included),
    ``lo`` where ``x < lo < hi``, ``hi`` where ``x > hi`` or ``hi < lo`` (then ``hi`` is the
    result everywhere). A NaN in ``x`` stays NaN (and gets no gradient), a NaN bound gives NaN."""
    name = "clamp"

    def forward(self, x, lo, hi):
        be = self.backend
        self.shapes = [tuple(a.shape) for a in (x, lo, hi) if hasattr(a, "shape")]
        self.save_for_backward(x, lo, hi)
        y = x if lo is None else be.binary("maximum", x, lo)
        if hi is None:   # then lo is not None: y is a new array
            return y
        if x.dtype.kind != "f":            # no NaN to carry: keep y up to hi
            return be.where_mask(be.binary("le", y, hi), y, hi)
        neg_hi = be.unary("neg", hi) if hasattr(hi, "shape") else -hi
        return be.unary("neg", be.binary("maximum", be.unary("neg", y), neg_hi))

    def backward(self, grad):
        be, (x, lo, hi) = self.backend, self.saved
        grads = []
        if self.needs_input_grad[0]:
            g = grad if lo is None else be.where_mask(be.binary("ge", x, lo), grad, 0)
            grads.append(g if hi is None else be.where_mask(be.binary("le", x, hi), g, 0))
        else:
            grads.append(None)
        for bound, other, want in ((lo, hi, "lo"), (hi, lo, "hi")):
            if not hasattr(bound, "shape"):
                continue
            if not self.needs_input_grad[len(grads)]:
                grads.append(None)
            elif want == "lo":      # x < lo, and lo < hi
                g = be.where_mask(be.binary("lt", x, bound), grad, 0)
                grads.append(g if other is None else be.where_mask(be.binary("lt", bound, other),
                                                                   g, 0))
            else:                   # x > hi, or hi < lo
                g = be.where_mask(be.binary("gt", x, bound), grad, 0)
                if other is not None:
                    g = be.where_mask(be.binary("lt", bound, other), grad, g)
                grads.append(g)
        return tuple(None if g is None else unbroadcast(be, g, s)
                     for g, s in zip(grads, self.shapes))
