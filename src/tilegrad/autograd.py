"""Reverse-mode automatic differentiation: ``Function`` nodes and the backward pass.

A ``Function`` computes on backend arrays. ``Fn.apply(*inputs, **options)`` runs ``forward`` on
the inputs' arrays and, when gradients are being recorded and some input requires one, records
an edge per tensor input: the node that made it (a Function and which of its outputs), or the
leaf tensor itself. ``Tensor.backward`` later walks those edges and calls ``backward(grad)``,
which returns one gradient array (or None) per tensor input.

Edges are taken when the node is made, so an in-place operation that later gives an input a new
history does not rewire nodes that used its old value. Two rules keep results honest, as in
PyTorch:

- **Saved tensors have versions.** Every tensor's storage has a version counter that in-place
  operations bump (views and ``detach()`` share it). When a node saves an input or output array
  for its backward, it notes that counter's value; backward refuses, before computing anything,
  when one has changed since.
- **A graph is freed by its backward.** Unless ``retain_graph=True``, backward drops what each
  node saved; a second backward through a node that had saved something raises.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:   # tensor.py imports this module
    from .tensor import Tensor

_state = threading.local()
_F = TypeVar("_F", bound=Callable[..., Any])


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


def _set_enabled(mode):
    _state.enabled = mode


class _GradMode(contextlib.ContextDecorator):
    """Sets the grad mode on entry (or on construction) and restores the previous one on exit.
    Usable as ``with``, and as a decorator (each call enters and exits)."""

    mode = None

    def __init__(self) -> None:
        self._before = []

    def __enter__(self) -> None:
        self._before.append(is_grad_enabled())
        _set_enabled(self.mode)

    def __exit__(self, *exc: object) -> bool:
        _set_enabled(self._before.pop())
        return False


class no_grad(_GradMode):
    """``with tilegrad.no_grad(): ...``: operations inside record no graph (also a decorator)."""
    mode = False


class enable_grad(_GradMode):
    """``with tilegrad.enable_grad(): ...``: record graphs again inside a ``no_grad`` block."""
    mode = True


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(False)`` switches graph recording off at once, as a function; as a
    context manager (``with set_grad_enabled(mode): ...``) it restores the previous mode on exit.

    Args:
        mode (bool): record graphs (True) or not (False).
    """

    def __init__(self, mode: bool) -> None:
        if not isinstance(mode, bool):
            raise TypeError(f"set_grad_enabled: mode must be a bool, got {type(mode).__name__}")
        super().__init__()
        self.mode = mode
        self._before.append(is_grad_enabled())   # the function form takes effect at once
        _set_enabled(mode)

    def __enter__(self) -> None:
        _set_enabled(self.mode)   # already set by __init__ for ``with set_grad_enabled(m):``

    def __exit__(self, *exc: object) -> bool:
        _set_enabled(self._before.pop() if self._before else True)
        return False

    def __call__(self, fn: _F) -> _F:   # as a decorator: undo the immediate effect, then wrap
        _set_enabled(self._before.pop())

        def wrapped(*args, **kwargs):
            self._before.append(is_grad_enabled())
            _set_enabled(self.mode)
            try:
                return fn(*args, **kwargs)
            finally:
                _set_enabled(self._before.pop())
        return wrapped


class Version:
    """The version counter of one storage: bumped by every in-place write. ``last_op`` names the
    write, for the error that a changed saved tensor raises."""
    __slots__ = ("value", "last_op")

    def __init__(self) -> None:
        self.value, self.last_op = 0, None

    def bump(self, op: str) -> None:
        self.value += 1
        self.last_op = op


