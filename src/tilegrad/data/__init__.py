"""The data sets tilegrad reads, and plain-NumPy batching.

- ``find_data_dir``, ``DataNotFoundError``: one lookup order for every data set (the explicit
  ``--data-dir``, then ``$TILEGRAD_DATA``, then the Debian package's folder) and one readable
  error that says what to install or where to point (``paths.py``).
- ``read_idx``, ``load_mnist``, ``find_mnist_dir``: IDX files; Fashion-MNIST (Debian
  ``dataset-fashion-mnist``) by default, MNIST from any folder with the same four files
  (``idx.py``).
- ``load_cifar10``: the official CIFAR-10 python batches (``cifar.py``).
- ``Vocab``, ``Corpus``, ``find_corpus``: word vocabularies and PTB / WikiText / fortunes corpora
  (``vocab.py``, ``text.py``, ``corpus.py``).
- ``batchify``, ``bptt_windows``, ``num_bptt_windows``, ``unigram_perplexity``: language-model
  batches as PyTorch's word_language_model example, and the baseline to beat (``lm.py``).
- ``DataLoader``: the NumPy-array loader, slices of a tuple of arrays shuffled per (seed, epoch)
  (``loader.py``). It is not ``torch.utils.data.DataLoader``: for that, with datasets, samplers,
  collate functions, workers and tensors, use ``tilegrad.utils.data.DataLoader``.

``load_mnist`` and ``load_cifar10`` return each split as an ``ArrayDataset``
(``tilegrad.utils.data``): a Dataset whose sample i is ``(image, label)``, with the whole split's
NumPy arrays in ``arrays`` (also ``data`` and ``targets``). The text readers return NumPy arrays.

>>> from tilegrad import data
>>> from tilegrad.utils.data import DataLoader
>>> splits = data.load_mnist()                                     # doctest: +SKIP
>>> loader = DataLoader(splits["train"], batch_size=64, shuffle=True, seed=0)  # doctest: +SKIP
>>> images, labels = next(iter(loader))                            # doctest: +SKIP
>>> images.shape, labels.dtype                                     # doctest: +SKIP
((64, 28, 28), dtype('int64'))
"""
from .cifar import load_cifar10, read_cifar_batch
from .corpus import Corpus, find_corpus
from .idx import find_mnist_dir, load_mnist, read_idx
from .lm import batchify, bptt_windows, num_bptt_windows, unigram_perplexity
from .loader import DataLoader
from .paths import ENV_VAR, DataNotFoundError, find_data_dir
from .text import tokenize_line
from .vocab import Vocab
from ..utils.data.dataset import ArrayDataset

__all__ = [
    "DataNotFoundError", "find_data_dir", "ENV_VAR", "read_idx", "load_mnist", "find_mnist_dir",
    "load_cifar10", "read_cifar_batch", "Vocab", "Corpus", "find_corpus", "tokenize_line",
    "unigram_perplexity", "batchify", "bptt_windows", "num_bptt_windows", "DataLoader",
    "ArrayDataset",
]
