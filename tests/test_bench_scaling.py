"""bench scaling: the ring allreduce model, its fit, DDP's buckets, the predicted step times, and
one real run of ``tilegrad bench scaling`` under mpiexec at the tiny size."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import tilegrad as tg
from tilegrad import models
from tilegrad.bench import scaling, scaling_model as sm, train
from tilegrad.cli.main import main
from tilegrad.testing import assert_close

try:
    import mpi4py
except ImportError:
    mpi4py = None

SIZES = np.array(scaling.MESSAGES["full"], dtype=np.float64)


def _times(alpha, beta, p, sizes=SIZES):
    return np.array([sm.ring_allreduce_time(s, p, alpha, beta) for s in sizes])


# ---------------------------------------------------------------- the ring formula and its fit

@pytest.mark.parametrize("p", [2, 3, 8])
def test_fit_recovers_alpha_and_beta_from_exact_times(p):
    rng = np.random.default_rng(p)
    alpha, beta = rng.uniform(1e-6, 50e-6), rng.uniform(0.5e9, 30e9)
    got_alpha, got_beta, worst = sm.fit_alpha_beta(SIZES, _times(alpha, beta, p), p)
    assert_close(np.array([got_alpha, got_beta]), np.array([alpha, beta]), rtol=1e-9, atol=0)
    assert worst < 1e-9


def test_fit_recovers_alpha_and_beta_through_noise():
    """5% multiplicative noise: the fit lands within a few percent, and its worst residual is
    about the noise's size."""
    rng = np.random.default_rng(11)
    alpha, beta = 7.3e-6, 4.1e9
    noisy = _times(alpha, beta, 2) * rng.lognormal(0.0, 0.05, SIZES.size)
    got_alpha, got_beta, worst = sm.fit_alpha_beta(SIZES, noisy, 2)
    assert abs(got_alpha / alpha - 1) < 0.1 and abs(got_beta / beta - 1) < 0.1
    assert 0.01 < worst < 0.3


def test_fit_keeps_alpha_non_negative():
    """Pure bandwidth times pushed down at the small sizes would make a free fit's alpha
    negative; it is held at 0 and beta fitted alone."""
    sizes = np.array([1e3, 1e4, 1e5, 1e6, 1e7])
    times = sizes / 3e9 * np.array([0.5, 0.9, 1.0, 1.0, 1.0])
    alpha, beta, _ = sm.fit_alpha_beta(sizes, times, 2)
    assert alpha == 0.0 and 3e9 < beta < 5e9


@pytest.mark.parametrize("sizes, times, p, match", [
    ([4, 64], [1e-6, 2e-6], 1, "p must be >= 2"),
    ([4, 64, 256], [1e-6, 2e-6], 2, "one length"),
    ([64, 64], [1e-6, 2e-6], 2, "two or more distinct sizes"),
    ([4, 64], [1e-6, -2e-6], 2, "finite times > 0"),
    ([4, 64], [1e-6, float("nan")], 2, "finite times > 0"),
    ([4, 1 << 20], [3e-3, 1e-6], 2, "do not grow"),
])
def test_fit_rejects_bad_input(sizes, times, p, match):
    with pytest.raises(ValueError, match=match):
        sm.fit_alpha_beta(sizes, times, p)


def test_ring_time_is_zero_on_one_rank_and_the_hand_formula_beyond():
    rng = np.random.default_rng(3)
    alpha, beta = rng.uniform(1e-6, 1e-5), rng.uniform(1e9, 1e10)
    for s in (0, 4, 1237, 13 * 2 ** 20):
        assert sm.ring_allreduce_time(s, 1, alpha, beta) == 0.0
        assert_close(sm.ring_allreduce_time(s, 2, alpha, beta), 2 * alpha + s / beta,
                     rtol=1e-14, atol=0)
        assert_close(sm.ring_allreduce_time(s, 4, alpha, beta), 6 * alpha + 1.5 * s / beta,
                     rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="integer >= 1"):
        sm.ring_allreduce_time(4, 0, alpha, beta)
    with pytest.raises(ValueError, match="nbytes must be >= 0"):
        sm.ring_allreduce_time(-1, 2, alpha, beta)


# ---------------------------------------------------------------- buckets

