"""The arithmetic of ``tilegrad bench scaling``: a ring allreduce's cost, its fit to measured
times, DistributedDataParallel's gradient buckets, and the predicted step time of data-parallel
training. No MPI here: the command (``scaling.py``) measures, this module predicts.

The cost model (the alpha-beta, or Hockney, model of a ring allreduce): ``p`` ranks each hold
``S`` bytes; the ring cuts them into ``p`` chunks and takes ``2(p-1)`` steps (``p-1`` of
reduce-scatter, ``p-1`` of all-gather), each sending one chunk of ``S/p`` bytes to a neighbour:

    t(S, p) = 2(p-1) * alpha + 2(p-1)/p * S / beta

``alpha`` is the latency of one message (seconds), ``beta`` the bandwidth (bytes per second). At
``p = 1`` nothing is sent (t = 0); as ``p`` grows the bandwidth term tends to ``2 S / beta``
while the latency term grows without bound.

A training step of ``T_c`` seconds on one rank becomes, on ``p`` ranks (weak scaling: each rank
keeps its batch, so ``T_c`` is unchanged), ``T_c`` plus the allreduce of every gradient bucket.
DDP overlaps that communication with the backward pass: a bucket is reduced as soon as all its
gradients exist. The model takes the backward pass as ``backward_share`` (2/3, an assumption: its
two GEMMs per forward GEMM) of ``T_c`` and lets every bucket but the last be reduced during it;
the last bucket (the first layers' gradients, ready at the very end) is always exposed:

    T_overlap = T_fwd + max(T_bwd, sum of t_b over all buckets but the last) + t_last
"""
import numpy as np

from tilegrad.nn.parallel.distributed import FIRST_BUCKET_BYTES

BACKWARD_SHARE = 2 / 3
MB = 1024 * 1024    # DDP's bucket_cap_mb counts MiB, as torch's does


def _check_ranks(p, what):
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1:
        raise ValueError(f"{what}: the number of ranks must be an integer >= 1, got {p!r}")


def ring_allreduce_time(nbytes: float, p: int, alpha: float, beta: float) -> float:
    """Seconds for a ring allreduce of ``nbytes`` bytes per rank over ``p`` ranks, with latency
    ``alpha`` (s) and bandwidth ``beta`` (bytes/s); 0 at ``p = 1``."""
    _check_ranks(p, "ring_allreduce_time")
    if nbytes < 0:
        raise ValueError(f"ring_allreduce_time: nbytes must be >= 0, got {nbytes}")
    if p == 1:
        return 0.0
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes / beta


def _weighted_lstsq(columns, times):
    """Least squares of ``times`` on ``columns`` in relative terms: each equation is divided by
    its measured time, so that a 4-byte message (microseconds) weighs as much as a 64 MB one
    (tens of milliseconds) and the fit is good across the whole range, not only at the top."""
    a = np.stack(columns, axis=1) / times[:, None]
    coef, *_ = np.linalg.lstsq(a, np.ones_like(times), rcond=None)
    return coef


def fit_alpha_beta(nbytes, seconds, p: int = 2) -> tuple:
    """Fit ``alpha`` (s) and ``beta`` (bytes/s) of ``ring_allreduce_time`` to allreduce times
    ``seconds`` measured at message sizes ``nbytes`` on ``p`` ranks, by least squares on the
    relative residuals. ``alpha`` is kept >= 0 (refitting beta alone when the free fit would make
    it negative). Returns ``(alpha, beta, worst relative residual)``."""
    _check_ranks(p, "fit_alpha_beta")
    s, t = np.asarray(nbytes, np.float64), np.asarray(seconds, np.float64)
    if p < 2:
        raise ValueError("fit_alpha_beta: an allreduce on 1 rank sends nothing; p must be >= 2")
    if s.ndim != 1 or s.shape != t.shape:
        raise ValueError(f"fit_alpha_beta: nbytes and seconds must be 1-D of one length, got "
                         f"shapes {s.shape} and {t.shape}")
    if len(np.unique(s)) < 2 or not (np.all(np.isfinite(t)) and np.all(t > 0)) or np.any(s < 0):
        raise ValueError("fit_alpha_beta: needs two or more distinct sizes >= 0 and finite "
                         f"times > 0, got sizes {s.tolist()} and times {t.tolist()}")
    steps = np.full_like(s, 2 * (p - 1))          # the latency column: alpha's coefficient
    volume = 2 * (p - 1) / p * s                 # the bandwidth column: 1/beta's coefficient
    alpha, inv_beta = _weighted_lstsq([steps, volume], t)
    if alpha < 0:
        alpha, (inv_beta,) = 0.0, _weighted_lstsq([volume], t)
    if inv_beta <= 0:
        raise ValueError("fit_alpha_beta: the times do not grow with the message size, so no "
                         f"bandwidth fits them: sizes {s.tolist()}, times {t.tolist()}")
    model = steps * alpha + volume * inv_beta
    return float(alpha), float(1 / inv_beta), float(np.max(np.abs(model - t) / t))


