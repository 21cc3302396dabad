"""Samplers: the order in which a DataLoader visits a map-style dataset, as torch.utils.data's.

A sampler yields dataset indices; ``BatchSampler`` groups another sampler's indices into lists.
The random samplers draw from their ``generator`` (a ``tilegrad.Generator`` or a NumPy
``Generator``), or from a fresh generator seeded from tilegrad's global one, so that
``tilegrad.manual_seed`` makes them reproducible, as torch's.

``RandomSampler`` also takes ``seed=``, which tilegrad adds: then the order of epoch e is
``np.random.default_rng([seed, e]).permutation(n)``, a function of (seed, epoch) only, so that
a run resumed at epoch e (``set_epoch(e)``) sees the batches the interrupted run would have.

>>> list(BatchSampler(SequentialSampler(range(7)), batch_size=3, drop_last=False))
[[0, 1, 2], [3, 4, 5], [6]]
>>> list(RandomSampler(range(5), seed=0)) == np.random.default_rng([0, 0]).permutation(5).tolist()
True
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized
from typing import Any

import numpy as np

from ._random import check_generator, check_seed, epoch_rng, numpy_rng


class Sampler:
    """The base class: a subclass defines ``__iter__`` (indices, or lists of them) and may
    define ``__len__``."""

    def __init__(self, data_source: Sized | None = None) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


class SequentialSampler(Sampler):
    """Indices 0, 1, ..., len(data_source) - 1, in order."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """Indices in a random order: a permutation per pass, or with ``replacement`` independent
    draws; ``num_samples`` of them (default ``len(data_source)``).

    Args:
        data_source: the dataset (only its length is used).
        replacement: draw with replacement.
        num_samples: how many indices one iteration yields.
        generator: what to draw from (see the module docstring).
        seed: (tilegrad) draw epoch e's indices from ``default_rng([seed, e])``; see
            ``set_epoch``. Exclusive with ``generator``.
    """

    def __init__(self, data_source: Sized, replacement: bool = False,
                 num_samples: int | None = None, generator: Any = None, *,
                 seed: int | None = None) -> None:
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got "
                            f"replacement={replacement}")
        check_generator(generator, "RandomSampler")
        self.seed = check_seed(seed, "RandomSampler")
        if self.seed is not None and generator is not None:
            raise ValueError("RandomSampler: seed and generator both seed the order; give one")
        self.data_source, self.replacement, self.generator = data_source, replacement, generator
        self._num_samples, self.epoch = num_samples, 0
        if not isinstance(self.num_samples, int) or isinstance(self.num_samples, bool) or \
                self.num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got "
                             f"num_samples={self.num_samples}")

    @property
    def num_samples(self) -> int:
        # Read when asked, as torch: the dataset may change size after the sampler is made.
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration yields (used with ``seed``)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"set_epoch: epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        n, count = len(self.data_source), self.num_samples
        if self.seed is not None:
            rng = epoch_rng(self.seed, self.epoch)
        else:
            rng = numpy_rng(self.generator, "RandomSampler")
        if self.replacement:
            yield from rng.integers(0, n, size=count).tolist()
            return
        for _ in range(count // n):
            yield from rng.permutation(n).tolist()
        if count % n:
            yield from rng.permutation(n)[:count % n].tolist()

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices, in a random order (a new one per iteration)."""

    def __init__(self, indices: Sequence[int], generator: Any = None) -> None:
        check_generator(generator, "SubsetRandomSampler")
        self.indices, self.generator = indices, generator

    def __iter__(self) -> Iterator[int]:
        rng = numpy_rng(self.generator, "SubsetRandomSampler")
        for i in rng.permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class BatchSampler(Sampler):
    """Lists of ``batch_size`` indices from ``sampler``; the last may be shorter unless
    ``drop_last``."""

    def __init__(self, sampler: Sampler | Iterator[int], batch_size: int,
                 drop_last: bool) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self) -> Iterator[list[int]]:
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        full, rest = divmod(len(self.sampler), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1


class _InfiniteConstantSampler(Sampler):
    """None forever: the 'indices' of an IterableDataset, which ignores them (as torch's)."""

    def __iter__(self) -> Iterator[None]:
        while True:
            yield None
