"""``DataLoader``: batches of tensors from a dataset, as torch.utils.data.DataLoader.

The loader puts three parts together: a sampler (the order of the indices), a batch sampler
(indices grouped into batches) and a collate function (samples stacked into tensors), over any
object with ``__len__`` and ``__getitem__``, or an ``IterableDataset``. Its arguments, defaults
and errors are torch's; ``batch_size=None`` turns batching off (each sample is only converted,
by ``default_convert``).

Reproducible order. ``generator=`` (a ``tilegrad.Generator``) drives the shuffle and the
workers' base seed; without it they draw from tilegrad's global generator, so
``tilegrad.manual_seed(s)`` makes a run reproducible, as torch. tilegrad adds ``seed=`` and
``set_epoch(e)``: epoch e's order is then ``np.random.default_rng([seed, e]).permutation(n)``, a
function of (seed, epoch) only, so that a run resumed at epoch e sees the batches the
interrupted one would have. As with ``DistributedSampler``, the epoch does not advance by
itself: call ``set_epoch(e)`` before each epoch.

Workers. ``num_workers > 0`` fetches and collates whole batches in worker processes (see
``_multiprocess.py``); the batches, and the values drawn from a seeded generator, are those of
``num_workers=0``.

>>> loader = DataLoader(list(range(7)), batch_size=3)
>>> len(loader), [b.tolist() for b in loader]
(3, [[0, 1, 2], [3, 4, 5], [6]])
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator

from ._collate import default_collate, default_convert, numpy_collate
from ._fetch import FetcherFactory
from ._random import check_generator, check_seed, epoch_rng, numpy_rng
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler, \
    _InfiniteConstantSampler

_FROZEN = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")


class DataLoader:
    """Batches of tensors from ``dataset`` (arguments as ``torch.utils.data.DataLoader``).

    Args:
        dataset: an object with ``__len__`` and ``__getitem__``, or an ``IterableDataset``.
        batch_size: samples per batch; None disables batching.
        shuffle: a new random order each epoch (a ``RandomSampler``).
        sampler, batch_sampler: the order of the indices, or of whole batches of them.
        num_workers: worker processes (0: load in the main process).
        collate_fn: samples -> batch (default ``default_collate``).
        pin_memory: accepted for torch's sake; there is no pinned host memory here.
        drop_last: drop the last, incomplete batch.
        timeout: seconds to wait for a batch from the workers (0: forever).
        worker_init_fn: called with the worker id in each worker, after seeding.
        multiprocessing_context: a ``multiprocessing`` context or its name ("fork", "spawn").
        generator: seeds the shuffle and the workers (a ``tilegrad.Generator``).
        prefetch_factor: batches in flight per worker (default 2 with workers).
        persistent_workers: keep the workers from one epoch to the next.
        pin_memory_device, in_order: accepted for torch's sake; batches always come in order.
        seed: (tilegrad) the order of epoch e is a function of (seed, e); see ``set_epoch``.
    """

    def __init__(self, dataset: Any, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler | None = None, batch_sampler: Sampler | None = None,
                 num_workers: int = 0, collate_fn: Callable | None = None,
                 pin_memory: bool = False, drop_last: bool = False, timeout: float = 0,
                 worker_init_fn: Callable[[int], None] | None = None,
                 multiprocessing_context: Any = None, generator: Any = None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True,
                 seed: int | None = None) -> None:
        _check_workers(num_workers, timeout, prefetch_factor, persistent_workers)
        check_generator(generator, "DataLoader")
        seed = check_seed(seed, "DataLoader")
        if seed is not None and generator is not None:
            raise ValueError("DataLoader: seed and generator both seed the order; give one")
        iterable = isinstance(dataset, IterableDataset)
        if iterable:
            _check_iterable(shuffle, sampler, batch_sampler)
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        if sampler is None:
            if iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator, seed=seed)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.num_workers, self.pin_memory, self.timeout = num_workers, pin_memory, timeout
        self.worker_init_fn, self.generator, self.seed, self.epoch = worker_init_fn, generator, \
            seed, 0
        self.multiprocessing_context = multiprocessing_context
        self.prefetch_factor = 2 if num_workers > 0 and prefetch_factor is None else \
            prefetch_factor
        self.persistent_workers = persistent_workers
        self.pin_memory_device, self.in_order = pin_memory_device, in_order
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if self._auto_collation else default_convert)
        self._iterable, self._pool = iterable, None
        self._initialized = True

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr in _FROZEN and self.__dict__.get("_initialized"):
            raise ValueError(f"{attr} attribute should not be set after "
                             f"{type(self).__name__} is initialized")
        super().__setattr__(attr, value)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self) -> Any:
        return self.batch_sampler if self._auto_collation else self.sampler

    @property
    def _workers_collate_numpy(self) -> bool:
        """Workers collate into NumPy and the main process makes the tensors (default collate
        only: what a user's collate_fn returns travels as it is)."""
        return self.collate_fn is default_collate

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch the next iteration draws for (with ``seed``: its order and its
        workers' seeds); passed on to a sampler that has ``set_epoch``."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"DataLoader.set_epoch: epoch must be a non-negative integer, "
                             f"got {epoch!r}")
        self.epoch = epoch
        for s in (self.sampler, getattr(self.batch_sampler, "sampler", None)):
            if callable(getattr(s, "set_epoch", None)):
                s.set_epoch(epoch)

    def _base_seed(self) -> int:
        """The workers' base seed, drawn once per iteration (with or without workers, so that
        both draw the same numbers from the generator)."""
        rng = epoch_rng(self.seed, self.epoch, stream=1) if self.seed is not None else \
            numpy_rng(self.generator, "DataLoader")
        return int(rng.integers(2 ** 63))

    def __iter__(self) -> Iterator[Any]:
        base_seed = self._base_seed()
        factory = FetcherFactory(self._iterable, self.dataset, self._auto_collation,
                                 numpy_collate if self._workers_collate_numpy and
                                 self.num_workers > 0 else self.collate_fn, self.drop_last)
        if self.num_workers == 0:
            return _SingleProcessIter(self, factory())
        from ._multiprocess import MultiProcessIter, WorkerPool
        if not self.persistent_workers:
            return MultiProcessIter(self, WorkerPool(self, factory, base_seed), persistent=False)
        if self._pool is None or self._pool.closed:
            self._pool = WorkerPool(self, factory, base_seed)
        return MultiProcessIter(self, self._pool, persistent=True)

    def __len__(self) -> int:
        if self._iterable:
            length = len(self.dataset)      # a TypeError where the dataset has no length
            if self.batch_size is not None:
                length = (length // self.batch_size if self.drop_last
                          else math.ceil(length / self.batch_size))
            return length
        return len(self._index_sampler)

    def __del__(self) -> None:
        pool = self.__dict__.get("_pool")
        if pool is not None:
            pool.shutdown()


class _SingleProcessIter:
    """One pass in the main process: the sampler's next indices, fetched and collated."""

    def __init__(self, loader: DataLoader, fetcher: Any) -> None:
        self.loader, self.fetcher = loader, fetcher
        self.sampler_iter = iter(loader._index_sampler)

    def __iter__(self) -> _SingleProcessIter:
        return self

    def __len__(self) -> int:
        return len(self.loader)

    def __next__(self) -> Any:
        return self.fetcher.fetch(next(self.sampler_iter))


def _check_workers(num_workers, timeout, prefetch_factor, persistent_workers):
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError("num_workers option should be non-negative; use num_workers=0 to "
                         "disable multiprocessing.")
    if timeout < 0:
        raise ValueError("timeout option should be non-negative")
    if num_workers == 0 and prefetch_factor is not None:
        raise ValueError("prefetch_factor option could only be specified in multiprocessing."
                         "let num_workers > 0 to enable multiprocessing, otherwise set "
                         "prefetch_factor to None.")
    if prefetch_factor is not None and prefetch_factor < 0:
        raise ValueError("prefetch_factor option should be non-negative")
    if persistent_workers and num_workers == 0:
        raise ValueError("persistent_workers option needs num_workers > 0")


def _check_iterable(shuffle, sampler, batch_sampler):
    if shuffle not in {False, None}:
        raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, "
                         f"but got shuffle={shuffle}")
    if sampler is not None:
        raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, "
                         f"but got sampler={sampler}")
    if batch_sampler is not None:
        raise ValueError(f"DataLoader with IterableDataset: expected unspecified batch_sampler "
                         f"option, but got batch_sampler={batch_sampler}")
