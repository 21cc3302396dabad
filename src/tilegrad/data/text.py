"""Reading text into tokens: PTB/WikiText token files and the ``fortune`` corpus format.

Token files (PTB ``ptb.train.txt``, WikiText ``wiki.train.tokens``) are already tokenised: as in
PyTorch's word_language_model example, a line's tokens are its whitespace-separated words followed
by ``<eos>``; unlike that example, blank lines are skipped (they would add a lone ``<eos>``).

Fortune files (Debian's ``fortunes`` package, ``/usr/share/games/fortunes``) are plain text in
which a line holding only ``%`` separates one fortune from the next. Their text is tokenised here:
lowercased; terminal overstrike (``_<BS>x``, ``x<BS>x``) and other control characters removed;
then split by ``TOKEN_RE`` into words (letters and digits, with apostrophes inside a word:
``don't``, ``o'clock``) and single punctuation marks (``"hello, world!"`` gives ``"``, ``hello``,
``,``, ``world``, ``!``, ``"``). Each line of a fortune that has tokens ends with ``<eos>``.

>>> tokenize_line("Don't PANIC -- it's only 42!")
["don't", 'panic', '-', '-', "it's", 'only', '42', '!']
"""
import re
from pathlib import Path

from .vocab import EOS

TOKEN_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_")
OVERSTRIKE_RE = re.compile(r".\x08")                        # a character then backspace
CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")        # all control characters but \t \n
SKIPPED_SUFFIXES = (".dat", ".u8")                          # strfile indexes, UTF-8 links


def read_text(path):
    """A file's text: UTF-8, or Latin-1 for the odd old file that is not valid UTF-8."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_token_file(path):
    """A PTB/WikiText file -> list of tokens: each non-blank line's words, then ``<eos>``."""
    tokens = []
    for line in read_text(path).splitlines():
        words = line.split()
        if words:
            tokens.extend(words)
            tokens.append(EOS)
    return tokens


def tokenize_line(line):
    """One line of free text -> lowercase word and punctuation tokens (see the module docstring)."""
    line = CONTROL_RE.sub("", OVERSTRIKE_RE.sub("", line))
    return TOKEN_RE.findall(line.lower())


def fortune_tokens(fortune):
    """A fortune (its text) -> tokens, each line with tokens ending in ``<eos>``."""
    tokens = []
    for line in fortune.splitlines():
        words = tokenize_line(line)
        if words:
            tokens.extend(words)
            tokens.append(EOS)
    return tokens


def split_fortunes(text):
    """The text of a fortune file -> its fortunes (strings), split at lines holding only ``%``.

    Fortunes without any non-blank line are dropped.
    """
    fortunes, current = [], []
    for line in text.splitlines():
        if line.strip() == "%":
            fortunes.append("\n".join(current))
            current = []
        else:
            current.append(line)
    fortunes.append("\n".join(current))
    return [f for f in fortunes if f.strip()]


def fortune_files(folder):
    """The fortune files of a folder, sorted by name: plain files, not links, not hidden, not
    ``*.dat`` (strfile's index) or ``*.u8``. Subfolders (Debian's ``off/``) are skipped."""
    return [p for p in sorted(Path(folder).iterdir())
            if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
            and not p.name.endswith(SKIPPED_SUFFIXES)]


def read_fortunes(folder):
    """Every fortune of every fortune file in ``folder``, in sorted file order.

    Binary files (holding a NUL byte: an IDX file, an archive) are skipped.
    """
    fortunes = []
    for path in fortune_files(folder):
        text = read_text(path)
        if "\x00" not in text:
            fortunes.extend(split_fortunes(text))
    return fortunes
