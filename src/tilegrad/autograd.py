"""Reverse-mode automatic differentiation: ``Function`` nodes and the backward pass.

A ``Function`` computes on backend arrays. ``Fn.apply(*inputs, **options)`` runs
``forward`` on the inputs' arrays and, when gradients are being recorded and some input
requires one, remembers the inputs so that ``Tensor.backward`` can later call
``backward(grad)``, which returns one gradient array (or None) per tensor input.
"""
import contextlib
import threading

_state = threading.local()


def is_grad_enabled():
    return getattr(_state, "enabled", True)


def set_grad_enabled(mode):
    _state.enabled = bool(mode)


@contextlib.contextmanager
def _grad_mode(mode):
    before = is_grad_enabled()
    set_grad_enabled(mode)
    try:
        yield
    finally:
        set_grad_enabled(before)


def no_grad():
    """Context manager: operations inside record no graph (``with tilegrad.no_grad(): ...``)."""
    return _grad_mode(False)


def enable_grad():
    return _grad_mode(True)


class Function:
    """One differentiable operation. Subclasses implement ``forward`` and ``backward``.

    ``forward(self, *arrays, **options)`` receives the backend arrays of the tensor
    arguments (non-tensor arguments pass through as they are) and returns one array or a
    tuple of arrays. ``backward(self, *grads)`` receives one gradient per output (None for
    outputs nothing depended on) and returns one gradient per tensor input. ``self.backend``
    is the inputs' backend, ``self.needs_input_grad`` says which inputs want a gradient.
    """

    def __init__(self, backend, needs_input_grad):
        self.backend = backend
        self.needs_input_grad = needs_input_grad
        self.inputs = ()
        self.saved = ()

    def save_for_backward(self, *values):
        self.saved = values

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        from .tensor import Tensor
        tensors = [a for a in args if isinstance(a, Tensor)]
        dev = tensors[0].device
        for t in tensors[1:]:
            if t.device != dev:
                raise ValueError(f"{cls.op_name()}: tensors are on different devices "
                                 f"({dev} and {t.device})")
        needs = tuple(t.requires_grad for t in tensors)
        fn = cls(dev.backend, needs)
        arrays = [a.data if isinstance(a, Tensor) else a for a in args]
        out = fn.forward(*arrays, **kwargs)
        dev = getattr(fn, "out_device", dev)   # set by the one Function that changes device
        record = is_grad_enabled() and any(needs)
        if record:
            fn.inputs = tuple(tensors)
        if isinstance(out, tuple):
            results = tuple(Tensor._make(o, dev, record) for o in out)
            if record:
                fn.n_outputs = len(results)
                for k, r in enumerate(results):
                    r._ctx, r._out_index = fn, k
            return results
        result = Tensor._make(out, dev, record)
        if record:
            fn.n_outputs = 1
            result._ctx, result._out_index = fn, 0
        return result

    @classmethod
    def op_name(cls):
        return getattr(cls, "name", cls.__name__.lower())


def _toposort(root):
    """Functions reachable from ``root``, each after every Function that consumes its outputs."""
    order, seen = [], set()
    stack = [(root._ctx, False)]
    while stack:
        fn, done = stack.pop()
        if done:
            order.append(fn)
            continue
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        stack.append((fn, True))
        for t in fn.inputs:
            if t._ctx is not None and id(t._ctx) not in seen:
                stack.append((t._ctx, False))
    return order[::-1]


def backward(root, grad):
    """Propagate ``grad`` (an array shaped like ``root``) back through the graph of ``root``,
    accumulating into the ``.grad`` of every leaf tensor that requires a gradient."""
    if root._ctx is None:
        root._accumulate(grad)
        return
    grads = {(id(root._ctx), root._out_index): grad}
    for fn in _toposort(root):
        outs = [grads.pop((id(fn), k), None) for k in range(fn.n_outputs)]
        if all(g is None for g in outs):
            continue
        with no_grad():
            in_grads = fn.backward(*outs) if fn.n_outputs > 1 else fn.backward(outs[0])
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        for t, g in zip(fn.inputs, in_grads):
            if g is None or not t.requires_grad:
                continue
            if t._ctx is None:
                t._accumulate(g)
            else:
                key = (id(t._ctx), t._out_index)
                grads[key] = g if key not in grads else fn.backend.binary("add", grads[key], g)
