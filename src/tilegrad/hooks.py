"""Hooks: the handles that registering one returns, and the hooks of one gradient.

``RemovableHandle`` is torch.utils.hooks.RemovableHandle: ``handle.remove()`` unregisters the
hook, and ``with handle:`` removes it on exit. Module hooks (nn/module.py) and tensor hooks
(``Tensor.register_hook``) both use it.

``GradHooks`` holds what runs on the gradient of one tensor during backward: the hooks of
``register_hook`` in registration order (each may return a replacement gradient), then, for a
non-leaf tensor that called ``retain_grad()``, the copy into its ``.grad`` (last, as torch 2's
retain_grad, so ``.grad`` sees what the hooks returned).
"""
from __future__ import annotations

import collections
import itertools
import weakref
from collections.abc import Callable
from typing import Any

_ids = itertools.count()


class RemovableHandle:
    """Removes one hook from the dicts it was registered in (as torch's RemovableHandle)."""

    def __init__(self, hooks_dict: collections.OrderedDict, *,
                 extra_dict: list[collections.OrderedDict] | None = None) -> None:
        # weak references (an OrderedDict takes them, a dict does not): a handle kept after its
        # module or tensor is gone keeps nothing alive
        self.hooks_dict_ref = weakref.ref(hooks_dict)
        self.extra_dict_ref = [weakref.ref(d) for d in (extra_dict or [])]
        self.id = next(_ids)

    def remove(self) -> None:
        """Unregister the hook (doing it twice is harmless)."""
        for ref in (self.hooks_dict_ref, *self.extra_dict_ref):
            d = ref()
            if d is not None:
                d.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class GradHooks:
    """The hooks on one tensor's gradient; ``device`` is where that gradient lives."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.hooks: collections.OrderedDict[int, Callable] = collections.OrderedDict()
        self.retain = None   # a weak reference to the non-leaf tensor that retains its grad

    def add(self, hook: Callable) -> RemovableHandle:
        if not callable(hook):
            raise TypeError(f"register_hook: expects a callable, got {type(hook).__name__}")
        handle = RemovableHandle(self.hooks)
        self.hooks[handle.id] = hook
        return handle

    def run(self, g: Any) -> Any:
        """Call each hook with the gradient (a Tensor over the array ``g``); a hook that returns
        a tensor replaces it. Returns the gradient array that goes on."""
        from .tensor import Tensor
        for hook in list(self.hooks.values()):
            out = hook(Tensor(g, self.device))
            if out is not None:
                g = _checked(hook, out, g, self.device)
        tensor = self.retain() if self.retain is not None else None
        if tensor is not None:
            be = self.device.backend
            grad = be.copy(g) if tensor.grad is None else be.binary("add", tensor.grad._data, g)
            tensor.grad = Tensor(grad, self.device)
        return g


def _checked(hook, out, g, device):
    """The array of the tensor ``out`` a hook returned in place of the gradient ``g``."""
    from .tensor import Tensor
    name = getattr(hook, "__name__", type(hook).__name__)
    if not isinstance(out, Tensor):
        raise TypeError(f"hook '{name}' returned a {type(out).__name__}: a hook on a gradient "
                        f"returns a Tensor or None")
    if out.shape != tuple(g.shape):
        raise RuntimeError(f"hook '{name}' has changed the size of value: the gradient has shape "
                           f"{tuple(g.shape)}, the hook returned {out.shape}")
    if out.dtype != g.dtype:
        raise RuntimeError(f"hook '{name}' has changed the type of value (was {g.dtype} got "
                           f"{out.dtype})")
    if out.device != device:
        raise RuntimeError(f"hook '{name}' has changed the device of value (was {device} got "
                           f"{out.device})")
    return out._data
