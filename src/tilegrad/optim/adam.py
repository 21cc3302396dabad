"""Adam (Kingma and Ba), as torch.optim.Adam without amsgrad."""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import no_grad
from ..creation import tensor, zeros, zeros_like
from ..dtypes import float32
from .optimizer import Optimizer, _Params, check_hyperparameter


class Adam(Optimizer):
    """``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g^2``,
    ``p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``, with ``g += weight_decay*p`` first.

    State per parameter: ``step`` (a 0-d float32 tensor on the parameter's device, as PyTorch's),
    ``exp_avg``, ``exp_avg_sq``. The parameters of a group with gradients are updated together,
    one ``adam_step_multi`` per device and dtype: on "cuda" one launch increments their step
    counts and one updates up to 12 parameters, the bias corrections computed in the kernel from
    the count, so a replayed CUDA graph counts steps itself. A saved ``step`` may be an int, a
    float or a 0-d array (older tilegrad files, PyTorch's).
    """

    def __init__(self, params: _Params, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0) -> None:
        betas = tuple(betas) if isinstance(betas, (tuple, list)) else betas
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _check_options(self, options):
        """PyTorch's checks and messages, with NaN refused: lr, eps and weight_decay at least 0,
        betas a pair in [0, 1)."""
        check_hyperparameter(options["lr"], "learning rate", lambda v: 0.0 <= v)
        check_hyperparameter(options["eps"], "epsilon value", lambda v: 0.0 <= v)
        betas = options["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"Invalid betas: {betas!r} is not a pair of numbers")
        for k, b in enumerate(betas):
            check_hyperparameter(b, f"beta parameter at index {k}", lambda v: 0.0 <= v < 1.0)
        check_hyperparameter(options["weight_decay"], "weight_decay value", lambda v: 0.0 <= v)

    def _init_state(self, p, group):
        if not self.state.get(p):
            self._new_state(p, "Adam state")
            self.state[p] = dict(step=zeros((), dtype=float32, device=p.device),
                                 exp_avg=zeros_like(p), exp_avg_sq=zeros_like(p))

    def _load_scalar(self, name, value, p, k):
        """``step`` (a number of steps, at least 0) becomes a 0-d float32 tensor on ``p``'s
        device."""
        if name != "step":
            return super()._load_scalar(name, value, p, k)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or \
                not 0 <= value < math.inf:
            raise ValueError(f"Adam.load_state_dict: 'step' of parameter {k} must be a number of "
                             f"steps (at least 0), got {value!r}")
        return tensor(np.array(value, dtype=np.float32), device=p.device)

    def step(self) -> None:
        self._check_grads()
        with no_grad():
            for _, g, device, _, params, lr in self._plan():
                b1, b2 = g["betas"]
                states = [self.state[p] for p in params]
                device.backend.adam_step_multi(
                    [p._data for p in params], [p.grad._data for p in params],
                    [s["exp_avg"]._data for s in states], [s["exp_avg_sq"]._data for s in states],
                    [s["step"]._data for s in states], lr, b1, b2, g["eps"], g["weight_decay"])
                for p in params:
                    p._version_counter.bump("Adam.step")   # backward must not use the old value
