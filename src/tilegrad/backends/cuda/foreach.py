"""Multi-tensor kernels: one launch over a list of tensors (fill, the joint 2-norm, scaling by a
clip coefficient), and the machinery the multi-tensor optimizers in ``optim.py`` share.

How one launch reaches many tensors. The kernel takes the tensors as a tuple of 1-D C-contiguous
arrays (a Numba ``UniTuple``): every array of the tuple is passed in the kernel's parameters, 7
machine words each (meminfo, parent, size, itemsize, data pointer, shape, stride), as PyTorch's
``multi_tensor_apply`` passes pointers in its kernel arguments. ``xs[t]`` with a runtime ``t``
compiles to a switch over the tuple's members that loads the pointer it needs (ptxas: no stack
frame). Each block does one chunk of ``CHUNK`` elements of one tensor, and the *block table* says
which: an int64 array ``[tensor, start, tensor, start, ...]``, one pair per block, made on the host
from the tensors' sizes and kept on the device (``rt.constant``, and a cache by sizes here), so
a step over the same tensors uploads nothing and can be captured in a CUDA graph.

CUDA limits a kernel's parameters to 4 KB (sm_70 and later allow 32 KB with CUDA 12.1 drivers;
the 4 KB budget works everywhere), so a launch takes at most ``tensors_per_launch(k)`` tensors
of ``k`` arrays each, leaving 512 bytes for the other arguments: 64 for the one-array kernels
here, 16 for SGD (4 arrays), 12 for Adam (5). Each tuple is padded to exactly that length with a
placeholder array (never read), so that a kernel compiles once per dtype; a longer list takes
more launches. In the simulator a launch takes 3 tensors, so that short lists take several.

Versions (one each):

- ``fill_multi_kernel1``: block ``b`` writes ``value`` over its chunk, thread ``i`` elements
  ``start + i``, ``start + i + THREADS``, ... (coalesced).
- ``sumsq_multi_kernel1``: a grid of at most ``NORM_BLOCKS`` blocks; block ``b`` takes table
  entries ``b``, ``b + grid``, ..., each thread summing the squares of its elements of them in
  float64, in order; the block adds its threads' sums by ``block_sum``'s tree and writes one
  partial sum. ``norm_finish_kernel1``: one block adds the partials the same way and writes the
  square root. No atomics: the order of every addition depends only on the tensors' sizes, so
  the norm is the same, bit for bit, at every call.
- ``clip_scale_multi_kernel1``: ``x *= min(max_norm / (total + 1e-6), 1)``, as
  ``torch.nn.utils.clip_grad_norm_``, reading ``total`` (the norm) from device memory: the
  coefficient is never on the host. Every thread computes it (a division), then scales its
  elements of the block's chunk.

Launches per call, for a list of n tensors of one dtype (m = ``tensors_per_launch(1)``, 64):
``fill_multi`` ceil(n/m); ``norm_multi`` ceil(n/m) + 1; ``clip_scale_multi`` ceil(n/m). So
``clip_grad_norm_`` is 3 launches for up to 64 gradients (and per further dtype or 64 gradients,
two more).

Cost (N elements in all, s = bytes per element): fill N*s written; norm 2N FLOPs, N*s read
(plus 8 bytes per block); scale N FLOPs, N*s read and written.

Test (simulator, no GPU; 8 threads per block, chunks of 16 elements, at most 4 blocks for the
sum of squares, 3 tensors a launch)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_foreach.py

``PTX_SIGNATURES`` at the end lists every kernel and signature the launchers use on a GPU.
"""
import math

import numpy as np
from numba import cuda, float32, float64, int64, types

from . import runtime as rt
from .common import GPU_THREADS, THREADS, block_sum, ceil_div, flat

PARAM_BYTES = 4096         # CUDA's limit on a kernel's parameters, in bytes (see above)
ARRAY_BYTES = 56           # one 1-D array argument: 7 machine words
OTHER_BYTES = 512          # kept for the arguments that are not tuples (up to 9 arrays)
CHUNK = THREADS * (2 if rt.SIMULATOR else 8)     # elements per block: 2048 on a GPU, 16 simulated
NORM_BLOCKS = 4 if rt.SIMULATOR else 512         # blocks of sumsq_multi_kernel1, at most


