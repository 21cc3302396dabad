"""Stochastic gradient descent, with momentum, dampening, weight decay and Nesterov, as torch."""
import math

import numpy as np

from ..autograd import no_grad
from ..creation import zeros_like
from .optimizer import Optimizer, check_hyperparameter


class SGD(Optimizer):
    """``d = g + weight_decay*p``; with momentum ``buf = momentum*buf + (1-dampening)*d`` (``buf = d``
    on the first step), ``d = d + momentum*buf`` (Nesterov) or ``d = buf``; then ``p -= lr*d``.
    Each parameter's update is one fused backend call (``sgd_step``)."""

    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check_options(self, options):
        """PyTorch's checks and messages, with NaN refused: lr, momentum and weight_decay at
        least 0, dampening a finite number, Nesterov only with momentum and no dampening."""
        check_hyperparameter(options["lr"], "learning rate", lambda v: 0.0 <= v)
        check_hyperparameter(options["momentum"], "momentum value", lambda v: 0.0 <= v)
        check_hyperparameter(options["dampening"], "dampening value", math.isfinite)
        check_hyperparameter(options["weight_decay"], "weight_decay value", lambda v: 0.0 <= v)
        nesterov = options["nesterov"]
        if not isinstance(nesterov, (bool, np.bool_)) and nesterov not in (0, 1):
            raise TypeError(f"Invalid nesterov: {nesterov!r} is not a bool")
        if nesterov and (options["momentum"] <= 0 or options["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

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
