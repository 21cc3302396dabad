"""PyTorch's own examples run on tilegrad with only their imports changed.

``examples/pytorch_mnist_cnn.py`` is pytorch/examples' MNIST CNN (Conv2d, max_pool2d, dropout,
log_softmax and nll_loss, Adadelta with StepLR, ``torch.save`` of the state dict) on synthetic
28x28 strokes; ``examples/pytorch_word_lm.py`` is its word-level language model (Embedding, a
2-layer LSTM, a hand-written SGD step with ``clip_grad_norm_``, NLLLoss, the best model saved
and loaded, words sampled with ``multinomial``) on a small corpus this file writes. For each,
the tests swap the import lines for tilegrad's, check that nothing else differs, and run both
versions in subprocesses: each must run to the end and learn.
"""
import math
import random
import re

import pytest

import tilegrad as tg
from helpers import torch
from pytorch_scripts import EXAMPLES, changed_lines, import_changes, run_script, swap_imports

MNIST = EXAMPLES / "pytorch_mnist_cnn.py"
MNIST_TORCH = [
    "import torch",
    "import torch.nn as nn",
    "import torch.nn.functional as F",
    "import torch.optim as optim",
    "from torch.optim.lr_scheduler import StepLR",
    "from torch.utils.data import Dataset",
]
MNIST_TILEGRAD = [
    "import tilegrad as torch",
    "import tilegrad.nn as nn",
    "import tilegrad.nn.functional as F",
    "import tilegrad.optim as optim",
    "from tilegrad.optim.lr_scheduler import StepLR",
    "from tilegrad.utils.data import Dataset",
]
MNIST_STATE = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight",
               "fc1.bias", "fc2.weight", "fc2.bias"]
TRAIN_LOSS = re.compile(r"Train Epoch: (\d+) \[\d+/\d+ \(\d+%\)\]\tLoss: ([\d.]+)")
TEST_LINE = re.compile(r"Test set: Average loss: ([\d.]+), Accuracy: (\d+)/(\d+)")

LM = EXAMPLES / "pytorch_word_lm.py"
LM_TORCH = ["import torch", "import torch.nn as nn", "import torch.nn.functional as F"]
LM_TILEGRAD = ["import tilegrad as torch", "import tilegrad.nn as nn",
               "import tilegrad.nn.functional as F"]
