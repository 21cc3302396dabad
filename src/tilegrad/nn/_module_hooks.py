"""Forward hooks of a Module: registering them, and calling forward through them.

PyTorch's calling conventions: a pre-hook is ``hook(module, args)`` and may return new
positional arguments (a tuple, or one value that becomes a 1-tuple); with ``with_kwargs`` it is
``hook(module, args, kwargs)`` and may return ``(args, kwargs)``. A forward hook is
``hook(module, args, output)`` (``hook(module, args, kwargs, output)`` with ``with_kwargs``)
and may return a replacement output. Hooks run in registration order (``prepend`` puts one
first); a hook registered with ``always_call`` also runs when forward raises.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from ..hooks import RemovableHandle


def register(module: Any, table: str, hook: Callable, prepend: bool,
             *flags: str | bool) -> RemovableHandle:
    """Put ``hook`` into ``module.<table>``; each name in ``flags`` is a dict that marks it
    (with_kwargs, always_call). Returns its handle, which removes it from all of them."""
    if not callable(hook):
        raise TypeError(f"register{table[:-1]}: expects a callable, got {type(hook).__name__}")
    marks = [getattr(module, f) for f in flags if f]
    handle = RemovableHandle(getattr(module, table), extra_dict=marks)
    getattr(module, table)[handle.id] = hook
    if prepend:
        getattr(module, table).move_to_end(handle.id, last=False)
    for m in marks:
        m[handle.id] = True
    return handle


def call_with_hooks(module: Any, args: tuple, kwargs: dict) -> Any:
    """``module.forward(*args, **kwargs)`` with the pre-hooks before and the hooks after."""
    for hook_id, hook in list(module._forward_pre_hooks.items()):
        if hook_id in module._forward_pre_hooks_with_kwargs:
            got = hook(module, args, kwargs)
            if got is not None:
                if not (isinstance(got, tuple) and len(got) == 2):
                    raise RuntimeError(f"forward pre-hook must return None or a tuple of "
                                       f"(new_args, new_kwargs), but got {got}.")
                args, kwargs = got
        else:
            got = hook(module, args)
            if got is not None:
                args = got if isinstance(got, tuple) else (got,)
    result, called = None, set()
    try:
        result = module.forward(*args, **kwargs)
        for hook_id, hook in list(module._forward_hooks.items()):
            called.add(hook_id)
            result = _run(module, hook_id, hook, args, kwargs, result)
    except Exception:
        _always_called(module, called, args, kwargs, result)
        raise
    return result


def _run(module, hook_id, hook, args, kwargs, result):
    if hook_id in module._forward_hooks_with_kwargs:
        got = hook(module, args, kwargs, result)
    else:
        got = hook(module, args, result)
    return result if got is None else got


def _always_called(module, called, args, kwargs, result):
    """After forward (or a hook) raised: the always_call hooks not run yet; an error of theirs
    is only a warning, so that the first error is the one raised."""
    for hook_id, hook in list(module._forward_hooks.items()):
        if hook_id in module._forward_hooks_always_called and hook_id not in called:
            try:
                result = _run(module, hook_id, hook, args, kwargs, result)
            except Exception as e:
                warnings.warn(f"forward hook with always_call=True raised an exception that was "
                              f"silenced as another error was raised in forward: {e}",
                              stacklevel=3)
