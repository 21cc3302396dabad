"""``DistributedDataParallel``: one model replica per process, gradients averaged in backward.

As PyTorch's DDP:

1. At construction the parameters' shapes are compared across ranks (a mismatch is an error on
   every rank, not a hang), then rank 0's parameters and buffers are broadcast, so every replica
   starts from the same weights.
2. The parameters that require a gradient are grouped into flat buckets in reverse order of
   ``module.parameters()`` (roughly the order backward produces their gradients): the first
   bucket up to 1 MiB, so that communication starts early, the others up to ``bucket_cap_mb``.
3. Each parameter has a post-accumulate-grad hook, which fires once backward has finished
   summing its gradient. The hook copies the gradient into its bucket; once a bucket is full
   (and every bucket before it has been started, so all ranks start them in the same order) its
   allreduce is started without waiting (``async_op``). On a GPU with NCCL the allreduce then
   runs on NCCL's stream while backward goes on computing the next gradients.
4. When backward ends (``tilegrad.autograd.queue_callback``), every allreduce (a sum) is waited
   for, and each parameter's ``.grad`` becomes its part of the sum divided by the world size
   (a new tensor, as with a first backward). The optimizer then steps identically on every
   rank.

Averaging gradients over ranks gives the gradient of the mean loss over the global batch when
every rank's loss is a mean over equally many samples. With uneven shares (the last batch of an
epoch), scale each rank's loss by ``world_size * local_count / global_count`` first (the trainer
does; docs/distributed.md shows it).

``no_sync()`` skips the allreduce: gradients accumulate locally, and the first backward after it
averages the accumulated sums. ``forward`` broadcasts rank 0's buffers first (training mode,
``broadcast_buffers=True``), as PyTorch does for BatchNorm's running statistics.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ... import autograd
from ... import distributed as dist
from ...tensor import Tensor
from ..module import Module

FIRST_BUCKET_BYTES = 1024 * 1024     # PyTorch's first bucket: 1 MiB


class _Bucket:
    """Parameters whose gradients travel together in one flat array."""

    def __init__(self, params, names):
        self.params, self.names = params, names
        self.offsets, n = [], 0
        for p in params:
            self.offsets.append(n)
            n += p.numel()
        self.numel = n
        p0 = params[0]
        self.flat = p0._be.zeros((n,), p0.dtype)
        self.ready = set()
        self.work = None

    @property
    def nbytes(self):
        return self.numel * self.params[0].dtype.itemsize


class DistributedDataParallel(Module):
    """Wraps ``module`` for data-parallel training across the processes of the default group.

    ``bucket_cap_mb`` (default 25) caps a bucket's size; ``find_unused_parameters`` lets a
    backward leave some parameters without a gradient (they count as zeros on that rank);
    ``broadcast_buffers`` sends rank 0's buffers before each forward in training mode. The other
    arguments of PyTorch's DDP (``device_ids``, ``output_device``, ``dim``,
    ``gradient_as_bucket_view``, ``static_graph``...) are accepted and change nothing. The wrapped
    module is ``.module``; the state dict's keys start with ``module.``, as in PyTorch."""

    def __init__(self, module: Module, device_ids: Any = None, output_device: Any = None,
                 dim: int = 0, broadcast_buffers: bool = True, process_group: Any = None,
                 bucket_cap_mb: float | None = None, find_unused_parameters: bool = False,
                 check_reduction: bool = False, gradient_as_bucket_view: bool = False,
                 static_graph: bool = False, **kwargs: Any) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expects a tilegrad.nn.Module, got "
                            f"{type(module).__name__}")
        self.world_size = dist.get_world_size(process_group)   # a clear error before init
        self.module = module
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't have "
                               "any parameter that requires a gradient.")
        devices = sorted({str(p.device) for _, p in named})
        if len(devices) > 1:
            raise ValueError(f"DistributedDataParallel: the module's parameters are on several "
                             f"devices ({', '.join(devices)}); put it on one")
        cap = 25.0 if bucket_cap_mb is None else float(bucket_cap_mb)
        if not cap > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be > 0, got "
                             f"{bucket_cap_mb}")
        self.broadcast_buffers = bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.require_backward_grad_sync = True
        self._check_same_parameters(module)
        self._broadcast_states([p for _, p in module.named_parameters()]
                               + [b for _, b in module.named_buffers()])
        self._buckets = self._make_buckets(named, int(cap * 1024 * 1024))
        self._bucket_of = {id(p): b for b in self._buckets for p in b.params}
        self._next = 0                  # the next bucket to start
        self._in_backward = False
        self._handles = [p.register_post_accumulate_grad_hook(self._grad_ready)
                         for _, p in named]

    # ------------------------------------------------------------ construction
    def _check_same_parameters(self, module):
        mine = [(n, tuple(p.shape), str(p.dtype)) for n, p in module.named_parameters()]
        everyone = [None] * self.world_size
        dist.all_gather_object(everyone, mine)
        for r, theirs in enumerate(everyone):
            if theirs != mine:
                diff = next((f"{a} here, {b} on rank {r}" for a, b in zip(mine, theirs)
                             if a != b), f"{len(mine)} parameters here, {len(theirs)} on rank {r}")
                raise RuntimeError(f"DistributedDataParallel: the ranks' models differ ({diff}); "
                                   f"every rank must build the same model")

    @staticmethod
    def _broadcast_states(tensors):
        for t in tensors:
            dist.broadcast(t, src=0)

    @staticmethod
    def _make_buckets(named, cap):
        buckets, current, names, size = [], [], [], 0
        limit = min(FIRST_BUCKET_BYTES, cap)
        for name, p in reversed(named):
            nbytes = p.numel() * p.dtype.itemsize
            if current and (size + nbytes > limit or p.dtype != current[0].dtype):
                buckets.append(_Bucket(current, names))
                current, names, size, limit = [], [], 0, cap
            current.append(p)
            names.append(name)
            size += nbytes
        buckets.append(_Bucket(current, names))
        return buckets

    def bucket_names(self) -> list[list[str]]:
        """The parameter names of each bucket, in the order their allreduces start."""
        return [list(b.names) for b in self._buckets]

    # ------------------------------------------------------------ forward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.broadcast_buffers and self.training and self.world_size > 1:
            self._broadcast_states([b for _, b in self.module.named_buffers()])
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside accumulate gradients locally, without an allreduce; the first
        backward after the block averages what has accumulated."""
        before = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = before

    # ------------------------------------------------------------ backward
    def _grad_ready(self, p):
        if not self.require_backward_grad_sync:
            return
        if not self._in_backward:
            self._in_backward = True
            autograd.queue_callback(self._finish)
        bucket = self._bucket_of[id(p)]
        bucket.ready.add(id(p))
        self._start_full_buckets()

    def _start_full_buckets(self):
        while self._next < len(self._buckets):
            b = self._buckets[self._next]
            if len(b.ready) < len(b.params):
                return
            self._start(b)
            self._next += 1

    def _start(self, b):
        be = b.params[0]._be
        for p, off in zip(b.params, b.offsets):
            part = b.flat[off:off + p.numel()]
            if p.grad is None:      # unused here (find_unused_parameters): a zero contribution
                be.copy_into(part, be.zeros((p.numel(),), p.dtype))
            else:
                be.copy_into(part, p.grad._data.reshape(-1))
        b.work = dist.all_reduce(Tensor(b.flat, b.params[0].device), op=dist.ReduceOp.SUM,
                                 async_op=True)

    def _finish(self):
        """After backward: start what is left, wait for every bucket, write the averages back."""
        try:
            missing = [n for b in self._buckets for p, n in zip(b.params, b.names)
                       if id(p) not in b.ready]
            if missing and not self.find_unused_parameters:
                for b in self._buckets[:self._next]:    # let the started ones finish first
                    b.work.wait()
                raise RuntimeError(
                    f"DistributedDataParallel: {len(missing)} parameter(s) received no gradient "
                    f"in this backward ({', '.join(missing[:5])}"
                    f"{', ...' if len(missing) > 5 else ''}); pass find_unused_parameters=True "
                    f"if the model leaves parameters unused")
            for b in self._buckets:
                b.ready.update(id(p) for p in b.params)
            self._start_full_buckets()
            for b in self._buckets:
                b.work.wait()
                self._write_back(b, self.world_size)
        finally:
            for b in self._buckets:
                b.ready.clear()
                b.work = None
            self._next, self._in_backward = 0, False

    @staticmethod
    def _write_back(b, size):
        """Each parameter's ``.grad`` becomes its slice of the summed bucket divided by the world
        size: one pass over the bucket, into new arrays (dividing the bucket in place and then
        copying it out would be three)."""
        be = b.params[0]._be
        for p, off in zip(b.params, b.offsets):
            total = b.flat[off:off + p.numel()].reshape(p.shape)
            p.grad = Tensor(be.binary("div", total, size), p.device)