def test_buckets_by_hand():
    # reversed 40 | 30 + 20 = 50 (a further 10 would pass 50) | 10
    assert sm.buckets([10, 20, 30, 40], 50, first_bytes=50) == [40, 50, 10]
    # a first bucket of up to 35: 40 alone (over the limit, but it starts the bucket)
    assert sm.buckets([10, 20, 30, 40], 50, first_bytes=35) == [40, 50, 10]
    # the first bucket's limit is at most the cap: 35 first, then 100
    assert sm.buckets([10, 20, 30, 40], 100, first_bytes=35) == [40, 60]
    assert sm.buckets([10, 20, 30, 40], 50, first_bytes=100) == [40, 50, 10]
    assert sm.buckets([10, 20, 30, 40], 100, first_bytes=100) == [100]
    # a parameter over the cap makes a bucket of its own
    assert sm.buckets([7, 100, 5], 50, first_bytes=50) == [5, 100, 7]
    assert sm.buckets([3, 3], 100) == [6]
    assert sm.buckets([], 100) == []
    with pytest.raises(ValueError, match="limits must be > 0"):
        sm.buckets([3], 0)


def test_cnn_buckets_by_hand():
    """The CNN's parameters (conv 1->64->128->256, fc 2304->1000->10), float32: the first
    bucket (1 MiB) takes fc2 and fc1's bias; fc1's weight (9.2 MB) starts the next, which takes
    all the rest at a 25 MB cap. At a 1 MiB cap conv3's bias (first in reverse order) is alone,
    as its weight (1.18 MB) would pass the cap, and so is the weight."""
    sizes = [p.numel() * 4 for p in models.CNN().parameters()]
    first = (1000 * 10 + 10 + 1000) * 4
    fc1, conv3_w, conv3_b = 2304 * 1000 * 4, 256 * 128 * 9 * 4, 256 * 4
    conv12 = (128 * 64 * 9 + 128 + 64 * 1 * 9 + 64) * 4
    assert sm.buckets(sizes, 25 * sm.MB) == [first, fc1 + conv3_b + conv3_w + conv12]
    assert sm.buckets(sizes, sm.MB) == [first, fc1, conv3_b, conv3_w, conv12]


@pytest.mark.parametrize("cap_mb", [0.01, 0.5, 1, 4, 25])
@pytest.mark.parametrize("kind", ["mlp", "cnn", "lm"])
def test_buckets_are_distributed_data_parallels(kind, cap_mb):
    """The model's buckets are the ones DistributedDataParallel builds (its own bucketing,
    which needs no process group)."""
    from tilegrad.nn.parallel import DistributedDataParallel
    model = train._tilegrad_model(kind, train._SIZES["full"][kind])
    named = list(model.named_parameters())
    want = [b.nbytes for b in DistributedDataParallel._make_buckets(named, int(cap_mb * sm.MB))]
    assert sm.buckets([p.numel() * 4 for _, p in named], cap_mb * sm.MB) == want


# ---------------------------------------------------------------- predictions

def test_predicted_step_by_hand_at_two_ranks():
    alpha, beta, t_c = 5e-6, 2e9, 0.03
    b = [8e6, 4e6, 2e6]
    t = [2 * alpha + x / beta for x in b]
    got = sm.predict_step(t_c, b, 2, alpha, beta)
    assert_close(got["allreduce"], sum(t), rtol=1e-12, atol=0)
    assert_close(got["step"], t_c + sum(t), rtol=1e-12, atol=0)
    want = t_c / 3 + max(2 * t_c / 3, t[0] + t[1]) + t[2]
    assert_close(got["step_overlap"], want, rtol=1e-12, atol=0)
    assert_close(got["efficiency_overlap"], t_c / want, rtol=1e-12, atol=0)
    one = sm.predict_step(t_c, b, 1, alpha, beta)
    assert one["step"] == one["step_overlap"] == t_c and one["efficiency"] == 1.0


def test_predictions_fall_with_ranks_and_overlap_never_hurts():
    rng = np.random.default_rng(5)
    table = {f"m{i}": (rng.uniform(1e-4, 0.5), list(rng.uniform(1e3, 3e7, rng.integers(1, 6))))
             for i in range(7)}
    rows = sm.predictions(table, rng.uniform(1e-6, 1e-4), rng.uniform(1e8, 1e11))
    assert [r["p"] for r in rows[:11]] == sm.rank_ladder() == [2 ** k for k in range(11)]
    for name in table:
        mine = [r for r in rows if r["model"] == name]
        for key in ("efficiency", "efficiency_overlap"):
            effs = [r[key] for r in mine]
            assert effs[0] == 1.0 and all(b <= a for a, b in zip(effs, effs[1:]))
        for r in mine:
            assert r["step_overlap"] <= r["step"] and 0 < r["efficiency"] <= 1
    # several buckets and a long backward pass: overlap hides all but the last bucket
    three = sm.predict_step(1.0, [1e6, 1e6, 1e6], 8, 1e-5, 1e9)
    assert three["step_overlap"] < three["step"]


def test_interconnect_given_or_measured():
    measured = scaling._interconnect(2e-6, 5e9, None, None)
    assert measured["local"] and measured["alpha_s"] == 2e-6 and measured["beta_Bps"] == 5e9
    given = scaling._interconnect(2e-6, 5e9, 1.5, None)
    assert not given["local"] and given["alpha_s"] == 1.5e-6 and given["beta_Bps"] == 5e9
    assert "given (--latency-us)" in given["source"]


