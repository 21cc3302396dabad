"""Stochastic gradient descent, with momentum, dampening, weight decay and Nesterov, as torch."""
from ..autograd import no_grad
from ..creation import zeros_like
from .optimizer import Optimizer


class SGD(Optimizer):
    """``d = g + weight_decay*p``; with momentum ``buf = momentum*buf + (1-dampening)*d`` (``buf = d``
    on the first step), ``d = d + momentum*buf`` (Nesterov) or ``d = buf``; then ``p -= lr*d``.
    Each parameter's update is one fused backend call (``sgd_step``)."""

    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr {lr}, momentum {momentum} and weight_decay {weight_decay} "
                             f"must be non-negative")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def step(self):
        self._check_grads()
        with no_grad():
            for g in self.param_groups:
                for p in g["params"]:
                    if p.grad is None:
                        continue
                    state = self.state.setdefault(p, {})
                    first = "momentum_buffer" not in state
                    if g["momentum"] and first:
                        state["momentum_buffer"] = zeros_like(p)
                    buf = state["momentum_buffer"].data if g["momentum"] else None
                    p.device.backend.sgd_step(p.data, p.grad.data, buf, g["lr"], g["momentum"],
                                              g["dampening"], g["weight_decay"], g["nesterov"], first)
                    p._version_counter.bump("SGD.step")   # backward must not use the old value
