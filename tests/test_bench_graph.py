"""bench train on "cuda": each model's step eagerly and as a replayed CUDA graph, with the device
operations of one step; bench launches counts them without running the kernels."""
import pytest

import tilegrad as tg
from tilegrad.bench import launches, report, train
from tilegrad.bench.run import run_case

pytestmark = pytest.mark.skipif(not tg.device("cuda").available,
                                reason=f"device cuda unavailable: {tg.device('cuda').reason}")
PEAKS = {"gflops": 1.0, "gbps": 1.0}


def test_graph_cases_exist_only_when_asked():
    assert [c.name for c in train.cases("tiny")] == ["mlp", "cnn", "lm"]
    assert [c.name for c in train.cases("tiny", graph=True)] == \
        ["mlp", "cnn", "lm", "mlp (graph)", "cnn (graph)", "lm (graph)"]


@pytest.mark.parametrize("kind", ["mlp"])     # the LM's is counted below (the simulator is slow)
def test_a_replayed_step_is_validated_timed_and_is_one_graph_launch(kind):
    cases = {c.name: c for c in train.cases("tiny", graph=True)}
    cuda = tg.device("cuda")
    eager = run_case(cases[kind], cuda, None, 1, 2, PEAKS)
    graph = run_case(cases[f"{kind} (graph)"], cuda, None, 1, 2, PEAKS)
    for row in (eager, graph):       # the first step's loss against tilegrad in float64 on cpu
        assert "skipped" not in row, row.get("skipped")
        assert row["tilegrad"]["median_s"] > 0
    assert graph["launches"] == {"kernels": 0, "copies": 0, "graphs": 1}
    assert eager["launches"]["graphs"] == 0 and eager["launches"]["kernels"] > 5
    table = report.markdown(report.document(
        dict(date="d", cpu="c", cpu_cores=2, python="3", numpy="2", torch=None, git_commit="g",
             gpu=None, device="cuda"), dict(PEAKS, gflops_by="x", gbps_by="y"),
        [eager, graph], {}, []))
    assert f"| {kind} [{eager['launches']['kernels']} kernels + " in table
    assert f"| {kind} (graph) [1 graph launch/step] |" in table


def test_launches_are_counted_without_running_the_kernels():
    from tilegrad.backends.cuda import runtime
    counts = launches.count("tiny", kinds=("lm",))
    lm = counts["lm"]
    assert lm["graph"] == {"kernels": 0, "copies": 0, "graphs": 1}
    # T=5: the LSTM alone is 2T + 1 forward and 2T + 3 backward launches.
    assert 2 * 5 + 1 + 2 * 5 + 3 < lm["eager"]["kernels"] < 60
    # One fill (the embedding backward's zeros): the parameters keep the gradients their nodes
    # made, with no copy each.
    assert lm["eager"]["copies"] == 1
    assert not runtime._DRY[0]                      # kernels run again afterwards
    assert "| lm | " in launches.markdown(counts)
