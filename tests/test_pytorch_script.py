"""A PyTorch training script runs on tilegrad with only its imports changed.

``examples/pytorch_mlp.py`` is written for PyTorch: a custom ``Dataset``, a ``DataLoader``, an
``nn.Module`` MLP with dropout, Adam, a StepLR schedule, ``no_grad`` evaluation and a saved
state dict. The test swaps its import lines for tilegrad's, checks that nothing else differs,
and runs both versions: each must learn the task.
"""
import re

import pytest

import tilegrad as tg
from helpers import torch
from pytorch_scripts import EXAMPLES, changed_lines, import_changes, run_script, swap_imports

SCRIPT = EXAMPLES / "pytorch_mlp.py"
TORCH_IMPORTS = [
    "import torch",
    "from torch import nn",
    "import torch.nn.functional as F",
    "from torch.utils.data import DataLoader, Dataset",
]
TILEGRAD_IMPORTS = [
    "import tilegrad as torch",
    "from tilegrad import nn",
    "import tilegrad.nn.functional as F",
    "from tilegrad.utils.data import DataLoader, Dataset",
]
EPOCH = re.compile(r"epoch (\d+): train loss ([\d.]+), test accuracy ([\d.]+)")


def tilegrad_version(text):
    return swap_imports(text, TORCH_IMPORTS, TILEGRAD_IMPORTS)


def run(path, cwd):
    stdout = run_script(path, ["--epochs", "3"], cwd)
    epochs = [(float(loss), float(acc)) for _, loss, acc in EPOCH.findall(stdout)]
    assert len(epochs) == 3, stdout
    return epochs


def test_only_the_imports_differ():
    text = SCRIPT.read_text()
    assert changed_lines(text, tilegrad_version(text)) == import_changes(TORCH_IMPORTS,
                                                                         TILEGRAD_IMPORTS)


def test_the_script_trains_on_tilegrad(tmp_path):
    script = tmp_path / "tilegrad_mlp.py"
    script.write_text(tilegrad_version(SCRIPT.read_text()))
    epochs = run(script, tmp_path)
    losses = [loss for loss, _ in epochs]
    assert losses[-1] < losses[0] / 2, epochs
    assert epochs[-1][1] >= 0.9, epochs          # three rings: chance is 1/3
    state = tg.load(tmp_path / "mlp.pt")
    assert list(state) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight",
                           "fc3.bias"]


@pytest.mark.skipif(torch is None, reason="needs PyTorch")
def test_the_script_trains_on_pytorch(tmp_path):
    epochs = run(SCRIPT, tmp_path)
    assert epochs[-1][1] >= 0.9, epochs
