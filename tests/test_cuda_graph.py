"""tilegrad.cuda.CUDAGraph: capture runs nothing, replay repeats the device work exactly, and host
work inside a capture is refused. Under NUMBA_ENABLE_CUDASIM=1 the graph is recorded and replayed
by the simulator; a step that depended on a value computed on the host per step would give a
different result when replayed, so "replayed == eager, bit for bit" proves a step capturable.
"""
import numpy as np
import pytest

import tilegrad as tg
from tilegrad.errors import CaptureError

pytestmark = pytest.mark.skipif(not tg.device("cuda").available,
                                reason=f"device cuda unavailable: {tg.device('cuda').reason}")


def _counts():
    from tilegrad.backends.cuda import runtime
    return runtime.counts()


# ---------------------------------------------------------------- the API


def test_capture_runs_nothing_and_each_replay_runs_the_work_once():
    x = tg.tensor(np.arange(5, dtype=np.float32), device="cuda")
    g = tg.cuda.CUDAGraph()
    with tg.cuda.graph(g):
        x.add_(1.0)
    assert x.numpy().tolist() == [0, 1, 2, 3, 4]          # captured, not run
    g.replay()
    g.replay()
    assert x.numpy().tolist() == [2, 3, 4, 5, 6]
    before = _counts()
    g.replay()
    after = _counts()
    assert after["graphs"] - before["graphs"] == 1 and after["kernels"] == before["kernels"]


def test_outputs_made_during_capture_are_rewritten_by_every_replay():
    a = tg.tensor(np.array([1.0, 2.0], np.float32), device="cuda")
    g = tg.cuda.CUDAGraph()
    with tg.cuda.graph(g):
        out = (a * 3).sum()
    for value in ([1.0, 2.0], [5.0, -1.0]):
        a.copy_(tg.tensor(np.array(value, np.float32), device="cuda"))
        g.replay()
        assert out.item() == 3 * sum(value)


@pytest.mark.parametrize("read", [
    lambda t: t.item(), lambda t: t.numpy(), lambda t: t.tolist(), lambda t: float(t),
    lambda t: bool(t), lambda t: tg.cuda.synchronize(),
    lambda t: tg.tensor([1.0], device="cuda"), lambda t: t.to("cpu")])
def test_host_work_while_capturing_raises_naming_it_and_leaves_the_graph_empty(read):
    t = tg.tensor(np.array([2.0], np.float32), device="cuda")
    g = tg.cuda.CUDAGraph()
    with pytest.raises(CaptureError, match="not allowed while capturing a CUDA graph"):
        with tg.cuda.graph(g):
            y = t * 2
            read(y)
    assert not tg.cuda.is_current_stream_capturing()
    with pytest.raises(RuntimeError, match="capture something first"):
        g.replay()
    assert (t * 2).item() == 4.0                           # eager work goes on as before


def test_graph_misuse_is_refused():
    g = tg.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="capture something first"):
        g.replay()
    with pytest.raises(RuntimeError, match="not capturing"):
        g.capture_end()
    with tg.cuda.graph(g):
        with pytest.raises(RuntimeError, match="another graph is being captured"):
            tg.cuda.CUDAGraph().capture_begin()
    with pytest.raises(RuntimeError, match="reset"):
        g.capture_begin()
    g.reset()
    with pytest.raises(TypeError, match="CUDAGraph"):
        tg.cuda.graph(object())


def test_streams_keep_pytorchs_warm_up_pattern():
    s = tg.cuda.Stream()
    s.wait_stream(tg.cuda.current_stream())
    with tg.cuda.stream(s):
        y = tg.ones(3, device="cuda") * 2
    tg.cuda.current_stream().wait_stream(s)
    s.synchronize()
    assert y.numpy().tolist() == [2, 2, 2]
