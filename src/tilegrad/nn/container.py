"""Containers as torch.nn has them: ModuleList, ModuleDict, ParameterList, ParameterDict.

A container registers what it holds as its children (or parameters) under their index ("0",
"1", ...) or key, so a model that keeps ``self.layers = ModuleList([...])`` has parameters and
``state_dict`` keys "layers.0.weight", as in PyTorch. The list containers renumber after an
insert or a delete, as PyTorch's do, so that the keys stay "0".."n-1". ``_IndexedModules``
holds the list methods that ``ModuleList`` and ``Sequential`` share.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..tensor import Tensor
from .module import Module, Parameter


def _index(idx: Any, n: int, what: str) -> int:
    """``idx`` as a position in 0..n-1 (a negative one counts from the end)."""
    if not isinstance(idx, int) or isinstance(idx, bool):
        raise TypeError(f"{what}: indices must be integers or slices, not {type(idx).__name__}")
    if not -n <= idx < n:
        raise IndexError(f"{what}: index {idx} is out of range for length {n}")
    return idx % n


class _IndexedModules(Module):
    """List methods over ``_modules`` (ModuleList's, and Sequential's)."""

    def _sliced(self, items: list[tuple[str, Module]]) -> Module:
        return type(self)([m for _, m in items])

    def _renumber(self, modules: list[Module]) -> None:
        """Hold ``modules`` under the keys "0".."n-1", in this order."""
        for key in list(self._modules):
            delattr(self, key)
        for k, m in enumerate(modules):
            self.add_module(str(k), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int | slice) -> Any:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return self._sliced(items[idx])
        return items[_index(idx, len(items), type(self).__name__)][1]

    def __setitem__(self, idx: int, module: Module) -> None:
        keys = list(self._modules)
        setattr(self, keys[_index(idx, len(keys), type(self).__name__)], module)

    def __delitem__(self, idx: int | slice) -> None:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            del mods[idx]
        else:
            del mods[_index(idx, len(mods), type(self).__name__)]
        self._renumber(mods)

    def append(self, module: Module) -> Any:
        """Add ``module`` at the end; returns the container."""
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> Any:
        """Append each of ``modules``; returns the container."""
        for m in list(modules):
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Put ``module`` before position ``index`` (as list.insert)."""
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}.insert: {type(module).__name__} is not a "
                            f"Module subclass")
        mods = list(self._modules.values())
        mods.insert(index, module)
        self._renumber(mods)

    def pop(self, idx: int = -1) -> Module:
        """Remove and return the module at ``idx``."""
        m = self[idx]
        del self[idx]
        return m

    def __iadd__(self, modules: Iterable[Module]) -> Any:
        return self.extend(modules)

    def __dir__(self) -> list[str]:   # as torch: no "0", "1" in dir()
        return [k for k in super().__dir__() if not k.isdigit()]


class ModuleList(_IndexedModules):
    """Modules in a list, registered as children "0", "1", ... (torch.nn.ModuleList)."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __add__(self, other: Iterable[Module]) -> ModuleList:
        return ModuleList([*self, *other])


class ModuleDict(Module):
    """Modules under string keys, in insertion order (torch.nn.ModuleDict)."""

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None
                 = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        if key not in self._modules:
            raise KeyError(key)
        delattr(self, key)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()

    def pop(self, key: str) -> Module:
        """Remove and return the module under ``key``."""
        m = self[key]
        del self[key]
        return m

    def clear(self) -> None:
        for key in list(self._modules):
            del self[key]

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        """Add (or replace) each (key, module) of a mapping or of an iterable of pairs."""
        _update(self, modules, "ModuleDict")


class ParameterList(Module):
    """Parameters in a list, registered as "0", "1", ... (torch.nn.ParameterList). A plain
    tensor put in one becomes a Parameter."""

    def __init__(self, values: Iterable[Tensor] | None = None) -> None:
        super().__init__()
        if values is not None:
            self.extend(values)

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._parameters.values())

    def __getitem__(self, idx: int | slice) -> Any:
        params = list(self._parameters.values())
        if isinstance(idx, slice):
            return ParameterList(params[idx])
        return params[_index(idx, len(params), "ParameterList")]

    def __setitem__(self, idx: int, param: Tensor) -> None:
        idx = _index(idx, len(self), "ParameterList")
        self.register_parameter(str(idx), _as_parameter(param, "ParameterList"))

    def append(self, value: Tensor) -> ParameterList:
        """Add ``value`` at the end; returns the list."""
        self.register_parameter(str(len(self)), _as_parameter(value, "ParameterList"))
        return self

    def extend(self, values: Iterable[Tensor]) -> ParameterList:
        """Append each of ``values``; returns the list."""
        for v in list(values):
            self.append(v)
        return self

    def __iadd__(self, values: Iterable[Tensor]) -> ParameterList:
        return self.extend(values)

    def extra_repr(self) -> str:
        return "\n".join(f"({k}): Parameter containing: [{p.dtype} of size {p.shape}]"
                         for k, p in self._parameters.items())


class ParameterDict(Module):
    """Parameters under string keys, in insertion order (torch.nn.ParameterDict). A plain
    tensor put in one becomes a Parameter."""

    def __init__(self, parameters: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | None
                 = None) -> None:
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def __getitem__(self, key: str) -> Parameter:
        return self._parameters[key]

    def __setitem__(self, key: str, value: Tensor) -> None:
        if not isinstance(key, str) or not key or "." in key:
            raise KeyError(f"ParameterDict: a key is a non-empty string without '.', got {key!r}")
        self.register_parameter(key, _as_parameter(value, "ParameterDict"))

    def __delitem__(self, key: str) -> None:
        if key not in self._parameters:
            raise KeyError(key)
        delattr(self, key)

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parameters)

    def __contains__(self, key: object) -> bool:
        return key in self._parameters

    def keys(self) -> Iterable[str]:
        return self._parameters.keys()

    def values(self) -> Iterable[Parameter]:
        return self._parameters.values()

    def items(self) -> Iterable[tuple[str, Parameter]]:
        return self._parameters.items()

    def get(self, key: str, default: Any = None) -> Any:
        return self._parameters.get(key, default)

    def pop(self, key: str) -> Parameter:
        """Remove and return the parameter under ``key``."""
        p = self[key]
        del self[key]
        return p

    def clear(self) -> None:
        for key in list(self._parameters):
            del self[key]

    def update(self, parameters: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]]) -> None:
        """Add (or replace) each (key, tensor) of a mapping or of an iterable of pairs."""
        _update(self, parameters, "ParameterDict")

    def extra_repr(self) -> str:
        return "\n".join(f"({k}): Parameter containing: [{p.dtype} of size {p.shape}]"
                         for k, p in self._parameters.items())


def _as_parameter(value, container):
    if isinstance(value, Parameter):
        return value
    if isinstance(value, Tensor):   # as torch: Parameter(value), which requires grad
        return Parameter(value)
    raise TypeError(f"{container}: holds tensors, got {type(value).__name__}")


def _update(container, pairs, what):
    """``container[key] = value`` for each pair, all checked to be pairs first."""
    if isinstance(pairs, (Mapping, ModuleDict, ParameterDict)):
        pairs = list(pairs.items())
    elif isinstance(pairs, Iterable) and not isinstance(pairs, (str, bytes)):
        pairs = list(pairs)
        for k, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"{what}.update: element #{k} should be a (key, value) pair, "
                                 f"got {pair!r}")
    else:
        raise TypeError(f"{what}.update: expects a mapping or an iterable of (key, value) "
                        f"pairs, got {type(pairs).__name__}")
    for key, value in pairs:
        container[key] = value

