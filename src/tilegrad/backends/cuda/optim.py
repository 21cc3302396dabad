"""Fused optimizer updates, in place: SGD (momentum, dampening, Nesterov, weight decay) and Adam.

Versions:

- ``sgd_step_kernel1``: one grid-stride loop over the parameter's elements; each thread reads
  ``param``, ``grad`` (and ``buf`` with momentum), applies torch.optim.SGD's update for its element
  and writes ``param`` (and ``buf``) back. Which terms apply (weight decay, momentum, the first
  step, Nesterov) are integer flags, the same for every thread of a launch (uniform branches).
- ``adam_step_kernel1``: the same loop for torch.optim.Adam; ``m``, ``v`` and ``param`` updated in
  one pass. The bias corrections are scalars of the step number: the host computes
  ``step_size = lr / (1 - beta1**step)`` and ``sqrt(1 - beta2**step)`` once and passes them.
- ``sgd_step_kernel2``, ``adam_step_kernel2`` (``sgd_step_multi``, ``adam_step_multi``, what the
  optimizers use): every parameter of a group in one launch, each block one chunk of one
  parameter, found in a block table (the multi-tensor machinery of ``foreach.py``: tuples of
  arrays in the kernel's parameters, at most 16 parameters a launch for SGD and 12 for Adam on a
  GPU). Nothing that changes between steps comes from the host: the learning rate is read from a
  0-d device array (the optimizer writes it when it changes), and each parameter's step count is
  a 0-d float32 device array (Adam's ``state["step"]``, as PyTorch's; SGD keeps one per momentum
  buffer) that ``count_step_kernel1`` increments first, one thread per counter, in a launch of its
  own: every block of the update then reads the same count. Adam computes its bias corrections
  from the count in float64 (``1 - beta1**step`` loses digits in float32) and rounds them to the
  parameter's dtype; SGD's first step (the buffer set to the gradient) is the count being 1.
  A replayed CUDA graph therefore counts steps and follows a learning-rate schedule.

Launches per step, for n parameters of one dtype with gradients: SGD without momentum
ceil(n/16), with momentum ceil(n/64) + ceil(n/16); Adam ceil(n/64) + ceil(n/12) (7 parameters:
1, 2 and 2). The simulator takes 3 parameters a launch: 3, 6 and 6 for 7 parameters.

Every hyperparameter reaches the kernel as a scalar in the parameter's dtype (``1 - dampening``,
``1 - beta1``, ``1 - beta2`` formed on the host), as NumPy's backend does with Python scalars.
One difference in float32: NumPy's Adam divides by ``np.sqrt(1 - beta2**step)``, a float64
scalar, so it forms the denominator in float64; the kernel stays in float32 (well within float32
tolerance). Kernel 2 takes ``lr`` in the parameter's dtype and the betas for the bias
corrections in float64.

Cost per element (n elements, s = bytes per element):

=====  ===============================================  ==========================================
op     FLOPs                                            bytes moved (DRAM, ideal)
=====  ===============================================  ==========================================
SGD    <= 7 (2 weight decay, 3 momentum, 1 Nesterov     (2 + 1) read, 1 written (+1 read +1
       extra, 1 update)                                 written with momentum), *s
Adam   ~13 + 1 sqrt (+2 weight decay)                   4 read, 3 written, *s
=====  ===============================================  ==========================================

Test (simulator, no GPU; 8 threads and at most 4 blocks so the grid-stride loop wraps, chunks of
16 elements for kernel 2)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_optim.py

``PTX_SIGNATURES`` at the end lists every kernel and signature the launchers use on a GPU.
"""
import math

import numpy as np
from numba import cuda, float32, float64, int64, types

from . import runtime as rt
from .common import GPU_THREADS, THREADS, flat, grid_blocks
from .foreach import (CHUNK, block_table, flat_inplace, launch_lists, padded,
                      tensors_per_launch)

SGD_TENSORS = tensors_per_launch(4)       # param, grad, buf, step
ADAM_TENSORS = tensors_per_launch(5)      # param, grad, m, v, step
COUNT_TENSORS = tensors_per_launch(1)     # step counters a count_step_kernel1 launch takes
assert COUNT_TENSORS <= THREADS, "count_step_kernel1 gives each counter a thread of one block"

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


@cuda.jit
def count_step_kernel1(steps, n):
    # Thread k adds 1 to counter k (a 1-element view of a 0-d float32 array).
    k = cuda.threadIdx.x
    if k < n:
        count = steps[k]
        count[0] += 1


