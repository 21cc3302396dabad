"""The ``tilegrad`` command on small data the tests write: training runs with metrics, curves and
checkpoints, exact resume, a diverging run that keeps its last good checkpoint, generate, info,
clear errors for missing data, and the demo at a tiny size."""
import gzip
import json
import struct

import numpy as np
import pytest

import tilegrad as tg
from tilegrad.cli import main
from tilegrad.cli import demo as demo_module
from tilegrad.cli import tasks


def write_idx(path, array):
    """An MNIST IDX file (gzip): magic 0x0000 08 ndim, big-endian dims, then unsigned bytes."""
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def images(tmp_path):
    """A tiny MNIST-format data set in which the label is visible in the image (so it can learn)."""
    r = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for split, n in (("train", 96), ("t10k", 40)):
        labels = r.integers(0, 10, n)
        x = r.integers(0, 60, (n, 28, 28))
        for k, y in enumerate(labels):
            x[k, 2 * y:2 * y + 3, :] += 180        # a bright band whose row encodes the class
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def corpus(tmp_path):
    """A tiny PTB-format corpus."""
    r = np.random.default_rng(1)
    words = [f"w{k}" for k in range(23)]
    folder = tmp_path / "ptb"
    folder.mkdir()
    for split, lines in (("train", 60), ("valid", 8), ("test", 8)):
        text = "\n".join(" ".join(r.choice(words, r.integers(3, 9))) for _ in range(lines))
        (folder / f"ptb.{split}.txt").write_text(text + "\n")
    return folder


def run(*argv):
    return main([str(a) for a in argv])


def final_params(folder, epoch):
    return tg.load(folder / f"checkpoint-epoch{epoch}.tg")["model"]


def test_train_writes_metrics_curves_and_a_checkpoint_per_epoch(images, tmp_path, capsys):
    out = tmp_path / "run"
    assert run("train", "mlp", "--data-dir", images, "--epochs", 2, "--out", out, "--quiet",
               "--log-every", 1) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(0 <= r["test_acc"] <= 1 and r["samples_per_s"] > 0 for r in epochs)
    assert len([r for r in records if r["kind"] == "step"]) == 2 * 2   # 96 images, batch 64
    ckpt = tg.load(out / "checkpoint-epoch2.tg")
    assert ckpt["epoch"] == 2 and ckpt["step"] == 4 and set(ckpt["model"]) == {
        "net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias"}
    assert (out / "checkpoint-epoch1.tg").exists()
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "mlp epoch 2: train loss" in capsys.readouterr().out


def test_mlp_learns_the_synthetic_task(images, tmp_path):
    out = tmp_path / "run"
    assert run("train", "mlp", "--data-dir", images, "--epochs", 8, "--batch-size", 16,
               "--lr", 0.05, "--out", out, "--quiet") == 0
    last = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["test_acc"] >= 0.9, last


