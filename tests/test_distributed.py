"""tilegrad.distributed: the collectives on every rank of real MPI jobs (3 ranks on "cpu" and on
"cuda" in the simulator, through the host), checked against NumPy on the ranks' inputs; errors;
a launcher that MPI does not see; an exception on one rank ending the job; and the autograd
callback that DistributedDataParallel finishes its work in."""
import json
import subprocess
import sys

import numpy as np
import pytest

import tilegrad as tg
from tilegrad import autograd
from tilegrad.distributed import launcher

from dist_collectives import inputs
from dist_helpers import TESTS, check, job_env, mpiexec, run_job

SIZE = 3


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of 3 ranks got back from the collectives (one job for the whole module)."""
    folder = tmp_path_factory.mktemp("collectives")
    check(run_job(SIZE, TESTS / "dist_collectives.py", folder)[0])
    return [(dict(np.load(folder / f"rank{r}.npz")), json.loads((folder / f"rank{r}.json")
                                                                .read_text()))
            for r in range(SIZE)]


def _expected():
    xs = [inputs(r) for r in range(SIZE)]
    stack = np.stack([x["x"] for x in xs])
    return {"SUM": stack.sum(0), "AVG": stack.sum(0) / SIZE, "MAX": stack.max(0),
            "MIN": stack.min(0), "PRODUCT": stack.prod(0),
            "int_max": np.stack([x["i"] for x in xs]).max(0),
            "async_sum": stack.sum(0), "broadcast": xs[SIZE - 1]["b"],
            "scalar_sum": np.array(sum(x["b"][0] for x in xs)),
            "all_gather": np.stack([x["gather"] for x in xs])}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_collectives_give_numpys_answer_on_every_rank(ranks, device):
    for key, want in _expected().items():
        got = [arrays[f"{device}/{key}"] for arrays, _ in ranks]
        for r in range(SIZE):
            np.testing.assert_allclose(got[r], want, rtol=1e-14, atol=1e-15,
                                       err_msg=f"{key} on rank {r}")
            assert np.array_equal(got[r], got[0]), f"{key}: rank {r} differs from rank 0"
        assert got[0].dtype == want.dtype
    for arrays, _ in ranks:   # wait() returns True, the work is complete, the version moved
        assert arrays[f"{device}/async"].tolist() == [True, True, True]


def test_ranks_objects_and_facts(ranks):
    for r, (_, facts) in enumerate(ranks):
        assert (facts["rank"], facts["size"], facts["backend"]) == (r, SIZE, "mpi")
        assert (facts["local_rank"], facts["local_size"]) == (r, SIZE)   # one machine
        assert facts["objects"] == [{"from": 1}, 10]
        assert facts["everyone"] == [["rank", k] for k in range(SIZE)]
        assert facts["after_destroy"][0] is False
        assert facts["after_destroy"][1][0] == "ValueError"
        assert facts["again"] == [float(SIZE)]


def test_bad_calls_are_clear_errors_that_change_nothing(ranks):
    facts = ranks[1][1]
    before = facts["before"]
    assert before["initialized"] is False
    assert before["get_rank"][0] == "ValueError" and "init_process_group" in before["get_rank"][1]
    assert before["gloo"][0] == "ValueError" and "'gloo'" in before["gloo"][1]
    want = {"not_a_tensor": ("TypeError", "ndarray"), "avg_of_ints": ("TypeError", "int64"),
            "op_string": ("TypeError", "ReduceOp"), "bool": ("TypeError", "bool"),
            "src_out_of_range": ("ValueError", "0..2, got 3"),
            "short_list": ("ValueError", "list of 3 tensors"),
            "wrong_shape": ("ValueError", "(3,)"), "other_group": ("ValueError", "'mine'"),
            "twice": ("RuntimeError", "twice")}
    errors = facts["errors"]
    for case, (kind, text) in want.items():
        assert errors[case] is not None, f"{case} raised nothing"
        assert errors[case][0] == kind and text in errors[case][1], (case, errors[case])
    assert errors["unchanged"] == [1.0, 2.0]


def test_a_launcher_that_mpi_does_not_see_is_refused_at_once():
    mpiexec()
    env = job_env(OMPI_COMM_WORLD_SIZE=2, OMPI_COMM_WORLD_RANK=1)
    code = "import tilegrad.distributed as d; d.init_process_group('mpi')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode != 0
    assert "rank 1 of 2, but MPI sees a job of 1" in proc.stderr
    assert "mpiexec" in proc.stderr


def test_world_size_or_rank_that_mpi_contradicts_is_refused():
    mpiexec()
    code = ("import tilegrad.distributed as d\n"
            "try:\n    d.init_process_group('mpi', world_size=4)\n"
            "except RuntimeError as e:\n    print(e)\n"
            "print(d.is_initialized())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=job_env())
    assert "world_size=4 was given, but MPI says this process is rank 0 of 1" in proc.stdout
    assert proc.stdout.strip().endswith("False")


def test_an_exception_on_one_rank_ends_the_job_within_seconds(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text(
        "import tilegrad as tg, tilegrad.distributed as dist\n"
        "dist.init_process_group('mpi')\n"
        "if dist.get_rank() == 1:\n    raise KeyError('planted on rank 1')\n"
        "dist.all_reduce(tg.ones(3))   # rank 0 waits here for rank 1, which never comes\n")
    # a hang would outlast the timeout and fail the test (it takes about a second)
    proc, _ = run_job(2, script, timeout=30)
    assert proc.returncode != 0
    assert "planted on rank 1" in proc.stderr and "rank 1: an exception ended" in proc.stderr


def test_launcher_environment_is_read(monkeypatch):
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert launcher.launched() is None
    assert launcher.mismatch_message(1) is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert launcher.launched()[:2] == (4, 2)
    assert launcher.mismatch_message(4) is None
    assert "rank 2 of 4" in launcher.mismatch_message(1)
    monkeypatch.setenv("PMI_SIZE", "3")       # MPICH's launcher is asked first
    assert launcher.launched()[0] == 3


# ---------------------------------------------------------------- autograd.queue_callback

def test_queue_callback_runs_after_the_whole_backward_in_order():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    w = tg.tensor([3.0, 4.0], requires_grad=True)
    seen = []

    def hook(p):
        seen.append(("hook", p.grad.numpy().tolist()))
        if len(seen) == 1:
            autograd.queue_callback(lambda: seen.append(("first", x.grad.numpy().tolist(),
                                                         w.grad.numpy().tolist())))
            autograd.queue_callback(lambda: autograd.queue_callback(
                lambda: seen.append(("queued by a callback",))))
    x.register_post_accumulate_grad_hook(hook)
    w.register_post_accumulate_grad_hook(hook)
    (x * w).sum().backward()
    assert [s[0] for s in seen] == ["hook", "hook", "first", "queued by a callback"]
    assert seen[2][1:] == ([3.0, 4.0], [1.0, 2.0])     # both gradients were done by then


def test_queue_callback_outside_backward_and_after_a_failed_backward():
    with pytest.raises(RuntimeError, match="no backward pass is running"):
        autograd.queue_callback(lambda: None)
    x = tg.tensor([1.0], requires_grad=True)
    ran = []

    def hook(p):
        autograd.queue_callback(lambda: ran.append(1))
        raise ValueError("a hook that fails")
    x.register_post_accumulate_grad_hook(hook)
    with pytest.raises(ValueError, match="a hook that fails"):
        (x * 2).sum().backward()
    assert ran == []
    with pytest.raises(RuntimeError, match="no backward pass is running"):
        autograd.queue_callback(lambda: None)    # nothing was left on the stack
