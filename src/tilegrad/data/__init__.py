"""Data sets and batching for the reference models, in plain NumPy.

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
- ``DataLoader``: mini-batches of NumPy arrays, shuffled reproducibly per (seed, epoch)
  (``loader.py``).

Everything here returns NumPy arrays; the training loop turns batches into tensors.

>>> from tilegrad import data
>>> splits = data.load_mnist()                                     # doctest: +SKIP
>>> loader = data.DataLoader(splits["train"], batch_size=64, shuffle=True, seed=0)  # doctest: +SKIP
"""
from .cifar import load_cifar10, read_cifar_batch
from .corpus import Corpus, find_corpus
from .idx import find_mnist_dir, load_mnist, read_idx
from .lm import batchify, bptt_windows, num_bptt_windows, unigram_perplexity
from .loader import DataLoader
from .paths import ENV_VAR, DataNotFoundError, find_data_dir
from .text import tokenize_line
from .vocab import Vocab

__all__ = [
    "DataNotFoundError", "find_data_dir", "ENV_VAR", "read_idx", "load_mnist", "find_mnist_dir",
    "load_cifar10", "read_cifar_batch", "Vocab", "Corpus", "find_corpus", "tokenize_line",
    "unigram_perplexity", "batchify", "bptt_windows", "num_bptt_windows", "DataLoader",
]
