"""``tilegrad train --device cuda`` captures its step as a CUDA graph by default; the parameters
it ends with are those of the eager run (``--no-cuda-graph``), bit for bit."""
import numpy as np
import pytest

import tilegrad as tg
from test_cli import corpus, run, write_idx   # noqa: F401 (fixture)
from tilegrad import models
from tilegrad.cli import tasks

pytestmark = pytest.mark.skipif(not tg.device("cuda").available,
                                reason=f"device cuda unavailable: {tg.device('cuda').reason}")
SMALL = ("--device", "cuda", "--quiet", "--epochs", 1, "--limit", 20, "--eval-limit", 4,
         "--batch-size", 8)


@pytest.fixture
def images(tmp_path):
    """MNIST-format files of 5x5 images (the simulator runs every CUDA thread in Python)."""
    r = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for split, n in (("train", 20), ("t10k", 4)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", r.integers(0, 255, (n, 5, 5)))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", r.integers(0, 10, n))
    return folder


def _params(folder):
    return tg.load(folder / "checkpoint-epoch1.tg")["model"]


def test_a_captured_run_ends_with_the_eager_runs_parameters(images, tmp_path, capsys):
    # 20 samples in batches of 8: an eager warm-up, a captured batch, a shorter eager one.
    assert run("train", "mlp", "--data-dir", images, "--out", tmp_path / "g", *SMALL) == 0
    assert run("train", "mlp", "--data-dir", images, "--out", tmp_path / "e", *SMALL,
               "--no-cuda-graph") == 0
    assert "cannot be captured" not in capsys.readouterr().err
    graph, eager = _params(tmp_path / "g"), _params(tmp_path / "e")
    assert graph.keys() == eager.keys()
    for k in graph:
        assert (graph[k] == eager[k]).all(), k


def test_a_step_that_reads_the_host_runs_eagerly_and_says_why_once(images, tmp_path, capsys,
                                                                   monkeypatch):
    real = tasks.ClassificationTask.loss

    def reads(self, inputs):
        loss = real(self, inputs)
        loss.item()                 # a host read inside the step
        return loss

    monkeypatch.setattr(tasks.ClassificationTask, "loss", reads)
    assert run("train", "mlp", "--data-dir", images, "--out", tmp_path / "r", *SMALL) == 0
    err = capsys.readouterr().err
    assert err.count("cannot be captured as a CUDA graph (Tensor.item") == 1, err


def test_the_lm_captured_carries_its_state_between_windows_as_eager_does(corpus, tmp_path, capsys,
                                                                         monkeypatch):
    small = models.LSTMLanguageModel.__init__       # a small LSTM: the simulator is slow
    monkeypatch.setattr(models.LSTMLanguageModel, "__init__",
                        lambda self, v, embedding_dim=128, hidden_dim=256: small(self, v, 6, 5))
    lm = ("train", "lm", "--device", "cuda", "--data-dir", corpus, "--epochs", 1, "--quiet",
          "--batch-size", 2, "--bptt", 3, "--limit", 40, "--eval-limit", 20)
    assert run(*lm, "--out", tmp_path / "g") == 0
    assert run(*lm, "--out", tmp_path / "e", "--no-cuda-graph") == 0
    assert "cannot be captured" not in capsys.readouterr().err
    graph, eager = _params(tmp_path / "g"), _params(tmp_path / "e")
    for k in graph:
        assert (graph[k] == eager[k]).all(), k
