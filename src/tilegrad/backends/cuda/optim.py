"""Fused optimizer updates, in place: SGD (momentum, dampening, Nesterov, weight decay) and Adam.

Versions:

- ``sgd_step_kernel1``: one grid-stride loop over the parameter's elements; each thread reads
  ``param``, ``grad`` (and ``buf`` with momentum), applies torch.optim.SGD's update for its element
  and writes ``param`` (and ``buf``) back. Which terms apply (weight decay, momentum, the first
  step, Nesterov) are integer flags, the same for every thread of a launch (uniform branches).
- ``adam_step_kernel1``: the same loop for torch.optim.Adam; ``m``, ``v`` and ``param`` updated in
  one pass. The bias corrections are scalars of the step number: the host computes
  ``step_size = lr / (1 - beta1**step)`` and ``sqrt(1 - beta2**step)`` once and passes them.

Every hyperparameter reaches the kernel as a scalar in the parameter's dtype (``1 - dampening``,
``1 - beta1``, ``1 - beta2`` formed on the host), as NumPy's backend does with Python scalars.
One difference in float32: NumPy's Adam divides by ``np.sqrt(1 - beta2**step)``, a float64
scalar, so it forms the denominator in float64; the kernel stays in float32 (well within float32
tolerance). One launch per parameter tensor; fusing all parameters into one launch (a list of
pointers, or one flat buffer) is the next rung for the launch-bound small models.

Cost per element (n elements, s = bytes per element):

=====  ===============================================  ==========================================
op     FLOPs                                            bytes moved (DRAM, ideal)
=====  ===============================================  ==========================================
SGD    <= 7 (2 weight decay, 3 momentum, 1 Nesterov     (2 + 1) read, 1 written (+1 read +1
       extra, 1 update)                                 written with momentum), *s
Adam   ~13 + 1 sqrt (+2 weight decay)                   4 read, 3 written, *s
=====  ===============================================  ==========================================

Test (simulator, no GPU; 8 threads and at most 4 blocks so the grid-stride loop wraps)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_optim.py

``PTX_SIGNATURES`` at the end lists every kernel and signature the launchers use on a GPU.
"""
import math

from numba import cuda, float32, float64, int64

from . import runtime as rt
from .common import THREADS, flat, grid_blocks

# ---------------------------------------------------------------- kernels


@cuda.jit
def sgd_step_kernel1(param, grad, buf, lr, momentum, one_minus_dampening, weight_decay,
                     has_wd, has_momentum, nesterov, first, n):
    for k in range(cuda.grid(1), n, cuda.gridsize(1)):   # thread owns elements k, k + grid, ...
        p = param[k]
        d = grad[k]
        if has_wd:
            d = d + weight_decay * p
        if has_momentum:
            if first:
                b = d                    # torch: the buffer starts as the first gradient
            else:
                b = buf[k] * momentum + one_minus_dampening * d
            buf[k] = b
            if nesterov:
                d = d + momentum * b
            else:
                d = b
        param[k] = p - lr * d


@cuda.jit
def adam_step_kernel1(param, grad, m, v, step_size, sqrt_bc2, beta1c, beta2, beta2c, eps,
                      weight_decay, has_wd, n):
    # beta1c = 1 - beta1, beta2c = 1 - beta2; step_size = lr / (1 - beta1**step) and
    # sqrt_bc2 = sqrt(1 - beta2**step), all from the host.
    for k in range(cuda.grid(1), n, cuda.gridsize(1)):
        p = param[k]
        g = grad[k]
        if has_wd:
            g = g + weight_decay * p
        mk = m[k]
        mk = mk + beta1c * (g - mk)
        vk = v[k] * beta2 + beta2c * g * g
        m[k] = mk
        v[k] = vk
        denom = math.sqrt(vk) / sqrt_bc2 + eps
        param[k] = p - step_size * mk / denom

# ---------------------------------------------------------------- launchers


def _flat_inplace(x, what):
    """A 1-D view of ``x`` that writes through to it (so ``x`` must be C-contiguous)."""
    assert x.flags.c_contiguous, f"{what} must be C-contiguous to be updated in place"
    return x.reshape(-1)


def sgd_step(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """One SGD update of ``param`` in place, as torch.optim.SGD; ``buf`` is the momentum buffer
    (ignored, and may be None, when momentum is 0), set to the gradient on the ``first`` step."""
    assert param.shape == grad.shape and param.dtype == grad.dtype, \
        "sgd_step: param and grad differ"
    n = param.size
    if not n:
        return
    t = param.dtype.type
    p = _flat_inplace(param, "param")
    g = flat(grad)
    if momentum:
        assert buf is not None and buf.shape == param.shape and buf.dtype == param.dtype, \
            "sgd_step: momentum needs a buffer like param"
        b = _flat_inplace(buf, "buf")
    else:
        # Never read nor written (has_momentum is 0). Not param: the simulator copies each array
        # argument back after the launch, and a second copy of param would undo the update.
        b = g
    rt.launch(sgd_step_kernel1, grid_blocks(n), THREADS,
              p, g, b, t(lr), t(momentum), t(1 - dampening), t(weight_decay),
        int(bool(weight_decay)), int(bool(momentum)), int(bool(nesterov)), int(bool(first)), n)


def adam_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
    """One Adam update of ``param``, ``m`` and ``v`` in place, as torch.optim.Adam (step >= 1)."""
    assert step >= 1, "adam_step: step counts from 1"
    assert param.shape == grad.shape == m.shape == v.shape, "adam_step: shapes differ"
    n = param.size
    if not n:
        return
    t = param.dtype.type
    step_size = lr / (1 - beta1 ** step)           # host scalars: bias corrections
    sqrt_bc2 = math.sqrt(1 - beta2 ** step)
    g = flat(grad)
    rt.launch(adam_step_kernel1, grid_blocks(n), THREADS,
              _flat_inplace(param, "param"), g, _flat_inplace(m, "m"), _flat_inplace(v, "v"),
              t(step_size), t(sqrt_bc2), t(1 - beta1), t(beta2), t(1 - beta2), t(eps),
              t(weight_decay), int(bool(weight_decay)), n)

# ---------------------------------------------------------------- compile check


def _signatures():
    sigs = []
    for f in (float32, float64):
        arr = f[::1]
        sigs += [
            (f"sgd_step_kernel1_{f}", sgd_step_kernel1,
             (arr, arr, arr, f, f, f, f, int64, int64, int64, int64, int64)),
            (f"adam_step_kernel1_{f}", adam_step_kernel1,
             (arr, arr, arr, arr, f, f, f, f, f, f, f, int64, int64)),
        ]
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU.
PTX_SIGNATURES = _signatures()
