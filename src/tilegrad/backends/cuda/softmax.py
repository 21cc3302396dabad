"""Log-softmax and fused softmax-cross-entropy over the last axis, forward and backward: the
kernel family "softmax_cross_entropy", a ladder of three versions.

An input of shape (..., C) is read as R = size / C rows of length C, contiguous in memory (row
``r`` starts at element ``r*C``); leading dimensions are only a count of rows.

Every kernel is written once, as a factory ``make_<op>_kernel(version, block, dtype)`` that makes
``<op>_kernel<version>``; the versions differ only in how rows are spread over threads and how a
row's partial results are combined (``common.row_walk``):

- v1, one thread per row: thread ``i`` walks row ``i`` serially (max, then sum, then output),
  a grid-stride loop over rows. No shared memory, no barrier: the simplest correct kernel. Slow
  for wide rows: R threads in all (700 for the LM loss: a few warps per multiprocessor, too few
  loads in flight to cover DRAM latency), and uncoalesced: consecutive threads read addresses
  C elements apart, so each 32-lane load touches 32 cache lines.
- v2, the default, one block per row (a grid-stride loop over rows past ``MAX_ROW_BLOCKS``):
  thread ``t`` walks columns ``t, t+block, ...`` (consecutive threads read consecutive elements:
  coalesced), keeps a private max or sum, and the block combines its ``block`` partials by a
  tree in shared memory (``common.block_max``, ``common.block_sum``): log2(block) levels, a
  barrier after each, two reductions per row (max, sum), so 2 x 10 barriers a row at 256
  threads.
- v3: v2 with the partials combined by warp shuffles (``warp.block_max``,
  ``warp.block_sum``): five register exchanges within each warp, one shared slot per warp, two
  barriers per reduction (4 a row instead of 20) and no shared-memory tree. Same DRAM traffic as
  v2; it saves the block's fixed cost per row, which is what a row costs when C is small (C = 10
  for the MLP and CNN: the row is one load per thread, the rest is combining). Deterministic: a
  fixed order of additions, different from v2's, so its results differ from v2's in the last
  bits. The shuffles' GPU code never runs in the simulator (its stand-in does: ``warp.py``); it
  is compiled by the PTX check and runs only on a GPU. It becomes the default once a GPU run
  (``make gpu-check``) has confirmed it against v2; until then v2, which has run on one, is.

Numerically stable in every version: the row max ``m`` first, then ``s = sum(exp(x - m))`` (every
term <= 1, and s >= 1), so nothing overflows whatever the logits' magnitude. ``block`` is a
compile-time constant (the shared array's size and the tree's depth): 256 on a GPU, 8 in the
simulator so that every thread holds several columns, the tree has three levels and v3's block
has two (simulated) warps.

The cross-entropy forward is one kernel (max, sum, then the row's first thread writes
``loss[n] = log(s) - (x[n, target[n]] - m)``); so is the backward, which recomputes m and s from
the logits rather than saving softmax (N*C bytes written and read again) and writes
``(exp(x - m)/s - onehot(target[n])) * g``. For ``reduction`` 'none' ``g = grad_loss[n]``; for
'sum' and 'mean' grad_loss holds the one gradient of the reduced loss, which every row reads
(``grad_loss[n * g_step]`` with ``g_step = 0``), divided for 'mean' by K below: no broadcast, no
scaling kernel, and nothing read on the host. ``cross_entropy_reduce_fwd_kernelN`` is the
forward's second launch for 'sum' and 'mean': the N losses as one row of the same walk (v1: one
thread adds them; v2, v3: one block), the total (or total / K) written by its first thread. The
order of additions depends only on N, the block size and the version, so the loss is
bit-identical from run to run (no float atomics).

``ignore_index`` (default -100, PyTorch's): a row whose target equals it has loss 0 and g = 0 in
the backward. The forward still walks such a row and only then writes 0: skipping it early (a
test the whole block agrees on) compiled to 5 more registers in v3's float32 kernel (53, not 48),
one block fewer per multiprocessor, for every row. 'mean' divides by K, the number of targets
that are not ``ignore_index``, counted on the device: in the forward by the reduction kernel (in
the same walk as the losses); in the backward by ``cross_entropy_count_kernelN``, one block that
writes K (in the logits' dtype, exact below 2**24 rows in float32) for the row kernel to read.
All rows ignored: K = 0 and the 'mean' is NaN, as PyTorch's; every gradient row is then
softmax * 0.

Launches per call: ``cross_entropy_fwd`` 1 ('none') or 2 ('sum', 'mean'); ``cross_entropy_bwd`` 1
('none', 'sum') or 2 ('mean': the count first).

Cost (R rows of C, s = bytes per element), the same for every version; the versions differ in
how fast they move it (v1: uncoalesced, R threads) and in the combining (v2: 2 trees of 8
levels a row at 256 threads; v3: 2 x 5 shuffles a warp and 2 x 8 shared slots a row):

========================  ================================  =====================================
kernel                    FLOPs (+ transcendentals)         bytes moved (DRAM, ideal)
========================  ================================  =====================================
log_softmax_fwd           ~4*R*C + R*C exp + R log           2*R*C*s
log_softmax_bwd           ~3*R*C + R*C exp                   3*R*C*s
cross_entropy_fwd         ~3*R*C + R*C exp + R log           R*C*s + R*8 (target) + R*s
cross_entropy_reduce_fwd  2*R adds + 1 division              R*s + R*8 + s
cross_entropy_count       R adds                             R*8 + s
cross_entropy_bwd         ~5*R*C + R*C exp                   2*R*C*s + R*8 + R*s ('none'), s else
========================  ================================  =====================================

Each kernel reads its row two or three times (max, sum, output); the figures count one DRAM
read, assuming a row (C*s bytes) stays in L1 or L2 between passes, which holds at the reference
models' sizes (C = 10 classes, V = 10k words: 40 KB per row in float32).

Targets must lie in [0, C) or equal ``ignore_index``, and the forward kernel checks them: any
other target is reported
through the runtime's error flag (``common.report_error``, code ``BAD_TARGET``; the first report
wins) and its row gets a NaN loss, and nothing is read out of bounds. The host raises
``IndexRangeError("cross_entropy: target 12 is out of range for 10 classes")`` at the next
synchronisation (``runtime.synchronize``, any copy to the host), not at the call: checking on the
host would read the targets back every step. The backward does not report again; it gives a bad
target's row NaN.

``VERSIONS`` maps "v1", "v2", "v3" to each version's ``Launchers`` (log_softmax_fwd/bwd,
cross_entropy_fwd/bwd, which take ``ignore_index``); the backend calls those of the version in use
(``tilegrad.kernels.launcher("softmax_cross_entropy")``).

Test (simulator, no GPU)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_softmax.py

``PTX_SIGNATURES`` at the end lists every kernel, version and dtype the launchers use on a GPU.
"""
import functools
import math

