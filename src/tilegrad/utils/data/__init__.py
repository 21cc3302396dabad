"""``tilegrad.utils.data``: PyTorch's data layer (``torch.utils.data``) under its names.

- Datasets (``dataset.py``): ``Dataset``, ``IterableDataset``, ``TensorDataset``,
  ``ArrayDataset`` (NumPy arrays, tilegrad's), ``ConcatDataset``, ``ChainDataset``, ``Subset``,
  ``random_split``.
- Samplers (``sampler.py``): ``Sampler``, ``SequentialSampler``, ``RandomSampler``,
  ``SubsetRandomSampler``, ``BatchSampler``; for data-parallel training (``distributed.py``)
  ``DistributedSampler`` and ``DistributedBatchSampler``.
- Batches (``_collate.py``): ``default_collate``, ``default_convert``.
- ``DataLoader`` (``dataloader.py``), with worker processes (``_multiprocess.py``,
  ``_worker.py``) and ``get_worker_info``.

>>> import numpy as np
>>> ds = TensorDataset(np.random.rand(10, 3).astype(np.float32), np.arange(10))
>>> x, y = next(iter(DataLoader(ds, batch_size=4, shuffle=True, seed=0)))
>>> x.shape, y.dtype
((4, 3), dtype('int64'))
"""
from ._collate import default_collate, default_convert
from ._worker import WorkerInfo, get_worker_info
from .dataloader import DataLoader
from .dataset import (ArrayDataset, ChainDataset, ConcatDataset, Dataset, IterableDataset, Subset,
                      TensorDataset, random_split)
from .sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler,
                      SubsetRandomSampler)
from .distributed import DistributedBatchSampler, DistributedSampler

__all__ = [
    "Dataset", "IterableDataset", "TensorDataset", "ArrayDataset", "ConcatDataset",
    "ChainDataset", "Subset", "random_split", "Sampler", "SequentialSampler", "RandomSampler",
    "SubsetRandomSampler", "BatchSampler", "default_collate", "default_convert", "DataLoader",
    "get_worker_info", "WorkerInfo", "DistributedSampler", "DistributedBatchSampler",
]
