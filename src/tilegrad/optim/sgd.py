"""Stochastic gradient descent, with momentum, dampening, weight decay and Nesterov, as torch."""
from __future__ import annotations

import math

from ..autograd import no_grad
from ..creation import ones, zeros, zeros_like
from ..dtypes import float32
from .optimizer import Optimizer, _Params, check_flag, check_hyperparameter, negated


class SGD(Optimizer):
    """``d = g + weight_decay*p``; with momentum ``buf = momentum*buf + (1-dampening)*d``
    (``buf = d`` on the first step), ``d = d + momentum*buf`` (Nesterov) or ``d = buf``; then
    ``p -= lr*d``. With ``maximize`` the gradient is negated first.

    The parameters of a group with gradients are updated together, one ``sgd_step_multi`` per
    device and dtype (one launch on "cuda" for up to 16 of them; with momentum one more that
    counts steps). Each momentum buffer has a step count on the device beside it (not in
    ``state``, whose layout is PyTorch's): the kernel sets the buffer to ``d`` where the count
    becomes 1, so a replayed CUDA graph needs no host flag for the first step.
    """

    def __init__(self, params: _Params, lr: float = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))
        self._counts = {}      # param -> 0-d float32 tensor: the steps its momentum buffer took

    def _check_options(self, options):
        """PyTorch's checks and messages, with NaN refused: lr, momentum and weight_decay at
        least 0, dampening a finite number, Nesterov only with momentum and no dampening."""
        check_hyperparameter(options["lr"], "learning rate", lambda v: 0.0 <= v)
        check_hyperparameter(options["momentum"], "momentum value", lambda v: 0.0 <= v)
        check_hyperparameter(options["dampening"], "dampening value", math.isfinite)
        check_hyperparameter(options["weight_decay"], "weight_decay value", lambda v: 0.0 <= v)
        nesterov = options["nesterov"]
        check_flag(nesterov, "nesterov")
        check_flag(options.get("maximize", False), "maximize")
        if nesterov and (options["momentum"] <= 0 or options["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _init_state(self, p, group):
        state = self.state.get(p, {})
        if group["momentum"] and "momentum_buffer" not in state:
            self._new_state(p, "momentum buffer")
            state["momentum_buffer"] = zeros_like(p)
            self._counts[p] = zeros((), dtype=float32, device=p.device)
        elif group["momentum"] and p not in self._counts:     # a loaded buffer: it took steps
            self._new_state(p, "momentum step count")
            self._counts[p] = ones((), dtype=float32, device=p.device)
        self.state[p] = state

    def _loaded_state(self):
        self._counts = {}

    def step(self) -> None:
        """One update of every parameter with a gradient."""
        self._check_grads()
        with no_grad():
            for _, g, device, _, params, lr in self._plan():
                bufs = steps = None
                if g["momentum"]:
                    bufs = [self.state[p]["momentum_buffer"]._data for p in params]
                    steps = [self._counts[p]._data for p in params]
                grads = [p.grad for p in params]
                grads = negated(grads) if g["maximize"] else [x._data for x in grads]
                device.backend.sgd_step_multi(
                    [p._data for p in params], grads, bufs, steps, lr,
                    g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"])
                for p in params:
                    p._version_counter.bump("SGD.step")   # backward must not use the old value