def tensors_per_launch(arrays_per_tensor, simulated=rt.SIMULATOR):
    """How many tensors of ``arrays_per_tensor`` arrays each one launch takes (3 simulated)."""
    if simulated:
        return 3
    return (PARAM_BYTES - OTHER_BYTES) // (ARRAY_BYTES * arrays_per_tensor)


TENSORS = tensors_per_launch(1)

# ---------------------------------------------------------------- kernels


@cuda.jit
def fill_multi_kernel1(table, xs, value):
    b = cuda.blockIdx.x
    x = xs[table[2 * b]]
    start = table[2 * b + 1]
    for k in range(start + cuda.threadIdx.x, min(start + CHUNK, x.shape[0]), THREADS):
        x[k] = value


@cuda.jit
def sumsq_multi_kernel1(table, xs, n_entries, partials, offset):
    # Block b owns entries b, b + grid, ...: its partial sum goes to partials[offset + b].
    partial = cuda.shared.array(THREADS, float64)
    b = cuda.blockIdx.x
    acc = float64(0.0)
    for e in range(b, n_entries, cuda.gridDim.x):
        x = xs[table[2 * e]]
        start = table[2 * e + 1]
        for k in range(start + cuda.threadIdx.x, min(start + CHUNK, x.shape[0]), THREADS):
            v = float64(x[k])
            acc += v * v
    total = block_sum(partial, cuda.threadIdx.x, acc)
    if cuda.threadIdx.x == 0:
        partials[offset + b] = total


@cuda.jit
def norm_finish_kernel1(partials, n, out):
    # One block: thread i adds partials i, i + THREADS, ... in order, then the tree.
    partial = cuda.shared.array(THREADS, float64)
    acc = float64(0.0)
    for k in range(cuda.threadIdx.x, n, THREADS):
        acc += partials[k]
    total = block_sum(partial, cuda.threadIdx.x, acc)
    if cuda.threadIdx.x == 0:
        out[0] = math.sqrt(total)            # stored in out's dtype


@cuda.jit
def clip_scale_multi_kernel1(table, xs, total, max_norm, eps):
    b = cuda.blockIdx.x
    x = xs[table[2 * b]]
    start = table[2 * b + 1]
    coef = max_norm / (total[0] + eps)
    if coef > 1:             # NaN stays NaN, as torch.clamp(coef, max=1)
        coef = 1.0
    # coef is a float64 holding a value of x's dtype (or 1): x[k] * coef, rounded to x's dtype
    # on the store, is the product in x's dtype (a product of two float32 is exact in float64).
    for k in range(start + cuda.threadIdx.x, min(start + CHUNK, x.shape[0]), THREADS):
        x[k] = x[k] * coef

# ---------------------------------------------------------------- shared by the launchers


_TABLES = {}


def block_table(sizes):
    """(the device block table for tensors of ``sizes`` elements, its number of entries): entry
    ``b`` is ``(tensor, start)``, one per chunk of ``CHUNK`` elements, tensors in order and empty
    ones skipped. ``(None, 0)`` when every tensor is empty."""
    key = tuple(sizes)
    hit = _TABLES.get(key)
    if hit is None:
        counts = [ceil_div(n, CHUNK) for n in sizes]
        tensor = np.repeat(np.arange(len(sizes), dtype=np.int64), counts)
        first = np.repeat(np.cumsum([0] + counts[:-1]), counts)       # entry of each chunk 0
        start = (np.arange(len(tensor), dtype=np.int64) - first) * CHUNK
        table = np.stack([tensor, start], axis=1).reshape(-1)
        hit = (rt.constant(table), len(tensor)) if len(tensor) else (None, 0)
        if len(_TABLES) >= 1024:
            _TABLES.clear()
        _TABLES[key] = hit
    return hit


def padded(arrays, length, dtype):
    """``arrays`` as a tuple of exactly ``length`` arrays, placeholders (never read) at the end."""
    assert len(arrays) <= length, f"{len(arrays)} tensors, a launch takes {length}"
    return tuple(arrays) + (rt.placeholder(dtype),) * (length - len(arrays))


def launch_lists(n, per_launch):
    """The index ranges ``range(lo, hi)`` of each launch over ``n`` tensors."""
    return [range(lo, min(n, lo + per_launch)) for lo in range(0, n, per_launch)]