@cuda.jit
def sgd_step_kernel2(table, lr, params, grads, bufs, steps, momentum, one_minus_dampening,
                     weight_decay, has_wd, has_momentum, nesterov):
    # Block b updates elements start .. start + CHUNK of parameter t; thread i owns start + i,
    # start + i + THREADS, ... (coalesced).
    b = cuda.blockIdx.x
    t = table[2 * b]
    start = table[2 * b + 1]
    param = params[t]
    grad = grads[t]
    buf = bufs[t]
    rate = lr[0]
    first = False
    if has_momentum:
        first = steps[t][0] == 1          # counted before this launch: 1 on the first step
    for k in range(start + cuda.threadIdx.x, min(start + CHUNK, param.shape[0]), THREADS):
        p = param[k]
        d = grad[k]
        if has_wd:
            d = d + weight_decay * p
        if has_momentum:
            if first:
                m = d                     # torch: the buffer starts as the first gradient
            else:
                m = buf[k] * momentum + one_minus_dampening * d
            buf[k] = m
            if nesterov:
                d = d + momentum * m
            else:
                d = m
        param[k] = p - rate * d


@cuda.jit
def adam_step_kernel2(table, lr, params, grads, ms, vs, steps, bias_beta1, bias_beta2, beta1c,
                      beta2, beta2c, eps, weight_decay, has_wd):
    # The block table and ownership of sgd_step_kernel2. bias_beta1, bias_beta2: the betas in
    # float64, for the bias corrections; beta1c = 1 - beta1, beta2c = 1 - beta2.
    b = cuda.blockIdx.x
    t = table[2 * b]
    start = table[2 * b + 1]
    param = params[t]
    grad = grads[t]
    m = ms[t]
    v = vs[t]
    step = float64(steps[t][0])           # counted before this launch
    step_size = param.dtype.type(float64(lr[0]) / (1.0 - math.pow(bias_beta1, step)))
    sqrt_bc2 = param.dtype.type(math.sqrt(1.0 - math.pow(bias_beta2, step)))
    for k in range(start + cuda.threadIdx.x, min(start + CHUNK, param.shape[0]), THREADS):
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


def sgd_step(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """One SGD update of ``param`` in place, as torch.optim.SGD; ``buf`` is the momentum buffer
    (ignored, and may be None, when momentum is 0), set to the gradient on the ``first`` step."""
    assert param.shape == grad.shape and param.dtype == grad.dtype, \
        "sgd_step: param and grad differ"
    n = param.size
    if not n:
        return
    t = param.dtype.type
    p = flat_inplace(param, "param")
    g = flat(grad)
    if momentum:
        assert buf is not None and buf.shape == param.shape and buf.dtype == param.dtype, \
            "sgd_step: momentum needs a buffer like param"
        b = flat_inplace(buf, "buf")
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
              flat_inplace(param, "param"), g, flat_inplace(m, "m"), flat_inplace(v, "v"),
              t(step_size), t(sqrt_bc2), t(1 - beta1), t(beta2), t(1 - beta2), t(eps),
              t(weight_decay), int(bool(weight_decay)), n)


def _check_multi(op, params, lists, lr):
    """The lists are as long as ``params``; every array has its parameter's shape and the one
    dtype, ``lr`` is a 0-d array of it."""
    dtype = params[0].dtype
    for name, arrays in lists.items():
        assert len(arrays) == len(params), f"{op}: {len(arrays)} {name}, {len(params)} params"
        for k, (p, x) in enumerate(zip(params, arrays)):
            assert x.shape == p.shape and x.dtype == dtype, \
                f"{op}: {name}[{k}] is {x.shape} {x.dtype}, param {k} {p.shape} {dtype}"
    assert lr.shape == () and lr.dtype == dtype, \
        f"{op}: lr must be a 0-d {dtype} array, got {lr.shape} {lr.dtype}"


def _tuple(arrays, part, length, dtype):
    """``arrays[k]`` for ``k`` in ``part`` as one launch's tuple of ``length`` arrays (all
    placeholders when ``arrays`` is empty)."""
    return padded([arrays[k] for k in part] if arrays else [], length, dtype)


def count_steps(steps):
    """Add 1 to every step count of ``steps`` (0-d float32 arrays), one thread each; a launch
    per ``COUNT_TENSORS`` counters."""
    counts = [flat_inplace(s, "a step count") for s in steps]
    for part in launch_lists(len(counts), COUNT_TENSORS):
        rt.launch(count_step_kernel1, 1, THREADS,
                  padded([counts[k] for k in part], COUNT_TENSORS, np.float32), len(part))


def _check_steps(op, steps, n):
    assert len(steps) == n, f"{op}: {len(steps)} step counts for {n} params"
    assert all(s.shape == () and s.dtype == np.float32 for s in steps), \
        f"{op}: step counts are 0-d float32 arrays"


