"""Training utilities, as torch.nn.utils."""
from __future__ import annotations

import math
from collections.abc import Iterable

from ..autograd import no_grad
from ..creation import tensor
from ..errors import DeviceMismatchError
from ..tensor import Tensor, cat


def _p_norm(be, xs, p):
    """The p-norm (p > 0 or inf) of the p-norms of the arrays ``xs``, a 0-d device array; an
    array without elements counts as norm 0."""
    norms = []
    for x in xs:
        a = be.unary("abs", x)
        axes = tuple(range(x.ndim))
        if p == math.inf:
            norms.append(be.amax(a, axes, False) if x.size else be.zeros((), x.dtype))
        else:
            norms.append(be.pow_scalar(be.sum(be.pow_scalar(a, p), axes, False), 1.0 / p))
    total = norms[0]
    if p == math.inf:
        for n in norms[1:]:
            total = be.binary("maximum", total, n)
        return total
    total = be.pow_scalar(total, p)
    for n in norms[1:]:
        total = be.binary("add", total, be.pow_scalar(n, p))
    return be.pow_scalar(total, 1.0 / p)


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach: bool | None = None) -> Tensor:
    """Scale all gradients in place so that their joint norm is at most ``max_norm``.

    ``total = ||(||g_1||_p, ||g_2||_p, ...)||_p`` (for p = 2 ``sqrt(sum ||g||^2)``); every
    gradient is multiplied by
    ``min(max_norm / (total + 1e-6), 1)``, as torch does (so a NaN or infinite norm makes the
    gradients NaN or zero, as there). Everything happens on the gradients' device, nothing is
    read on the host: the norm is summed in a fixed order (the same bits every call), and the
    coefficient is computed where the gradients are scaled (on "cuda" three launches for up to
    64 gradients of one dtype), so a step that clips can be captured as a CUDA graph.

    Args:
        parameters: a tensor or an iterable of tensors; those without a gradient are skipped.
        max_norm: the largest norm allowed (a number).
        norm_type: p of the p-norm, any p > 0 or ``inf`` (the largest absolute value). 2 runs
            the fused multi-tensor norm; others are composed per gradient (``|g|^p`` summed,
            then combined as torch: the p-norm of the gradients' p-norms), still on the device.
        error_if_nonfinite: if True, raise RuntimeError when the norm is NaN or infinite, before
            scaling (this reads the norm on the host: a sync, not allowed in a CUDA graph).
        foreach: accepted for PyTorch's signature; the multi-tensor path is always taken.

    Returns:
        The norm before clipping, a 0-d tensor of the gradients' dtype on their device
        (``tensor(0.)`` when no parameter has a gradient); ``float()`` reads it.

    Example::

        loss.backward()
        norm = clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be a number > 0 or inf, got "
                         f"{norm_type}")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return tensor(0.0)
    devices = {g.device for g in grads}
    if len(devices) > 1:
        raise DeviceMismatchError(f"clip_grad_norm_: the gradients are on several devices "
                                  f"({', '.join(sorted(d.name for d in devices))})")
    be = grads[0].device.backend
    with no_grad():
        total = be.norm_multi([g._data for g in grads]) if norm_type == 2.0 else \
            _p_norm(be, [g._data for g in grads], norm_type)
        if error_if_nonfinite and not math.isfinite(float(be.to_numpy(total))):
            raise RuntimeError(f"The total norm of order {float(norm_type)} for gradients from "
                               f"`parameters` is non-finite, so it cannot be clipped. To disable "
                               f"this error and scale the gradients by the non-finite norm "
                               f"anyway, set `error_if_nonfinite=False`")
        be.clip_scale_multi([g._data for g in grads], total, max_norm)
    for g in grads:
        g._version_counter.bump("clip_grad_norm_")
    return Tensor._make(total, grads[0].device, False)



def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float,
                     foreach: bool | None = None) -> None:
    """Clamp every gradient in place to ``[-clip_value, clip_value]``, as torch's (a NaN stays
    NaN). Parameters without a gradient are skipped; ``foreach`` is accepted for PyTorch's
    signature."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    clip_value = float(clip_value)
    for p in parameters:
        g = p.grad
        if g is None:
            continue
        be = g.device.backend
        with no_grad():
            # min(max(g, -c), c), as -max(-max(g, -c), -c): NaN passes through both maximums
            low = be.binary("maximum", g._data, -clip_value)
            be.copy_into(g._data, be.unary("neg", be.binary("maximum", be.unary("neg", low),
                                                            -clip_value)))
        g._version_counter.bump("clip_grad_value_")


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """The parameters flattened and joined into one 1-d tensor (a copy), as torch's."""
    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of the 1-d tensor ``vec`` into the parameters, in order (torch
    makes the parameters views of ``vec``; here they keep their own storage)."""
    if not isinstance(vec, Tensor) or vec.ndim != 1:
        raise TypeError(f"vector_to_parameters: expected a 1-d Tensor, got "
                        f"{getattr(vec, 'shape', type(vec).__name__)}")
    parameters = list(parameters)
    total = sum(p.numel() for p in parameters)
    if total != vec.shape[0]:
        raise ValueError(f"vector_to_parameters: the vector has {vec.shape[0]} elements, the "
                         f"parameters {total}")
    for p in parameters:
        if p.device != vec.device or p.dtype != vec.dtype:
            raise TypeError(f"vector_to_parameters: the vector is {vec.dtype} on {vec.device}, "
                            f"a parameter {p.dtype} on {p.device}")
    offset = 0
    with no_grad():
        for p in parameters:
            n = p.numel()
            part = vec.detach()[offset:offset + n].reshape(p.shape)
            p.device.backend.copy_into(p._data, part._data)
            p._version_counter.bump("vector_to_parameters")
            offset += n
