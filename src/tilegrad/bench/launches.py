"""Device operations per training step, counted at the reference models' full size.

``tilegrad bench launches`` (under ``NUMBA_ENABLE_CUDASIM=1``, no GPU needed) sets up each model's
training step on device "cuda" exactly as ``bench train`` does, and counts what one step issues:
kernel launches, copies and fills (memsets, device-to-device copies), and, for the step captured
as a CUDA graph, graph launches and the operations inside the graph. The simulator cannot run a
full-size step in reasonable time, so the kernels are not executed while counting
(``runtime.count_only``): the counts do not depend on the values, since nothing in a step
decides on the host from a device value what to launch.
"""
import numpy as np

import tilegrad as tg

from . import train


def _gpu_chunks():
    """The multi-tensor launchers take 3 tensors per launch in the simulator (so that the tests
    see several launches) and as many as fit CUDA's 4 KB of kernel parameters on a GPU: set the
    GPU's numbers while counting (no kernel runs, so none is compiled for them). Returns the
    simulator's, to put back."""
    from tilegrad.backends.cuda import foreach, optim
    names = {(foreach, "TENSORS"): 1, (optim, "SGD_TENSORS"): 4, (optim, "ADAM_TENSORS"): 5,
             (optim, "COUNT_TENSORS"): 1}
    saved = {key: getattr(*key) for key in names}
    for (module, name), arrays in names.items():
        setattr(module, name, foreach.tensors_per_launch(arrays, simulated=False))
    return saved


def count(sizes="full", kinds=("mlp", "cnn", "lm")):
    """``{model: {"eager": {...}, "graph": {...}, "graph_ops": n}}`` per step."""
    from tilegrad.backends.cuda import runtime
    if not runtime.SIMULATOR:
        raise RuntimeError("bench launches: run it under NUMBA_ENABLE_CUDASIM=1 (it counts in "
                           "the simulator, without running the kernels)")
    cuda = tg.device("cuda")
    out = {}
    runtime.count_only(True)
    saved = _gpu_chunks()
    try:
        with np.errstate(all="ignore"):    # the values are garbage while nothing runs
            for case in train.cases(sizes, graph=True):
                kind = case.name.split()[0]
                if kind not in kinds:
                    continue
                prep = case.setup(cuda, None)
                prep.tilegrad()        # the first step also makes the optimizer's state
                key = "graph" if case.name.endswith("(graph)") else "eager"
                out.setdefault(kind, {})[key] = prep.launches()
    finally:
        runtime.count_only(False)
        for (module, name), value in saved.items():
            setattr(module, name, value)
    return out


def markdown(counts):
    lines = ["| model | eager: kernels | eager: copies/fills | eager: total | captured: graph "
             "launches per step |", "|---|---|---|---|---|"]
    for kind, c in counts.items():
        e, g = c["eager"], c["graph"]
        lines.append(f"| {kind} | {e['kernels']} | {e['copies']} | {e['kernels'] + e['copies']} "
                     f"| {g['graphs']} (+{g['kernels'] + g['copies']} outside the graph) |")
    return "\n".join(lines) + "\n"
