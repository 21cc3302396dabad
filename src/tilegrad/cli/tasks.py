"""The three training tasks: data, model, loss and evaluation for ``tilegrad train mlp|cnn|lm``.

Each task exposes the same small interface to the trainer: ``model``, ``net`` (what the
training loss calls: the model, or its DistributedDataParallel wrapper in a run of several
processes), ``train_batches(epoch)`` (an iterator of ``(inputs, n_samples, n_global)``, the
inputs host arrays or CPU tensors, ``n_samples`` this rank's share of the ``n_global`` samples
of the global batch), ``loss(tensors)`` (the mean loss of this rank's share of one batch, given
the inputs as device tensors), ``after_step()`` (what carries to the next batch),
``num_batches``, ``evaluate()`` (a dict with the task's metric, over every rank's share of the
evaluation data), and ``checkpoint_extra()`` for what ``generate`` needs later. The trainer
makes the device tensors, so that it can keep them in place for a captured CUDA graph.

In a run of several processes (``job``, cli/parallel.py) a classifier's rank takes its part of
each global batch (``DistributedBatchSampler``) and of the test set; the LM's rank takes its
share of the batch's columns (each column is an independent stream of text, its LSTM state its
own), of the training and of the validation split.
"""
import math
from pathlib import Path

import numpy as np

import tilegrad as tg
import tilegrad.nn.functional as F
from tilegrad import data, models
from tilegrad.utils.data import (ArrayDataset, BatchSampler, DataLoader,
                                 DistributedBatchSampler, RandomSampler, SequentialSampler, Subset)

from .parallel import Job
from .rundir import TrainingError

# The reference recipes; every value can be overridden by a flag.
RECIPES = {
    "mlp": dict(epochs=10, batch_size=64, lr=0.01, optimizer="sgd", momentum=0.0),
    "cnn": dict(epochs=3, batch_size=64, lr=0.01, optimizer="sgd", momentum=0.9),
    "lm": dict(epochs=5, batch_size=20, lr=0.001, optimizer="adam", momentum=0.0, bptt=35,
               clip=0.25),
}
EVAL_BATCH = 500      # images per evaluation batch
LM_EVAL_BATCH = 10    # columns of the batchified validation and test splits, as PyTorch's example


def _normalise(images):
    """uint8 images (N, H, W) or (N, C, H, W) as (N, C, H, W) in the default dtype (float32
    unless ``--dtype``), scaled to [0, 1]."""
    x = images.astype(tg.get_default_dtype()) / 255.0
    return x[:, None] if x.ndim == 3 else x


def _batched(dataset, order, batch_size):
    """Batches of ``dataset`` (an ArrayDataset) as CPU tensors, in the order ``order`` yields
    its indices, each batch indexed out of the arrays in one step."""
    return DataLoader(dataset, batch_size=None,
                      sampler=BatchSampler(order, batch_size, drop_last=False))


