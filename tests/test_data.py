"""tilegrad.data on small files written here under tmp_path; never the Debian data sets.

IDX files are written byte by byte with struct, CIFAR batches pickled in the official layout,
PTB / WikiText / fortune files as plain text. Expected values are computed by hand.
"""
import doctest
import gzip
import importlib
import math
import os
import pickle
import struct

import numpy as np
import pytest

from tilegrad import data
from tilegrad.data import corpus as corpus_module
from tilegrad.data import idx as idx_module

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
             np.float64: 0x0E}


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    """No test sees the caller's $TILEGRAD_DATA."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)


# ---------------------------------------------------------------- IDX and MNIST

def idx_bytes(array, magic=None):
    """The IDX encoding of ``array``, written by hand: magic, big-endian uint32 dims, items."""
    array = np.asarray(array)
    code = IDX_CODES[array.dtype.type]
    head = magic if magic is not None else struct.pack(">BBBB", 0, 0, code, array.ndim)
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return head + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_bytes(path, payload, gz=False):
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def random_array(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype,shape", [(np.uint8, (7, 5, 3)), (np.int8, (11,)),
                                         (np.int16, (3, 4)), (np.int32, (2, 3, 1, 5)),
                                         (np.float32, (5, 2)), (np.float64, (3,))])
def test_read_idx_round_trip(tmp_path, gz, dtype, shape):
    expected = random_array(dtype, shape)
    path = write_bytes(tmp_path / "array-idx", idx_bytes(expected), gz)   # no .gz: magic decides
    got = data.read_idx(path)
    assert got.shape == expected.shape and got.dtype == np.dtype(dtype)
    assert got.dtype.isnative and got.flags.writeable
    np.testing.assert_array_equal(got, expected)


def test_read_idx_raw_file_named_gz(tmp_path):
    expected = random_array(np.uint8, (4, 3))
    path = write_bytes(tmp_path / "labels.gz", idx_bytes(expected))
    np.testing.assert_array_equal(data.read_idx(path), expected)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_read_idx_truncated(tmp_path, gz):
    payload = idx_bytes(random_array(np.uint8, (6, 4, 4)))   # 4 + 12 + 96 = 112 bytes
    path = write_bytes(tmp_path / "images-idx3-ubyte", payload[:-5], gz)
    with pytest.raises(ValueError) as err:
        data.read_idx(path)
    message = str(err.value)
    assert str(path) in message and "truncated" in message
    assert "expected 112 bytes" in message and "got 107" in message


def test_read_idx_truncated_header(tmp_path):
    path = write_bytes(tmp_path / "short", struct.pack(">BBBBI", 0, 0, 8, 3, 60000))
    with pytest.raises(ValueError, match="truncated IDX header: expected 16 bytes.*got 8"):
        data.read_idx(path)


def test_read_idx_trailing_data(tmp_path):
    path = write_bytes(tmp_path / "long", idx_bytes(np.arange(5, dtype=np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match="trailing data: expected 13 bytes.*got 14"):
        data.read_idx(path)


@pytest.mark.parametrize("magic,what", [(b"\x01\x00\x08\x01", "two zero bytes"),
                                        (b"\x00\x00\x07\x01", "unknown IDX type code 0x07"),
                                        (b"\x00\x00\x08\x00", "0 dimensions")])
def test_read_idx_bad_magic(tmp_path, magic, what):
    path = write_bytes(tmp_path / "bad-magic", idx_bytes(np.arange(3, dtype=np.uint8), magic))
    with pytest.raises(ValueError, match=what) as err:
        data.read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_corrupt_gzip(tmp_path):
    packed = gzip.compress(idx_bytes(random_array(np.uint8, (50, 50))))
    path = write_bytes(tmp_path / "cut.gz", packed[:len(packed) // 2])
    with pytest.raises(ValueError, match="corrupt gzip") as err:
        data.read_idx(path)
    assert str(path) in str(err.value)


MNIST_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def write_mnist(folder, counts=None, gz=(True, False, False, True), label_max=9):
    """Four IDX files of random 28x28 images and labels; ``gz`` says which are gzipped."""
    counts = counts or {"train": (7, 7), "test": (3, 3)}
    folder.mkdir(parents=True, exist_ok=True)
    stems = [s for pair in MNIST_STEMS.values() for s in pair]
    arrays, k = {}, 0
    for split, (images_stem, labels_stem) in MNIST_STEMS.items():
        n_images, n_labels = counts[split]
        images = random_array(np.uint8, (n_images, 28, 28), seed=k)
        labels = np.random.default_rng(k + 1).integers(0, label_max + 1, n_labels).astype(np.uint8)
        for stem, array in ((images_stem, images), (labels_stem, labels)):
            zipped = gz[stems.index(stem)]
            write_bytes(folder / (stem + (".gz" if zipped else "")), idx_bytes(array), zipped)
        arrays[split] = (images, labels)
        k += 2
    return arrays


def test_load_mnist_explicit_folder(tmp_path):
    expected = write_mnist(tmp_path / "fm")
    splits = data.load_mnist(tmp_path / "fm")
    assert data.find_mnist_dir(tmp_path / "fm") == tmp_path / "fm"
    assert set(splits) == {"train", "test"}
    for split, dataset in splits.items():
        images, labels = dataset.arrays
        assert images.dtype == np.uint8 and images.shape == (len(expected[split][0]), 28, 28)
        assert labels.dtype == np.int64 and labels.shape == (len(images),)
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(labels, expected[split][1])
        image, label = dataset[2]                                  # a Dataset of samples
        assert len(dataset) == len(labels) and label == expected[split][1][2]
        np.testing.assert_array_equal(image, expected[split][0][2])


def test_load_mnist_named_subfolder_and_env(tmp_path, monkeypatch):
    expected = write_mnist(tmp_path / "mnist", gz=(False, False, False, False))
    # the explicit path may be the parent of <name>/
    np.testing.assert_array_equal(data.load_mnist(tmp_path, name="mnist")["test"].targets,
                                  expected["test"][1])
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    np.testing.assert_array_equal(data.load_mnist(name="mnist")["train"].data, expected["train"][0])


def test_load_mnist_count_mismatch(tmp_path):
    write_mnist(tmp_path, counts={"train": (7, 6), "test": (3, 3)})
    with pytest.raises(ValueError) as err:
        data.load_mnist(tmp_path)
    message = str(err.value)
    assert "7 images" in message and "6 labels" in message
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte" in message


def test_load_mnist_label_out_of_range(tmp_path):
    write_mnist(tmp_path, counts={"train": (40, 40), "test": (40, 40)}, label_max=12)
    with pytest.raises(ValueError, match=r"label 1[0-2] is outside 0\.\.9"):
        data.load_mnist(tmp_path)


def test_load_mnist_missing_explicit_folder(tmp_path, monkeypatch):
    write_mnist(tmp_path / "elsewhere" / "fashion-mnist")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "elsewhere"))   # not used: explicit wins
    missing = tmp_path / "no-such-dir"
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_mnist(missing)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(missing) in message and "does not exist" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--data-dir" in message and "$TILEGRAD_DATA" in message
    assert "Traceback" not in message


def test_load_mnist_not_installed(tmp_path, monkeypatch):
    nowhere = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setitem(idx_module.DEBIAN_DIRS, "fashion-mnist", (str(nowhere),))
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_mnist()
    message = str(err.value)
    assert str(nowhere) in message and "$TILEGRAD_DATA: not set" in message
    assert "apt-get install dataset-fashion-mnist" in message
    with pytest.raises(data.DataNotFoundError, match="--data-dir") as err:
        data.load_mnist(name="mnist")                  # no Debian package: no apt-get advice
    assert "apt-get" not in str(err.value)


def test_load_mnist_incomplete_folder_names_missing_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataNotFoundError, match="lacks t10k-labels-idx1-ubyte or "
                                                     "t10k-labels-idx1-ubyte.gz"):
        data.load_mnist(tmp_path)


# ---------------------------------------------------------------- find_data_dir

def test_find_data_dir_lookup_order(tmp_path, monkeypatch):
    for where in ("explicit", "env/ds", "debian"):
        (tmp_path / where).mkdir(parents=True)
        (tmp_path / where / "part-01.bin").write_bytes(b"x")

    def find(**kw):
        return data.find_data_dir("ds", debian=(str(tmp_path / "debian"),),
                                  must_contain=("part-*.bin",), **kw)

    assert find() == tmp_path / "debian"
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert find() == tmp_path / "env" / "ds"
    assert find(explicit=tmp_path / "explicit") == tmp_path / "explicit"
    with pytest.raises(data.DataNotFoundError, match="lacks part-"):
        find(explicit=tmp_path)                 # an explicit path is the only place looked at


def test_find_data_dir_reports_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(data.DataNotFoundError) as err:
        data.find_data_dir("ds", debian=(str(tmp_path / "deb"),), must_contain=("a", ("b", "c")),
                           install="Install it with `apt-get install ds`")
    message = str(err.value)
    for place in ("env", os.path.join("env", "ds"), "deb"):
        assert str(tmp_path / place) + ": does not exist" in message
    assert "apt-get install ds" in message and "a, b or c" in message


# ---------------------------------------------------------------- CIFAR-10

def cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"batch", b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, n)], b"filenames": [b"x.png"] * n}


def write_cifar(folder, sizes=(2, 3, 1, 2, 3), test_size=4):
    folder.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i + 1}": cifar_batch(n, i) for i, n in enumerate(sizes)}
    batches["test_batch"] = cifar_batch(test_size, 99)
    for name, batch in batches.items():
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return batches


def test_load_cifar10(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    splits = data.load_cifar10(tmp_path)            # the parent of cifar-10-batches-py
    images, labels = splits["train"].arrays
    assert images.shape == (11, 3, 32, 32) and images.dtype == np.uint8
    assert labels.shape == (11,) and labels.dtype == np.int64
    first = batches["data_batch_1"][b"data"][0]
    for c in range(3):                               # 1024 red, then green, then blue; row-major
        np.testing.assert_array_equal(images[0, c], first[c * 1024:(c + 1) * 1024].reshape(32, 32))
    # batch 5's first image comes after 2 + 3 + 1 + 2 images of batches 1 to 4
    np.testing.assert_array_equal(images[8].ravel(), batches["data_batch_5"][b"data"][0])
    np.testing.assert_array_equal(labels, sum((batches[f"data_batch_{i}"][b"labels"]
                                               for i in range(1, 6)), []))
    assert splits["test"].data.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(splits["test"].targets, batches["test_batch"][b"labels"])


def test_load_cifar10_root_itself_and_env(tmp_path, monkeypatch):
    batches = write_cifar(tmp_path / "mine")
    np.testing.assert_array_equal(data.load_cifar10(tmp_path / "mine")["test"].targets,
                                  batches["test_batch"][b"labels"])
    batches = write_cifar(tmp_path / "env" / "cifar-10-batches-py", test_size=5)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert data.load_cifar10()["test"].data.shape == (5, 3, 32, 32)


def bad_batches():
    good = cifar_batch(3, 0)
    return {
        "not a dict": ([1, 2, 3], "expected a pickled dict, got list"),
        "missing key": ({b"data": good[b"data"]}, "expected keys b'data' and b'labels'"),
        "wrong width": ({**good, b"data": good[b"data"][:, :3000]}, r"shape \(N, 3072\)"),
        "wrong dtype": ({**good, b"data": good[b"data"].astype(np.int32)}, "uint8"),
        "label count": ({**good, b"labels": good[b"labels"][:2]}, "3 images but b'labels'"),
        "label range": ({**good, b"labels": [0, 10, 3]}, r"labels should be in 0\.\.9"),
    }


@pytest.mark.parametrize("case", list(bad_batches()))
def test_load_cifar10_malformed_batch(tmp_path, case):
    write_cifar(tmp_path)
    obj, message = bad_batches()[case]
    with open(tmp_path / "data_batch_3", "wb") as f:
        pickle.dump(obj, f, protocol=2)
    with pytest.raises(ValueError, match=message) as err:
        data.load_cifar10(tmp_path)
    assert str(tmp_path / "data_batch_3") in str(err.value)


def test_load_cifar10_not_a_pickle(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch") as err:
        data.load_cifar10(tmp_path)
    assert str(tmp_path / "test_batch") in str(err.value)


def test_load_cifar10_missing(tmp_path):
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_cifar10()
    message = str(err.value)
    assert "cifar-10-python.tar.gz" in message and "$TILEGRAD_DATA" in message
    write_cifar(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(data.DataNotFoundError, match="lacks data_batch_4"):
        data.load_cifar10(tmp_path)


# ---------------------------------------------------------------- Vocab

def test_vocab_cap_and_ties():
    lines = [["b", "a", "c", "b"], ["d", "c", "a", "e", "<eos>"], ["b"]]
    # counts: b 3; a 2, c 2; d 1, e 1 (the <eos> in the text does not count as a word)
    vocab = data.Vocab.build(lines, max_size=5)
    assert vocab.itos == ["<unk>", "<eos>", "b", "a", "c"]
    assert vocab.stoi == {w: i for i, w in enumerate(vocab.itos)} and len(vocab) == 5
    assert data.Vocab.build(lines, max_size=6).itos[-1] == "d"     # d before e: alphabetical
    assert data.Vocab.build(lines, max_size=100).itos == ["<unk>", "<eos>", "b", "a", "c", "d",
                                                          "e"]
    assert data.Vocab.build([], max_size=2).itos == ["<unk>", "<eos>"]
    with pytest.raises(ValueError, match="max_size=1"):
        data.Vocab.build(lines, max_size=1)


def test_vocab_deterministic():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in rng.integers(0, 30, 400)]
    built = data.Vocab.build([words], max_size=12)
    for seed in range(3):
        shuffled = list(np.random.default_rng(seed).permutation(words))
        again = data.Vocab.build([shuffled[:150], shuffled[150:]], max_size=12)
        assert again.itos == built.itos
    from collections import Counter
    assert data.Vocab.build(Counter(words), max_size=12).itos == built.itos


def test_vocab_encode_unknown_and_decode():
    vocab = data.Vocab.build([["the", "cat", "the", "mat"]], max_size=3)   # keeps "the" only
    ids = vocab.encode(["the", "cat", "<eos>", "dog"])
    assert ids.dtype == np.int64 and ids.tolist() == [2, 0, 1, 0]
    assert vocab.decode(ids) == ["the", "<unk>", "<eos>", "<unk>"]
    assert vocab.encode([]).shape == (0,)
    with pytest.raises(ValueError, match=r"ids must be in 0\.\.2"):
        vocab.decode([3])
    with pytest.raises(ValueError, match="<unk>"):
        data.Vocab(["a", "b"])


# ---------------------------------------------------------------- Corpus

def write_splits(folder, pattern, texts):
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in texts.items():
        (folder / pattern.format(split)).write_text(text)


PTB_TEXTS = {"train": " the cat sat <unk> \n\n the dog sat\n", "valid": "the bird sat\n",
             "test": "\n dog  cat \n"}


def test_corpus_ptb(tmp_path):
    write_splits(tmp_path, "ptb.{}.txt", PTB_TEXTS)
    (tmp_path / "ptb.char.train.txt").write_text("t h e\n")   # as in simple-examples/data
    corpus = data.Corpus(tmp_path)
    assert corpus.name == "ptb" and corpus.source == str(tmp_path)
    # train counts: the 2, sat 2, <eos> 2, cat 1, dog 1, <unk> 1 (specials first, then by count)
    assert corpus.vocab.itos == ["<unk>", "<eos>", "sat", "the", "cat", "dog"]
    assert corpus.vocab.decode(corpus.train) == ["the", "cat", "sat", "<unk>", "<eos>",
                                                 "the", "dog", "sat", "<eos>"]
    assert corpus.train.tolist() == [3, 4, 2, 0, 1, 3, 5, 2, 1]
    assert corpus.valid.tolist() == [3, 0, 2, 1]                 # "bird" is not in train
    assert corpus.test.tolist() == [5, 4, 1] and corpus.test.dtype == np.int64


def test_corpus_wikitext_via_env(tmp_path, monkeypatch):
    folder = tmp_path / "wikitext-2"
    write_splits(folder, "wiki.{}.tokens", {"train": " = Title = \n\n a b a @-@ c \n",
                                            "valid": " a z \n", "test": " b \n"})
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    corpus = data.Corpus()
    assert corpus.name == "wikitext-2" and corpus.source == str(folder)
    assert corpus.vocab.decode(corpus.train) == ["=", "Title", "=", "<eos>", "a", "b", "a",
                                                 "@-@", "c", "<eos>"]
    assert corpus.vocab.decode(corpus.valid) == ["a", "<unk>", "<eos>"]


def test_corpus_max_vocab(tmp_path):
    write_splits(tmp_path, "ptb.{}.txt", {"train": "a a a b b c d\n", "valid": "d c b a\n",
                                          "test": "a\n"})
    corpus = data.Corpus(tmp_path, max_vocab=4)
    assert corpus.vocab.itos == ["<unk>", "<eos>", "a", "b"]
    assert corpus.vocab.decode(corpus.valid) == ["<unk>", "<unk>", "b", "a", "<eos>"]


def write_fortunes(folder, count=45):
    """Fortune k is "Fortune number k." (one line; k = 3 has two lines and a blank one),
    spread over two files; plus the files a Debian fortunes folder also holds."""
    folder.mkdir(parents=True, exist_ok=True)
    fortunes = [f"Fortune number {k}." for k in range(count)]
    fortunes[3] = "Don't PANIC -- \"it's\" _\bo_\bk!\n\n  Line two"
    (folder / "alpha").write_text("\n%\n".join(fortunes[:10]) + "\n%\n")
    (folder / "beta").write_text("%\n" + "\n%\n".join(fortunes[10:]) + "\n")
    (folder / "alpha.dat").write_bytes(b"\x00\x00\x00\x02 datword")
    os.symlink("alpha", folder / "alpha.u8")
    (folder / "off").mkdir()
    (folder / "off" / "gamma").write_text("offword\n%\n")
    return fortunes


def fortune_ids(k):
    return {18: "valid", 19: "test"}.get(k % 20, "train")


def test_corpus_fortunes(tmp_path):
    write_fortunes(tmp_path / "fortunes")
    corpus = data.Corpus(tmp_path / "fortunes")
    assert corpus.name == "fortunes" and corpus.source == str(tmp_path / "fortunes")
    words = {split: corpus.vocab.decode(getattr(corpus, split)) for split in
             ("train", "valid", "test")}
    # valid: fortunes 18 and 38; test: 19 and 39 (k % 20 rule)
    assert words["valid"] == ["fortune", "number", "<unk>", ".", "<eos>"] * 2
    assert corpus.vocab.encode(["18", "38", "19", "39"]).tolist() == [0, 0, 0, 0]
    train = words["train"]
    assert train[:5] == ["fortune", "number", "0", ".", "<eos>"]
    assert train[15:29] == ["don't", "panic", "-", "-", '"', "it's", '"', "ok", "!", "<eos>",
                            "line", "two", "<eos>", "fortune"]
    kept = [k for k in range(45) if fortune_ids(k) == "train"]
    assert len(train) == 5 * (len(kept) - 1) + 13
    assert train.count("<eos>") == len(kept) + 1
    for word in ("datword", "offword", "alpha"):
        assert word not in corpus.vocab


def test_corpus_fortunes_via_env(tmp_path, monkeypatch):
    write_fortunes(tmp_path / "fortunes")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    corpus = data.Corpus()
    assert corpus.name == "fortunes" and corpus.source == str(tmp_path / "fortunes")
    assert len(corpus.valid) == len(corpus.test) == 10


@pytest.mark.parametrize("layout", ["empty folder", "empty files", "empty ptb"])
def test_corpus_empty(tmp_path, layout):
    if layout == "empty files":
        (tmp_path / "alpha").write_text("\n%\n  \n%\n")
    if layout == "empty ptb":
        write_splits(tmp_path, "ptb.{}.txt", {"train": "\n \n", "valid": "", "test": ""})
    with pytest.raises(ValueError, match="empty corpus") as err:
        data.Corpus(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_corpus_empty_split(tmp_path):
    write_splits(tmp_path, "ptb.{}.txt", {**PTB_TEXTS, "valid": "\n\n"})
    with pytest.raises(ValueError, match="empty valid split") as err:
        data.Corpus(tmp_path)
    assert str(tmp_path / "ptb.valid.txt") in str(err.value)
    write_fortunes(tmp_path / "few", count=19)                  # fortune 19 would be the test one
    with pytest.raises(ValueError, match="empty test split") as err:
        data.Corpus(tmp_path / "few")
    assert str(tmp_path / "few") in str(err.value)


def test_corpus_missing(tmp_path, monkeypatch):
    nowhere = tmp_path / "usr-share-games-fortunes"
    monkeypatch.setattr(corpus_module, "FORTUNES_DEBIAN", str(nowhere))
    with pytest.raises(data.DataNotFoundError) as err:
        data.Corpus()
    message = str(err.value)
    assert str(nowhere) in message and "apt-get install fortunes" in message
    assert "--data-dir" in message and "$TILEGRAD_DATA" in message
    with pytest.raises(data.DataNotFoundError, match="does not exist") as err:
        data.Corpus(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)
    write_splits(tmp_path / "ptb", "ptb.{}.txt", {"train": "a\n", "valid": "a\n"})
    with pytest.raises(data.DataNotFoundError, match="not ptb.test.txt"):
        data.Corpus(tmp_path / "ptb")


def test_tokenize_line():
    assert data.tokenize_line("Hello, World's 2nd_best o'clock 'quote'") == [
        "hello", ",", "world's", "2nd", "_", "best", "o'clock", "'", "quote", "'"]
    assert data.tokenize_line("B\bBo\bol\bld\bd \x07text\t") == ["bold", "text"]


# ---------------------------------------------------------------- LM batching and baseline

def test_unigram_perplexity_by_hand():
    # train counts over V = 4: [1, 2, 1, 0]; add-one: p = [2, 3, 2, 1] / (4 + 4)
    # eval [1, 3]: exp(-(log 3/8 + log 1/8) / 2) = sqrt(64 / 3)
    got = data.unigram_perplexity([0, 1, 1, 2], [1, 3], vocab_size=4)
    assert math.isclose(got, math.sqrt(64 / 3), rel_tol=1e-12)
    assert math.isclose(data.unigram_perplexity([], [0, 2, 4], vocab_size=5), 5.0, rel_tol=1e-12)
    with pytest.raises(ValueError, match="eval_ids"):
        data.unigram_perplexity([0], [4], vocab_size=4)


def test_batchify_by_hand():
    source = data.batchify(np.arange(11, dtype=np.int64), 3)      # 11 -> 9: [0..2][3..5][6..8]
    np.testing.assert_array_equal(source, [[0, 3, 6], [1, 4, 7], [2, 5, 8]])
    assert source.dtype == np.int64 and source.flags.c_contiguous
    assert data.batchify(np.arange(4), 1).tolist() == [[0], [1], [2], [3]]
    with pytest.raises(ValueError, match="fewer than batch_size"):
        data.batchify(np.arange(2), 3)


def test_bptt_windows_by_hand():
    source = data.batchify(np.arange(10), 2)                      # (5, 2): 0..4 and 5..9
    windows = list(data.bptt_windows(source, 3))
    assert len(windows) == data.num_bptt_windows(5, 3) == 2
    (x0, y0), (x1, y1) = windows
    np.testing.assert_array_equal(x0, [[0, 5], [1, 6], [2, 7]])
    np.testing.assert_array_equal(y0, [[1, 6], [2, 7], [3, 8]])
    np.testing.assert_array_equal(x1, [[3, 8]])
    np.testing.assert_array_equal(y1, [[4, 9]])
    windows = list(data.bptt_windows(source, 2))
    assert [x.shape for x, _ in windows] == [(2, 2), (2, 2)]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in windows]), source[:-1])
    np.testing.assert_array_equal(np.concatenate([y for _, y in windows]), source[1:])


@pytest.mark.parametrize("steps,bptt,count", [(1, 3, 0), (2, 1, 1), (5, 4, 1), (6, 5, 1),
                                              (7, 5, 2), (36, 35, 1), (37, 35, 2)])
def test_num_bptt_windows(steps, bptt, count):
    source = np.zeros((steps, 2))
    assert data.num_bptt_windows(steps, bptt) == count == len(list(data.bptt_windows(source, bptt)))


# ---------------------------------------------------------------- DataLoader

def loader_arrays(n=10):
    x = np.arange(n * 2).reshape(n, 2)
    return x, x[:, 0] // 2                                       # y[i] == i, tied to x's row


@pytest.mark.parametrize("n,batch_size,drop_last,sizes", [
    (10, 3, False, [3, 3, 3, 1]), (10, 3, True, [3, 3, 3]), (9, 3, False, [3, 3, 3]),
    (9, 3, True, [3, 3, 3]), (2, 5, False, [2]), (2, 5, True, []), (7, 1, True, [1] * 7)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_loader_batch_counts(n, batch_size, drop_last, sizes, shuffle):
    loader = data.DataLoader(loader_arrays(n), batch_size=batch_size, shuffle=shuffle, seed=1,
                             drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(sizes) and [len(y) for _, y in batches] == sizes
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0] // 2, yb)         # rows stay paired


def test_loader_in_order():
    x, y = loader_arrays(5)
    batches = list(data.DataLoader((x, y), batch_size=2))
    assert [yb.tolist() for _, yb in batches] == [[0, 1], [2, 3], [4]]
    np.testing.assert_array_equal(batches[2][0], [[8, 9]])
    assert all(isinstance(b, tuple) and len(b) == 2 for b in batches)
    assert np.shares_memory(batches[0][0], x)                     # unshuffled batches are slices


def epoch_order(loader, epoch):
    loader.set_epoch(epoch)
    return np.concatenate([yb for _, yb in loader])


def test_loader_shuffle_per_seed_and_epoch():
    def make(seed):
        return data.DataLoader(loader_arrays(50), batch_size=8, shuffle=True, seed=seed)

    a, b = make(7), make(7)
    orders = [epoch_order(a, e) for e in range(3)]
    for order in orders:                                         # each sample once per epoch
        np.testing.assert_array_equal(np.sort(order), np.arange(50))
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    np.testing.assert_array_equal(epoch_order(b, 2), orders[2])  # a resumed run: same batches
    np.testing.assert_array_equal(epoch_order(b, 0), orders[0])
    np.testing.assert_array_equal(epoch_order(a, 0), orders[0])  # iterating again: same order
    assert not np.array_equal(epoch_order(make(8), 0), orders[0])
    expected = np.random.default_rng([7, 1]).permutation(50)
    np.testing.assert_array_equal(orders[1], expected)


def test_loader_shuffle_drop_last_sees_each_sample_at_most_once():
    loader = data.DataLoader(loader_arrays(50), batch_size=8, shuffle=True, seed=3,
                             drop_last=True)
    order = epoch_order(loader, 4)
    assert len(order) == 48 and len(set(order.tolist())) == 48


def test_loader_shuffle_without_seed():
    loader = data.DataLoader(loader_arrays(30), batch_size=4, shuffle=True)
    assert isinstance(loader.seed, int)
    np.testing.assert_array_equal(epoch_order(loader, 0), epoch_order(loader, 0))
    other = data.DataLoader(loader_arrays(30), batch_size=4, shuffle=True)
    assert other.seed != loader.seed


def test_loader_errors():
    x, y = loader_arrays(5)
    with pytest.raises(ValueError, match=r"same first dimension.*\[5, 4\]"):
        data.DataLoader((x, y[:4]))
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader((x, y), batch_size=0)
    with pytest.raises(ValueError, match="no arrays"):
        data.DataLoader(())
    single = list(data.DataLoader(y, batch_size=4))
    assert [b[0].tolist() for b in single] == [[0, 1, 2, 3], [4]]


# ---------------------------------------------------------------- docstrings

@pytest.mark.parametrize("name", ["vocab", "text", "lm", "loader"])
def test_docstring_examples(name):
    module = importlib.import_module(f"tilegrad.data.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
