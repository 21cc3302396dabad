"""Learning-rate schedules, as torch.optim.lr_scheduler: StepLR, MultiStepLR, ExponentialLR,
CosineAnnealingLR, LambdaLR and ReduceLROnPlateau.

Each schedule computes the new rates with PyTorch's own (chainable) formulas from the groups'
current ``lr``, so that a schedule's sequence equals torch's, also after a rate set by hand.
A changed rate is written to the device at once (``Optimizer._write_lrs``), so that a replayed
CUDA graph uses it; while a graph is captured that raises CaptureError and the schedule and
the rates are left as they were. State dicts hold the schedule's attributes except the
optimizer, as torch's; loading one checks its values first, as the constructor does.
"""
from __future__ import annotations

import math
import types
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
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


def _check_gamma(gamma):
    """A finite factor at least 0: a negative one would make negative learning rates, which the
    optimizers refuse (PyTorch checks none; NaN would make every rate NaN)."""
    check_hyperparameter(gamma, "gamma", lambda v: 0.0 <= v < math.inf)


class LRScheduler:
    """Base class: ``base_lrs`` (each group's ``initial_lr``), ``last_epoch`` (-1: none; the
    constructor steps to 0), ``get_last_lr()``; a subclass gives ``get_lr()`` (the rates for
    ``last_epoch``, just advanced) and ``_check_args(values)`` (its own arguments)."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: {type(optimizer).__name__} is not an "
                            f"Optimizer")
        _check_int(last_epoch, "last_epoch", lambda v: v >= -1)
        groups = optimizer.param_groups
        if last_epoch != -1 and any("initial_lr" not in g for g in groups):
            raise KeyError(f"{type(self).__name__}: resuming with last_epoch={last_epoch} "
                           f"needs 'initial_lr' in every parameter group (load the optimizer's "
                           f"state dict first)")
        for g in groups:
            g.setdefault("initial_lr", g["lr"])
        self.optimizer = optimizer
        self.base_lrs = [g["initial_lr"] for g in groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._is_initial = True
        self.step()
        self._is_initial = False

    def _check_args(self, values: Mapping[str, Any]) -> None:
        """Check the subclass's arguments in ``values`` (constructor's or a state dict's)."""

    def get_lr(self) -> list[float]:
        """The learning rates for ``last_epoch`` (called by ``step`` once it advanced)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step`` set, one per parameter group."""
        return list(self._last_lr)

    def _current_lrs(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def step(self) -> None:
        """Go to the next epoch and set each group's learning rate (see the module's note on
        CUDA graphs)."""
        def advance():
            self._step_count += 1
            self.last_epoch += 1
            return self.get_lr()
        self._update(advance)

    def _update(self, new_lrs: Callable[[], list[float]]) -> None:
        """Run ``new_lrs`` (which may change the schedule's attributes) and set the rates it
        returns; if writing them raises CaptureError, restore everything first."""
        saved, lrs = dict(self.__dict__), self._current_lrs()
        try:
            for g, lr in zip(self.optimizer.param_groups, new_lrs()):
                g["lr"] = lr
            self.optimizer._write_lrs()
        except CaptureError:
            self.__dict__.clear()
            self.__dict__.update(saved)
            for g, lr in zip(self.optimizer.param_groups, lrs):
                g["lr"] = lr
            raise
        self._last_lr = self._current_lrs()

    def state_dict(self) -> dict[str, Any]:
        """Every attribute but the optimizer, as torch's."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the schedule. Its values are checked as the constructor's, and the learning
        rates as the optimizers', before anything changes; keys this schedule does not have
        (from another torch version) are ignored."""
        values = {**LRScheduler.state_dict(self), **state_dict}
        name = type(self).__name__
        try:
            self._check_args(values)
            _check_int(values["last_epoch"], "last_epoch", lambda v: v >= -1)
            for key in ("base_lrs", "_last_lr"):
                lrs = values.get(key)
                if not isinstance(lrs, (list, tuple)) or \
                        len(lrs) != len(self.optimizer.param_groups):
                    raise ValueError(f"{key} must hold one learning rate per parameter group "
                                     f"({len(self.optimizer.param_groups)}), got {lrs!r}")
                for lr in lrs:
                    check_hyperparameter(lr, "learning rate", lambda v: 0.0 <= v)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name}.load_state_dict: {e}") from None
        for k, v in state_dict.items():
            if k in self.__dict__ and k != "optimizer":
                self.__dict__[k] = list(v) if isinstance(v, tuple) else v