LM_STATE = ["encoder.weight"] + [f"rnn.{n}_l{k}" for k in range(2)
                                 for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")] \
    + ["decoder.weight", "decoder.bias"]
VALID_LINE = re.compile(r"\| end of epoch +(\d+) \| time: +[\d.]+s \| valid loss +([\d.]+) \|")
TEST_PPL = re.compile(r"\| End of training \| test loss +([\d.]+) \| test ppl +([\d.]+)")
GENERATED = re.compile(r"\| Generated: (.*)")


@pytest.mark.parametrize("script, torch_imports, tilegrad_imports",
                         [(MNIST, MNIST_TORCH, MNIST_TILEGRAD), (LM, LM_TORCH, LM_TILEGRAD)],
                         ids=["mnist", "word_lm"])
def test_only_the_imports_differ(script, torch_imports, tilegrad_imports):
    text = script.read_text()
    tilegrad_text = swap_imports(text, torch_imports, tilegrad_imports)
    assert changed_lines(text, tilegrad_text) == import_changes(torch_imports, tilegrad_imports)


# ---------------------------------------------------------------- MNIST


def run_mnist(script, cwd):
    """Train two epochs on the device the script picks with ``torch.accelerator`` (the cpu
    without a GPU: tilegrad's accelerator is never Numba's simulator); return the logged train
    losses and the (loss, accuracy) of each test pass."""
    stdout = run_script(script, ["--save-model"], cwd)
    losses = [float(loss) for _, loss in TRAIN_LOSS.findall(stdout)]
    tests = [(float(loss), int(right) / int(n)) for loss, right, n in TEST_LINE.findall(stdout)]
    assert len(tests) == 2 and len(losses) >= 4, stdout
    return losses, tests


def check_mnist_learned(losses, tests):
    assert losses[-1] < losses[0] / 4, losses       # the first is about log(10)
    assert tests[-1][0] < losses[0] / 4, tests
    assert tests[-1][1] >= 0.8, tests                # ten classes: chance is 0.1


def test_mnist_trains_on_tilegrad(tmp_path):
    script = tmp_path / "mnist_tilegrad.py"
    script.write_text(swap_imports(MNIST.read_text(), MNIST_TORCH, MNIST_TILEGRAD))
    check_mnist_learned(*run_mnist(script, tmp_path))
    state = tg.load(tmp_path / "mnist_cnn.pt")
    assert list(state) == MNIST_STATE
    assert state["conv2.weight"].shape == (64, 32, 3, 3)
    assert state["fc1.weight"].shape == (128, 9216)


@pytest.mark.skipif(torch is None, reason="needs PyTorch")
def test_mnist_trains_on_pytorch(tmp_path):
    check_mnist_learned(*run_mnist(MNIST, tmp_path))
    assert list(torch.load(tmp_path / "mnist_cnn.pt")) == MNIST_STATE


# ---------------------------------------------------------------- word language model


def write_corpus(folder, seed=0):
    """train/valid/test.txt of short sentences from a small grammar (each subject has its verb,
    each verb its objects), so that a model that reads context beats word frequencies.
    Returns the vocabulary size the script will see (the words, '.' and '<eos>')."""
    rng = random.Random(seed)
    verbs = {"the cat": "chases", "the dog": "eats", "a bird": "sees", "my friend": "reads",
             "the teacher": "writes"}
    objects = {"chases": ["the mouse", "a ball"], "eats": ["the bone", "some food"],
               "sees": ["the sky", "a tree"], "reads": ["a book", "the news"],
               "writes": ["a letter", "the notes"]}
    words = set()
    for name, lines in (("train", 300), ("valid", 40), ("test", 40)):
        text = []
        for _ in range(lines):
            subject = rng.choice(sorted(verbs))
            verb = verbs[subject]
            line = (f"{subject} {verb} {rng.choice(objects[verb])} "
                    f"{rng.choice(['today', 'again', 'slowly'])} .")
            words.update(line.split())
            text.append(line + "\n")
        (folder / f"{name}.txt").write_text("".join(text))
    return len(words) + 1


def run_lm(script, cwd):
    """Train four epochs on a fresh corpus (at the example's learning rate of 20 the loss may
    stay flat for two); return the validation losses, the test perplexity, the sampled words and
    the vocabulary size."""
    (cwd / "corpus").mkdir()
    ntokens = write_corpus(cwd / "corpus")
    stdout = run_script(script, ["--data", "corpus", "--epochs", "4"], cwd)
    valid = [float(loss) for _, loss in VALID_LINE.findall(stdout)]
    test = TEST_PPL.findall(stdout)
    generated = GENERATED.findall(stdout)
    assert len(valid) == 4 and len(test) == 1 and len(generated) == 1, stdout
    return valid, float(test[0][1]), generated[0].split(), ntokens


def check_lm_learned(valid, test_ppl, words, ntokens, corpus):
    assert valid[-1] < valid[0] < math.log(ntokens) + 0.5, valid
    # A uniform guess has perplexity ntokens (29) and word frequencies alone about 20: below
    # ntokens / 3 the model predicts from the context.
    assert test_ppl < ntokens / 3, (test_ppl, ntokens)
    vocabulary = set((corpus / "train.txt").read_text().split()) | {"<eos>"}
    assert len(words) == 20 and set(words) <= vocabulary, words


def test_word_lm_trains_on_tilegrad(tmp_path):
    script = tmp_path / "word_lm_tilegrad.py"
    script.write_text(swap_imports(LM.read_text(), LM_TORCH, LM_TILEGRAD))
    check_lm_learned(*run_lm(script, tmp_path), tmp_path / "corpus")
    assert list(tg.load(tmp_path / "model.pt")) == LM_STATE


@pytest.mark.skipif(torch is None, reason="needs PyTorch")
def test_word_lm_trains_on_pytorch(tmp_path):
    check_lm_learned(*run_lm(LM, tmp_path), tmp_path / "corpus")
    assert list(torch.load(tmp_path / "model.pt")) == LM_STATE
