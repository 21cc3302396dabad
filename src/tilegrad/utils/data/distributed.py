"""Samplers for data-parallel training: which samples each process (rank) takes.

- ``DistributedSampler`` is torch.utils.data.distributed.DistributedSampler: the dataset's
  indices (shuffled by ``seed`` and the epoch set with ``set_epoch``, the same order on every
  rank) padded by repeating the first ones to a multiple of the world size, and rank r takes
  every ``num_replicas``-th index from r. Each rank gets as many samples; a few are seen twice
  per epoch (or, with ``drop_last``, the tail is never seen).
- ``DistributedBatchSampler`` (tilegrad's) splits each *global* batch instead: the batches of
  ``BatchSampler(sampler, batch_size)``, the same on every rank, are cut into ``num_replicas``
  contiguous parts as even as possible (the first ``len % num_replicas`` parts one longer), and
  rank r takes part r, perhaps empty in a short last batch. Nothing is repeated or dropped, so
  with each rank's mean loss scaled by its share (``world_size * len(part) / len(batch)``,
  ``global_batch_size`` gives the denominator) the averaged gradient is exactly the gradient of
  the whole batch, last batch included: one process on the summed batch.

>>> list(DistributedBatchSampler(range(7), batch_size=5, num_replicas=2, rank=1))
[[3, 4], [6]]
>>> shares(7, 3)
[3, 2, 2]
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any

from ._random import check_seed, epoch_rng
from .sampler import BatchSampler, Sampler


def shares(n: int, parts: int) -> list[int]:
    """``n`` items cut into ``parts`` counts as even as possible, the longer ones first."""
    q, r = divmod(int(n), int(parts))
    return [q + 1 if i < r else q for i in range(parts)]


def share_range(n: int, parts: int, index: int) -> range:
    """The indices ``start..stop`` of part ``index`` when ``n`` items are cut by ``shares``."""
    counts = shares(n, parts)
    start = sum(counts[:index])
    return range(start, start + counts[index])


def _replicas(op, num_replicas, rank):
    """``num_replicas`` and ``rank``, from the default process group where not given."""
    if num_replicas is None or rank is None:
        from ... import distributed as dist
        if not dist.is_initialized():
            raise RuntimeError(f"{op}: give num_replicas and rank, or initialise the default "
                               f"process group first (tilegrad.distributed.init_process_group)")
        num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
        rank = dist.get_rank() if rank is None else rank
    for name, v in (("num_replicas", num_replicas), ("rank", rank)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"Invalid rank {rank}, rank should be in the interval "
                         f"[0, {num_replicas - 1}]")
    return num_replicas, rank


class DistributedSampler(Sampler):
    """Rank ``rank``'s indices of ``dataset`` (torch's DistributedSampler; see the module
    docstring). ``set_epoch(e)`` before each epoch gives epoch e its own shuffle."""

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        self.num_replicas, self.rank = _replicas("DistributedSampler", num_replicas, rank)
        self.dataset, self.shuffle, self.drop_last = dataset, bool(shuffle), bool(drop_last)
        self.seed, self.epoch = check_seed(seed, "DistributedSampler"), 0
        n = len(dataset)
        if self.drop_last and n % self.num_replicas:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        order = (epoch_rng(self.seed, self.epoch).permutation(n).tolist() if self.shuffle
                 else list(range(n)))
        if not self.drop_last:
            while len(order) < self.total_size:     # pad by repeating from the start
                order += order[:self.total_size - len(order)]
        else:
            order = order[:self.total_size]
        return iter(order[self.rank:self.total_size:self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose shuffle the next iteration uses (the same on every rank)."""
        self.epoch = int(epoch)


class DistributedBatchSampler(Sampler):
    """Rank ``rank``'s part of each global batch of ``sampler`` (see the module docstring).

    Args:
        sampler: the global order of indices, the same on every rank (a ``RandomSampler`` with
            ``seed=``, say, or any iterable of indices).
        batch_size: the global batch size, summed over ranks.
        drop_last: drop a last global batch shorter than ``batch_size``.
        num_replicas, rank: default from the default process group.
    """

    def __init__(self, sampler: Sampler | Any, batch_size: int, drop_last: bool = False,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        self.num_replicas, self.rank = _replicas("DistributedBatchSampler", num_replicas, rank)
        self.batches = BatchSampler(sampler, batch_size, drop_last)
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            part = share_range(len(batch), self.num_replicas, self.rank)
            yield batch[part.start:part.stop]

    def __len__(self) -> int:
        return len(self.batches)

    def global_batch_size(self, i: int) -> int:
        """The size of global batch ``i`` (the sum of the ranks' parts)."""
        n = len(self.sampler)
        size = min(self.batch_size, n - i * self.batch_size)
        if not 0 <= i < len(self) or size < 1:
            raise IndexError(f"global_batch_size: batch {i} of {len(self)}")
        return size

    def set_epoch(self, epoch: int) -> None:
        """Passed on to the sampler (a seeded RandomSampler: epoch e's order)."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
