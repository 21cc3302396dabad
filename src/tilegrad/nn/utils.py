"""Training utilities, as torch.nn.utils."""
from __future__ import annotations

import math
from collections.abc import Iterable

from ..autograd import no_grad
from ..creation import tensor
from ..errors import DeviceMismatchError
from ..tensor import Tensor


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach: bool | None = None) -> Tensor:
    """Scale all gradients in place so that their joint L2 norm is at most ``max_norm``.

    ``total = sqrt(sum_p ||p.grad||^2)``; every gradient is multiplied by
    ``min(max_norm / (total + 1e-6), 1)``, as torch does (so a NaN or infinite norm makes the
    gradients NaN or zero, as there). Everything happens on the gradients' device, nothing is
    read on the host: the norm is summed in a fixed order (the same bits every call), and the
    coefficient is computed where the gradients are scaled (on "cuda" three launches for up to
    64 gradients of one dtype), so a step that clips can be captured as a CUDA graph.

    Args:
        parameters: a tensor or an iterable of tensors; those without a gradient are skipped.
        max_norm: the largest norm allowed (a number).
        norm_type: only 2 (the L2 norm) is supported; others raise NotImplementedError.
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
    max_norm = float(max_norm)
    if float(norm_type) != 2.0:
        raise NotImplementedError(f"clip_grad_norm_: norm_type {norm_type} is not supported, "
                                  f"only the L2 norm (2.0)")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return tensor(0.0)
    devices = {g.device for g in grads}
    if len(devices) > 1:
        raise DeviceMismatchError(f"clip_grad_norm_: the gradients are on several devices "
                                  f"({', '.join(sorted(d.name for d in devices))})")
    be = grads[0].device.backend
    with no_grad():
        total = be.norm_multi([g._data for g in grads])
        if error_if_nonfinite and not math.isfinite(float(be.to_numpy(total))):
            raise RuntimeError(f"The total norm of order {float(norm_type)} for gradients from "
                               f"`parameters` is non-finite, so it cannot be clipped. To disable "
                               f"this error and scale the gradients by the non-finite norm "
                               f"anyway, set `error_if_nonfinite=False`")
        be.clip_scale_multi([g._data for g in grads], total, max_norm)
    for g in grads:
        g._version_counter.bump("clip_grad_norm_")
    return Tensor._make(total, grads[0].device, False)