import numpy as np
from numba import cuda, float32, float64, int64

from tilegrad.errors import IndexRangeError

from . import runtime as rt
from .common import GPU_THREADS, THREADS, contiguous, max_nan, numba_dtype, report_error, row_walk

FAMILY = "softmax_cross_entropy"
BAD_TARGET = 12       # error code (the runtime's flag): a target outside [0, C); value, bound = C
rt.register_error(BAD_TARGET, lambda value, bound: IndexRangeError(
    f"cross_entropy: target {value} is out of range for {bound} classes"))

# ---------------------------------------------------------------- kernels
# Each factory binds its version's row walk (``common.row_walk``) to local names: ``first_row``,
# ``row_step`` (this thread's rows), ``j0`` and ``step`` (its columns of the row), ``row_max`` and
# ``row_sum`` (combine the row's partials through ``scratch``, a shared array of ``slots``).
# ``j0 == 0`` marks the thread that writes a row's single result.


def _named(kernel, op, version):
    """``kernel`` compiled under the name ``<op>_kernel<version>`` (what PTX and SASS show)."""
    kernel.__name__ = kernel.__qualname__ = f"{op}_kernel{version}"
    return cuda.jit(kernel)


@functools.lru_cache(maxsize=None)
def make_log_softmax_fwd_kernel(version, block, dtype):
    """``log_softmax_fwd_kernel<version>``: y[r, j] = (x[r, j] - m) - log(s) for each row r."""
    walk = row_walk(version, block)
    first_row, row_step, first_col, row_max, row_sum = walk.device()
    step, slots = walk.col_step, walk.scratch
    zero, ninf = dtype(0), dtype(-np.inf)

    def kernel(x, y, n_rows, c):
        scratch = cuda.shared.array(slots, dtype)
        t = cuda.threadIdx.x
        j0 = first_col()
        for r in range(first_row(), n_rows, row_step()):
            base = r * c
            m = ninf                                # this thread's max over its columns
            for j in range(j0, c, step):
                m = max_nan(m, x[base + j])
            m = row_max(scratch, t, m)
            acc = zero
            for j in range(j0, c, step):
                acc += math.exp(x[base + j] - m)
            log_s = math.log(row_sum(scratch, t, acc))   # s >= 1: the max's own term is exp(0)
            for j in range(j0, c, step):
                y[base + j] = (x[base + j] - m) - log_s

    return _named(kernel, "log_softmax_fwd", version)


