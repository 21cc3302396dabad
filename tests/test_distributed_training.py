"""``tilegrad train`` under ``mpiexec -n 2`` and ``-n 3``: for each reference model in float64, a
few steps of data-parallel training (uneven shares of the global batch, a short last batch
included) end with the parameters of one process trained on the whole batches, to 1e-12, the
same on every rank; the logged loss is the global batch's; rank 0 alone writes; a resumed run
continues exactly; an exception on one rank ends the job within seconds; a launcher that MPI does
not see, and an LM batch with fewer columns than ranks, are refused with an explanation; a
diverging run stops on every rank together."""
import json
import sys

import numpy as np
import pytest

import tilegrad as tg

from dist_helpers import TESTS, check, job_env, mpiexec, run_job
from test_cli import corpus, images  # noqa: F401 (fixtures)

SETTINGS = {     # a few steps each; the last global batch is short and splits unevenly
    "mlp": ["--limit", 62, "--batch-size", 20, "--epochs", 2],     # last batch 2: 1, 1, 0
    "cnn": ["--limit", 30, "--eval-limit", 10, "--batch-size", 8, "--epochs", 1],
    "lm": ["--batch-size", 5, "--bptt", 7, "--epochs", 1],          # columns 3+2 and 2+2+1
}


def train(n, task, data, out, *extra, fail_rank=None, timeout=180):
    """``dist_train.py`` as ``n`` ranks (None: one process, no launcher); returns the
    CompletedProcess, the seconds, and each rank's parameters."""
    params = out.parent / f"{out.name}.npz"
    opts = [params] + (["--fail-rank", fail_rank] if fail_rank is not None else [])
    argv = ["train", task, "--quiet", "--dtype", "float64", "--data-dir", data, "--out", out,
            *SETTINGS[task], *extra]
    proc, seconds = run_job(n, TESTS / "dist_train.py", *opts, "--", *argv, timeout=timeout)
    if proc.returncode != 0:
        return proc, seconds, None
    saved = np.load(params)
    ranks = sorted({k.split("/", 1)[0] for k in saved})
    return proc, seconds, [{k.split("/", 1)[1]: saved[k] for k in saved if k.startswith(r + "/")}
                           for r in ranks]


def epochs(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "epoch"]


def assert_same_as_alone(alone, ranks, n):
    assert len(ranks) == n
    for r, params in enumerate(ranks):
        assert params.keys() == alone.keys()
        for name, value in params.items():
            assert value.dtype == np.float64
            np.testing.assert_allclose(value, alone[name], rtol=1e-12, atol=1e-12,
                                       err_msg=f"rank {r}: {name}")
            assert np.array_equal(value, ranks[0][name]), f"{name}: rank {r} differs from 0"


@pytest.mark.parametrize("task", ["mlp", "cnn", "lm"])
def test_data_parallel_training_equals_one_process_on_the_summed_batch(task, request, tmp_path):
    data = request.getfixturevalue("corpus" if task == "lm" else "images")
    proc, _, alone = train(None, task, data, tmp_path / f"{task}1")
    check(proc)
    for n in (2, 3):
        out = tmp_path / f"{task}{n}"
        proc, _, ranks = train(n, task, data, out)
        check(proc)
        assert_same_as_alone(alone[0], ranks, n)
        # rank 0 alone writes and prints; the logged loss is the global batch's
        assert proc.stdout.count(f"{task} epoch 1:") == 1
        logged, want = epochs(out), epochs(tmp_path / f"{task}1")
        assert [e["epoch"] for e in logged] == [e["epoch"] for e in want]
        for a, b in zip(logged, want):
            for key in ("train_loss", "test_loss", "val_loss", "test_acc"):
                if key in b:
                    assert a[key] == pytest.approx(b[key], rel=1e-12, abs=1e-12), key
        ckpt = tg.load(out / f"checkpoint-epoch{logged[-1]['epoch']}.tg")["model"]
        for name, value in ckpt.items():
            assert np.array_equal(np.asarray(value), ranks[0][name])


@pytest.mark.parametrize("task", ["mlp", "lm"])     # SGD; Adam, clipping and the LSTM state
def test_a_resumed_data_parallel_run_continues_exactly(task, request, tmp_path):
    """Resumed by 2 processes, bit for bit; resumed by one, to 1e-12."""
    data = request.getfixturevalue("corpus" if task == "lm" else "images")
    check(train(2, task, data, tmp_path / "whole", "--epochs", 2)[0])
    whole = tg.load(tmp_path / "whole" / "checkpoint-epoch2.tg")["model"]
    out = tmp_path / "resumed"
    check(train(2, task, data, out, "--epochs", 1)[0])
    assert not (out / "checkpoint-epoch2.tg").exists()
    proc, _, ranks = train(2, task, data, out, "--resume", out, "--epochs", 2)
    check(proc)
    for name, value in whole.items():
        assert np.array_equal(ranks[0][name], np.asarray(value)), name
        assert np.array_equal(ranks[1][name], np.asarray(value)), name
    assert [e["epoch"] for e in epochs(out)] == [1, 2]
    # a checkpoint of 2 processes resumes in one, which ends where 2 processes end
    alone = tmp_path / "alone"
    proc, _, single = train(None, task, data, alone, "--resume", out / "checkpoint-epoch1.tg",
                            "--epochs", 2)
    check(proc)
    assert_same_as_alone({k: np.asarray(v) for k, v in whole.items()}, single, 1)


def test_an_exception_on_rank_1_ends_the_job_within_seconds(images, tmp_path):  # noqa: F811
    # a hang would outlast the timeout and fail the test (it takes about a second)
    proc, _, _ = train(3, "mlp", images, tmp_path / "run", fail_rank=1, timeout=30)
    assert proc.returncode != 0
    assert "rank 1 of 3: a failure planted on rank 1" in proc.stderr
    assert not (tmp_path / "run" / "checkpoint-epoch1.tg").exists()


def test_a_launcher_that_mpi_does_not_see_fails_at_once(images, tmp_path):  # noqa: F811
    mpiexec()
    import subprocess
    env = job_env(OMPI_COMM_WORLD_SIZE=4, OMPI_COMM_WORLD_RANK=0)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "tilegrad", "train", "mlp", "--data-dir",
                           str(images), "--out", str(out)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 1
    assert "rank 0 of 4, but MPI sees a job of 1" in proc.stderr
    assert not out.exists()


def test_an_lm_batch_with_fewer_columns_than_ranks_is_refused(corpus, tmp_path):  # noqa: F811
    proc, seconds, _ = train(3, "lm", corpus, tmp_path / "run", "--batch-size", 2)
    assert proc.returncode != 0
    assert "--batch-size 2 (columns) is smaller than the 3 processes" in proc.stderr


def test_a_diverging_run_stops_on_every_rank_together(images, tmp_path):  # noqa: F811
    proc, _, _ = train(3, "mlp", images, tmp_path / "run", "--lr", 1e200)
    assert proc.returncode == 1
    assert proc.stderr.count("the loss is nan at epoch 1, step 2") == 1     # rank 0 says it
    assert "MPI_Abort" not in proc.stderr + proc.stdout                       # nobody aborted
