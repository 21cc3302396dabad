"""Optimizer: parameter groups, per-parameter state, and state dicts in PyTorch's layout."""
import copy
import numbers

import numpy as np

from ..tensor import Tensor


def check_hyperparameter(value, what, valid):
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

    def __init__(self, params, defaults):
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
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group):
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

    def zero_grad(self, set_to_none=True):
        """Drop every parameter's gradient (or fill it with zeros, ``set_to_none=False``)."""
        for p in self._params():
            p._zero_grad(set_to_none)

    def step(self):
        raise NotImplementedError

    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

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

    def state_dict(self):
        """``{'state': {index: {name: value}}, 'param_groups': [...]}`` as torch: parameters are
        numbered in group order, buffers are NumPy copies."""
        index = {id(p): k for k, p in enumerate(self._params())}
        state = {}
        for p, s in self.state.items():
            state[index[id(p)]] = {k: (v.device.backend.to_numpy(v.data) if isinstance(v, Tensor)
                                       else copy.deepcopy(v)) for k, v in s.items()}
        groups = []
        for g in self.param_groups:
            d = {k: v for k, v in g.items() if k != "params"}
            d["params"] = [index[id(p)] for p in g["params"]]
            groups.append(d)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
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
                raise ValueError(f"{type(self).__name__}.load_state_dict: state for unknown parameter {k}")
            entry = {}
            for name, v in s.items():
                if isinstance(v, np.ndarray) and v.ndim > 0 or isinstance(v, Tensor):
                    v = v.numpy() if isinstance(v, Tensor) else v
                    if tuple(v.shape) != p.shape:
                        raise ValueError(f"{type(self).__name__}.load_state_dict: '{name}' of "
                                         f"parameter {k} has shape {tuple(v.shape)}, the parameter {p.shape}")
                    v = Tensor(p.device.backend.from_numpy(v.astype(p.dtype)), p.device)
                elif isinstance(v, np.ndarray):
                    v = v.item()
                entry[name] = v
            new_state[p] = entry
        self.state = new_state
        for saved, group in zip(groups, self.param_groups):
            for key, v in saved.items():
                if key in self.defaults or key == "initial_lr":
                    group[key] = tuple(v) if isinstance(v, list) else v
