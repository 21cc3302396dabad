"""Run folders of ``tilegrad train``: one run per folder (lock, --overwrite, --resume), metrics that
survive a kill, checkpoints found by their exact name and checked when resumed, flags checked when
parsed, data too small for one batch, and the NaN guard. Each test names the case it covers; all
of them failed before run folders had these rules. Tiny data, a few steps each."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest

import tilegrad as tg
from test_cli import corpus, images, run, write_idx   # noqa: F401 (fixtures)
from tilegrad.cli import tasks

MLP = ("train", "mlp", "--quiet")


def snapshot(folder):
    """Every file of a folder and its bytes, to show that a refused command changed nothing."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def epochs_logged(folder):
    records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r["epoch"] for r in records if r["kind"] == "epoch"]


def ckpt_names(folder):
    return sorted(p.name for p in folder.glob("checkpoint-epoch*.tg"))


@pytest.fixture
def trained(images, tmp_path):
    """A run folder that holds a finished two-epoch MLP run (step records at every step)."""
    out = tmp_path / "run"
    assert run(*MLP, "--data-dir", images, "--epochs", 2, "--out", out, "--log-every", 1) == 0
    return out


# -- Case 10: a fresh run into a used --out truncated the metrics, kept the old run's later
# checkpoints, and a following --resume continued the old run.
def test_a_new_run_into_a_folder_that_holds_a_run_is_refused_and_changes_nothing(
        trained, images, capsys):
    before = snapshot(trained)
    assert run(*MLP, "--data-dir", images, "--epochs", 1, "--out", trained) == 1
    err = capsys.readouterr().err
    assert f"{trained} already holds a run" in err and "--overwrite" in err and "--resume" in err
    assert snapshot(trained) == before


# -- Case 10: --overwrite is the explicit way to replace a run; it removes only the run's files,
# so that --resume afterwards continues the new run, not the old one.
def test_overwrite_replaces_the_old_run_and_only_its_files(trained, images):
    (trained / "notes.txt").write_text("mine")
    (trained / "checkpoint-epoch2-backup.tg").write_bytes(b"not ours")
    assert run(*MLP, "--data-dir", images, "--epochs", 1, "--out", trained, "--overwrite",
               "--seed", 5) == 0
    assert ckpt_names(trained) == ["checkpoint-epoch1.tg", "checkpoint-epoch2-backup.tg"]
    assert epochs_logged(trained) == [1]
    assert (trained / "notes.txt").read_text() == "mine"
    assert run(*MLP, "--epochs", 2, "--resume", trained) == 0
    ckpt = tg.load(trained / "checkpoint-epoch2.tg")
    assert ckpt["settings"]["seed"] == 5 and ckpt["step"] == 4
    assert epochs_logged(trained) == [1, 2]


CHILD = r"""
import pathlib, sys, time
from tilegrad.cli import main, tasks
real = tasks.ClassificationTask.train_batches
def held(self, epoch):       # epoch 2 stops at its first batch until the test kills us
    for item in real(self, epoch):
        if epoch == 2:
            pathlib.Path(sys.argv[1]).write_text("training")
            time.sleep(120)
        yield item
tasks.ClassificationTask.train_batches = held
sys.exit(main(["train", "mlp", "--quiet", "--epochs", "2", "--data-dir", sys.argv[2],
               "--out", sys.argv[3]]))
"""


# -- Case 10: two runs on one --out at once interleaved their metrics, overwrote each other's
# checkpoints and both exited 0. Now the second fails at once naming the folder, and the lock
# goes with the process that held it, even when it is killed.
def test_a_second_run_on_a_folder_in_use_fails_at_once_and_a_killed_run_frees_it(
        images, tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), str(images), str(out)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the first run ended"
            time.sleep(0.05)
        before = snapshot(out)
        for extra in (["--resume", out], ["--overwrite"]):
            start = time.monotonic()
            assert run(*MLP, "--data-dir", images, "--epochs", 3, "--out", out, *extra) == 1
            assert time.monotonic() - start < 10          # at once, not after the other run
            err = capsys.readouterr().err
            assert f"{out} is in use by another run (process {child.pid}" in err, err
        assert snapshot(out) == before
    finally:
        child.kill()          # SIGKILL: no clean-up of its own runs
        child.wait()
    assert run(*MLP, "--epochs", 2, "--resume", out) == 0
    assert epochs_logged(out) == [1, 2]


# -- Case 10: --epochs 0 on an existing folder emptied metrics.jsonl. It is a no-op now, with or
# without --overwrite, and it creates no folder.
def test_epochs_0_changes_nothing(trained, images, tmp_path):
    before = snapshot(trained)
    code = run(*MLP, "--data-dir", images, "--epochs", 0, "--out", trained)
    assert snapshot(trained) == before
    assert code == 0
    assert run(*MLP, "--data-dir", images, "--epochs", 0, "--out", trained, "--overwrite") == 0
    assert snapshot(trained) == before
    assert run(*MLP, "--epochs", 2, "--resume", trained) == 1     # nothing to do: refused
    assert snapshot(trained) == before
    assert run(*MLP, "--data-dir", images, "--epochs", 0, "--out", tmp_path / "new") == 0
    assert not (tmp_path / "new").exists()