# ---------------------------------------------------------------- the step and the launcher

@pytest.mark.parametrize("kind", ["mlp", "lm"])
def test_model_step_is_bench_trains_step(kind):
    """Rank 0's step is the training benchmark's (same weights, batch and recipe): the same
    first loss; another rank trains on other data."""
    shape = train._SIZES["tiny"][kind]
    case = {c.name: c for c in train.cases("tiny")}[kind]
    want = case.setup(tg.device("cpu"), None).tilegrad()
    step, model = scaling.model_step(kind, shape)
    assert_close(np.float64(step()), np.float64(want), rtol=1e-6, atol=1e-7)
    other, _ = scaling.model_step(kind, shape, rank=1)
    assert other() != want
    assert sum(p.numel() for p in model.parameters()) == train._num_params(kind, shape)


def test_missing_mpiexec_or_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(scaling.sys, "executable", "/nonexistent/bin/python")
    monkeypatch.setenv("PATH", "")
    with pytest.raises(scaling.MPIUnavailableError, match=r"no mpiexec.*tilegrad\[dist\]"):
        scaling.mpiexec_path()
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(scaling.MPIUnavailableError, match=r"mpi4py is not installed"):
        scaling._check_mpi4py()


def test_cli_rejects_one_rank_and_other_devices(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "scaling", "--ranks", "1"])
    assert "--ranks" in capsys.readouterr().err
    assert main(["bench", "scaling", "--device", "cuda"]) == 1
    assert "runs on device cpu" in capsys.readouterr().err


def _finite_positive(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.mark.skipif(mpi4py is None, reason="mpi4py is not installed: no MPI run")
def test_tiny_run_under_mpiexec(tmp_path):
    """The whole command at the tiny size, predictions for a given interconnect, and the
    RESULTS.md section it replaces (the other sections kept)."""
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\n## cpu\n\nkept\n\n## Data-parallel scaling\n\nold\n")
    src = os.path.dirname(os.path.dirname(os.path.abspath(tg.__file__)))
    env = dict(os.environ, PYTHONPATH=src)
    cmd = [sys.executable, "-m", "tilegrad", "bench", "scaling", "--sizes", "tiny", "--repeats",
           "2", "--warmup", "1", "--out", str(tmp_path / "out"), "--results-md", str(md),
           "--latency-us", "30", "--bandwidth-gbs", "12.5"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out" / "scaling.json").read_text())
    rows = doc["allreduce"]["rows"]
    assert [r["bytes"] for r in rows] == scaling.MESSAGES["tiny"]
    assert all(_finite_positive(r["seconds"]) for r in rows)
    assert _finite_positive(doc["allreduce"]["alpha_s"]) or doc["allreduce"]["alpha_s"] == 0.0
    assert _finite_positive(doc["allreduce"]["beta_Bps"])
    net = doc["interconnect"]
    assert_close(np.array([net["alpha_s"], net["beta_Bps"]]), np.array([30e-6, 12.5e9]),
                 rtol=1e-12, atol=0)
    assert not net["local"]
    assert list(doc["models"]) == ["mlp", "cnn", "lm"]
    for m in doc["models"].values():
        assert _finite_positive(m["step_s"]) and sum(m["buckets"]) == m["grad_bytes"]
    for r in doc["predictions"]:
        assert all(_finite_positive(r[k]) for k in ("step", "step_overlap", "efficiency"))
        want = sm.predict_step(r["t_compute"], doc["models"][r["model"]]["buckets"], r["p"],
                               30e-6, 12.5e9)
        assert_close(r["step"], want["step"], rtol=1e-12, atol=0)
    steps = doc["measured_steps"]
    if "unavailable" not in steps:
        for kind in ("mlp", "cnn", "lm"):
            for mode in ("weak", "strong"):
                assert _finite_positive(steps["models"][kind][mode]["seconds"])
    if importlib.util.find_spec("torch") is not None:   # PyTorch's steps, in the same run
        assert doc["meta"]["torch"]
        for kind in ("mlp", "cnn", "lm"):
            assert _finite_positive(doc["models"][kind]["torch_step_s"])
            for mode in ("weak", "strong"):
                assert _finite_positive(steps["models"][kind][mode]["torch_seconds"])
        assert "tilegrad / PyTorch" in proc.stdout
    out = proc.stdout
    assert "MEASURED: MPI Allreduce" in out and "PREDICTED" in out and "given" in out
    text = md.read_text()
    assert text.count("## Data-parallel scaling") == 1 and "old" not in text and "kept" in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "out" / "scaling.png").stat().st_size > 0
