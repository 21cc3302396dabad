"""Functions for the normalisation layers: batch norm (training mode, batch statistics) and layer
norm. Each forward and backward is one fused backend primitive (``batch_norm_fwd``/``_bwd``,
``layer_norm_fwd``/``_bwd``); the forward saves the statistics it computed (mean and the inverse
standard deviation) so that the backward does not recompute them.

Inputs come already viewed as 3-D (N, C, L) for batch norm and 2-D (M, D) for layer norm: the
functional layer (``nn._norm``) reshapes. weight and bias may be None; the backward returns a
gradient only for the tensor inputs that were given.
"""
from ..autograd import Function


def _grads(needs, dx, optional):
    """One gradient per tensor input: dx, then that of each optional input that was given
    (``optional``: (given, gradient) pairs); None where no gradient is wanted."""
    grads = [dx] + [g for given, g in optional if given]
    return tuple(g if need else None for g, need in zip(grads, needs))


class BatchNorm(Function):
    """Batch normalisation of x (N, C, L) with its own batch statistics; running statistics
    (arrays, not tensors: they carry no gradient) updated in place when given."""
    name = "batch_norm"

    def forward(self, x, weight, bias, running_mean, running_var, momentum, eps):
        self.has = (weight is not None, bias is not None)
        y, mean, invstd = self.backend.batch_norm_fwd(x, weight, bias, running_mean, running_var,
                                                      momentum, eps)
        self.save_for_backward(x, weight, mean, invstd)
        return y

    def backward(self, grad):
        x, weight, mean, invstd = self.saved
        dx, dw, db = self.backend.batch_norm_bwd(grad, x, weight, mean, invstd)
        return _grads(self.needs_input_grad, dx, ((self.has[0], dw), (self.has[1], db)))


class LayerNorm(Function):
    """Layer normalisation of each row of x (M, D)."""
    name = "layer_norm"

    def forward(self, x, weight, bias, eps):
        self.has = (weight is not None, bias is not None)
        y, mean, rstd = self.backend.layer_norm_fwd(x, weight, bias, eps)
        self.save_for_backward(x, weight, mean, rstd)
        return y

    def backward(self, grad):
        x, weight, mean, rstd = self.saved
        dx, dw, db = self.backend.layer_norm_bwd(grad, x, weight, mean, rstd)
        return _grads(self.needs_input_grad, dx, ((self.has[0], dw), (self.has[1], db)))