@functools.lru_cache(maxsize=None)
def make_log_softmax_bwd_kernel(version, block, dtype):
    """``log_softmax_bwd_kernel<version>``: dx[r, j] = g[r, j] - exp(y[r, j]) * sum_k g[r, k]."""
    walk = row_walk(version, block)
    first_row, row_step, first_col, _, row_sum = walk.device()
    step, slots = walk.col_step, walk.scratch
    zero = dtype(0)

    def kernel(grad, y, dx, n_rows, c):
        scratch = cuda.shared.array(slots, dtype)
        t = cuda.threadIdx.x
        j0 = first_col()
        for r in range(first_row(), n_rows, row_step()):
            base = r * c
            acc = zero
            for j in range(j0, c, step):
                acc += grad[base + j]
            g_sum = row_sum(scratch, t, acc)
            for j in range(j0, c, step):
                dx[base + j] = grad[base + j] - math.exp(y[base + j]) * g_sum

    return _named(kernel, "log_softmax_bwd", version)


@functools.lru_cache(maxsize=None)
def make_cross_entropy_fwd_kernel(version, block, dtype):
    """``cross_entropy_fwd_kernel<version>``: loss[n] = log(s) - (x[n, target[n]] - m), or 0
    where target[n] is ignore_index."""
    walk = row_walk(version, block)
    first_row, row_step, first_col, row_max, row_sum = walk.device()
    step, slots = walk.col_step, walk.scratch
    zero, ninf, nan = dtype(0), dtype(-np.inf), dtype(np.nan)

    def kernel(logits, target, loss, n_rows, c, ignore_index, flag):
        scratch = cuda.shared.array(slots, dtype)
        t = cuda.threadIdx.x
        j0 = first_col()
        for r in range(first_row(), n_rows, row_step()):
            base = r * c
            m = ninf
            for j in range(j0, c, step):
                m = max_nan(m, logits[base + j])
            m = row_max(scratch, t, m)
            acc = zero
            for j in range(j0, c, step):
                acc += math.exp(logits[base + j] - m)
            s = row_sum(scratch, t, acc)
            if j0 == 0:                             # one thread per row writes the loss
                k = target[r]
                if k == ignore_index:
                    loss[r] = zero
                elif k >= 0 and k < c:
                    loss[r] = math.log(s) - (logits[base + k] - m)
                else:                               # the host raises at its next sync
                    report_error(flag, BAD_TARGET, k, c)
                    loss[r] = nan

    return _named(kernel, "cross_entropy_fwd", version)


