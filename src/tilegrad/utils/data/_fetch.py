"""Fetchers: one batch (or one sample) from a dataset, given what the sampler yielded.

The same fetchers run in the main process (``num_workers=0``) and in worker processes.
"""
from __future__ import annotations

from typing import Any, Callable


class MapFetcher:
    """Map-style datasets: ``dataset[i]`` for each index of the batch (or the dataset's
    ``__getitems__(indices)`` where it has one, as torch), then ``collate_fn``."""

    def __init__(self, dataset: Any, auto_collation: bool, collate_fn: Callable,
                 drop_last: bool) -> None:
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn

    def fetch(self, index: Any) -> Any:
        if not self.auto_collation:
            return self.collate_fn(self.dataset[index])
        getitems = getattr(self.dataset, "__getitems__", None)
        data = getitems(index) if getitems is not None else [self.dataset[i] for i in index]
        return self.collate_fn(data)


class IterableFetcher:
    """Iterable datasets: the next ``len(index)`` samples of the dataset's iterator (the
    indices themselves are ignored); StopIteration when it has none left, or only a short
    batch under ``drop_last``."""

    def __init__(self, dataset: Any, auto_collation: bool, collate_fn: Callable,
                 drop_last: bool) -> None:
        self.iterator, self.ended = iter(dataset), False
        self.auto_collation, self.collate_fn, self.drop_last = auto_collation, collate_fn, drop_last

    def fetch(self, index: Any) -> Any:
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.iterator))
        data = []
        for _ in index:
            try:
                data.append(next(self.iterator))
            except StopIteration:
                self.ended = True
                break
        if not data or (self.drop_last and len(data) < len(index)):
            raise StopIteration
        return self.collate_fn(data)


class FetcherFactory:
    """A picklable recipe for a fetcher (a worker makes its own, again at each RESET)."""

    def __init__(self, iterable: bool, dataset: Any, auto_collation: bool, collate_fn: Callable,
                 drop_last: bool) -> None:
        self.cls = IterableFetcher if iterable else MapFetcher
        self.args = (dataset, auto_collation, collate_fn, drop_last)

    def __call__(self) -> MapFetcher | IterableFetcher:
        return self.cls(*self.args)
