"""Mini-batches of NumPy arrays, with a shuffle that a resumed run reproduces.

This is tilegrad's NumPy-array loader, kept for code written against it: it batches a tuple of
arrays by slicing, and yields NumPy arrays. PyTorch's ``DataLoader`` (datasets, samplers, collate
functions, workers; batches of tensors) is ``tilegrad.utils.data.DataLoader``, which shuffles by
the same (seed, epoch) rule. The two are kept apart because their first argument means different
things: here ``(x, y)`` is two arrays, there it would be a dataset of two samples.

``DataLoader((images, labels), batch_size=64, shuffle=True, seed=0)`` yields tuples of array
slices, one batch at a time. The order of epoch e is the permutation drawn from
``np.random.default_rng([seed, e])``: it depends on (seed, epoch) only, never on how many batches
were drawn before, so a run resumed at epoch e (``loader.set_epoch(e)``) sees the same batches as
the run it continues. As with PyTorch's ``DistributedSampler``, the epoch does not advance by
itself: call ``set_epoch(e)`` before each epoch, or every epoch has the same order.

>>> x, y = np.arange(10).reshape(5, 2), np.arange(5)
>>> loader = DataLoader((x, y), batch_size=2)
>>> len(loader), [yb.tolist() for _, yb in loader]
(3, [[0, 1], [2, 3], [4]])
"""
import numpy as np


class DataLoader:
    """Batches over a tuple of arrays that share their first dimension.

    Args:
        arrays: a tuple (or list) of NumPy arrays with the same length (first dimension); a
            single array is taken as a 1-tuple.
        batch_size: samples per batch (the last batch may be smaller, see ``drop_last``).
        shuffle: visit the samples in a new order each epoch (see ``set_epoch``).
        seed: the shuffle seed; None draws a fresh one from the OS once, at construction
            (kept in ``self.seed``, so that it can be logged and reused).
        drop_last: drop the last batch if it is smaller than ``batch_size``.

    Yields:
        tuples with one batch of each array, in the order of ``arrays``: plain slices (views)
        without shuffle, gathered copies with it.
    """

    def __init__(self, arrays, batch_size=1, shuffle=False, seed=None, drop_last=False):
        if isinstance(arrays, np.ndarray):
            arrays = (arrays,)
        arrays = tuple(arrays)
        if not arrays:
            raise ValueError("DataLoader: no arrays given")
        for i, a in enumerate(arrays):
            if not isinstance(a, np.ndarray) or a.ndim == 0:
                raise ValueError(f"DataLoader: arrays[{i}] must be a NumPy array with a first "
                                 f"dimension, got {type(a).__name__}")
        lengths = [len(a) for a in arrays]
        if len(set(lengths)) != 1:
            raise ValueError(f"DataLoader: arrays must have the same first dimension, got "
                             f"lengths {lengths}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size}")
        self.arrays, self.batch_size = arrays, int(batch_size)
        self.shuffle, self.drop_last = shuffle, drop_last
        if seed is None and shuffle:
            seed = int(np.random.SeedSequence().entropy)
        if seed is not None and (int(seed) != seed or seed < 0):
            raise ValueError(f"DataLoader: seed must be a non-negative integer, got {seed}")
        self.seed = None if seed is None else int(seed)
        self.epoch = 0

    @property
    def num_samples(self):
        return len(self.arrays[0])

    def set_epoch(self, epoch):
        """Choose which epoch's order the next iteration uses (the shuffle is (seed, epoch))."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"DataLoader.set_epoch: epoch must be a non-negative integer, "
                             f"got {epoch}")
        self.epoch = int(epoch)

    def order(self):
        """The sample indices of the current epoch, in visiting order."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)

    def __len__(self):
        full, rest = divmod(self.num_samples, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self):
        indices = self.order() if self.shuffle else None
        for b in range(len(self)):
            start, stop = b * self.batch_size, min((b + 1) * self.batch_size, self.num_samples)
            if indices is None:
                yield tuple(a[start:stop] for a in self.arrays)
            else:
                yield tuple(a[indices[start:stop]] for a in self.arrays)

    def __repr__(self):
        return (f"DataLoader(samples={self.num_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, "
                f"epoch={self.epoch})")