class Function:
    """One differentiable operation. Subclasses implement ``forward`` and ``backward``.

    ``forward(self, *arrays, **options)`` receives the backend arrays of the tensor
    arguments (non-tensor arguments pass through as they are) and returns one array or a
    tuple of arrays. ``backward(self, *grads)`` receives one gradient per output (None for
    outputs nothing depended on) and returns one gradient per tensor input. ``self.backend``
    is the inputs' backend, ``self.needs_input_grad`` says which inputs want a gradient.
    Arrays that backward needs go through ``save_for_backward``, so that they are version-checked
    and freed with the graph.

    Class attributes: ``view`` (the output shares the input's storage: reshape), and
    ``copies_a_view`` (PyTorch would return a view but tilegrad returns a copy, so an in-place
    change of the output would not reach the input and is refused).
    """
    view = False
    copies_a_view = False
    created = 0   # how many nodes were made so far: each node's ``seq``
    _grad_hooks = None   # {output index: hooks.GradHooks} once a hook is put on an output
    _view = None         # the ``grad_fn`` object that shows this node (GradFn), once asked for

    def __init__(self, backend: Any, needs_input_grad: tuple[bool, ...]) -> None:
        self.seq = Function.created
        Function.created += 1
        self.backend = backend
        self.needs_input_grad = needs_input_grad
        self.edges = ()
        self.saved = ()
        self.saved_versions = ()   # (position in saved, Version, value when saved)
        self.freed = False

    def save_for_backward(self, *values: Any) -> None:
        self.saved = values

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def backward(self, *grads: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor | tuple[Tensor, ...]:
        from .tensor import Tensor
        tensors = [a for a in args if isinstance(a, Tensor)]
        dev = tensors[0].device
        for t in tensors[1:]:
            if t.device != dev:
                from .errors import DeviceMismatchError
                raise DeviceMismatchError(f"{cls.op_name()}: tensors are on different devices "
                                          f"({dev} and {t.device})")
        needs = tuple(t.requires_grad for t in tensors)
        fn = cls(dev.backend, needs)
        arrays = [a._data if isinstance(a, Tensor) else a for a in args]
        out = fn.forward(*arrays, **kwargs)
        dev = getattr(fn, "out_device", dev)   # set by the one Function that changes device
        record = is_grad_enabled() and any(needs)
        outs = out if isinstance(out, tuple) else (out,)
        # Only floating outputs carry a gradient (an integer output of a float input does not).
        results = tuple(Tensor._make(o, dev, record and o.dtype.kind == "f") for o in outs)
        for k, r in enumerate(results):
            if cls.view:   # shares the storage: one version counter, and the base to refuse
                src = tensors[0]    # in-place history on the view
                r._version_counter = src._version_counter
                r._base = src if src._base is None else src._base
            if fn.copies_a_view:
                r._copy_of = fn.op_name()
            if r.requires_grad:
                r._ctx, r._out_index = fn, k
        if record:
            fn.n_outputs = len(results)
            fn.edges = tuple(t._edge() for t in tensors)
            fn._note_saved_versions(tensors, results)
        else:
            fn.saved = ()   # nothing will call backward: free at once
        return results if isinstance(out, tuple) else results[0]

    def _note_saved_versions(self, inputs, outputs):
        """For each saved array that is an input's or output's storage, its version now."""
        noted = []
        for pos, s in enumerate(self.saved):
            owner = next((t for t in (*inputs, *outputs) if t._data is s), None)
            if owner is not None:
                noted.append((pos, owner._version_counter, owner._version_counter.value))
        self.saved_versions = tuple(noted)

    def _protect(self, array, backend):
        """``array`` is about to be overwritten in place: keep a private copy of it where this
        node saved it (the gradient needs the value from before the write)."""
        keep = [(pos, v, n) for pos, v, n in self.saved_versions if self.saved[pos] is not array]
        if len(keep) == len(self.saved_versions):
            return
        self.saved = tuple(backend.copy(s) if s is array else s for s in self.saved)
        self.saved_versions = tuple(keep)

    def _check_saved(self):
        """Raise if backward cannot run on this node: freed, or a saved tensor changed."""
        if self.freed:
            raise RuntimeError(
                f"backward: trying to backward through the graph a second time ({self.op_name()} "
                f"has already freed the tensors it saved). Pass retain_graph=True to the first "
                f"backward() to keep them.")
        for pos, version, value in self.saved_versions:
            if version.value != value:
                s = self.saved[pos]
                raise RuntimeError(
                    f"backward: a tensor of shape {tuple(s.shape)} that {self.op_name()} saved "
                    f"for its gradient was modified by an in-place operation ({version.last_op}): "
                    f"it is at version {version.value}, {self.op_name()} expected {value}. "
                    f"Use an out-of-place operation, or .clone() the tensor before changing it.")

    def _free(self):
        if self.saved or self.saved_versions:
            self.freed = True
        self.saved, self.saved_versions = (), ()

    @classmethod
    def op_name(cls) -> str:
        return getattr(cls, "name", cls.__name__.lower())


def _graph(root_fn):
    """The nodes reachable from ``root_fn``; for each, how many edges lead to it from nodes of
    the graph (it runs once they all have run); and for each leaf with hooks, how many edges lead
    to it (its hooks run once, after the last of them)."""
    nodes, deps, leaf_edges = [root_fn], {id(root_fn): 0}, {}
    stack = [root_fn]
    while stack:
        for edge in stack.pop().edges:
            if edge is None:
                continue
            node = edge[0]
            if isinstance(node, Function):
                n = deps.get(id(node))
                if n is None:
                    nodes.append(node)
                    stack.append(node)
                deps[id(node)] = 1 if n is None else n + 1
            elif node._grad_hooks is not None or node._post_accumulate_hooks is not None:
                leaf_edges[id(node)] = leaf_edges.get(id(node), 0) + 1
    return nodes, deps, leaf_edges


def _storage(a):
    """The array that owns ``a``'s memory (``a`` itself, or the one it is a view of)."""
    return a if getattr(a, "base", None) is None else a.base


def _made_here(g, outs, in_grads):
    """True if the gradient ``g`` that a node's backward returned is a new array of its own: not
    one of the gradients the node received (or a view of one), and not given to another input
    too. A leaf can then keep it as its ``.grad`` without a copy (a launch per parameter on a
    GPU), since nothing else can see it or change it."""
    mine = _storage(g)
    if any(o is not None and _storage(o) is mine for o in outs):
        return False
    return sum(1 for h in in_grads if h is not None and _storage(h) is mine) == 1


_CALLBACKS: list[list[Callable[[], None]]] = []   # per backward running (nested ones stack)


def queue_callback(fn: Callable[[], None]) -> None:
    """Run ``fn()`` once the backward pass now running has finished (PyTorch's
    ``Variable._execution_engine.queue_callback``): a hook that starts work during backward, such
    as DistributedDataParallel's gradient allreduce, finishes it there. Callbacks run in the
    order they were queued; a backward that raises runs none."""
    if not _CALLBACKS:
        raise RuntimeError("queue_callback: no backward pass is running; a callback is queued "
                           "from a hook during backward")
    _CALLBACKS[-1].append(fn)


def backward(root: Tensor, grad: Any, retain_graph: bool = False) -> None:
    """``_backward``, then the callbacks its hooks queued (``queue_callback``)."""
    queued = []
    _CALLBACKS.append(queued)
    try:
        _backward(root, grad, retain_graph)
        i = 0
        while i < len(queued):      # a callback may queue another
            queued[i]()
            i += 1
    finally:
        _CALLBACKS.pop()


def _backward(root: Tensor, grad: Any, retain_graph: bool = False) -> None:
    """Propagate ``grad`` (an array shaped like ``root``) back through the graph of ``root``,
    accumulating into the ``.grad`` of every leaf tensor that requires a gradient. Every node is
    checked first, so a refused backward changes no gradient.

    Nodes run in PyTorch's order: a node runs once every node that consumes its outputs has
    run, and of those ready, the one made last runs first. Tensor hooks therefore fire in
    torch's order, each once, with the whole gradient of its tensor."""
    if root._ctx is None:
        if root._grad_hooks is not None or root._post_accumulate_hooks is not None:
            _leaf_done(root, grad, False)
        else:
            root._accumulate(grad)
        return
    nodes, deps, leaf_edges = _graph(root._ctx)
    for fn in nodes:
        fn._check_saved()
    grads = {(id(root._ctx), root._out_index): grad}
    pending = {}   # id(leaf with hooks) -> [its gradient so far, whether that array is ours]
    ready = [(-root._ctx.seq, 0, root._ctx)]
    tie = itertools.count(1)   # never compare two nodes, should two ever share a seq
    while ready:
        fn = heapq.heappop(ready)[2]
        outs = [grads.pop((id(fn), k), None) for k in range(fn.n_outputs)]
        if fn._grad_hooks is not None:
            for k, hooks in fn._grad_hooks.items():
                if outs[k] is not None:
                    outs[k] = hooks.run(outs[k])
        in_grads = ()
        if any(g is not None for g in outs):
            with no_grad():
                in_grads = fn.backward(*outs) if fn.n_outputs > 1 else fn.backward(outs[0])
            if not retain_graph:
                fn._free()
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
        for i, edge in enumerate(fn.edges):
            if edge is None:
                continue
            g = in_grads[i] if i < len(in_grads) else None
            node, k = edge
            if isinstance(node, Function):
                if g is not None:
                    key = (id(node), k)
                    grads[key] = g if key not in grads else fn.backend.binary("add", grads[key], g)
                deps[id(node)] -= 1
                if deps[id(node)] == 0:
                    heapq.heappush(ready, (-node.seq, next(tie), node))
            elif id(node) in leaf_edges:
                _leaf_edge_done(node, g, g is not None and _made_here(g, outs, in_grads),
                                pending, leaf_edges, fn.backend)
            elif g is not None:
                node._accumulate(g, owned=_made_here(g, outs, in_grads))


def _leaf_edge_done(leaf, g, owned, pending, leaf_edges, backend):
    """One of the edges into a leaf with hooks has run: add its gradient ``g`` (or None) to the
    leaf's sum, and after the last one run the hooks and accumulate."""
    got = pending.get(id(leaf))
    if g is not None:
        if got is None:
            pending[id(leaf)] = [g, owned]
        else:
            got[:] = [backend.binary("add", got[0], g), True]
    leaf_edges[id(leaf)] -= 1
    if leaf_edges[id(leaf)] == 0 and id(leaf) in pending:
        _leaf_done(leaf, *pending.pop(id(leaf)))


def _leaf_done(leaf, g, owned):
    """The whole gradient ``g`` of ``leaf`` for this backward: its ``register_hook`` hooks run on
    it, it is accumulated into ``.grad``, then its post-accumulate-grad hooks run."""
    if leaf._grad_hooks is not None and leaf._grad_hooks.hooks:
        g, owned = leaf._grad_hooks.run(g), False   # a hook may have kept the array it saw
    leaf._accumulate(g, owned=owned)
    for hook in list((leaf._post_accumulate_hooks or {}).values()):
        if hook(leaf) is not None:
            raise TypeError(f"post-accumulate-grad hook '{getattr(hook, '__name__', hook)}' "
                            f"returned a value: it is called for its effect and returns None")
