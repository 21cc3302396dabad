"""Work on "cpu" never imports Numba or CuPy; device "cuda" is set up when first asked for.

Each check runs in a fresh interpreter (this one imported Numba long ago), as a machine without
the simulator has it and under NUMBA_ENABLE_CUDASIM=1, where device "cuda" then runs, asking for
"cuda" in several of the ways that set it up.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np

    def heavy():
        return sorted(m for m in sys.modules if m.startswith(("numba", "cupy")))

    import tilegrad as tg
    from tilegrad import nn, optim
    facts = {"after_import": heavy()}

    tg.manual_seed(0)
    facts["ones"] = (tg.zeros(3) + 1).numpy().tolist()
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = tg.randn(13, 5)
    loss = nn.functional.cross_entropy(model(x), tg.tensor(np.arange(13) % 3))
    loss.backward()
    before = model[0].weight.numpy().copy()
    opt.step()
    facts["stepped"] = bool(np.any(model[0].weight.numpy() != before))
    facts["after_cpu_work"] = heavy()

    ask = {"device": lambda: tg.device("cuda"), "devices": tg.devices,
           "is_available": tg.cuda.is_available}[sys.argv[1]]
    ask()
    facts["after_cuda"] = heavy()
    cuda = tg.device("cuda")
    facts["available"], facts["reason"] = cuda.available, cuda.reason
    if cuda.available:                 # the model's output on "cuda" against "cpu"
        on_cpu = model(x).numpy()
        facts["cuda_diff"] = float(np.abs(model.to("cuda")(x.to("cuda")).numpy() - on_cpu).max())
    print(json.dumps(facts))
""")


def _run(simulator, ask):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, ask], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


# (simulator on, how "cuda" is asked for): each a fresh interpreter of a few seconds.
RUNS = [(False, "device"), (True, "device"), (True, "devices"), (False, "is_available")]


@pytest.fixture(scope="module", params=RUNS,
                ids=[f"{'sim' if s else 'nosim'}-{a}" for s, a in RUNS])
def run(request):
    simulator, ask = request.param
    return simulator, _run(simulator, ask)


def test_cpu_work_imports_neither_numba_nor_cupy(run):
    _, facts = run
    assert facts["after_import"] == []
    assert facts["ones"] == [1.0, 1.0, 1.0] and facts["stepped"]
    assert facts["after_cpu_work"] == []


def test_asking_for_cuda_sets_it_up(run):
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    simulator, facts = run
    assert any(m == "numba" or m.startswith("numba.") for m in facts["after_cuda"])
    if simulator:
        assert facts["available"] and facts["reason"] is None
        assert facts["cuda_diff"] < 1e-5
    else:
        assert facts["available"] or facts["reason"]     # a disabled device says why
