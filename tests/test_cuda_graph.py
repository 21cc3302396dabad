"""tilegrad.cuda.CUDAGraph: capture runs nothing, replay repeats the device work exactly, and host
work inside a capture is refused. Under NUMBA_ENABLE_CUDASIM=1 the graph is recorded and replayed
by the simulator; a step that depended on a value computed on the host per step would give a
different result when replayed, so "replayed == eager, bit for bit" proves a step capturable.
"""
import numpy as np
import pytest

import tilegrad as tg
import tilegrad.nn.functional as F
from tilegrad import models
from tilegrad.errors import CaptureError, IndexRangeError
from tilegrad.nn.utils import clip_grad_norm_

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


# ---------------------------------------------------------------- whole training steps


def _mlp():
    return models.MLP(in_features=12, hidden=8, num_classes=5), "sgd", None


def _cnn():
    return models.CNN(in_channels=1, image_size=8, num_classes=5, channels=(2, 3, 4),
                      hidden=6), "sgd-momentum", None


def _lm():
    return models.LSTMLanguageModel(13, embedding_dim=6, hidden_dim=5), "adam", 0.25


MODELS = {"mlp": _mlp, "cnn": _cnn, "lm": _lm}
BATCH, BPTT = 3, 4


def _batches(kind, steps, seed=1):
    r = np.random.default_rng(seed)
    if kind == "lm":
        return [(r.integers(0, 13, (BPTT, BATCH)), r.integers(0, 13, BPTT * BATCH))
                for _ in range(steps)]
    shape = (BATCH, 12) if kind == "mlp" else (BATCH, 1, 8, 8)
    return [(r.standard_normal(shape).astype(np.float32), r.integers(0, 5, BATCH))
            for _ in range(steps)]


class _Run:
    """A reference model with its optimizer and one step function over tensors that stay in
    place (the inputs, and for the LM the state carried between windows)."""

    def __init__(self, kind, device, schedule=False):
        tg.manual_seed(0)
        model, optimizer, self.clip = MODELS[kind]()
        self.kind, self.device, self.model = kind, tg.device(device), model.to(device)
        self.params = list(model.parameters())
        if optimizer == "adam":
            self.opt = tg.optim.Adam(self.params, lr=0.01)
        else:
            self.opt = tg.optim.SGD(self.params, lr=0.05,
                                    momentum=0.9 if optimizer == "sgd-momentum" else 0)
        self.sched = tg.optim.lr_scheduler.StepLR(self.opt, 2, gamma=0.1) if schedule else None
        if kind == "lm":
            self.hidden = tuple(tg.zeros(1, BATCH, 5, device=device) for _ in range(2))

    def inputs(self, batch):
        return tuple(tg.tensor(a, device=self.device) for a in batch)

    def step(self, inputs):
        x, y = inputs
        if self.kind == "lm":
            logits, (h, c) = self.model(x, self.hidden)
            loss = F.cross_entropy(logits.reshape(-1, 13), y)
        else:
            loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        norm = clip_grad_norm_(self.params, self.clip) if self.clip else None
        self.opt.step()
        if self.kind == "lm":
            with tg.no_grad():
                self.hidden[0].copy_(h.detach())
                self.hidden[1].copy_(c.detach())
        return loss, norm

    def state(self):
        out = {f"p{k}": p.numpy() for k, p in enumerate(self.params)}
        for k, s in enumerate(self.opt.state_dict()["state"].values()):
            for name, v in s.items():
                out[f"s{k}.{name}"] = np.asarray(v)
        return out


def _eager(kind, device, batches, schedule=False):
    run, losses = _Run(kind, device, schedule), []
    for batch in batches:
        losses.append(run.step(run.inputs(batch))[0].item())
        if run.sched:
            run.sched.step()
    return run.state(), losses


def _replayed(kind, batches, schedule=False):
    """The first batch eagerly (a warm-up), then one capture replayed for the others."""
    run, losses = _Run(kind, "cuda", schedule), []
    losses.append(run.step(run.inputs(batches[0]))[0].item())
    if run.sched:
        run.sched.step()
    static = run.inputs(batches[1])
    g = tg.cuda.CUDAGraph()
    with tg.cuda.graph(g):
        loss, _ = run.step(static)
    for batch in batches[1:]:
        for s, a in zip(static, run.inputs(batch)):
            s.copy_(a)
        g.replay()
        losses.append(loss.item())
        if run.sched:
            run.sched.step()
    return run.state(), losses, g


def _same(got, want, what):
    """Bit for bit in the simulator. On a GPU the embedding and max-pool backwards add with float
    atomics, in no fixed order, so there the last bits may differ between any two runs."""
    from tilegrad.backends.cuda import runtime
    if runtime.SIMULATOR:
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:                                             # pragma: no cover - needs a GPU
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=what)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "lm"])
def test_replayed_steps_equal_eager_steps_bit_for_bit_and_match_cpu(kind):
    batches = _batches(kind, 4)
    eager, eager_losses = _eager(kind, "cuda", batches)
    replayed, losses, g = _replayed(kind, batches)
    _same(losses, eager_losses, "losses")
    assert eager.keys() == replayed.keys()
    for k in eager:
        _same(replayed[k], eager[k], k)
    cpu, cpu_losses = _eager(kind, "cpu", batches)
    np.testing.assert_allclose(losses, cpu_losses, rtol=1e-4, atol=1e-5)
    for k in cpu:
        np.testing.assert_allclose(replayed[k], cpu[k], rtol=1e-3, atol=1e-5, err_msg=k)


def test_a_learning_rate_schedule_changed_between_replays_takes_effect():
    batches = _batches("lm", 5)
    eager, eager_losses = _eager("lm", "cuda", batches, schedule=True)
    replayed, losses, _ = _replayed("lm", batches, schedule=True)
    _same(losses, eager_losses, "losses")
    for k in eager:
        _same(replayed[k], eager[k], k)
    constant, _ = _eager("lm", "cuda", batches, schedule=False)
    assert not np.array_equal(constant["p0"], replayed["p0"])    # the schedule did something


def test_a_bad_class_index_in_a_replayed_step_raises_the_eager_error_after_the_replay():
    batches = _batches("mlp", 3)
    run = _Run("mlp", "cuda")
    run.step(run.inputs(batches[0]))
    static = run.inputs(batches[1])
    g = tg.cuda.CUDAGraph()
    with tg.cuda.graph(g):
        loss, _ = run.step(static)
    g.replay()
    loss.item()
    bad = batches[2][1].copy()
    bad[1] = 7                                                # 5 classes
    static[1].copy_(tg.tensor(bad, device="cuda"))
    g.replay()
    with pytest.raises(IndexRangeError, match="cross_entropy: target 7 is out of range"):
        loss.item()
    static[1].copy_(tg.tensor(batches[2][1], device="cuda"))
    g.replay()                       # the error was raised once; a good batch raises nothing
    loss.item()                      # (its value is NaN: the bad step's update reached the weights)


def test_a_host_read_in_a_step_makes_its_capture_fail_naming_the_read():
    run = _Run("mlp", "cuda")
    batch = run.inputs(_batches("mlp", 1)[0])
    run.step(batch)
    with pytest.raises(CaptureError, match="Tensor.item"):
        with tg.cuda.graph(tg.cuda.CUDAGraph()):
            loss, _ = run.step(batch)
            loss.item()
