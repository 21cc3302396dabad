"""CIFAR-10 in its official "python version" layout.

``cifar-10-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar.html) unpacks to a folder
``cifar-10-batches-py`` holding ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``. Each is a
pickled dict with ``b"data"``, a (N, 3072) uint8 array (1024 red, then 1024 green, then 1024 blue
values of a 32x32 image, row by row), and ``b"labels"``, N ints in 0..9.

Pickle is inherent to this format, and unpickling runs whatever code the file names: only load
batches you trust. Each unpickled object is checked (a dict with those keys, the shapes, the label
count) before it is used. There is no Debian package: unpack the archive under ``$TILEGRAD_DATA``
or pass its folder as ``--data-dir``.

Each split is an ``ArrayDataset`` (sample i is (image, label); ``arrays`` the whole split).

>>> splits = load_cifar10("~/data")        # doctest: +SKIP
>>> splits["train"].data.shape             # doctest: +SKIP
(50000, 3, 32, 32)
"""
import pickle
from pathlib import Path

import numpy as np

from ..utils.data.dataset import ArrayDataset
from .paths import find_data_dir

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
INSTALL = (f"Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
           f"unpack it into $TILEGRAD_DATA (giving $TILEGRAD_DATA/{FOLDER})")


def _get(batch, key):
    """``batch[b"key"]``, or ``batch["key"]`` for batches pickled by Python 3."""
    return batch[key.encode()] if key.encode() in batch else batch.get(key)


def read_cifar_batch(path):
    """One official CIFAR-10 batch file -> (images uint8 (N, 3, 32, 32), labels int64 (N,)).

    Raises:
        ValueError naming the file: not a pickle, not a dict with ``data`` and ``labels``, data
        not uint8 of shape (N, 3072), a label count other than N, or a label outside 0..9.
    """
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError) as e:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if data is None or labels is None:
        raise ValueError(f"{path}: expected keys b'data' and b'labels', got {list(batch)!r}")
    size = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (size,):
        got = (f"{data.dtype} of shape {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise ValueError(f"{path}: b'data' should be uint8 of shape (N, {size}), got {got}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: b'labels' is not a list of integers ({e})") from None
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: {len(data)} images but b'labels' has shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{path}: labels should be in 0..{NUM_CLASSES - 1}, "
                         f"got {labels.min()}..{labels.max()}")
    return data.reshape(len(data), *IMAGE_SHAPE), labels


def _load_batches(folder, names):
    parts = [read_cifar_batch(Path(folder) / name) for name in names]
    return (np.concatenate([images for images, _ in parts]),
            np.concatenate([labels for _, labels in parts]))


def load_cifar10(root=None):
    """Load CIFAR-10 from the official python batches.

    Args:
        root: the ``cifar-10-batches-py`` folder or the folder holding it. None: look in
            ``$TILEGRAD_DATA`` (itself or ``/cifar-10-batches-py``).

    Returns:
        ``{"train": dataset, "test": dataset}``, each an ``ArrayDataset`` whose ``arrays`` are
        ``(images, labels)``: images uint8 of shape (N, 3, 32, 32) (50000 train, 10000 test
        for the real data), labels int64 in 0..9.

    Raises:
        DataNotFoundError: no folder with all six batches; the message says where to put them.
        ValueError: a malformed batch file (named).
    """
    folder = find_data_dir(FOLDER, explicit=root, must_contain=TRAIN_BATCHES + TEST_BATCHES,
                           install=INSTALL)
    return {"train": ArrayDataset(*_load_batches(folder, TRAIN_BATCHES)),
            "test": ArrayDataset(*_load_batches(folder, TEST_BATCHES))}