class StepLR(LRScheduler):
    """Multiply each group's learning rate by ``gamma`` every ``step_size`` epochs
    (``base_lr * gamma ** (epoch // step_size)`` unless set by hand), as torch's.

    Args:
        optimizer: an Optimizer; each group's ``initial_lr`` (its lr if unset) is its base.
        step_size: epochs between decays, an int >= 1.
        gamma: the decay factor, a finite number >= 0.
        last_epoch: the epoch done, an int >= -1 (-1: none; the constructor steps to 0).
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self._check_args(dict(step_size=step_size, gamma=gamma))
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def _check_args(self, values):
        """step_size a positive integer (0 divides by zero in torch's first step)."""
        _check_int(values["step_size"], "step_size", lambda v: v >= 1)
        _check_gamma(values["gamma"])

    def get_lr(self) -> list[float]:
        """The current rates, times gamma where the epoch ends a period."""
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class MultiStepLR(LRScheduler):
    """Multiply each group's learning rate by ``gamma`` at each epoch in ``milestones`` (by
    ``gamma ** k`` at a milestone listed k times), as torch's."""

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        milestones = Counter(milestones)
        self._check_args(dict(milestones=milestones, gamma=gamma))
        self.milestones, self.gamma = milestones, gamma
        super().__init__(optimizer, last_epoch)

    def _check_args(self, values):
        """milestones integers (epochs), gamma a finite number at least 0."""
        for m in values["milestones"]:
            _check_int(m, "milestone", lambda v: True)
        _check_gamma(values["gamma"])

    def get_lr(self) -> list[float]:
        """The current rates, times gamma (per listing) at a milestone."""
        if self.last_epoch not in self.milestones:
            return self._current_lrs()
        factor = self.gamma ** self.milestones[self.last_epoch]
        return [lr * factor for lr in self._current_lrs()]


class ExponentialLR(LRScheduler):
    """Multiply each group's learning rate by ``gamma`` every epoch, as torch's."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self._check_args(dict(gamma=gamma))
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _check_args(self, values):
        """gamma a finite number at least 0."""
        _check_gamma(values["gamma"])

    def get_lr(self) -> list[float]:
        """The current rates times gamma (unchanged by the constructor's step)."""
        if self._is_initial:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``, computed by torch's
    recursive formula from the current rate (so equal to torch's to the last bit), going back
    up after ``T_max`` epochs as torch's does."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,  # noqa: N803
                 last_epoch: int = -1) -> None:
        self._check_args(dict(T_max=T_max, eta_min=eta_min))
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def _check_args(self, values):
        """T_max a positive integer, eta_min a finite number at least 0."""
        _check_int(values["T_max"], "T_max", lambda v: v >= 1)
        check_hyperparameter(values["eta_min"], "eta_min", lambda v: 0.0 <= v < math.inf)

    def get_lr(self) -> list[float]:
        """torch's three cases: the constructor's step, a resumed first step, and the rest."""
        t, T, lo = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current_lrs()
        if self._step_count == 1 and t > 0:
            return [lo + (base - lo) * (1 + math.cos(t * math.pi / T)) / 2
                    for base in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [lr + (base - lo) * (1 - math.cos(math.pi / T)) / 2
                    for base, lr in zip(self.base_lrs, self._current_lrs())]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (lr - lo) + lo for lr in self._current_lrs()]


class LambdaLR(LRScheduler):
    """``base_lr * lr_lambda(epoch)``: one function for every group, or a list of one per
    group. Its state dict holds, as torch's, no functions: ``lr_lambdas`` is a list with None
    for a function or lambda and the attributes (``__dict__``) of a callable object."""

    def __init__(self, optimizer: Optimizer,
                 lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
                 last_epoch: int = -1) -> None:
        n = len(optimizer.param_groups) if isinstance(optimizer, Optimizer) else 0
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"LambdaLR: expected {n} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        if not all(callable(f) for f in self.lr_lambdas):
            raise TypeError(f"LambdaLR: lr_lambda must be callable, got {lr_lambda!r}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """Each base rate times its function of the epoch."""
        return [base * f(self.last_epoch) for f, base in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self) -> dict[str, Any]:
        """The attributes, with ``lr_lambdas`` as torch saves it."""
        state = {k: v for k, v in super().state_dict().items() if k != "lr_lambdas"}
        state["lr_lambdas"] = [None if isinstance(f, types.FunctionType) else dict(f.__dict__)
                               for f in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the schedule; a callable object's saved attributes go back into it."""
        saved = state_dict.get("lr_lambdas", [None] * len(self.lr_lambdas))
        if len(saved) != len(self.lr_lambdas):
            raise ValueError(f"LambdaLR.load_state_dict: lr_lambdas holds {len(saved)} entries, "
                             f"this schedule {len(self.lr_lambdas)}")
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "lr_lambdas"})
        for f, attrs in zip(self.lr_lambdas, saved):
            if attrs is not None:
                f.__dict__.update(attrs)


class ReduceLROnPlateau(LRScheduler):
    """Multiply each group's learning rate by ``factor`` (not below its ``min_lr``) once the
    metric given to ``step(metric)`` has not improved for more than ``patience`` epochs, then
    wait ``cooldown`` epochs; as torch's. Improvement: below ``best * (1 - threshold)``
    (``mode='min'``, ``threshold_mode='rel'``), below ``best - threshold`` ('abs'), or above
    for ``mode='max'``. A change smaller than ``eps`` is not made. Reading ``metric`` (a number
    or a 0-d tensor) is a host read."""

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float | list[float] = 0,
                 eps: float = 1e-8) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"ReduceLROnPlateau: {type(optimizer).__name__} is not an Optimizer")
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"ReduceLROnPlateau: expected {n} min_lrs, got {len(min_lr)}")
            default_min_lr, min_lrs = None, list(min_lr)
        else:
            default_min_lr, min_lrs = min_lr, [min_lr] * n
        self._check_args(dict(mode=mode, factor=factor, patience=patience, threshold=threshold,
                              threshold_mode=threshold_mode, cooldown=cooldown,
                              min_lrs=min_lrs, eps=eps))
        self.factor, self.optimizer = factor, optimizer
        self.default_min_lr, self.min_lrs = default_min_lr, min_lrs
        self.patience, self.cooldown, self.eps = patience, cooldown, eps
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = self._current_lrs()
        self.best, self.num_bad_epochs, self.cooldown_counter = self.mode_worse, 0, 0

    def _check_args(self, values):
        """torch's checks (factor below 1, the two modes by name), and the numbers' ranges."""
        if values["mode"] not in ("min", "max"):
            raise ValueError(f"mode {values['mode']!r} is unknown (use 'min' or 'max')")
        if values["threshold_mode"] not in ("rel", "abs"):
            raise ValueError(f"threshold mode {values['threshold_mode']!r} is unknown "
                             f"(use 'rel' or 'abs')")
        check_hyperparameter(values["factor"], "factor", lambda v: 0.0 <= v < 1.0)
        _check_int(values["patience"], "patience", lambda v: v >= 0)
        _check_int(values["cooldown"], "cooldown", lambda v: v >= 0)
        check_hyperparameter(values["threshold"], "threshold", lambda v: 0.0 <= v < math.inf)
        check_hyperparameter(values["eps"], "eps", lambda v: 0.0 <= v)
        for lr in values["min_lrs"]:
            check_hyperparameter(lr, "min_lr", lambda v: 0.0 <= v)

    @property
    def in_cooldown(self) -> bool:
        """Whether the epochs after a reduction are still being waited out."""
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether the metric ``a`` improves on ``best`` by the threshold."""
        if self.mode == "min":
            return a < (best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                        else best - self.threshold)
        return a > (best * (self.threshold + 1.0) if self.threshold_mode == "rel"
                    else best + self.threshold)

    def step(self, metrics: float) -> None:  # type: ignore[override]
        """Count one epoch with the metric ``metrics``; reduce the rates if it is time."""
        current = float(metrics)

        def advance():
            self.last_epoch += 1
            if self.is_better(current, self.best):
                self.best, self.num_bad_epochs = current, 0
            else:
                self.num_bad_epochs += 1
            if self.in_cooldown:
                self.cooldown_counter -= 1
                self.num_bad_epochs = 0     # bad epochs in the cooldown do not count
            if self.num_bad_epochs <= self.patience:
                return self._current_lrs()
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
            return self._reduced()
        self._update(advance)

    def _reduced(self):
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(f"ReduceLROnPlateau: the optimizer has {len(groups)} "
                                   f"parameter groups, min_lrs {len(self.min_lrs)}")
            self.min_lrs = [self.default_min_lr] * len(groups)
        lrs = []
        for lr, low in zip(self._current_lrs(), self.min_lrs):
            new = max(lr * self.factor, low)
            lrs.append(new if lr - new > self.eps else lr)
        return lrs

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the schedule (checked first, as the constructor's arguments)."""
        values = {**LRScheduler.state_dict(self), **state_dict}
        try:
            self._check_args(values)
            _check_int(values["last_epoch"], "last_epoch", lambda v: v >= 0)
        except (TypeError, ValueError) as e:
            raise type(e)(f"ReduceLROnPlateau.load_state_dict: {e}") from None
        for k, v in state_dict.items():
            if k in self.__dict__ and k != "optimizer":
                self.__dict__[k] = list(v) if isinstance(v, tuple) else v
