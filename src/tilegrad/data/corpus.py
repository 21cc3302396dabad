"""Word-level language-model corpora: PTB, WikiText, or Debian's fortunes by default.

``Corpus(path)`` finds a corpus, reads its three splits, builds the vocabulary from the train
split (the ``max_vocab`` most frequent words, ``<unk>`` and ``<eos>`` included) and encodes every
split as an np.int64 array of ids. Words outside the vocabulary become ``<unk>``.

Layouts, tried in this order in a folder:

- PTB: ``<prefix>.train.txt``, ``<prefix>.valid.txt``, ``<prefix>.test.txt`` (``ptb`` preferred
  when several prefixes are present, as in ``simple-examples/data`` with ``ptb.char.*``);
- WikiText: ``wiki.train.tokens``, ``wiki.valid.tokens``, ``wiki.test.tokens``;
- fortunes: any other folder of plain text files with fortunes separated by ``%`` lines (see
  ``text.py`` for the tokeniser). Fortune number k (counting from 0 over all files in sorted order)
  goes to valid when k % 20 == 18, to test when k % 20 == 19, and to train otherwise: a fixed
  90/5/5 split that does not depend on any random generator.

Where it looks (``path`` None): ``$TILEGRAD_DATA`` and its subfolders ``ptb``, ``wikitext-2``,
``wikitext-103`` (PTB or WikiText files) and ``fortunes``; then ``/usr/share/games/fortunes``
(``apt-get install fortunes``). A ``path`` given is the only place looked at: the folder itself
(any layout), or those subfolders of it.

>>> corpus = Corpus()                                  # doctest: +SKIP
>>> corpus.name, len(corpus.vocab), corpus.train.dtype  # doctest: +SKIP
('fortunes', 10000, dtype('int64'))
"""
import os
from collections import Counter
from pathlib import Path

from .paths import ENV_VAR, DataNotFoundError, not_found_message
from .text import fortune_files, fortune_tokens, read_fortunes, read_token_file
from .vocab import Vocab

SPLITS = ("train", "valid", "test")
SUBFOLDERS = ("ptb", "wikitext-2", "wikitext-103")
FORTUNES_DEBIAN = "/usr/share/games/fortunes"
FORTUNE_PERIOD, FORTUNE_VALID, FORTUNE_TEST = 20, 18, 19
ADVICE = ("Install Debian's fortunes corpus with `apt-get install fortunes`, or pass --data-dir "
          f"DIR (or set ${ENV_VAR}=DIR) where DIR holds ptb.train.txt/ptb.valid.txt/ptb.test.txt, "
          "wiki.train.tokens/wiki.valid.tokens/wiki.test.tokens, or fortune files.")


def _require(files, folder):
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise DataNotFoundError(f"{folder}: found {files['train'].name} but not "
                                f"{' or '.join(missing)}")
    return files


