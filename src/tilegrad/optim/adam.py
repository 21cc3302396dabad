"""Adam (Kingma and Ba), as torch.optim.Adam without amsgrad."""
from ..autograd import no_grad
from ..creation import zeros_like
from .optimizer import Optimizer, check_hyperparameter


class Adam(Optimizer):
    """``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g^2``,
    ``p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``, with ``g += weight_decay*p`` first.
    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``; one fused ``adam_step`` each."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
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

    def step(self):
        self._check_grads()
        with no_grad():
            for g in self.param_groups:
                b1, b2 = g["betas"]
                for p in g["params"]:
                    if p.grad is None:
                        continue
                    state = self.state.setdefault(p, {})
                    if not state:
                        state.update(step=0, exp_avg=zeros_like(p), exp_avg_sq=zeros_like(p))
                    state["step"] += 1
                    p.device.backend.adam_step(p.data, p.grad.data, state["exp_avg"].data,
                                               state["exp_avg_sq"].data, state["step"], g["lr"],
                                               b1, b2, g["eps"], g["weight_decay"])
                    p._version_counter.bump("Adam.step")   # backward must not use the old value
