"""Language-model batching (as PyTorch's word_language_model example) and a unigram baseline.

``batchify`` lays a 1-D stream of ids out as B parallel streams, one per column; ``bptt_windows``
cuts them into windows of ``bptt`` time steps, each paired with its targets one step ahead:

>>> source = batchify(np.arange(10), 3)      # columns: 0..2, 3..5, 6..8 (9 is trimmed)
>>> source.T.tolist()
[[0, 1, 2], [3, 4, 5], [6, 7, 8]]
>>> [(x[:, 0].tolist(), y[:, 0].tolist()) for x, y in bptt_windows(source, 2)]
[([0, 1], [1, 2])]
>>> num_bptt_windows(len(source), 2)
1
"""
import numpy as np


def batchify(ids, batch_size):
    """Trim ``ids`` to a multiple of ``batch_size`` and lay it out as (T, B), T = len // B.

    Column b holds the b-th contiguous chunk: ``out[:, b] == ids[b*T:(b+1)*T]``.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"batchify: expected a 1-D array of ids, got shape {ids.shape}")
    if batch_size < 1:
        raise ValueError(f"batchify: batch_size must be positive, got {batch_size}")
    steps = len(ids) // batch_size
    if steps == 0:
        raise ValueError(f"batchify: {len(ids)} ids are fewer than batch_size={batch_size}")
    return np.ascontiguousarray(ids[:steps * batch_size].reshape(batch_size, steps).T)


def num_bptt_windows(num_steps, bptt):
    """How many windows ``bptt_windows`` yields for a source of ``num_steps`` rows."""
    if bptt < 1:
        raise ValueError(f"bptt must be positive, got {bptt}")
    return len(range(0, num_steps - 1, bptt))


def bptt_windows(source, bptt):
    """Yield ``(x, y)`` windows of a (T, B) source: for i = 0, bptt, 2*bptt, ... < T-1,
    ``seq = min(bptt, T-1-i)``, ``x = source[i:i+seq]`` and ``y = source[i+1:i+1+seq]``.

    x and y are views of ``source`` with shape (seq, B); the last window may be shorter.
    """
    num_bptt_windows(len(source), bptt)     # checks bptt now, not at the first next()
    return _windows(source, bptt)


def _windows(source, bptt):
    num_steps = len(source)
    for i in range(0, num_steps - 1, bptt):
        seq = min(bptt, num_steps - 1 - i)
        yield source[i:i + seq], source[i + 1:i + 1 + seq]


def unigram_perplexity(train_ids, eval_ids, vocab_size):
    """Perplexity of ``eval_ids`` under the unigram distribution of ``train_ids``.

    With add-one (Laplace) smoothing over the vocabulary, so that no word has probability 0:

        p(w) = (count_train(w) + 1) / (len(train_ids) + vocab_size)
        perplexity = exp(-mean over eval ids w of log p(w))

    A language model worth training beats this number.
    """
    train_ids, eval_ids = np.asarray(train_ids), np.asarray(eval_ids)
    if len(eval_ids) == 0:
        raise ValueError("unigram_perplexity: eval_ids is empty")
    for what, ids in (("train_ids", train_ids), ("eval_ids", eval_ids)):
        if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"unigram_perplexity: {what} must be in 0..{vocab_size - 1}, "
                             f"got {ids.min()}..{ids.max()}")
    counts = np.bincount(train_ids.astype(np.int64), minlength=vocab_size)
    log_p = np.log(counts + 1.0) - np.log(len(train_ids) + vocab_size)
    return float(np.exp(-log_p[eval_ids].mean()))