def token_files(folder):
    """``(name, {split: path})`` for a PTB or WikiText folder, or None if it is neither.

    Raises DataNotFoundError if a train file is there but a valid or test file is missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    suffix = ".train.txt"
    prefixes = sorted(p.name[:-len(suffix)] for p in folder.glob("*" + suffix) if p.is_file())
    if prefixes:
        prefix = "ptb" if "ptb" in prefixes else prefixes[0]
        return prefix, _require({s: folder / f"{prefix}.{s}.txt" for s in SPLITS}, folder)
    if (folder / "wiki.train.tokens").is_file():
        name = folder.name if folder.name.startswith("wikitext") else "wikitext"
        return name, _require({s: folder / f"wiki.{s}.tokens" for s in SPLITS}, folder)
    return None


def find_corpus(path=None):
    """``(folder, layout)`` where layout is ``(name, {split: path})`` or ``("fortunes", None)``.

    Raises:
        DataNotFoundError: nothing found; the message lists where it looked and what to do.
    """
    looked = []
    if path is not None:
        root = Path(path).expanduser()
        if not root.is_dir():
            looked.append((str(root), "does not exist" if not root.exists() else "is not a folder"))
            raise DataNotFoundError(not_found_message(f"A corpus in the folder given ({path})",
                                                      looked, ADVICE))
        for folder in [root] + [root / sub for sub in SUBFOLDERS]:
            layout = token_files(folder)
            if layout:
                return folder, layout
        fortunes = root / "fortunes"
        return (fortunes if fortunes.is_dir() else root), ("fortunes", None)
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env).expanduser()
        for folder in [root] + [root / sub for sub in SUBFOLDERS]:
            layout = token_files(folder)
            if layout:
                return folder, layout
            looked.append((str(folder), "no PTB or WikiText files"))
        if (root / "fortunes").is_dir():
            return root / "fortunes", ("fortunes", None)
        looked.append((str(root / "fortunes"), "does not exist"))
    else:
        looked.append((f"${ENV_VAR}", "not set"))
    debian = Path(FORTUNES_DEBIAN)
    if debian.is_dir() and fortune_files(debian):
        return debian, ("fortunes", None)
    looked.append((FORTUNES_DEBIAN, "no fortune files" if debian.is_dir() else "does not exist"))
    raise DataNotFoundError(not_found_message("A text corpus (PTB, WikiText or fortunes)",
                                              looked, ADVICE))


def fortune_splits(folder):
    """Tokens of the train, valid and test fortunes of a folder (the k % 20 rule above)."""
    fortunes = read_fortunes(folder)
    if not fortunes:
        raise ValueError(f"empty corpus: {folder} holds no PTB or WikiText files and no fortunes "
                         f"(plain text files with fortunes separated by '%' lines)")
    splits = {s: [] for s in SPLITS}
    for k, fortune in enumerate(fortunes):
        rest = k % FORTUNE_PERIOD
        split = "valid" if rest == FORTUNE_VALID else "test" if rest == FORTUNE_TEST else "train"
        splits[split].extend(fortune_tokens(fortune))
    return splits


class Corpus:
    """A word-level corpus: ``vocab`` and the ``train``, ``valid``, ``test`` id arrays.

    Args:
        path: a PTB, WikiText or fortunes folder (or a folder with ``ptb``, ``wikitext-2``,
            ``wikitext-103`` or ``fortunes`` inside). None: ``$TILEGRAD_DATA``, then Debian's
            fortunes (see the module docstring).
        max_vocab: the most words in the vocabulary, ``<unk>`` and ``<eos>`` included.

    Attributes:
        vocab (Vocab), train / valid / test (np.int64 arrays of ids), source (str: the folder
        read), name (``"ptb"``, ``"wikitext-2"``, ``"fortunes"``, ...).

    Raises:
        DataNotFoundError: no corpus found. ValueError: an empty corpus or an empty split (the
        message names the file or folder).
    """

    def __init__(self, path=None, max_vocab=10000):
        folder, (name, files) = find_corpus(path)
        if files is None:
            splits = fortune_splits(folder)
            where = {s: f"{folder} (the {s} fortunes: k % {FORTUNE_PERIOD} rule)" for s in SPLITS}
        else:
            splits = {s: read_token_file(files[s]) for s in SPLITS}
            where = {s: str(files[s]) for s in SPLITS}
        if not any(splits.values()):
            raise ValueError(f"empty corpus: no tokens in {folder}")
        for split in SPLITS:
            if not splits[split]:
                raise ValueError(f"empty {split} split: no tokens in {where[split]}")
        self.name, self.source = name, str(folder)
        self.vocab = Vocab.build(Counter(splits["train"]), max_size=max_vocab)
        self.train, self.valid, self.test = (self.vocab.encode(splits[s]) for s in SPLITS)

    def __repr__(self):
        return (f"Corpus(name={self.name!r}, source={self.source!r}, vocab={len(self.vocab)}, "
                f"train={len(self.train)}, valid={len(self.valid)}, test={len(self.test)})")