class Killed(Exception):
    """Stands for the process being killed where it is raised."""


# -- Case 11: on resume, metrics.jsonl was truncated and rewritten in place, so a kill in between
# left it empty and the run's history was gone. It is replaced atomically now.
def test_a_kill_while_resuming_keeps_the_metrics_history(images, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert run(*MLP, "--data-dir", images, "--epochs", 1, "--out", out, "--log-every", 1) == 0
    before = (out / "metrics.jsonl").read_text()
    real = json.dumps

    def dumps(obj, *a, **k):      # the first metrics record written on resume is the kill
        if isinstance(obj, dict) and "kind" in obj:
            raise Killed
        return real(obj, *a, **k)

    monkeypatch.setattr(json, "dumps", dumps)
    with pytest.raises(Killed):
        run(*MLP, "--epochs", 2, "--resume", out)
    monkeypatch.setattr(json, "dumps", real)
    assert (out / "metrics.jsonl").read_text() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no temporary file left
    assert run(*MLP, "--epochs", 2, "--resume", out) == 0
    assert epochs_logged(out) == [1, 2]


# -- Case 11: a torn last line (a run killed while appending) blocked resume with a JSON error that
# named no file. It is dropped with a warning naming the file.
def test_a_torn_last_metrics_line_is_dropped_with_a_warning(trained, capsys):
    with open(trained / "metrics.jsonl", "a") as f:
        f.write('{"kind": "step", "epoch": 3, "st')
    assert run(*MLP, "--epochs", 3, "--resume", trained) == 0
    err = capsys.readouterr().err
    assert "warning" in err and str(trained / "metrics.jsonl") in err
    assert epochs_logged(trained) == [1, 2, 3]      # every line parses again


# -- Case 11: an unparseable line that is not the last is an error naming the file and the line.
def test_an_unparseable_metrics_line_elsewhere_is_an_error_naming_file_and_line(trained, capsys):
    lines = (trained / "metrics.jsonl").read_text().splitlines()
    lines[1] = "garbage"
    (trained / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    before = snapshot(trained)
    assert run(*MLP, "--epochs", 3, "--resume", trained) == 1
    err = capsys.readouterr().err
    assert f"{trained / 'metrics.jsonl'}, line 2" in err
    assert snapshot(trained) == before


# -- Case 11: a stray checkpoint-epoch3-backup.tg crashed checkpoint discovery. Only the exact
# name checkpoint-epoch<N>.tg is a checkpoint now.
def test_files_that_only_look_like_checkpoints_are_ignored(trained):
    one = (trained / "checkpoint-epoch1.tg").read_bytes()
    for name in ("checkpoint-epoch3-backup.tg", "checkpoint-epoch07.tg", "checkpoint-epoch9.tg~",
                 "old-checkpoint-epoch8.tg"):
        (trained / name).write_bytes(one)
    assert run(*MLP, "--epochs", 3, "--resume", trained) == 0
    ckpt = tg.load(trained / "checkpoint-epoch3.tg")
    assert ckpt["epoch"] == 3 and ckpt["step"] == 6       # continued from epoch 2, not 1
    assert (trained / "checkpoint-epoch3-backup.tg").read_bytes() == one


# -- Case 11: resuming from a .tg that is not a training checkpoint raised KeyError. It is a clear
# error naming the file; so is a checkpoint holding NaN parameters.
def test_resuming_from_something_that_is_not_a_training_checkpoint(trained, tmp_path, capsys):
    ckpt = tg.load(trained / "checkpoint-epoch2.tg")
    weights = tmp_path / "weights.tg"
    tg.save(ckpt["model"], weights)
    nan = tmp_path / "nan.tg"
    ckpt["model"]["net.1.bias"][0] = np.nan
    tg.save(ckpt, nan)
    for path, why in ((weights, "is not a checkpoint of tilegrad train"),
                      (nan, "holds NaN or infinite values (model.net.1.bias)")):
        assert run(*MLP, "--epochs", 3, "--resume", path, "--out", tmp_path / "new") == 1
        assert f"--resume: {path} {why}" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


# -- Case 11: --resume with --lr or --batch-size silently kept the checkpoint's values. A flag that
# contradicts the checkpoint is an error naming it and both values; a matching one, or one that
# may change on resume, is fine.
def test_resume_refuses_flags_that_contradict_the_checkpoint(trained, capsys):
    before = snapshot(trained)
    assert run(*MLP, "--epochs", 3, "--resume", trained, "--lr", 0.5, "--batch-size", 32) == 1
    err = capsys.readouterr().err
    assert "--lr 0.5 (the checkpoint has 0.01)" in err
    assert "--batch-size 32 (the checkpoint has 64)" in err
    assert snapshot(trained) == before
    assert run(*MLP, "--epochs", 3, "--resume", trained, "--lr", 0.01, "--batch-size", 64,
               "--log-every", 2, "--device", "cpu") == 0


def test_help_says_which_flags_may_change_on_resume(capsys):
    with pytest.raises(SystemExit) as e:
        run("train", "-h")
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "only --epochs, --device, --out, --data-dir, --log-every, --quiet and --overwrite may " \
           "be given anew" in text
    from tilegrad.cli.trainer import MAY_CHANGE     # the help says what the trainer allows
    assert {f"--{k.replace('_', '-')}" for k in MAY_CHANGE} == {
        "--epochs", "--device", "--out", "--data-dir", "--log-every", "--quiet", "--overwrite"}


# -- Case 12: --limit 0 trained on everything, --limit -90 on the first 10 images (--eval-limit
# alike), --log-every 0 ended in ZeroDivisionError, --momentum nan saved NaN parameters. Bad
# values are refused when parsed, naming the flag, before anything is written.
@pytest.mark.parametrize("flag,value", [
    ("--limit", 0), ("--limit", -90), ("--eval-limit", 0), ("--eval-limit", -90),
    ("--log-every", 0), ("--batch-size", 0), ("--bptt", 0), ("--epochs", -1), ("--seed", -1),
    ("--lr", 0), ("--lr", -1), ("--lr", "nan"), ("--lr", "inf"), ("--momentum", "nan"),
    ("--momentum", 1), ("--momentum", -0.5), ("--clip", 0), ("--clip", "inf"), ("--limit", 2.5)])
def test_bad_flag_values_are_refused_when_parsed(flag, value, images, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run(*MLP, "--data-dir", images, "--epochs", 1, "--out", tmp_path / "run", flag, value)
    assert e.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# -- Case 12: the LM with --eval-limit 11 ended in ZeroDivisionError; an empty training split in a
# TypeError after writing a checkpoint. Both are clear errors before anything is written.
@pytest.mark.parametrize("flags,message", [
    (["--eval-limit", 11], "11 validation tokens (--eval-limit 11) are too few"),
    (["--limit", 30], "30 training tokens (--limit 30) are too few"),
])
def test_lm_data_too_small_for_one_batch_is_a_clear_error(flags, message, corpus, tmp_path,
                                                          capsys):
    assert run("train", "lm", "--quiet", "--data-dir", corpus, "--epochs", 1,
               "--out", tmp_path / "run", *flags) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_an_empty_training_split_is_a_clear_error(images, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (empty / name).write_bytes((images / name).read_bytes())
    write_idx(empty / "train-images-idx3-ubyte.gz", np.zeros((0, 28, 28)))
    write_idx(empty / "train-labels-idx1-ubyte.gz", np.zeros(0))
    assert run(*MLP, "--data-dir", empty, "--epochs", 1, "--out", tmp_path / "run") == 1
    assert "the training split" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# -- Case 12: the NaN guard checked only the loss before each update, so parameters that an update
# made NaN were saved (as --momentum nan did). They are checked before every checkpoint now.
def test_parameters_made_nan_by_an_update_are_never_saved(images, tmp_path, monkeypatch, capsys):
    real = tg.optim.SGD.step

    def step(self):       # SGD's momentum turns NaN: the first update is fine, the second is not
        for group in self.param_groups:
            group["momentum"] = float("nan")
        return real(self)

    monkeypatch.setattr(tg.optim.SGD, "step", step)
    out = tmp_path / "run"
    assert run(*MLP, "--data-dir", images, "--epochs", 1, "--out", out) == 1
    err = capsys.readouterr().err
    assert "NaN or infinite after epoch 1 (step 2)" in err and "Last good checkpoint: none" in err
    assert not list(out.glob("checkpoint-*"))


# -- Case 12: with clipping, a NaN gradient (from a finite loss) is caught by the norm that clipping
# computes anyway, before the update, without reading the parameters back every step.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the division by zero is the point
def test_a_nan_gradient_norm_stops_the_lm_before_the_update(corpus, tmp_path, monkeypatch,
                                                            capsys):
    real = tasks.LanguageModelTask.loss

    def poisoned(self, inputs):   # d sqrt(x)/dx at 0 is inf, times 0 is NaN; the value stays
        w = next(iter(self.model.parameters()))
        return real(self, inputs) + ((w * 0).sqrt() * 0).sum()

    monkeypatch.setattr(tasks.LanguageModelTask, "loss", poisoned)
    out = tmp_path / "run"
    assert run("train", "lm", "--quiet", "--data-dir", corpus, "--epochs", 1, "--out", out) == 1
    assert "the gradient norm is nan at epoch 1, step 1; stopped before updating" in \
        capsys.readouterr().err
    assert not list(out.glob("checkpoint-*"))


# -- Case 12: with --lr 1e38 the message named as "last good" a checkpoint whose test loss was NaN.
# A checkpoint whose evaluation loss is not finite is not written; the run stops there.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # overflow on the way to NaN is the point
def test_last_good_checkpoint_never_names_one_with_a_nan_test_loss(images, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*MLP, "--data-dir", images, "--epochs", 3, "--lr", 1e38, "--batch-size", 96,
               "--out", out) == 1
    err = capsys.readouterr().err
    assert "after epoch 1 (step 1); not saved. Last good checkpoint: none" in err, err
    assert not list(out.glob("checkpoint-*"))