def sgd_step_multi(params, grads, bufs, steps, lr, momentum, dampening, weight_decay, nesterov):
    """``sgd_step`` on every parameter of ``params`` (one dtype) in one launch (more past
    ``SGD_TENSORS``): ``lr`` is a 0-d device array of their dtype. With momentum, ``bufs`` are
    the momentum buffers and ``steps`` 0-d float32 counts, incremented first (one launch); a
    parameter whose count becomes 1 takes its first step. Without momentum both are ignored."""
    if not params:
        return
    dtype, n = params[0].dtype, len(params)
    lists = {"grads": grads, "bufs": bufs} if momentum else {"grads": grads}
    _check_multi("sgd_step_multi", params, lists, lr)
    t = dtype.type
    ps = [flat_inplace(x, "param") for x in params]
    gs = [flat(x) for x in grads]
    bs = ss = []                          # without momentum: placeholders, never read
    if momentum:
        _check_steps("sgd_step_multi", steps, n)
        bs = [flat_inplace(x, "buf") for x in bufs]
        ss = [s.reshape(1) for s in steps]
        count_steps(steps)
    for part in launch_lists(n, SGD_TENSORS):
        table, blocks = block_table([ps[k].size for k in part])
        if blocks:
            rt.launch(sgd_step_kernel2, blocks, THREADS, table, lr.reshape(1),
                      _tuple(ps, part, SGD_TENSORS, dtype), _tuple(gs, part, SGD_TENSORS, dtype),
                      _tuple(bs, part, SGD_TENSORS, dtype),
                      _tuple(ss, part, SGD_TENSORS, np.float32), t(momentum), t(1 - dampening),
                      t(weight_decay), int(bool(weight_decay)), int(bool(momentum)),
                      int(bool(nesterov)))


def adam_step_multi(params, grads, ms, vs, steps, lr, beta1, beta2, eps, weight_decay):
    """``adam_step`` on every parameter of ``params`` (one dtype) in one launch (more past
    ``ADAM_TENSORS``), after one launch that increments each parameter's step count (``steps``:
    0-d float32 arrays); ``lr`` is a 0-d device array of the parameters' dtype."""
    if not params:
        return
    dtype, n = params[0].dtype, len(params)
    _check_multi("adam_step_multi", params, {"grads": grads, "ms": ms, "vs": vs}, lr)
    _check_steps("adam_step_multi", steps, n)
    t = dtype.type
    ps = [flat_inplace(x, "param") for x in params]
    gs = [flat(x) for x in grads]
    mv = [flat_inplace(x, "m") for x in ms]
    vv = [flat_inplace(x, "v") for x in vs]
    ss = [s.reshape(1) for s in steps]
    count_steps(steps)
    for part in launch_lists(n, ADAM_TENSORS):
        table, blocks = block_table([ps[k].size for k in part])
        if blocks:
            rt.launch(adam_step_kernel2, blocks, THREADS, table, lr.reshape(1),
                      *(_tuple(a, part, ADAM_TENSORS, dtype) for a in (ps, gs, mv, vv)),
                      _tuple(ss, part, ADAM_TENSORS, np.float32), float(beta1), float(beta2),
                      t(1 - beta1), t(beta2), t(1 - beta2), t(eps), t(weight_decay),
                      int(bool(weight_decay)))

# ---------------------------------------------------------------- compile check


def _signatures():
    sigs = []
    table = int64[::1]
    for f in (float32, float64):
        arr = f[::1]
        sigs += [
            (f"sgd_step_kernel1_{f}", sgd_step_kernel1,
             (arr, arr, arr, f, f, f, f, int64, int64, int64, int64, int64)),
            (f"adam_step_kernel1_{f}", adam_step_kernel1,
             (arr, arr, arr, arr, f, f, f, f, f, f, f, int64, int64)),
            (f"sgd_step_kernel2_{f}", sgd_step_kernel2,
             (table, arr, types.UniTuple(arr, SGD_TENSORS), types.UniTuple(arr, SGD_TENSORS),
              types.UniTuple(arr, SGD_TENSORS), types.UniTuple(float32[::1], SGD_TENSORS),
              f, f, f, int64, int64, int64)),
            (f"adam_step_kernel2_{f}", adam_step_kernel2,
             (table, arr) + (types.UniTuple(arr, ADAM_TENSORS),) * 4
             + (types.UniTuple(float32[::1], ADAM_TENSORS), float64, float64, f, f, f, f, f,
                int64)),
        ]
    sigs.append(("count_step_kernel1", count_step_kernel1,
                 (types.UniTuple(float32[::1], COUNT_TENSORS), int64)))
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU.
PTX_SIGNATURES = _signatures()
# Threads per block of every kernel here on a GPU (for the occupancy in sass.py's report).
LAUNCH_BLOCKS = {name: GPU_THREADS for name, *_ in PTX_SIGNATURES}
