"""Adadelta (Zeiler) and Adagrad (Duchi et al.), as torch.optim's: adaptive steps from running
sums of squared gradients, composed of tensor ops one parameter at a time."""
from __future__ import annotations

from ..creation import full, zeros, zeros_like
from ..dtypes import float32
from .optimizer import Optimizer, _Params, assign, check_flag, check_hyperparameter


class Adadelta(Optimizer):
    """``v = rho*v + (1-rho)*g^2``, ``d = sqrt(u + eps) / sqrt(v + eps) * g``,
    ``u = rho*u + (1-rho)*d^2``, ``p -= lr*d``; ``g += weight_decay*p`` first (after negating
    it with ``maximize``). State as torch's: ``step``, ``square_avg`` (v), ``acc_delta`` (u)."""

    def __init__(self, params: _Params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, *, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _check_options(self, options):
        """PyTorch's checks and messages (rho in [0, 1]), with NaN refused."""
        check_hyperparameter(options["lr"], "learning rate", lambda v: 0.0 <= v)
        check_hyperparameter(options["rho"], "rho value", lambda v: 0.0 <= v <= 1.0)
        check_hyperparameter(options["eps"], "epsilon value", lambda v: 0.0 <= v)
        check_hyperparameter(options["weight_decay"], "weight_decay value", lambda v: 0.0 <= v)
        check_flag(options["maximize"], "maximize")

    def _init_state(self, p, group):
        if not self.state.get(p):
            self._new_state(p, "Adadelta state")
            self.state[p] = dict(step=zeros((), dtype=float32, device=p.device),
                                 square_avg=zeros_like(p), acc_delta=zeros_like(p))

    def step(self) -> None:
        """One update of every parameter with a gradient."""
        self._step_each(self._update)

    @staticmethod
    def _update(p, grad, state, group, lr):
        rho, eps = group["rho"], group["eps"]
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p
        assign(state["step"], state["step"] + 1)
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        assign(square_avg, square_avg * rho + grad * grad * (1 - rho))
        delta = (acc_delta + eps).sqrt() / (square_avg + eps).sqrt() * grad
        assign(acc_delta, acc_delta * rho + delta * delta * (1 - rho))
        assign(p, p - lr * delta)


class Adagrad(Optimizer):
    """``s += g^2``, ``p -= lr / (1 + (t-1)*lr_decay) * g / (sqrt(s) + eps)`` at step t;
    ``g += weight_decay*p`` first (after negating it with ``maximize``). State as torch's,
    made for every parameter at construction (``s`` starts at ``initial_accumulator_value``):
    ``step``, ``sum``. With ``lr_decay`` the step count is read on the host (a sync)."""

    def __init__(self, params: _Params, lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, *, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps,
                                      weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      maximize=maximize))
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _check_options(self, options):
        """PyTorch's checks and messages, with NaN refused."""
        check_hyperparameter(options["lr"], "learning rate", lambda v: 0.0 <= v)
        check_hyperparameter(options["lr_decay"], "lr_decay value", lambda v: 0.0 <= v)
        check_hyperparameter(options["weight_decay"], "weight_decay value", lambda v: 0.0 <= v)
        check_hyperparameter(options["initial_accumulator_value"],
                             "initial_accumulator_value", lambda v: 0.0 <= v)
        check_hyperparameter(options["eps"], "epsilon value", lambda v: 0.0 <= v)
        check_flag(options["maximize"], "maximize")

    def _init_state(self, p, group):
        if not self.state.get(p):
            self._new_state(p, "Adagrad state")
            self.state[p] = dict(step=zeros((), dtype=float32, device=p.device),
                                 sum=full(p.shape, group["initial_accumulator_value"],
                                          dtype=p.dtype, device=p.device))

    def step(self) -> None:
        """One update of every parameter with a gradient."""
        self._step_each(self._update)

    @staticmethod
    def _update(p, grad, state, group, lr):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p
        assign(state["step"], state["step"] + 1)
        if group["lr_decay"]:
            lr = lr / (1 + (float(state["step"]) - 1) * group["lr_decay"])
        assign(state["sum"], state["sum"] + grad * grad)
        assign(p, p - lr * (grad / (state["sum"].sqrt() + group["eps"])))