@pytest.mark.parametrize("task", ["mlp", "lm"])
def test_resume_ends_with_the_parameters_of_an_uninterrupted_run(task, images, corpus, tmp_path):
    data = images if task == "mlp" else corpus
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    common = ["--data-dir", data, "--quiet", "--seed", 3]
    assert run("train", task, "--epochs", 3, "--out", whole, *common) == 0
    assert run("train", task, "--epochs", 1, "--out", parts, *common) == 0
    assert run("train", task, "--epochs", 3, "--resume", parts, "--quiet") == 0
    a, b = final_params(whole, 3), final_params(parts, 3)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    opt_a = tg.load(whole / "checkpoint-epoch3.tg")["optimizer"]["state"]
    opt_b = tg.load(parts / "checkpoint-epoch3.tg")["optimizer"]["state"]
    for k in opt_a:
        for name, v in opt_a[k].items():
            np.testing.assert_array_equal(v, opt_b[k][name], err_msg=f"{k}.{name}")
    # The resumed run's metrics log has each epoch once, in order.
    records = [json.loads(x) for x in (parts / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3]


def test_resume_refuses_another_task(images, tmp_path, capsys):
    out = tmp_path / "run"
    assert run("train", "mlp", "--data-dir", images, "--epochs", 1, "--out", out, "--quiet") == 0
    assert run("train", "cnn", "--resume", out, "--quiet") == 1
    assert "checkpoint of 'mlp', not 'cnn'" in capsys.readouterr().err


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(images, tmp_path, capsys,
                                                                   monkeypatch):
    out = tmp_path / "run"
    assert run("train", "mlp", "--data-dir", images, "--epochs", 1, "--out", out, "--quiet") == 0
    good = (out / "checkpoint-epoch1.tg").read_bytes()
    real, calls = tasks.ClassificationTask.loss, []

    def poisoned(self, inputs):   # the second batch of epoch 2 (the fourth step) gives a NaN loss
        calls.append(1)
        return real(self, inputs) * (float("nan") if len(calls) == 2 else 1.0)

    monkeypatch.setattr(tasks.ClassificationTask, "loss", poisoned)
    assert run("train", "mlp", "--epochs", 2, "--resume", out, "--quiet") == 1
    err = capsys.readouterr().err
    assert "the loss is nan at epoch 2, step 4" in err and "checkpoint-epoch1.tg" in err
    assert (out / "checkpoint-epoch1.tg").read_bytes() == good
    assert not (out / "checkpoint-epoch2.tg").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # overflow on the way to inf is the point
def test_a_diverging_learning_rate_is_caught(images, tmp_path, capsys):
    out = tmp_path / "run"
    assert run("train", "mlp", "--data-dir", images, "--lr", 1e30, "--epochs", 2, "--out", out,
               "--quiet") == 1
    err = capsys.readouterr().err
    assert "the loss is" in err and "Last good checkpoint: none" in err
    assert not list(out.glob("checkpoint-*.tg"))


def test_generate_samples_words_of_the_vocabulary(corpus, tmp_path, capsys):
    out = tmp_path / "lm"
    assert run("train", "lm", "--data-dir", corpus, "--epochs", 1, "--out", out, "--quiet") == 0
    capsys.readouterr()
    assert run("generate", "--checkpoint", out, "--words", 30, "--seed", 1) == 0
    words = capsys.readouterr().out.split()
    vocab = set(tg.load(out / "checkpoint-epoch1.tg")["vocab"])
    assert 0 < len(words) <= 30 and set(words) <= vocab
    assert run("generate", "--checkpoint", out, "--temperature", 0) == 1


def test_generate_refuses_an_image_checkpoint(images, tmp_path, capsys):
    out = tmp_path / "mlp"
    assert run("train", "mlp", "--data-dir", images, "--epochs", 1, "--out", out, "--quiet") == 0
    assert run("generate", "--checkpoint", out) == 1
    assert "not a language-model checkpoint" in capsys.readouterr().err


def test_missing_data_is_one_clear_line_not_a_traceback(tmp_path, capsys):
    assert run("train", "mlp", "--data-dir", tmp_path / "nowhere", "--quiet") == 1
    err = capsys.readouterr().err
    assert err.startswith("tilegrad train:") and "Traceback" not in err
    assert "nowhere" in err


def test_an_unavailable_device_is_one_clear_line(images, tmp_path, capsys, disabled_cuda):
    cuda = disabled_cuda
    assert run("train", "mlp", "--data-dir", images, "--device", "cuda", "--out", tmp_path) == 1
    err = capsys.readouterr().err
    assert err.startswith("tilegrad train: device 'cuda' is unavailable") and cuda.reason in err


def test_info_lists_devices_and_why_cuda_is_unavailable(capsys):
    assert run("info") == 0
    out = capsys.readouterr().out
    assert "cpu   available" in out
    cuda = tg.device("cuda")
    assert (cuda.reason in out) if not cuda.available else ("cuda  available" in out)
    from tilegrad import distributed
    mpi = next(line for line in out.splitlines() if line.startswith("  mpi    "))
    assert ("start jobs with" in mpi) == distributed.is_mpi_available()
    nccl = next(line for line in out.splitlines() if line.startswith("  nccl   "))
    assert nccl.endswith("available") == distributed.is_nccl_available()


def test_demo_writes_a_summary_table_and_curves(images, corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TILEGRAD_DATA", str(tmp_path))
    monkeypatch.setattr(demo_module, "DEMO", {"mlp": dict(epochs=1),
                                              "cnn": dict(epochs=1, limit=16, eval_limit=8),
                                              "lm": dict(epochs=1)})
    (tmp_path / "fashion-mnist").symlink_to(images)
    out = tmp_path / "report"
    for _ in range(2):   # a second demo replaces the first one's runs (it passes --overwrite)
        assert run("demo", "--out", out) == 0
        rows = json.loads((out / "summary.json").read_text())
        assert [r["model"] for r in rows] == ["MLP", "CNN", "LM"]
        assert all((out / r["curves"]).exists() for r in rows)
        assert "| MLP |" in (out / "summary.md").read_text()
        assert "test acc. / val ppl" in capsys.readouterr().out
        assert sorted(p.name for p in (out / "mlp").glob("checkpoint-*")) == [
            "checkpoint-epoch1.tg"]
