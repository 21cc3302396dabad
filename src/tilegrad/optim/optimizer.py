"""Optimizer: parameter groups, per-parameter state, and state dicts in PyTorch's layout.

Every step's numbers live on the device, so that a training step captured as a CUDA graph and
replayed goes on computing what eager steps would: each group's learning rate is a 0-d device
array per (device, dtype), written from ``group["lr"]`` by ``step()`` when it changed (and by a
scheduler's ``step()`` at once, through ``_write_lrs``), and step counts are device tensors that
the update kernels increment. Writing a changed learning rate or making a parameter's state
(its first step) is host work: while a CUDA graph is captured either raises ``CaptureError``,
before anything changed. Options other than ``lr`` (momentum, betas...) are passed at each
launch: a replayed graph keeps the values they had when it was captured.
"""
from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ..autograd import no_grad
from ..backends import Device
from ..tensor import Tensor

# What an optimizer takes: parameters, or parameter groups (dicts with "params" and options).
_Params = Iterable[Tensor] | Iterable[dict[str, Any]]


def assign(dst: Tensor, value: Tensor) -> None:
    """Write ``value`` into ``dst`` in place (its storage kept: a state buffer, a parameter)."""
    dst.device.backend.copy_into(dst._data, value._data)


def negated(grads: list[Tensor]) -> list[Any]:
    """The backend arrays of ``-g`` for each gradient (``maximize=True`` for a fused step)."""
    return [g.device.backend.unary("neg", g._data) for g in grads]


def forbid_in_capture(device: Device, what: str) -> None:
    """Raise CaptureError naming ``what`` if ``device`` is capturing a CUDA graph."""
    forbid = getattr(device.backend, "forbid_in_capture", None)
    if forbid is not None:
        forbid(what)


def check_flag(value: object, what: str) -> None:
    """``value`` is a bool (TypeError "Invalid <what>: ... is not a bool" otherwise)."""
    if not isinstance(value, (bool, np.bool_)) and value not in (0, 1):
        raise TypeError(f"Invalid {what}: {value!r} is not a bool")