def by_dtype(arrays):
    """``{dtype: [index, ...]}`` in order of first appearance."""
    groups = {}
    for k, x in enumerate(arrays):
        groups.setdefault(x.dtype, []).append(k)
    return groups


def launch_parts(views, per_launch):
    """The launches over the 1-D arrays ``views``: for each dtype, ``per_launch`` arrays at a
    time, ``(dtype, the arrays padded to per_launch, block table, its entries)``; parts whose
    arrays are all empty are left out."""
    for dtype, idx in by_dtype(views).items():
        for part in launch_lists(len(idx), per_launch):
            arrays = [views[idx[k]] for k in part]
            table, entries = block_table([x.size for x in arrays])
            if entries:
                yield dtype, padded(arrays, per_launch, dtype), table, entries


def flat_inplace(x, what):
    """A 1-D view of ``x`` that writes through to it (so ``x`` must be C-contiguous)."""
    assert x.flags.c_contiguous, f"{what} must be C-contiguous to be updated in place"
    return x.reshape(-1)

# ---------------------------------------------------------------- launchers


def fill_multi(xs, value):
    """Set every element of every array of ``xs`` to ``value``, in place."""
    views = [flat_inplace(x, "fill_multi: each array") for x in xs]
    for dtype, arrays, table, blocks in launch_parts(views, TENSORS):
        rt.launch(fill_multi_kernel1, blocks, THREADS, table, arrays, dtype.type(value))


def norm_multi(xs):
    """The 2-norm of all of ``xs`` together, ``sqrt(sum of x*x)``, as a new 0-d array of their
    result dtype (squares summed in float64, in a fixed order)."""
    assert xs, "norm_multi: no arrays"
    launches = [(table, arrays, entries, min(entries, NORM_BLOCKS))
                for _, arrays, table, entries in launch_parts([flat(x) for x in xs], TENSORS)]
    partials = rt.empty((max(1, sum(grid for *_, grid in launches)),), np.float64)
    offset = 0
    for table, arrays, entries, grid in launches:
        rt.launch(sumsq_multi_kernel1, grid, THREADS, table, arrays, entries, partials, offset)
        offset += grid
    out = rt.empty((), np.result_type(*[x.dtype for x in xs]))
    rt.launch(norm_finish_kernel1, 1, THREADS, partials, offset, out.reshape(1))
    return out


def clip_scale_multi(xs, total, max_norm):
    """Multiply every array of ``xs`` in place by ``min(max_norm / (total + 1e-6), 1)``, where
    ``total`` is a 0-d device array (the norm, as ``norm_multi`` returns it)."""
    assert total.shape == () and total.dtype in (np.float32, np.float64), \
        f"clip_scale_multi: total must be a 0-d float array, got {total.shape} {total.dtype}"
    views = [flat_inplace(x, "clip_scale_multi: each array") for x in xs]
    t = total.dtype.type             # the coefficient is computed in the norm's dtype, as torch
    for _, arrays, table, blocks in launch_parts(views, TENSORS):
        rt.launch(clip_scale_multi_kernel1, blocks, THREADS, table, arrays, total.reshape(1),
                  t(max_norm), t(1e-6))

# ---------------------------------------------------------------- compile check


def _signatures():
    sigs = []
    table = int64[::1]
    for f in (float32, float64):
        xs = types.UniTuple(f[::1], TENSORS)
        sigs += [
            (f"fill_multi_kernel1_{f}", fill_multi_kernel1, (table, xs, f)),
            (f"sumsq_multi_kernel1_{f}", sumsq_multi_kernel1,
             (table, xs, int64, float64[::1], int64)),
            (f"norm_finish_kernel1_{f}", norm_finish_kernel1, (float64[::1], int64, f[::1])),
            (f"clip_scale_multi_kernel1_{f}", clip_scale_multi_kernel1,
             (table, xs, f[::1], f, f)),
        ]
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU (mixed
# dtypes add signatures: clip_scale_multi with a total of another dtype than the tensors).
PTX_SIGNATURES = _signatures()
# Threads per block of every kernel here on a GPU (for the occupancy in sass.py's report).
LAUNCH_BLOCKS = {name: GPU_THREADS for name, *_ in PTX_SIGNATURES}
