"""MNIST-format IDX files, and the four-file MNIST / Fashion-MNIST layout built on them.

The IDX format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``0x00 0x00 TYPE NDIM``,
then NDIM big-endian uint32 dimensions, then ``prod(dims)`` big-endian items of TYPE:

    0x08 uint8   0x09 int8   0x0B int16   0x0C int32   0x0D float32   0x0E float64

Files may be gzip-compressed; that is detected from gzip's magic bytes (1f 8b), not the name.

``load_mnist`` reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each raw or ``.gz``) from one folder:
Fashion-MNIST by default (Debian: ``apt-get install dataset-fashion-mnist``), or MNIST or any
other data set stored the same way.

Each split is an ``ArrayDataset``: a Dataset whose sample i is (image, label), that
``tilegrad.utils.data.DataLoader`` batches into tensors; its ``arrays`` are the whole split.

>>> splits = load_mnist()                                # doctest: +SKIP
>>> images, labels = splits["train"].arrays              # doctest: +SKIP
>>> images.shape, labels.dtype, len(splits["train"])     # doctest: +SKIP
((60000, 28, 28), dtype('int64'), 60000)
"""
import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..utils.data.dataset import ArrayDataset
from .paths import DataNotFoundError, find_data_dir

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEBIAN_DIRS = {"fashion-mnist": ("/usr/share/datasets/fashion-mnist",)}
INSTALL = {"fashion-mnist": "Install it with `apt-get install dataset-fashion-mnist`"}
NUM_CLASSES = 10


def _read_bytes(path):
    """The file's bytes, gunzipped if they start with gzip's magic; and whether they were."""
    raw = Path(path).read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw, False
    try:
        return gzip.decompress(raw), True
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt gzip data ({e})") from None


def read_idx(path):
    """Read an IDX file (raw or gzip) into a NumPy array of its shape, in native byte order.

    Raises:
        ValueError naming the file: a bad magic number, an unknown type code, no dimensions, or a
        length other than ``4 + 4*ndim + prod(dims)*itemsize`` bytes (truncated or trailing data).
    """
    data, gzipped = _read_bytes(path)
    unpacked = " after gunzip" if gzipped else ""
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(data)} bytes{unpacked}, "
                         f"shorter than the 4-byte magic number")
    zero0, zero1, type_code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(f"{path}: not an IDX file: magic number 0x{data[:4].hex()} does not start "
                         f"with two zero bytes (expected 0x0000TTNN, e.g. 0x00000803)")
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{t:02X}" for t in IDX_TYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{type_code:02X} in magic number "
                         f"0x{data[:4].hex()} (known: {known})")
    if ndim == 0:
        raise ValueError(f"{path}: IDX magic number 0x{data[:4].hex()} says 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header: expected {header} bytes for {ndim} "
                         f"dimensions, got {len(data)}{unpacked}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[type_code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing data"
        raise ValueError(f"{path}: {what}: expected {expected} bytes for shape {dims} of "
                         f"{dtype.name}, got {len(data)}{unpacked}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))   # a writable copy in native byte order


def _idx_file(folder, stem):
    """``folder/stem`` if it exists, else ``folder/stem.gz``."""
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(f"{folder} holds neither {stem} nor {stem}.gz")


def _load_split(folder, images_stem, labels_stem):
    images_path, labels_path = _idx_file(folder, images_stem), _idx_file(folder, labels_stem)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{images_path}: expected uint8 images of shape (N, H, W), "
                         f"got {images.dtype.name} of shape {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected labels of shape (N,), got shape {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images in {images_path} but {len(labels)} labels in "
                         f"{labels_path}")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = labels[(labels < 0) | (labels >= NUM_CLASSES)][0]
        raise ValueError(f"{labels_path}: label {bad} is outside 0..{NUM_CLASSES - 1}")
    return images, labels


def load_mnist(root=None, name="fashion-mnist"):
    """Load an MNIST-format data set: Fashion-MNIST by default.

    Args:
        root: a folder holding the four files (raw or ``.gz``), or a folder with a ``<name>``
            subfolder holding them. None: look in ``$TILEGRAD_DATA`` (itself or ``/<name>``),
            then the Debian location (only Fashion-MNIST has one).
        name: the data set's folder name: ``"fashion-mnist"`` or ``"mnist"`` (any name works
            for a folder laid out the same way).

    Returns:
        ``{"train": dataset, "test": dataset}``, each an ``ArrayDataset`` whose ``arrays`` are
        ``(images, labels)``: images uint8 of shape (N, 28, 28), labels int64 of shape (N,) in
        0..9; sample i is ``(images[i], labels[i])``.

    Raises:
        DataNotFoundError: the folder is not found (the message says what to install or set).
        ValueError: a malformed file, image and label counts that differ, or a label outside 0..9.
    """
    folder = find_mnist_dir(root, name)
    return {split: ArrayDataset(*_load_split(folder, *stems))
            for split, stems in MNIST_FILES.items()}


def find_mnist_dir(root=None, name="fashion-mnist"):
    """The folder ``load_mnist(root, name)`` reads (a pathlib.Path), or DataNotFoundError."""
    must_contain = [(stem, stem + ".gz") for pair in MNIST_FILES.values() for stem in pair]
    return find_data_dir(name, explicit=root, debian=DEBIAN_DIRS.get(name, ()),
                         must_contain=must_contain, install=INSTALL.get(name))
