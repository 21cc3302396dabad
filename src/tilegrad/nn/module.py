"""Module and Parameter: the containers that layers and models are built from, as torch.nn."""
from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from .. import dtypes
from ..autograd import no_grad
from ..hooks import RemovableHandle
from ..tensor import Tensor, _DeviceLike
from . import _module_hooks as hooks

_M = TypeVar("_M", bound="Module")   # methods that return the module return its own type


class Parameter(Tensor):
    """A tensor that a Module registers as one of its parameters (requires grad by default)."""

    def __init__(self, data: Tensor, requires_grad: bool = True) -> None:
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter: expects a Tensor, got {type(data).__name__}")
        super().__init__(data._data, data.device, requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


# Each forward hook lives in one of the first two dicts (by handle id, in calling order); the
# others mark the ids of the hooks registered with_kwargs or always_call, as torch keeps them.
_HOOK_DICTS = ("_forward_pre_hooks", "_forward_hooks", "_forward_pre_hooks_with_kwargs",
               "_forward_hooks_with_kwargs", "_forward_hooks_always_called")

IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of layers and models: ``forward`` computes, ``__call__`` calls it.

    Attributes that are Parameters or Modules are registered, in the order they are set, so
    that ``named_parameters`` and ``state_dict`` use PyTorch's dotted names ("0.weight").
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", collections.OrderedDict())
        object.__setattr__(self, "_modules", collections.OrderedDict())
        object.__setattr__(self, "_buffers", collections.OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "training", True)
        for name in _HOOK_DICTS:
            object.__setattr__(self, name, collections.OrderedDict())

    def __setattr__(self, name: str, value: Any) -> None:
        """PyTorch's rules: a Parameter or Module value is registered under ``name`` (a
        re-assigned one keeps its place in the order); a name registered as a parameter takes
        only a Parameter or None, one registered as a module only a Module or None, so that a
        plain tensor never silently replaces a parameter."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("Module.__init__() must be called before assigning attributes")
        params, modules, buffers = self._parameters, self._modules, self._buffers
        if name in buffers and not isinstance(value, (Parameter, Module)):
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' of "
                                f"{type(self).__name__} (tilegrad.Tensor or None expected)")
            buffers[name] = value
        elif isinstance(value, Parameter):
            modules.pop(name, None)
            params[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                f"of {type(self).__name__} (tilegrad.nn.Parameter or None "
                                f"expected)")
            params[name] = None
        elif isinstance(value, Module):
            params.pop(name, None)
            modules[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module "
                                f"'{name}' of {type(self).__name__} (tilegrad.nn.Module or None "
                                f"expected)")
            modules[name] = None
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._buffers.pop(name, None)
        self._non_persistent_buffers_set.discard(name)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (a Parameter, or None for an absent optional one) under ``name``."""
        if param is None:
            self._parameters[name] = None
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register ``tensor`` as a buffer: state that is not a parameter (BatchNorm's running
        mean, say). ``to()`` moves it with the parameters; it is in ``state_dict`` unless
        ``persistent=False``. ``tensor`` may be None (an absent buffer, left out of the state)."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("Module.__init__() must be called before register_buffer")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"register_buffer: a buffer's name is a non-empty string without "
                           f"'.', got {name!r}")
        if name in self._parameters or name in self._modules or (
                hasattr(self, name) and name not in self._buffers):
            raise KeyError(f"register_buffer: attribute '{name}' already exists in "
                           f"{type(self).__name__}")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: cannot assign '{type(tensor).__name__}' as buffer "
                            f"'{name}' (tilegrad.Tensor or None expected)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` (or None) as the child ``name``, as ``setattr`` does."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {type(module).__name__} is not a Module subclass")
        if not isinstance(name, str):
            raise TypeError(f"add_module: module name should be a string, got "
                            f"{type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"add_module: module name can't be empty or contain \".\", got "
                           f"{name!r}")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"add_module: attribute '{name}' already exists")
        self._modules[name] = module
        object.__setattr__(self, name, module)

    def register_module(self, name: str, module: Module | None) -> None:
        """Alias of ``add_module``."""
        self.add_module(name, module)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not (self._forward_pre_hooks or self._forward_hooks):
            return self.forward(*args, **kwargs)
        return hooks.call_with_hooks(self, args, kwargs)

    # ------------------------------------------------------------ forward hooks
    def register_forward_pre_hook(self, hook: Callable[..., Any], *, prepend: bool = False,
                                  with_kwargs: bool = False) -> RemovableHandle:
        """Call ``hook(module, args)`` before each forward (``hook(module, args, kwargs)`` with
        ``with_kwargs``); what it returns, if not None, replaces the arguments (a tuple, or a
        single value; ``(args, kwargs)`` with ``with_kwargs``). ``prepend`` runs it first."""
        return hooks.register(self, "_forward_pre_hooks", hook, prepend,
                              with_kwargs and "_forward_pre_hooks_with_kwargs")

    def register_forward_hook(self, hook: Callable[..., Any], *, prepend: bool = False,
                              with_kwargs: bool = False,
                              always_call: bool = False) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after each forward (``hook(module, args, kwargs,
        output)`` with ``with_kwargs``); what it returns, if not None, replaces the output.
        ``always_call`` runs it even when forward raises."""
        return hooks.register(self, "_forward_hooks", hook, prepend,
                              with_kwargs and "_forward_hooks_with_kwargs",
                              always_call and "_forward_hooks_always_called")

    # ------------------------------------------------------------ traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, module) for each direct child, a module registered twice only once (as torch)."""
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator[Module]:
        return (m for _, m in self.named_children())

    def named_modules(self, memo: set[Module] | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for ``self`` and every descendant; each module once unless
        ``remove_duplicate=False``. ``memo`` holds modules to leave out (as torch's)."""
        seen = set() if memo is None else memo
        yield from self._named_modules(seen, prefix, remove_duplicate)

    def _named_modules(self, seen, prefix, remove_duplicate):
        if remove_duplicate:
            if self in seen:
                return
            seen.add(self)
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m._named_modules(seen, f"{prefix}.{name}" if prefix else name,
                                            remove_duplicate)

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def _named_members(self, table, prefix, recurse, remove_duplicate):
        """(dotted name, value) for each entry of ``table`` (``_parameters`` or ``_buffers``)
        of ``self`` (and its descendants with ``recurse``), each once unless
        ``remove_duplicate=False``."""
        seen = set()
        mods = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                if recurse else [(prefix, self)])
        for mod_name, m in mods:
            for name, v in getattr(m, table).items():
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                seen.add(id(v))
                yield (f"{mod_name}.{name}" if mod_name else name), v

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) for every parameter (of ``self`` only, ``recurse=False``),
        each once, in registration order."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, buffer) for every buffer, each once, in registration order."""
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        return (b for _, b in self.named_buffers(recurse=recurse))

    def get_submodule(self, target: str) -> Module:
        """The descendant at the dotted path ``target`` ("" is ``self``)."""
        mod = self
        for item in target.split(".") if target else []:
            if item not in mod._modules or mod._modules[item] is None:
                kind = "not an nn.Module" if hasattr(mod, item) else "not an attribute"
                raise AttributeError(f"get_submodule: {type(mod).__name__} has no submodule "
                                     f"`{item}` ({kind}), in target '{target}'")
            mod = mod._modules[item]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at the dotted path ``target`` ("block.0.weight")."""
        return self._get_member(target, "_parameters", "nn.Parameter")

    def get_buffer(self, target: str) -> Tensor:
        """The buffer at the dotted path ``target``."""
        return self._get_member(target, "_buffers", "buffer")

    def _get_member(self, target, table, kind):
        path, _, name = target.rpartition(".")
        mod = self.get_submodule(path)
        if getattr(mod, table).get(name) is None:
            what = f"`{name}` is not an {kind}" if hasattr(mod, name) else \
                f"{type(mod).__name__} has no attribute `{name}`"
            raise AttributeError(f"get_{kind.split('.')[-1].lower()}: {what} (target "
                                 f"'{target}')")
        return getattr(mod, table)[name]

    def _state_slots(self, prefix=""):
        """(dotted name, tensor) for every entry of ``state_dict``: each module's parameters,
        then its persistent buffers, then its children's, as the keys of torch's."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                yield prefix + name, b
        for name, m in self._modules.items():
            if m is not None:
                yield from m._state_slots(f"{prefix}{name}.")

    def _parameter_slots(self, prefix=""):
        """(dotted name, Parameter) for every place a parameter is registered: a shared one under
        each of its names, as the keys of torch's ``state_dict``."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, m in self._modules.items():
            if m is not None:
                yield from m._parameter_slots(f"{prefix}{name}.")

    def apply(self: _M, fn: Callable[[Module], object]) -> _M:
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------ modes and devices
    def train(self: _M, mode: bool = True) -> _M:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self: _M) -> _M:
        return self.train(False)

    def requires_grad_(self: _M, requires_grad: bool = True) -> _M:
        """Switch gradients of every parameter on or off (to freeze a part of a model)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (or fill it with zeros, ``set_to_none=False``)."""
        for p in self.parameters():
            p._zero_grad(set_to_none)

    def to(self: _M, device: _DeviceLike | npt.DTypeLike = None,
           dtype: npt.DTypeLike | None = None) -> _M:
        """Move (and/or cast) every parameter and buffer in place; returns the module."""
        if device is not None and not isinstance(device, str) and not hasattr(device, "backend"):
            device, dtype = None, device     # m.to(tilegrad.float64)
        if dtype is not None:
            dtype = dtypes.as_dtype(dtype, "Module.to")
        with no_grad():
            for m in self.modules():
                for _name, p in m._parameters.items():
                    if p is None:
                        continue
                    moved = p.to(device, dtype)
                    if moved is not p:
                        p._data, p.device = moved._data, moved.device
                        p.grad = None
                for b in m._buffers.values():
                    if b is None:
                        continue
                    # as torch: a dtype casts floating-point buffers only (a step count stays
                    # an integer)
                    cast = dtype if dtype is not None and b.dtype in dtypes.FLOATING else None
                    moved = b.to(device, cast) if device is not None or cast is not None else b
                    if moved is not b:
                        b._data, b.device = moved._data, moved.device
        return self

    def cuda(self: _M, device: int | str | None = None) -> _M:
        """Move every parameter and buffer to "cuda" (or "cuda:<device>")."""
        return self.to("cuda" if device is None else
                       f"cuda:{device}" if isinstance(device, int) else device)

    def cpu(self: _M) -> _M:
        """Move every parameter and buffer to "cpu"."""
        return self.to("cpu")

    def double(self: _M) -> _M:
        return self.to(dtype=dtypes.float64)

    def float(self: _M) -> _M:
        return self.to(dtype=dtypes.float32)

    # ------------------------------------------------------------ state
    def state_dict(self, *, destination: dict[str, Any] | None = None, prefix: str = "",
                   keep_vars: bool = False) -> dict[str, Any]:
        """An ordered dict of NumPy copies of the parameters and persistent buffers, under
        PyTorch's dotted names (each after ``prefix``); with ``keep_vars`` the tensors
        themselves. Written into ``destination`` when one is given."""
        out = collections.OrderedDict() if destination is None else destination
        for k, p in self._state_slots(prefix):
            out[k] = p if keep_vars else p.numpy()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any],
                        strict: bool = True) -> IncompatibleKeys:
        """Copy the arrays of ``state_dict`` into the parameters (values cast to each parameter's
        dtype). Every key and shape is checked before anything is written; with ``strict``,
        missing or unexpected keys are errors, else they are returned."""
        own = dict(self._state_slots())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict: {type(self).__name__}: missing keys {missing}, "
                             f"unexpected keys {unexpected}")
        arrays = {}
        for k, p in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            v = v.numpy() if isinstance(v, Tensor) else v
            if hasattr(v, "detach"):           # a torch tensor: take its values
                v = v.detach().cpu().numpy()
            v = np.asarray(v)
            if v.dtype.kind not in "fiu":
                raise TypeError(f"load_state_dict: '{k}' holds {v.dtype}, expects numbers")
            if tuple(v.shape) != p.shape:
                raise ValueError(f"load_state_dict: size mismatch for '{k}': the checkpoint has "
                                 f"shape {tuple(v.shape)}, the model {p.shape}")
            arrays[k] = v.astype(p.dtype)
        for k, v in arrays.items():   # everything checked: now write
            p = own[k]
            p.device.backend.copy_into(p._data, p.device.backend.from_numpy(v))
            p._version_counter.bump("load_state_dict")
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()
                 if m is not None]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