def buckets(param_bytes, cap_bytes: float, first_bytes: float = FIRST_BUCKET_BYTES) -> list:
    """The byte sizes of DistributedDataParallel's gradient buckets for parameters of
    ``param_bytes`` bytes (in ``module.parameters()`` order), in the order they are all-reduced:
    the rule of ``tilegrad.nn.parallel.DistributedDataParallel`` (and PyTorch's). The parameters
    are taken in reverse order (the last layer's gradients are ready first); a parameter that
    would take the bucket past its limit starts the next one (a parameter larger than the limit
    makes a bucket of its own). The first bucket's limit is ``first_bytes`` (1 MiB, so that
    communication starts early), the others' ``cap_bytes``."""
    if cap_bytes <= 0 or first_bytes <= 0:
        raise ValueError(f"buckets: the bucket limits must be > 0 bytes, got {cap_bytes} and "
                         f"{first_bytes}")
    out, size, limit = [], None, min(first_bytes, cap_bytes)
    for n in reversed(list(param_bytes)):
        if n < 0:
            raise ValueError(f"buckets: a parameter's size must be >= 0 bytes, got {n}")
        if size is not None and size + n > limit:
            out.append(size)
            size, limit = None, cap_bytes
        size = n if size is None else size + n
    return out if size is None else out + [size]


def predict_step(t_compute: float, bucket_bytes, p: int, alpha: float, beta: float,
                 backward_share: float = BACKWARD_SHARE) -> dict:
    """One training step on ``p`` ranks (weak scaling) by the model of the module docstring:
    ``t_compute`` seconds of one rank's step, its gradients in buckets of ``bucket_bytes``
    (reduction order). Returns seconds (``allreduce``, ``step``, ``step_overlap``) and
    efficiencies ``t_compute / step`` (``efficiency``, ``efficiency_overlap``)."""
    if not t_compute > 0 or not 0 < backward_share < 1:
        raise ValueError(f"predict_step: needs t_compute > 0 and 0 < backward_share < 1, got "
                         f"{t_compute} and {backward_share}")
    t_b = [ring_allreduce_time(b, p, alpha, beta) for b in bucket_bytes]
    comm = float(sum(t_b))
    t_bwd = backward_share * t_compute
    hidden, last = (sum(t_b[:-1]), t_b[-1]) if t_b else (0.0, 0.0)
    step = t_compute + comm
    step_overlap = (t_compute - t_bwd) + max(t_bwd, hidden) + last
    return {"allreduce": comm, "step": step, "step_overlap": step_overlap,
            "efficiency": t_compute / step, "efficiency_overlap": t_compute / step_overlap}


def rank_ladder(top: int = 1024) -> list:
    """1, 2, 4, ..., ``top``: the rank counts the predictions are made for."""
    return [2 ** k for k in range(int(np.log2(top)) + 1)]


def predictions(models: dict, alpha: float, beta: float, ranks=None,
                backward_share: float = BACKWARD_SHARE) -> list:
    """A row per model and rank count: ``models`` maps a name to ``(t_compute, bucket_bytes)``;
    each row holds the model's name, ``p``, ``t_compute`` and ``predict_step``'s numbers."""
    rows = []
    for name, (t_compute, bucket_bytes) in models.items():
        for p in ranks or rank_ladder():
            row = predict_step(t_compute, bucket_bytes, p, alpha, beta, backward_share)
            rows.append({"model": name, "p": p, "t_compute": t_compute, **row})
    return rows