class ClassificationTask:
    """MLP or CNN on Fashion-MNIST / MNIST (IDX files) or CIFAR-10 (python batches)."""

    metric = "test_acc"

    def __init__(self, kind, args, device, job=None):
        self.kind, self.device, self.job = kind, device, job or Job()
        self.dataset, splits = load_images(args.dataset, args.data_dir)
        train_x, train_y = splits["train"].arrays
        test_x, test_y = splits["test"].arrays
        # Limits are positive (the flags are checked when parsed); None means all the data.
        if args.limit is not None:
            train_x, train_y = train_x[:args.limit], train_y[:args.limit]
        if args.eval_limit is not None:
            test_x, test_y = test_x[:args.eval_limit], test_y[:args.eval_limit]
        for split, y in (("training", train_y), ("test", test_y)):
            if len(y) == 0:   # no batch to train on, or nothing to divide the accuracy by
                raise TrainingError(f"{kind}: the {split} split of {self.dataset} in "
                                    f"{args.data_dir or 'the default data folder'} is empty")
        train_x, test_x = _normalise(train_x), _normalise(test_x)
        # Standardise with the training set's per-channel mean and std.
        mean = train_x.mean(axis=(0, 2, 3), keepdims=True)
        std = train_x.std(axis=(0, 2, 3), keepdims=True)
        self.train = ArrayDataset((train_x - mean) / std, train_y)
        self.test = ArrayDataset((test_x - mean) / std, test_y)
        n, c, h, w = train_x.shape
        if kind == "mlp":
            self.model = models.MLP(in_features=c * h * w)
        else:
            self.model = models.CNN(in_channels=c, image_size=h)
        self.model.to(device)
        self.net = self.model
        # Epoch e's order is default_rng([seed, e]).permutation(n): a resumed run sees the same
        # batches as the run it continues. A batch is gathered at once (the sampler yields its
        # indices, the dataset indexes its arrays with them: PyTorch's batch_size=None with a
        # BatchSampler); a sample at a time cost a quarter of an MLP epoch.
        # In a run of several processes every rank draws the same global order and batches, and
        # takes its part of each batch (on one process, its part is the whole batch).
        self.order = RandomSampler(self.train, seed=args.seed)
        self.batches = DistributedBatchSampler(self.order, args.batch_size,
                                               num_replicas=self.job.size, rank=self.job.rank)
        self.loader = DataLoader(self.train, batch_size=None, sampler=self.batches)
        self.num_batches = len(self.loader)
        self.num_train = n
        self.data_name = f"{self.dataset} ({n} train, {len(test_y)} test images)"

    def train_batches(self, epoch):
        """The epoch's batches as CPU tensors ``(x, y)`` with their sample counts (this rank's
        and the global batch's)."""
        self.model.train()
        self.order.set_epoch(epoch)
        for i, (x, y) in enumerate(self.loader):
            yield (x, y), len(y), self.batches.global_batch_size(i)

    def loss(self, inputs):
        """The training loss of one batch of device tensors ``(x, y)``."""
        x, y = inputs
        return F.cross_entropy(self.net(x), y)

    def after_step(self):
        """Nothing carries from one batch to the next."""

    def evaluate(self):
        self.model.eval()
        correct, loss = 0, 0.0
        part = self.job.share(len(self.test))        # everything, on one process
        mine = Subset(self.test, part) if self.job.parallel else self.test
        with tg.no_grad():
            for x, y in _batched(mine, SequentialSampler(mine), EVAL_BATCH):
                logits = self.model(x.to(self.device))
                loss += F.cross_entropy(logits, y.to(self.device), reduction="sum").item()
                correct += int((logits.argmax(1).numpy() == y.numpy()).sum())
        loss, correct = self.job.sum([loss, correct])
        return {"test_acc": float(correct) / len(self.test),
                "test_loss": float(loss) / len(self.test)}

    def checkpoint_extra(self):
        return {"model_config": {"kind": self.kind, "input_shape": list(self.train.data.shape[1:])}}


def load_images(dataset, data_dir):
    """(name, splits) for ``dataset`` ('fashion-mnist', 'mnist', 'cifar10', or None to guess from
    the files in ``data_dir``; Fashion-MNIST by default)."""
    if dataset is None and data_dir is not None:
        dataset = "cifar10" if _looks_like_cifar(data_dir) else "mnist-format"
    if dataset == "cifar10":
        return "CIFAR-10", data.load_cifar10(data_dir)
    if dataset in ("mnist", "mnist-format"):
        return "MNIST-format", data.load_mnist(data_dir, name="mnist")
    return "Fashion-MNIST", data.load_mnist(data_dir, name="fashion-mnist")


def _looks_like_cifar(path):
    p = Path(path)
    return (p / "data_batch_1").exists() or (p / "cifar-10-batches-py" / "data_batch_1").exists()


