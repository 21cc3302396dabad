"""Datasets, as torch.utils.data's: what a DataLoader reads samples from.

- A map-style dataset is any object with ``__len__`` and ``__getitem__(i)``; ``Dataset`` is the
  base class to derive from (``a + b`` concatenates two).
- An ``IterableDataset`` yields its samples from ``__iter__``: streams, or data too large to
  index. With worker processes each worker iterates its own copy, so the dataset shares the
  work out itself with ``get_worker_info()``.
- ``TensorDataset``, ``ArrayDataset`` (NumPy arrays), ``ConcatDataset``, ``ChainDataset``,
  ``Subset`` and ``random_split`` build datasets from tensors, arrays and other datasets.

>>> ds = TensorDataset(np.arange(6).reshape(3, 2), np.array([0, 1, 0]))
>>> x, y = ds[1]
>>> x.tolist(), y.item(), len(ds + ds)
([2, 3], 1, 6)
"""
from __future__ import annotations

import bisect
import itertools
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ...tensor import Tensor
from ._random import numpy_rng


class Dataset:
    """The base class of map-style datasets: subclasses define ``__getitem__`` (and, for the
    default samplers, ``__len__``)."""

    def __getitem__(self, index: Any) -> Any:
        raise NotImplementedError("Subclasses of Dataset should implement __getitem__.")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """The base class of iterable datasets: subclasses define ``__iter__``."""

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __add__(self, other: Dataset) -> ChainDataset:
        return ChainDataset([self, other])


class TensorDataset(Dataset):
    """Samples ``(t[i] for t in tensors)`` of tensors sharing their first dimension; NumPy
    arrays are taken as tensors (copied, as ``tilegrad.from_numpy``)."""

    def __init__(self, *tensors: Tensor | np.ndarray) -> None:
        from ...creation import from_numpy
        for i, t in enumerate(tensors):
            if not isinstance(t, (Tensor, np.ndarray)) or not t.shape:
                raise TypeError(f"TensorDataset: tensors[{i}] must be a Tensor or NumPy array "
                                f"with a first dimension, got {type(t).__name__}")
        sizes = [t.shape[0] for t in tensors]
        if len(set(sizes)) > 1:
            raise ValueError(f"Size mismatch between tensors: first dimensions {sizes}")
        self.tensors = tuple(from_numpy(t) if isinstance(t, np.ndarray) else t for t in tensors)

    def __getitem__(self, index: Any) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0] if self.tensors else 0


class ArrayDataset(Dataset):
    """NumPy arrays sharing their first dimension (tilegrad's, for data held in NumPy): sample
    ``i`` is ``tuple(a[i] for a in arrays)``, NumPy values that ``default_collate`` stacks into
    tensors. The arrays stay reachable as ``arrays`` (and, for an (inputs, labels) pair, as
    ``data`` and ``targets``, torchvision's names)."""

    def __init__(self, *arrays: np.ndarray) -> None:
        for i, a in enumerate(arrays):
            if not isinstance(a, np.ndarray) or a.ndim == 0:
                raise TypeError(f"ArrayDataset: arrays[{i}] must be a NumPy array with a first "
                                f"dimension, got {type(a).__name__}")
        sizes = [len(a) for a in arrays]
        if not arrays or len(set(sizes)) > 1:
            raise ValueError(f"ArrayDataset: expected one or more arrays with the same first "
                             f"dimension, got first dimensions {sizes}")
        self.arrays = arrays

    def __getitem__(self, index: Any) -> tuple[Any, ...]:
        return tuple(a[index] for a in self.arrays)

    def __len__(self) -> int:
        return len(self.arrays[0])

    @property
    def data(self) -> np.ndarray:
        """The inputs of an (inputs, labels) pair."""
        return self._pair()[0]

    @property
    def targets(self) -> np.ndarray:
        """The labels of an (inputs, labels) pair."""
        return self._pair()[1]

    def _pair(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.arrays) != 2:
            raise AttributeError(f"ArrayDataset: data and targets name the two arrays of an "
                                 f"(inputs, labels) pair; this one holds {len(self.arrays)}")
        return self.arrays

    def __repr__(self) -> str:
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.arrays)
        return f"ArrayDataset({shapes})"


class ConcatDataset(Dataset):
    """The datasets one after another: index ``i`` of the whole is found by bisecting
    ``cumulative_sizes``."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int) -> Any:
        if idx < 0:
            if -idx > len(self):
                raise ValueError("absolute value of index should not exceed dataset length")
            idx = len(self) + idx
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[which - 1] if which > 0 else 0
        if which == len(self.datasets):
            raise IndexError(f"ConcatDataset: index {idx} is out of range for length {len(self)}")
        return self.datasets[which][idx - start]


class ChainDataset(IterableDataset):
    """Iterable datasets one after another."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = datasets

    def __iter__(self) -> Iterator[Any]:
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError("ChainDataset only supports IterableDataset")
            yield from d

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, indices

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(dataset: Dataset, lengths: Sequence[int | float],
                 generator: Any = None) -> list[Subset]:
    """Split ``dataset`` into disjoint random subsets of the given lengths, as torch's.

    ``lengths`` are counts summing to ``len(dataset)``, or fractions summing to 1: each gets
    ``floor(len * fraction)`` samples and the remainder goes one by one to the first splits.
    The permutation is drawn from ``generator`` (default: seeded from the global generator).
    """
    lengths = list(lengths)
    total = sum(lengths)
    if math.isclose(total, 1) and total <= 1:
        lengths = _fraction_lengths(len(dataset), lengths)
    elif any(isinstance(n, float) and not float(n).is_integer() for n in lengths):
        raise ValueError(f"random_split: lengths {lengths} are neither counts nor fractions "
                         f"summing to 1")
    lengths = [int(n) for n in lengths]
    if any(n < 0 for n in lengths):
        raise ValueError(f"random_split: lengths must be non-negative, got {lengths}")
    if sum(lengths) != len(dataset):
        raise ValueError("Sum of input lengths does not equal the length of the input dataset!")
    indices = numpy_rng(generator, "random_split").permutation(sum(lengths)).tolist()
    return [Subset(dataset, indices[end - n:end])
            for end, n in zip(itertools.accumulate(lengths), lengths)]


def _fraction_lengths(n: int, fractions: list[float]) -> list[int]:
    lengths = []
    for i, frac in enumerate(fractions):
        if frac < 0 or frac > 1:
            raise ValueError(f"Fraction at index {i} is not between 0 and 1")
        lengths.append(int(math.floor(n * frac)))
    for i in range(n - sum(lengths)):     # the remainder, round-robin from the first split
        lengths[i % len(lengths)] += 1
    for i, length in enumerate(lengths):
        if length == 0:
            warnings.warn(f"Length of split at index {i} is 0. This might result in an empty "
                          f"dataset.", stacklevel=3)
    return lengths
