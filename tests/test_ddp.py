"""DistributedDataParallel in real MPI jobs (2 and 3 ranks; "cpu", and "cuda" in the simulator
through the host): after three SGD-with-momentum steps on uneven shares of the global batches
(the last one, of 4 samples, leaves a rank of 3 with 1), every rank's parameters equal one
process trained on the whole batches, to 1e-12 in float64, and are identical across ranks; with
one bucket per parameter too; ``no_sync`` accumulates; buckets go in reverse parameter order;
unused parameters, models that differ between ranks, buffers at construction and in forward;
and the errors raised without a process group."""
import json

import numpy as np
import pytest

import tilegrad as tg
from tilegrad import nn
from tilegrad.nn.parallel import DistributedDataParallel

from dist_helpers import TESTS, check, run_job

CASES = [(2, "cpu"), (3, "cpu"), (3, "cuda")]


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}x{d}" for n, d in CASES])
def job(request, tmp_path_factory):
    n, device = request.param
    folder = tmp_path_factory.mktemp(f"ddp{n}{device}")
    check(run_job(n, TESTS / "dist_ddp.py", folder, device, timeout=300)[0])
    return n, [(dict(np.load(folder / f"rank{r}.npz")),
                json.loads((folder / f"rank{r}.json").read_text())) for r in range(n)]


def _compare(arrays, kind, reference):
    names = [k.split("/", 1)[1] for k in arrays if k.startswith(reference + "/")]
    assert names
    for name in names:
        np.testing.assert_allclose(arrays[f"{kind}/{name}"], arrays[f"{reference}/{name}"],
                                   rtol=1e-12, atol=1e-12, err_msg=f"{kind} {name}")


@pytest.mark.parametrize("kind,reference", [("shared", "alone"), ("small_buckets", "alone"),
                                            ("no_sync", "accumulated_alone")])
def test_data_parallel_equals_one_process_on_the_whole_batch(job, kind, reference):
    n, ranks = job
    for arrays, _ in ranks:
        _compare(arrays, kind, reference)
    first = ranks[0][0]
    for arrays, _ in ranks[1:]:
        for key in first:
            if key.startswith(kind + "/"):
                assert np.array_equal(arrays[key], first[key]), f"{key} differs between ranks"


def test_buckets_state_dict_unused_parameters_and_buffers(job):
    n, ranks = job
    for _, facts in ranks:
        assert facts["tiny_buckets"] == [["4.bias"], ["4.weight"], ["2.bias"], ["2.weight"],
                                         ["0.bias"], ["0.weight"]]
        assert facts["default_buckets"] == [["4.bias", "4.weight", "2.bias", "2.weight",
                                             "0.bias", "0.weight"]]
        assert facts["keys"][0] == "module.0.weight"
        kind, message = facts["unused"]
        assert kind == "RuntimeError" and "extra.bias, extra.weight" in message
        assert "find_unused_parameters=True" in message
        assert facts["found_unused_grad"] == [[0.0, 0.0], [0.0, 0.0]]
        kind, message = facts["different_models"]
        assert kind == "RuntimeError" and "models differ" in message
        assert facts["buffer_after_wrap"] == [0.0] * 5             # rank 0's running mean
        assert facts["var_after_forward"] == ranks[0][1]["var_after_forward"]


def test_bucket_boundaries_follow_the_cap():
    sizes = [3000, 10, 200000, 7, 70000]        # float64 elements; the first bucket caps at 1 MiB
    named = [(f"p{i}", nn.Parameter(tg.zeros(k, dtype=tg.float64))) for i, k in enumerate(sizes)]
    buckets = DistributedDataParallel._make_buckets(named, int(1.0 * 1024 * 1024))
    # reversed: p4 (560 kB) + p3 fits the first 1 MiB; p2 (1.6 MB) alone over the cap; p1, p0.
    assert [b.names for b in buckets] == [["p4", "p3"], ["p2"], ["p1", "p0"]]
    assert [b.numel for b in buckets] == [70007, 200000, 3010]
    assert buckets[0].offsets == [0, 70000]


def test_without_a_process_group_it_is_a_clear_error():
    with pytest.raises(ValueError, match="init_process_group"):
        DistributedDataParallel(nn.Linear(3, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        DistributedDataParallel("a model")