@functools.lru_cache(maxsize=None)
def make_cross_entropy_reduce_fwd_kernel(version, block, dtype):
    """``cross_entropy_reduce_fwd_kernel<version>``: out[0] = sum(loss[0:n]), divided for
    ``mean`` by K, the number of targets other than ignore_index (NaN when K = 0, as PyTorch's);
    the n losses and targets walked as one row, in a fixed order."""
    walk = row_walk(version, block)
    first_row, row_step, first_col, _, row_sum = walk.device()
    step, slots = walk.col_step, walk.scratch
    zero, one, nan = dtype(0), dtype(1), dtype(np.nan)

    def kernel(loss, target, out, n, ignore_index, mean):
        scratch = cuda.shared.array(slots, dtype)
        t = cuda.threadIdx.x
        j0 = first_col()
        for _ in range(first_row(), 1, row_step()):    # one row: v1's thread 0, v2's block 0
            acc = zero
            kept = zero                 # counted in the loss dtype: exact below 2**24 rows
            for j in range(j0, n, step):
                acc += loss[j]
                if target[j] != ignore_index:
                    kept += one
            total = row_sum(scratch, t, acc)
            kept = row_sum(scratch, t, kept)
            if j0 == 0:
                if not mean:
                    out[0] = total
                else:                   # 0/0 spelled out: the simulator would warn on it
                    out[0] = total / kept if kept > zero else nan

    return _named(kernel, "cross_entropy_reduce_fwd", version)


@functools.lru_cache(maxsize=None)
def make_cross_entropy_count_kernel(version, block, dtype):
    """``cross_entropy_count_kernel<version>``: count[0] = K, the number of targets other than
    ignore_index, in the logits' dtype: the divisor of the 'mean' backward, found on the device
    (one row of the same walk as the reduction)."""
    walk = row_walk(version, block)
    first_row, row_step, first_col, _, row_sum = walk.device()
    step, slots = walk.col_step, walk.scratch
    zero, one = dtype(0), dtype(1)

    def kernel(target, count, n, ignore_index):
        scratch = cuda.shared.array(slots, dtype)
        t = cuda.threadIdx.x
        j0 = first_col()
        for _ in range(first_row(), 1, row_step()):
            kept = zero
            for j in range(j0, n, step):
                if target[j] != ignore_index:
                    kept += one
            kept = row_sum(scratch, t, kept)
            if j0 == 0:
                count[0] = kept

    return _named(kernel, "cross_entropy_count", version)


@functools.lru_cache(maxsize=None)
def make_cross_entropy_bwd_kernel(version, block, dtype):
    """``cross_entropy_bwd_kernel<version>``: recomputes m and s, then
    dx[n, j] = (exp(x[n, j] - m) / s - [j == target[n]]) * g with g = grad_loss[n * g_step],
    divided by count[0] when ``mean``; g = 0 where target[n] is ignore_index."""
    walk = row_walk(version, block)
    first_row, row_step, first_col, row_max, row_sum = walk.device()
    step, slots = walk.col_step, walk.scratch
    zero, one, ninf, nan = dtype(0), dtype(1), dtype(-np.inf), dtype(np.nan)

    def kernel(logits, target, grad_loss, dx, n_rows, c, g_step, ignore_index, count, mean):
        scratch = cuda.shared.array(slots, dtype)
        t = cuda.threadIdx.x
        j0 = first_col()
        for r in range(first_row(), n_rows, row_step()):
            base = r * c
            m = ninf
            for j in range(j0, c, step):
                m = max_nan(m, logits[base + j])
            m = row_max(scratch, t, m)
            acc = zero
            for j in range(j0, c, step):
                acc += math.exp(logits[base + j] - m)
            inv_s = one / row_sum(scratch, t, acc)
            k = target[r]
            # g_step 1: a gradient per row ('none'); 0: the reduced loss's one gradient, which
            # every row reads, divided by K for 'mean'. An ignored row gets softmax * 0 (so 0,
            # or NaN for a NaN row, as the specification; subtracting its onehot changes
            # neither). A bad target poisons its row.
            if k == ignore_index:
                g = zero
            elif k >= 0 and k < c:
                g = grad_loss[r * g_step]
                if mean:
                    g /= count[0]
            else:
                g = nan
            for j in range(j0, c, step):
                p = math.exp(logits[base + j] - m) * inv_s
                if j == k:
                    p -= one
                dx[base + j] = p * g

    return _named(kernel, "cross_entropy_bwd", version)

