"""RMSprop (Hinton's lecture notes), as torch.optim.RMSprop: centered and momentum variants."""
from __future__ import annotations

from ..creation import zeros, zeros_like
from ..dtypes import float32
from .optimizer import Optimizer, _Params, assign, check_flag, check_hyperparameter


class RMSprop(Optimizer):
    """``v = alpha*v + (1-alpha)*g^2``; with ``centered`` also ``a = alpha*a + (1-alpha)*g``
    and ``v - a^2`` in place of ``v``; ``d = g / (sqrt(v) + eps)``; with momentum
    ``buf = momentum*buf + d``, ``p -= lr*buf``, else ``p -= lr*d``. ``g += weight_decay*p``
    first, and with ``maximize`` the gradient is negated before that.

    State per parameter, as torch's: ``step`` (0-d float32), ``square_avg``, ``momentum_buffer``
    (with momentum), ``grad_avg`` (centered). Runs as tensor ops, one parameter at a time.
    """

    def __init__(self, params: _Params, lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0, momentum: float = 0,
                 centered: bool = False, *, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps,
                                      centered=centered, weight_decay=weight_decay,
                                      maximize=maximize))

    def _check_options(self, options):
        """PyTorch's checks and messages, with NaN refused."""
        check_hyperparameter(options["lr"], "learning rate", lambda v: 0.0 <= v)
        check_hyperparameter(options["eps"], "epsilon value", lambda v: 0.0 <= v)
        check_hyperparameter(options["momentum"], "momentum value", lambda v: 0.0 <= v)
        check_hyperparameter(options["weight_decay"], "weight_decay value", lambda v: 0.0 <= v)
        check_hyperparameter(options["alpha"], "alpha value", lambda v: 0.0 <= v)
        check_flag(options["centered"], "centered")
        check_flag(options["maximize"], "maximize")

    def _init_state(self, p, group):
        state = self.state.setdefault(p, {})
        wanted = ["step", "square_avg"] + (["momentum_buffer"] if group["momentum"] > 0 else []) \
            + (["grad_avg"] if group["centered"] else [])
        for name in wanted:
            if name not in state:
                self._new_state(p, "RMSprop state")
                state[name] = zeros((), dtype=float32, device=p.device) if name == "step" \
                    else zeros_like(p)

    def step(self) -> None:
        """One update of every parameter with a gradient."""
        self._step_each(self._update)

    @staticmethod
    def _update(p, grad, state, group, lr):
        alpha = group["alpha"]
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p
        assign(state["step"], state["step"] + 1)
        square_avg = state["square_avg"]
        assign(square_avg, square_avg * alpha + grad * grad * (1 - alpha))
        if group["centered"]:
            grad_avg = state["grad_avg"]
            assign(grad_avg, grad_avg + (grad - grad_avg) * (1 - alpha))
            avg = (square_avg - grad_avg * grad_avg).sqrt() + group["eps"]
        else:
            avg = square_avg.sqrt() + group["eps"]
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            assign(buf, buf * group["momentum"] + grad / avg)
            assign(p, p - lr * buf)
        else:
            assign(p, p - lr * (grad / avg))
