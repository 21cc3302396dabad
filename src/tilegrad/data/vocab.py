"""A word vocabulary: words to ids and back, capped to the most frequent words.

Index 0 is ``<unk>`` (every word not in the vocabulary) and index 1 is ``<eos>`` (end of line),
then words by decreasing frequency, ties broken alphabetically, so that the same text always gives
the same ids.

>>> vocab = Vocab.build([["the", "cat", "the"], ["a", "dog"]], max_size=4)
>>> vocab.itos
['<unk>', '<eos>', 'the', 'a']
>>> vocab.encode(["the", "dog"]).tolist()
[2, 0]
>>> vocab.decode([2, 1])
['the', '<eos>']
"""
from collections import Counter
from collections.abc import Mapping

import numpy as np

UNK = "<unk>"
EOS = "<eos>"
SPECIALS = (UNK, EOS)


class Vocab:
    """Words to ids (``stoi``) and ids to words (``itos``).

    Args:
        itos: the words in id order; must hold ``<unk>`` (where unknown words go), no duplicates.
    """

    def __init__(self, itos):
        self.itos = list(itos)
        self.stoi = {word: i for i, word in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dups = sorted(w for w, n in Counter(self.itos).items() if n > 1)
            raise ValueError(f"Vocab: duplicate words {dups[:5]}")
        if UNK not in self.stoi:
            raise ValueError(f"Vocab: the word list must contain {UNK!r}")
        self.unk_index = self.stoi[UNK]
        self.eos_index = self.stoi.get(EOS)

    @classmethod
    def build(cls, tokens, max_size=10000):
        """The ``max_size`` most frequent words, ``<unk>`` and ``<eos>`` included.

        Args:
            tokens: a Counter (or any word -> count mapping), or an iterable of token lists (a
                flat list of words also works). Counts of ``<unk>``/``<eos>`` themselves are
                ignored: they always take ids 0 and 1.
            max_size: the most words kept, specials included (at least 2).

        Ties in frequency are broken alphabetically, so the result is deterministic.
        """
        if max_size < len(SPECIALS):
            raise ValueError(f"Vocab.build: max_size={max_size} leaves no room for {SPECIALS}")
        if isinstance(tokens, Mapping):
            counts = Counter(tokens)
        else:
            counts = Counter()
            for item in tokens:
                counts.update([item] if isinstance(item, str) else item)
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))
        words = [w for w, _ in ranked[:max_size - len(SPECIALS)]]
        return cls(list(SPECIALS) + words)

    def __len__(self):
        return len(self.itos)

    def __contains__(self, word):
        return word in self.stoi

    def encode(self, words):
        """A list of words -> np.int64 array of ids; words not in the vocabulary map to <unk>."""
        unk, stoi = self.unk_index, self.stoi
        return np.fromiter((stoi.get(w, unk) for w in words), dtype=np.int64)

    def decode(self, ids):
        """Ids (any integer sequence or array) -> list of words."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self.itos)):
            raise ValueError(f"Vocab.decode: ids must be in 0..{len(self.itos) - 1}, "
                             f"got {ids.min()}..{ids.max()}")
        return [self.itos[i] for i in ids]

    def __repr__(self):
        head = ", ".join(repr(w) for w in self.itos[:5])
        return f"Vocab(size={len(self)}, itos=[{head}{', ...' if len(self) > 5 else ''}])"