# ---------------------------------------------------------------- launchers


def _dtype(x):
    return numba_dtype(x.dtype, "softmax")


def _check_target(logits, target, reduction):
    assert logits.ndim == 2, f"cross_entropy: logits must be (N, C), got {logits.shape}"
    assert target.shape == (logits.shape[0],), \
        f"cross_entropy: target {target.shape} is not ({logits.shape[0]},)"
    assert target.dtype == np.int64, f"cross_entropy: target must be int64, not {target.dtype}"
    assert reduction in ("none", "sum", "mean"), f"cross_entropy: reduction {reduction!r}"


class Launchers:
    """The launchers of one version (1, 2 or 3): what ``kernels.launcher(FAMILY)`` returns."""

    def __init__(self, version):
        self.version = version

    def __repr__(self):
        return f"<{FAMILY} v{self.version}>"

    def _launch(self, make_kernel, dtype, n_rows, *args):
        if n_rows:
            walk = row_walk(self.version, THREADS)
            rt.launch(make_kernel(self.version, THREADS, dtype), walk.grid(n_rows), walk.threads,
                      *args)

    def log_softmax_fwd(self, x):
        """log(softmax(x)) over the last axis, stable: x - max - log(sum(exp(x - max)))."""
        x = contiguous(x)
        c = x.shape[-1]
        n_rows = x.size // c if c else 0
        y = rt.empty(x.shape, x.dtype)
        self._launch(make_log_softmax_fwd_kernel, _dtype(x), n_rows, x.reshape(-1),
                     y.reshape(-1), n_rows, c)
        return y

    def log_softmax_bwd(self, grad, y):
        """Given y = log_softmax(x): dL/dx = grad - softmax(x) * sum(grad)."""
        assert grad.shape == y.shape and grad.dtype == y.dtype, (grad.shape, y.shape)
        grad, y = contiguous(grad), contiguous(y)
        c = y.shape[-1]
        n_rows = y.size // c if c else 0
        dx = rt.empty(y.shape, y.dtype)
        self._launch(make_log_softmax_bwd_kernel, _dtype(y), n_rows, grad.reshape(-1),
                     y.reshape(-1), dx.reshape(-1), n_rows, c)
        return dx

    def _one_row(self, make_kernel, dtype, *args):
        """A kernel that walks its n elements as one row (v1: thread 0; v2, v3: block 0)."""
        walk = row_walk(self.version, THREADS)
        rt.launch(make_kernel(self.version, THREADS, dtype), walk.grid(1), walk.threads, *args)

    def cross_entropy_fwd(self, logits, target, reduction="none", ignore_index=-100):
        """Per-row loss ``logsumexp(logits[n]) - logits[n, target[n]]`` for logits (N, C), 0 where
        target[n] is ``ignore_index``: the N losses for ``reduction`` 'none', else their sum or
        their sum / K (0-d), K the rows not ignored (counted on the device). Any other target
        outside [0, C) is reported by the kernel: IndexRangeError at the next sync."""
        _check_target(logits, target, reduction)
        logits, target = contiguous(logits), contiguous(target)
        n, c = logits.shape
        dtype = _dtype(logits)
        ignore_index = int(ignore_index)
        losses = rt.empty((n,), logits.dtype)
        # Launched for C = 0 too: every target is then out of range, and the kernel says so.
        self._launch(make_cross_entropy_fwd_kernel, dtype, n, logits.reshape(-1), target,
                     losses, n, c, ignore_index, rt.expect_errors())
        if reduction == "none":
            return losses
        out = rt.empty((), logits.dtype)
        self._one_row(make_cross_entropy_reduce_fwd_kernel, dtype, losses, target,
                      out.reshape(1), n, ignore_index, int(reduction == "mean"))
        return out

    def cross_entropy_bwd(self, logits, target, grad_loss, reduction="none", ignore_index=-100):
        """dL/dlogits = (softmax(logits) - onehot(target)) * g[:, None]: g = grad_loss (N,) for
        'none'; for 'sum' and 'mean' grad_loss is the reduced loss's gradient (one element, read
        on the device), divided for 'mean' by K, the rows not ignored (counted on the device by
        a one-block kernel first); g = 0 for a row whose target is ``ignore_index``."""
        _check_target(logits, target, reduction)
        per_row = reduction == "none"
        assert grad_loss.dtype == logits.dtype and (
            grad_loss.shape == target.shape if per_row else grad_loss.size == 1), \
            f"cross_entropy_bwd: grad_loss {grad_loss.shape} {grad_loss.dtype} for {reduction!r}"
        logits, target, grad_loss = contiguous(logits), contiguous(target), contiguous(grad_loss)
        n, c = logits.shape
        dtype, ignore_index, mean = _dtype(logits), int(ignore_index), reduction == "mean"
        dx = rt.empty((n, c), logits.dtype)
        if not n * c:
            return dx
        count = grad_loss.reshape(-1)                   # not read unless mean
        if mean:
            count = rt.empty((1,), logits.dtype)
            self._one_row(make_cross_entropy_count_kernel, dtype, target, count, n, ignore_index)
        self._launch(make_cross_entropy_bwd_kernel, dtype, n, logits.reshape(-1), target,
                     grad_loss.reshape(-1), dx.reshape(-1), n, c, int(per_row), ignore_index,
                     count, int(mean))
        return dx


