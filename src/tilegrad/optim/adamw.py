"""AdamW (Loshchilov and Hutter): Adam with the weight decay taken out of the gradient, as
torch.optim.AdamW."""
from __future__ import annotations

from .adam import Adam
from .optimizer import _Params


class AdamW(Adam):
    """``p *= 1 - lr*weight_decay``, then Adam's update without weight decay (see ``Adam``,
    whose fused multi-tensor step it runs; amsgrad composed per parameter). Its groups hold
    ``decoupled_weight_decay=True``, as torch's, which is no argument here."""

    def __init__(self, params: _Params, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def _check_options(self, options):
        """Adam's checks; ``decoupled_weight_decay`` stays True (a group may not turn it off)."""
        super()._check_options(options)
        if options.get("decoupled_weight_decay") is not True:
            raise ValueError("AdamW: decoupled_weight_decay is always True, got "
                             f"{options.get('decoupled_weight_decay')!r}")