class LanguageModelTask:
    """The LSTM language model on a word corpus, truncated BPTT with gradient clipping."""

    metric = "val_ppl"

    def __init__(self, args, device, job=None):
        self.device, self.bptt, self.job = device, args.bptt, job or Job()
        self.hidden = self._next_hidden = None
        self.corpus = data.Corpus(args.data_dir)
        train, valid = self.corpus.train, self.corpus.valid
        if args.limit is not None:
            train = train[:args.limit]
        if args.eval_limit is not None:
            valid = valid[:args.eval_limit]
        # batchify lays N tokens out as N // B rows of B columns; a window needs two rows (inputs
        # and the next tokens), so one training batch needs 2B tokens and one evaluation 2x10.
        _enough("training", len(train), 2 * args.batch_size,
                f"for one batch of --batch-size {args.batch_size}", "--limit", args.limit)
        _enough("validation", len(valid), 2 * LM_EVAL_BATCH,
                f"for one evaluation batch of {LM_EVAL_BATCH} columns", "--eval-limit",
                args.eval_limit)
        if args.batch_size < self.job.size:
            raise TrainingError(f"lm: --batch-size {args.batch_size} (columns) is smaller than "
                                f"the {self.job.size} processes: each needs a column at least")
        self.train = self._columns(data.batchify(train, args.batch_size))
        self.valid = self._columns(data.batchify(valid, LM_EVAL_BATCH))
        vocab_size = len(self.corpus.vocab)
        self.model = models.LSTMLanguageModel(vocab_size).to(device)
        self.net = self.model
        self.num_batches = data.num_bptt_windows(len(self.train), self.bptt)
        self.num_train = int(self.train.size)
        self.global_columns = args.batch_size
        self.unigram_ppl = data.unigram_perplexity(self.corpus.train, valid, vocab_size)
        self.data_name = (f"{self.corpus.name} ({len(train)} train, {len(valid)} valid tokens, "
                          f"vocabulary {vocab_size})")

    @staticmethod
    def _loss(net, x, y, hidden):
        logits, hidden = net(x, hidden)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y), hidden

    def train_batches(self, epoch):
        """The epoch's BPTT windows as host arrays ``(tokens (T, B), next tokens (T*B,))``. The
        LSTM state starts at zeros and carries from window to window (``after_step``)."""
        self.model.train()
        if self.hidden is None:
            shape = (1, self.train.shape[1], self.model.lstm.hidden_size)
            self.hidden = (tg.zeros(shape, device=self.device), tg.zeros(shape, device=self.device))
        else:       # zeroed in place: a captured step keeps reading these tensors
            with tg.no_grad():
                for state in self.hidden:
                    state.zero_()
        self._next_hidden = None
        for x, y in data.bptt_windows(self.train, self.bptt):
            yield (x, y.reshape(-1)), int(y.size), len(y) * self.global_columns

    def loss(self, inputs):
        """The loss of one window; its final LSTM state is kept for ``after_step``."""
        x, y = inputs
        loss, self._next_hidden = self._loss(self.net, x, y, self.hidden)
        return loss

    def after_step(self):
        """Truncated BPTT: the next window starts from this one's final state, without its
        history. Copied into the same tensors, so that a captured step reads it again."""
        with tg.no_grad():
            for state, new in zip(self.hidden, self._next_hidden):
                state.copy_(new.detach())
        self._next_hidden = None

    def evaluate(self):
        self.model.eval()
        total, count, hidden = 0.0, 0, None
        with tg.no_grad():
            for x, y in data.bptt_windows(self.valid, self.bptt) if self.valid.shape[1] else ():
                loss, hidden = self._loss(self.model, tg.tensor(x, device=self.device),
                                          tg.tensor(y.reshape(-1), device=self.device),
                                          hidden)
                total += loss.item() * y.size
                count += y.size
        total, count = self.job.sum([total, count])
        val_loss = float(total) / float(count)
        # exp overflows a float past 709: a diverged model's perplexity is inf, not an error.
        ppl = math.inf if val_loss > 700 else math.exp(val_loss)
        return {"val_ppl": ppl, "val_loss": val_loss, "unigram_ppl": self.unigram_ppl}

    def _columns(self, batched):
        """This rank's columns of a batchified split (all of them on one process)."""
        part = self.job.share(batched.shape[1])
        return batched if not self.job.parallel else \
            np.ascontiguousarray(batched[:, part.start:part.stop])

    def checkpoint_extra(self):
        return {"vocab": list(self.corpus.vocab.itos),
                "model_config": {"kind": "lm", "vocab_size": len(self.corpus.vocab)}}


def _enough(split, have, need, what, flag, limit):
    if have < need:
        source = f" ({flag} {limit})" if limit is not None else ""
        raise TrainingError(f"lm: {have} {split} tokens{source} are too few: at least {need} are "
                            f"needed {what}")


def make_task(name, args, device, job=None):
    if name == "lm":
        return LanguageModelTask(args, device, job)
    return ClassificationTask(name, args, device, job)