VERSIONS = {f"v{n}": Launchers(n) for n in (1, 2, 3)}
KERNEL_FAMILIES = {FAMILY: (VERSIONS, "v2")}   # v3 once a GPU has run it

# ---------------------------------------------------------------- compile check


def _signatures():
    idx = int64[::1]
    sigs = []
    for version in (1, 2, 3):
        for f in (float32, float64):
            arr = f[::1]
            for op, make, sig in (
                    ("log_softmax_fwd", make_log_softmax_fwd_kernel, (arr, arr, int64, int64)),
                    ("log_softmax_bwd", make_log_softmax_bwd_kernel,
                     (arr, arr, arr, int64, int64)),
                    ("cross_entropy_fwd", make_cross_entropy_fwd_kernel,
                     (arr, idx, arr, int64, int64, int64, idx)),
                    ("cross_entropy_reduce_fwd", make_cross_entropy_reduce_fwd_kernel,
                     (arr, idx, arr, int64, int64, int64)),
                    ("cross_entropy_count", make_cross_entropy_count_kernel,
                     (idx, arr, int64, int64)),
                    ("cross_entropy_bwd", make_cross_entropy_bwd_kernel,
                     (arr, idx, arr, arr, int64, int64, int64, int64, arr, int64))):
                sigs.append((f"{op}_kernel{version}_{f}", make(version, GPU_THREADS, f), sig))
    return sigs


# (name, kernel, numba signature) for every kernel, version and dtype the launchers use on a
# GPU, at the GPU's block size.
PTX_SIGNATURES = _signatures()
LAUNCH_BLOCKS = {name: GPU_THREADS for name, _, _ in PTX_SIGNATURES}   # threads, for sass.py
