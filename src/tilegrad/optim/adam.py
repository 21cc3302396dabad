"""Adam (Kingma and Ba) and its AMSGrad variant, as torch.optim.Adam; AdamW is Adam with
``decoupled_weight_decay=True`` (adamw.py)."""
from __future__ import annotations

import math

from ..autograd import no_grad
from ..creation import zeros, zeros_like
from ..dtypes import float32
from ..tensor import Tensor
from .optimizer import (Optimizer, _Params, assign, check_flag, check_hyperparameter,
                        forbid_in_capture, negated)


class Adam(Optimizer):
    """``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g^2``,
    ``p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``, with ``g += weight_decay*p`` first
    (or, with ``decoupled_weight_decay``, ``p *= 1 - lr*weight_decay`` first: AdamW). With
    ``amsgrad`` the running maximum ``max_exp_avg_sq`` of ``v`` replaces ``v`` in the
    denominator; with ``maximize`` the gradient is negated first.

    State per parameter: ``step`` (a 0-d float32 tensor on the parameter's device, as PyTorch's),
    ``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq`` with amsgrad). Without amsgrad the
    parameters of a group with gradients are updated together, one ``adam_step_multi`` per
    device and dtype: on "cuda" one launch increments their step counts and one updates up to
    12 parameters, the bias corrections computed in the kernel from the count, so a replayed
    CUDA graph counts steps itself. The decoupled decay is one tensor op per parameter before
    it. AMSGrad runs as tensor ops per parameter and reads the step count on the host (a sync,
    refused while capturing a CUDA graph). A saved ``step`` may be an int, a float or a 0-d
    array (older tilegrad files, PyTorch's).
    """

    def __init__(self, params: _Params, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False) -> None:
        betas = tuple(betas) if isinstance(betas, (tuple, list)) else betas
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _check_options(self, options):
        """PyTorch's checks and messages, with NaN refused: lr, eps and weight_decay at least 0,
        betas a pair in [0, 1), the flags bools."""
        check_hyperparameter(options["lr"], "learning rate", lambda v: 0.0 <= v)
        check_hyperparameter(options["eps"], "epsilon value", lambda v: 0.0 <= v)
        betas = options["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"Invalid betas: {betas!r} is not a pair of numbers")
        for k, b in enumerate(betas):
            check_hyperparameter(b, f"beta parameter at index {k}", lambda v: 0.0 <= v < 1.0)
        check_hyperparameter(options["weight_decay"], "weight_decay value", lambda v: 0.0 <= v)
        for flag in ("amsgrad", "maximize", "decoupled_weight_decay"):
            check_flag(options.get(flag, False), flag)

    def _init_state(self, p, group):
        if not self.state.get(p):
            self._new_state(p, "Adam state")
            self.state[p] = dict(step=zeros((), dtype=float32, device=p.device),
                                 exp_avg=zeros_like(p), exp_avg_sq=zeros_like(p))
        if group["amsgrad"] and "max_exp_avg_sq" not in self.state[p]:
            self._new_state(p, "AMSGrad maximum")
            self.state[p]["max_exp_avg_sq"] = zeros_like(p)

    def step(self) -> None:
        """One update of every parameter with a gradient."""
        self._check_grads()
        with no_grad():
            for _, g, device, _, params, lr in self._plan():
                if g["amsgrad"]:
                    forbid_in_capture(device, f"{type(self).__name__}.step with amsgrad: it "
                                              f"reads step counts on the host")
                    lr_t = Tensor._make(lr, device, False)
                    for p in params:
                        grad = (-p.grad if g["maximize"] else p.grad)
                        self._amsgrad_update(p, grad, self.state[p], g, lr_t)
                else:
                    self._fused_update(g, device, params, lr)
                for p in params:
                    p._version_counter.bump("Adam.step")   # backward must not use the old value

    def _fused_update(self, g, device, params, lr):
        """Every parameter of a group at once: ``adam_step_multi`` (the decoupled decay first,
        one tensor op per parameter)."""
        b1, b2 = g["betas"]
        states = [self.state[p] for p in params]
        grads = [p.grad for p in params]
        grads = negated(grads) if g["maximize"] else [x._data for x in grads]
        wd = g["weight_decay"]
        if g["decoupled_weight_decay"]:
            if wd:
                self._decay(params, Tensor._make(lr, device, False), wd)
            wd = 0
        device.backend.adam_step_multi(
            [p._data for p in params], grads,
            [s["exp_avg"]._data for s in states], [s["exp_avg_sq"]._data for s in states],
            [s["step"]._data for s in states], lr, b1, b2, g["eps"], wd)

    @staticmethod
    def _decay(params, lr, wd):
        """AdamW's decoupled weight decay, ``p *= 1 - lr*weight_decay``, as torch computes it."""
        factor = 1 - lr * wd
        for p in params:
            assign(p, p * factor)

    def _amsgrad_update(self, p, grad, state, g, lr):
        """torch's single-tensor AMSGrad step, as tensor ops on one parameter."""
        b1, b2 = g["betas"]
        if g["decoupled_weight_decay"]:
            if g["weight_decay"]:
                self._decay([p], lr, g["weight_decay"])
        elif g["weight_decay"]:
            grad = grad + g["weight_decay"] * p
        step, m, v, vmax = (state[k] for k in ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"))
        assign(step, step + 1)
        t = float(step)
        assign(m, m + (grad - m) * (1 - b1))
        assign(v, v * b2 + grad * grad * (1 - b2))
        assign(vmax, vmax.maximum(v))
        denom = vmax.sqrt() / math.sqrt(1 - b2 ** t) + g["eps"]
        assign(p, p - (lr / (1 - b1 ** t)) * m / denom)
