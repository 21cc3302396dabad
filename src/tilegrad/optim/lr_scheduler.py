"""Learning-rate schedules."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import CaptureError
from .optimizer import Optimizer, check_hyperparameter


def _check_int(value, what, valid):
    """An integer (not a bool) for which ``valid`` holds: TypeError, then ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Invalid {what}: {value!r} is not an integer")
    if not valid(value):
        raise ValueError(f"Invalid {what}: {value}")


class StepLR:
    """Multiply each group's learning rate by ``gamma`` every ``step_size`` calls of ``step()``:
    ``lr = base_lr * gamma ** (epoch // step_size)``, as torch.optim.lr_scheduler.StepLR.

    Args:
        optimizer: an Optimizer; each group's ``initial_lr`` (its lr if unset) is its base.
        step_size: epochs between decays, an int >= 1.
        gamma: the decay factor, a finite number >= 0.
        last_epoch: the epoch done, an int >= -1 (-1: none; the constructor steps to 0).
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"StepLR: {type(optimizer).__name__} is not an Optimizer")
        self._check(step_size, gamma, last_epoch)
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    @staticmethod
    def _check(step_size, gamma, last_epoch):
        """step_size a positive integer, gamma a finite number at least 0 (a negative one would
        make negative learning rates, which the optimizers refuse), last_epoch an integer from
        -1 (PyTorch checks none of them; NaN and 0 break the schedule)."""
        _check_int(step_size, "step_size", lambda v: v >= 1)
        check_hyperparameter(gamma, "gamma", lambda v: 0.0 <= v < math.inf)
        _check_int(last_epoch, "last_epoch", lambda v: v >= -1)

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def step(self) -> None:
        """Go to the next epoch and set each group's learning rate, on the device at once (so
        that a replayed CUDA graph uses it). While a graph is captured a change raises
        CaptureError and nothing changes."""
        groups = self.optimizer.param_groups
        before = self.last_epoch, [g["lr"] for g in groups]
        self.last_epoch += 1
        for g, base in zip(groups, self.base_lrs):
            g["lr"] = base * self.gamma ** (self.last_epoch // self.step_size)
        try:
            self.optimizer._write_lrs()
        except CaptureError:
            self.last_epoch = before[0]
            for g, lr in zip(groups, before[1]):
                g["lr"] = lr
            raise
        self._last_lr = [g["lr"] for g in groups]

    def state_dict(self) -> dict[str, Any]:
        return {"step_size": self.step_size, "gamma": self.gamma, "base_lrs": list(self.base_lrs),
                "last_epoch": self.last_epoch, "_last_lr": list(self._last_lr)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the schedule; its values are checked as the constructor's, and the learning
        rates as the optimizers', before anything changes."""
        self._check(state_dict["step_size"], state_dict["gamma"], state_dict["last_epoch"])
        for name in ("base_lrs", "_last_lr"):
            lrs = state_dict[name]
            if not isinstance(lrs, (list, tuple)) or len(lrs) != len(self.optimizer.param_groups):
                raise ValueError(f"StepLR.load_state_dict: {name} must hold one learning rate per "
                                 f"parameter group ({len(self.optimizer.param_groups)}), "
                                 f"got {lrs!r}")
            for lr in lrs:
                check_hyperparameter(lr, "learning rate", lambda v: 0.0 <= v)
        self.step_size, self.gamma = state_dict["step_size"], state_dict["gamma"]
        self.base_lrs = list(state_dict["base_lrs"])
        self.last_epoch, self._last_lr = state_dict["last_epoch"], list(state_dict["_last_lr"])
