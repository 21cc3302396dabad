"""Training utilities, as torch.nn.utils."""
import math

from ..autograd import no_grad


def clip_grad_norm_(parameters, max_norm):
    """Scale all gradients in place so that their joint L2 norm is at most ``max_norm``.

    ``total = sqrt(sum_p ||p.grad||^2)``; when ``total > max_norm`` every gradient is multiplied by
    ``max_norm / (total + 1e-6)``, as torch does. Returns the norm before clipping (a float).
    """
    parameters = list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    with no_grad():
        total = math.sqrt(sum((g * g).sum().item() for g in grads))
        scale = max_norm / (total + 1e-6)
        if scale < 1:
            for p in parameters:
                if p.grad is not None:
                    p.grad = p.grad * scale
    return total