def check_hyperparameter(value: object, what: str, valid: Callable[[Any], bool]) -> None:
    """The hyperparameter ``value`` is a real number (TypeError otherwise) for which ``valid``
    holds (ValueError "Invalid <what>: <value>", PyTorch's message, otherwise). ``valid`` says
    what is allowed, ``lambda v: 0.0 <= v``, so that NaN, for which every comparison is false,
    fails it (PyTorch's ``if lr < 0.0`` lets NaN through)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"Invalid {what}: {value!r} is not a number")
    if not valid(value):
        raise ValueError(f"Invalid {what}: {value}")


class Optimizer:
    """Base class. ``param_groups`` is a list of dicts, each with ``params`` and the options;
    ``state`` maps a parameter to a dict of its buffers (device arrays) and counters."""

    def __init__(self, params: _Params, defaults: dict[str, Any]) -> None:
        self._check_options(defaults)
        self.defaults = defaults
        if isinstance(params, (Tensor, set, frozenset)):
            raise TypeError(f"{type(self).__name__}: params must be an ordered iterable of "
                            f"tensors or of dicts, got a {type(params).__name__}")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        self.state = {}
        self._lrs = {}      # (group index, device, dtype) -> [0-d device array, the lr it holds]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a dict with ``params`` (a tensor or an ordered iterable of them) and options; the
        options it lacks come from ``defaults``. Everything is checked before it is added."""
        if not isinstance(group, dict):
            raise TypeError(f"{type(self).__name__}: a parameter group must be a dict, got "
                            f"{type(group).__name__}")
        group = dict(group)
        params = group["params"]
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{type(self).__name__}: a group's params must be ordered, not a set")
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor) or not p.requires_grad or not p.is_leaf:
                raise TypeError(f"{type(self).__name__}: can only optimize leaf tensors that "
                                f"require grad, got {type(p).__name__}")
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in group["params"]):
            raise ValueError(f"{type(self).__name__}: some parameters appear in more than one "
                             f"parameter group")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown options {sorted(unknown)}")
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_options(group)
        self.param_groups.append(group)

    def _check_options(self, options):
        """Check one group's hyperparameters (``defaults``, a group, or a loaded state dict's
        group): TypeError or ValueError, as the subclass's constructor. Nothing to check here."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient, or with ``set_to_none=False`` fill the existing ones
        with zeros in place: one ``fill_multi`` per device (one launch on "cuda" for up to 64
        gradients of a dtype). A gradient that records a graph (``create_graph``) or is not
        contiguous is replaced by zeros instead."""
        if set_to_none:
            for p in self._params():
                p._zero_grad(True)
            return
        by_device = {}
        for p in self._params():
            g = p.grad
            if g is None:
                continue
            if g._ctx is not None or not g._data.flags.c_contiguous:
                p._zero_grad(False)
            else:
                by_device.setdefault(g.device, []).append(g)
        for device, grads in by_device.items():
            device.backend.fill_multi([g._data for g in grads], 0)
            for g in grads:
                g._version_counter.bump("zero_grad")

    def step(self) -> None:
        raise NotImplementedError

    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

    # ------------------------------------------------------------ the device side of a step
    def _plan(self):
        """What ``step`` updates: ``(group index, group, device, dtype, params, lr)`` for the
        parameters with a gradient, by group, device and dtype in order; ``lr`` is the group's
        0-d learning-rate array for them. Makes missing state (``_init_state``) and writes
        changed learning rates first, so that a CaptureError leaves everything as it was."""
        plan = []
        for k, group in enumerate(self.param_groups):
            parts = {}
            for p in group["params"]:
                if p.grad is not None:
                    parts.setdefault((p.device, p.dtype), []).append(p)
            for (device, dtype), params in parts.items():
                for p in params:
                    self._init_state(p, group)
                plan.append((k, group, device, dtype, params, self._device_lr(k, device, dtype)))
        return plan

    def _init_state(self, p, group):
        """Make ``self.state[p]`` what the update needs (call ``_new_state`` for any tensor)."""

    def _step_each(self, update: Callable[..., None]) -> None:
        """A step composed of tensor ops, one parameter at a time (options without a fused
        kernel): ``update(p, grad, state, group, lr)`` with ``lr`` the group's learning rate as
        a 0-d tensor on the device, so that a schedule reaches it as it reaches the fused steps.
        Each update writes its results in place (``assign``)."""
        self._check_grads()
        with no_grad():
            for _, group, device, _, params, lr in self._plan():
                lr = Tensor._make(lr, device, False)
                for p in params:
                    grad = -p.grad if group.get("maximize") else p.grad
                    update(p, grad, self.state[p], group, lr)
                    p._version_counter.bump(f"{type(self).__name__}.step")

    def _new_state(self, p, what):
        """Host work before a parameter's first step: refused while capturing a CUDA graph."""
        forbid_in_capture(p.device, f"{type(self).__name__}.step: making the {what} of a "
                                    f"parameter (run one step before capturing)")

    def _device_lr(self, k, device, dtype):
        """The 0-d array on ``device`` holding group ``k``'s learning rate in ``dtype``, written
        first if ``group["lr"]`` changed since the last write."""
        key = (k, device, np.dtype(dtype))
        entry = self._lrs.get(key)
        lr = self.param_groups[k]["lr"]
        if entry is None or entry[1] != lr:
            forbid_in_capture(device, f"{type(self).__name__}: writing the new learning rate "
                                      f"{lr} of parameter group {k} (set it before capturing)")
            value = device.backend.from_numpy(np.array(lr, dtype=dtype))
            if entry is None:
                entry = self._lrs[key] = [value, lr]
            else:
                device.backend.copy_into(entry[0], value)   # in place: graphs hold its address
                entry[1] = lr
        return entry[0]

    def _write_lrs(self):
        """Write every group's learning rate to the device arrays that hold it, where it changed
        (a scheduler calls this, so that a replayed CUDA graph sees the new rate)."""
        for k, device, dtype in list(self._lrs):
            if k < len(self.param_groups):
                self._device_lr(k, device, dtype)

    def _check_grads(self):
        """Every gradient matches its parameter; checked before ``step`` updates anything, so a
        bad one changes no parameter and no state."""
        for k, p in enumerate(self._params()):
            g = p.grad
            if g is None:
                continue
            if g.dtype != p.dtype or g.device != p.device:
                raise TypeError(f"{type(self).__name__}.step: the gradient of parameter {k} is "
                                f"{g.dtype} on {g.device}, the parameter {p.dtype} on {p.device}")
            if g.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.step: the gradient of parameter {k} has "
                                 f"shape {g.shape}, the parameter {p.shape}")

    def _load_scalar(self, name, value, p, k):
        """The state entry ``name`` of parameter ``p`` (number ``k``) for the saved scalar
        ``value`` (a number; a 0-d array or tensor was turned into one). ``step`` (a number of
        steps, at least 0) becomes a 0-d float32 tensor on ``p``'s device, as PyTorch keeps it;
        anything else is kept as it is."""
        if name != "step":
            return copy.deepcopy(value)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or \
                not 0 <= value < math.inf:
            raise ValueError(f"{type(self).__name__}.load_state_dict: 'step' of parameter {k} "
                             f"must be a number of steps (at least 0), got {value!r}")
        return Tensor(p.device.backend.from_numpy(np.array(value, dtype=np.float32)), p.device)

    def _loaded_state(self):
        """Called once ``self.state`` holds a loaded state (for state kept beside it)."""

    def state_dict(self) -> dict[str, Any]:
        """``{'state': {index: {name: value}}, 'param_groups': [...]}`` as torch: parameters are
        numbered in group order, tensors (buffers, Adam's 0-d float32 ``step``) are NumPy
        copies."""
        index = {id(p): k for k, p in enumerate(self._params())}
        state = {}
        for p, s in self.state.items():
            state[index[id(p)]] = {k: (v.device.backend.to_numpy(v._data) if isinstance(v, Tensor)
                                       else copy.deepcopy(v)) for k, v in s.items()}
        groups = []
        for g in self.param_groups:
            d = {k: v for k, v in g.items() if k != "params"}
            d["params"] = [index[id(p)] for p in g["params"]]
            groups.append(d)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore options and buffers. Everything is checked before anything changes: the group
        sizes, the options' types and values (as the constructor checks them) and the buffers'
        shapes."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the saved parameter groups "
                             f"{[len(g['params']) for g in groups]} do not match this optimizer's "
                             f"{[len(g['params']) for g in self.param_groups]}")
        for saved in groups:   # options of torch's we don't have are fine only when off
            unsupported = {k: v for k, v in saved.items()
                           if k not in self.defaults and k not in ("params", "initial_lr") and v}
            if unsupported:
                raise ValueError(f"{type(self).__name__}.load_state_dict: options {unsupported} "
                                 f"are not supported")
        for k, (saved, group) in enumerate(zip(groups, self.param_groups)):
            options = {key: v for key, v in group.items() if key != "params"}
            options.update({key: tuple(v) if isinstance(v, list) else v
                            for key, v in saved.items() if key in self.defaults})
            try:
                self._check_options(options)
                if "initial_lr" in saved:
                    check_hyperparameter(saved["initial_lr"], "initial learning rate",
                                         lambda v: 0.0 <= v)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{type(self).__name__}.load_state_dict: parameter group {k}: "
                              f"{e}") from None
        by_index = {}
        for saved, group in zip(groups, self.param_groups):
            by_index.update(zip(saved["params"], group["params"]))
        new_state = {}
        for k, s in state_dict["state"].items():
            p = by_index.get(int(k))
            if p is None:
                raise ValueError(f"{type(self).__name__}.load_state_dict: state for unknown "
                                 f"parameter {k}")
            entry = {}
            for name, v in s.items():
                v = v.numpy() if isinstance(v, Tensor) else v
                if isinstance(v, np.ndarray) and v.ndim > 0:
                    if tuple(v.shape) != p.shape:
                        raise ValueError(f"{type(self).__name__}.load_state_dict: '{name}' of "
                                         f"parameter {k} has shape {tuple(v.shape)}, "
                                         f"the parameter {p.shape}")
                    v = Tensor(p.device.backend.from_numpy(v.astype(p.dtype)), p.device)
                else:
                    v = self._load_scalar(name, v.item() if isinstance(v, np.ndarray) else v,
                                          p, k)
                entry[name] = v
            new_state[p] = entry
        self.state = new_state
        self._loaded_state()
        for saved, group in zip(groups, self.param_groups):
            for key, v in saved.items():
                if key in self.defaults or key == "initial_lr":
                    group[key] = tuple(v) if isinstance(v, list) else v
