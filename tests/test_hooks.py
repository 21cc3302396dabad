"""Hooks against PyTorch: tensor hooks (register_hook, retain_grad, post-accumulate-grad hooks),
grad_fn and its names, and Module forward hooks. Same calls, in the same order, with the same
arguments; gradients compared in float64."""
import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad import nn
from tilegrad.testing import assert_close

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def _pair(lib_tensor, arr):
    return lib_tensor(arr.copy(), requires_grad=True)


def _branchy(lib, log, xa, wa, scale_y=False):
    """One graph in tilegrad (lib=tg) or torch: x and w leaves, y = x*w used twice, x used
    twice; a hook on every tensor logs (name, gradient)."""
    x, w = _pair(lib.tensor, xa), _pair(lib.tensor, wa)

    def hook(name):
        def h(g):
            log.append((name, g.detach().numpy().copy()))
            if scale_y and name == "y":
                return g * 3.0
        return h

    x.register_hook(hook("x"))
    x.register_post_accumulate_grad_hook(lambda t: log.append(("x.post", t.grad.numpy().copy())))
    w.register_hook(hook("w"))
    w.register_post_accumulate_grad_hook(lambda t: log.append(("w.post", t.grad.numpy().copy())))
    y = x * w
    y.register_hook(hook("y"))
    a = y.exp()
    a.register_hook(hook("a"))
    b = y * x
    b.register_hook(hook("b"))
    z = (a + b.tanh()).sum()
    z.register_hook(hook("z"))
    return x, w, y, z


@needs_torch
@pytest.mark.parametrize("scale_y", [False, True])
def test_tensor_hooks_fire_in_torchs_order_with_torchs_gradients(scale_y):
    r = np.random.default_rng(3)
    xa, wa = r.standard_normal(7), r.standard_normal(7)
    ours, theirs = [], []
    x, w, _, z = _branchy(tg, ours, xa, wa, scale_y)
    tx, tw, _, tz = _branchy(torch, theirs, xa, wa, scale_y)
    z.backward()
    tz.backward()
    assert [n for n, _ in ours] == [n for n, _ in theirs]
    for (name, g), (_, tg_) in zip(ours, theirs):
        assert_close(g, tg_, what=f"gradient seen by the hook on {name}")
    assert_close(x.grad, tx.grad)
    assert_close(w.grad, tw.grad)


@needs_torch
def test_a_leaf_hook_sees_the_summed_gradient_once_and_its_return_is_accumulated():
    r = np.random.default_rng(4)
    xa = r.standard_normal((3, 5))
    results = []
    for lib in (tg, torch):
        x, seen = _pair(lib.tensor, xa), []
        x.register_hook(lambda g, seen=seen: (seen.append(g.detach().numpy().copy()), g * 2)[1])
        ((x * x).sum() + x.exp().sum() + (x * 3.0).sum()).backward()
        results.append((seen, x.grad.numpy()))
    (ours, our_grad), (theirs, their_grad) = results
    assert len(ours) == len(theirs) == 1
    assert_close(ours[0], theirs[0])
    assert_close(our_grad, their_grad)


@needs_torch
def test_post_accumulate_hook_fires_once_per_backward_after_the_last_contribution():
    r = np.random.default_rng(5)
    xa = r.standard_normal(13)
    runs = []
    for lib in (tg, torch):
        x, seen = _pair(lib.tensor, xa), []
        x.register_post_accumulate_grad_hook(
            lambda t, seen=seen: seen.append(t.grad.numpy().copy()))
        y = x * 2.0
        loss = (y * x).sum() + (x.exp() * y).sum() + x.sum()
        loss.backward(retain_graph=True)
        loss.backward()          # the second one sees the accumulated gradient
        runs.append((seen, x.grad.numpy().copy()))
    (ours, grad), (theirs, tgrad) = runs
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        assert_close(a, b)
    assert_close(ours[1], grad)
    assert_close(grad, tgrad)


@needs_torch
def test_hooks_on_a_leaf_root_and_on_a_multi_output_node():
    r = np.random.default_rng(6)
    xa, ga = r.standard_normal((4, 3)), r.standard_normal((4, 3))
    logs = []
    for lib in (tg, torch):
        log = []
        x = _pair(lib.tensor, xa)
        x.register_hook(lambda g, log=log: log.append(("x", g.numpy().copy())))
        x.register_post_accumulate_grad_hook(lambda t, log=log: log.append(("post", None)))
        x.backward(lib.tensor(ga))
        parts = x.unbind(0)          # four outputs of one node
        parts[2].register_hook(lambda g, log=log: log.append(("p2", g.numpy().copy())))
        parts[0].register_hook(lambda g, log=log: log.append(("p0", g.numpy().copy())))
        (parts[0] * 2.0 + parts[2].exp()).sum().backward()
        logs.append((log, x.grad.numpy()))
    (ours, grad), (theirs, tgrad) = logs
    assert [n for n, _ in ours] == [n for n, _ in theirs]
    for (n, a), (_, b) in zip(ours, theirs):
        if a is not None:
            assert_close(a, b, what=n)
    assert_close(grad, tgrad)


@needs_torch
def test_retain_grad_matches_torch_runs_after_hooks_and_accumulates():
    r = np.random.default_rng(7)
    xa = r.standard_normal((3, 7))
    out = []
    for lib in (tg, torch):
        x = _pair(lib.tensor, xa)
        y = x.sigmoid()
        z = y * y
        assert not y.retains_grad and not x.retains_grad
        y.retain_grad()
        z.retain_grad()
        y.retain_grad()                     # twice is once
        y.register_hook(lambda g: g * 0.5)  # registered after retain_grad, still seen by .grad
        assert y.retains_grad and z.retains_grad and not x.retains_grad
        loss = z.sum()
        loss.retain_grad()
        loss.backward(retain_graph=True)
        first = y.grad.numpy().copy()
        loss.backward()
        out.append((first, y.grad.numpy(), z.grad.numpy(), loss.grad.numpy(), x.grad.numpy()))
    for a, b in zip(*out):
        assert_close(a, b)


def test_removed_hooks_stop_and_handles_work_as_context_managers():
    x = tg.randn(5, requires_grad=True)
    calls = []
    h1 = x.register_hook(lambda g: calls.append(1))
    with x.register_post_accumulate_grad_hook(lambda t: calls.append(2)):
        y = x * 2.0
        with y.register_hook(lambda g: calls.append(3)):
            y.sum().backward()
    assert calls == [3, 1, 2]
    h1.remove()
    h1.remove()                                  # twice is harmless
    (x * 2.0).sum().backward()
    assert calls == [3, 1, 2]
    assert_close(x.grad, np.full(5, 4.0))


def test_hook_errors_are_torchs():
    plain = tg.randn(3)
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        plain.register_hook(lambda g: None)
    with pytest.raises(RuntimeError, match="requires_grad=False"):
        plain.retain_grad()
    x = tg.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (x * 2.0).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(TypeError, match="callable"):
        x.register_hook(3)
    x.register_hook(lambda g: tg.ones(4))
    with pytest.raises(RuntimeError, match="changed the size"):
        (x * 2.0).sum().backward()
    w = tg.randn(3, requires_grad=True)
    w.register_hook(lambda g: g.double())
    with pytest.raises(RuntimeError, match="changed the type"):
        (w * 2.0).sum().backward()


# ---------------------------------------------------------------- grad_fn

def _ops(lib):
    F = lib.nn.functional
    return {
        "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b, "neg": lambda a, b: -a, "pow": lambda a, b: a ** 2,
        "exp": lambda a, b: a.exp(), "log": lambda a, b: (a * a).log(),
        "tanh": lambda a, b: a.tanh(), "sigmoid": lambda a, b: a.sigmoid(),
        "relu": lambda a, b: F.relu(a), "sqrt": lambda a, b: (a * a).sqrt(),
        "sum": lambda a, b: a.sum(), "sum_dim": lambda a, b: a.sum(1),
        "amax": lambda a, b: a.amax(), "max": lambda a, b: a.max(),
        "matmul": lambda a, b: a @ b.T, "reshape": lambda a, b: a.reshape(-1),
        "permute": lambda a, b: a.permute(1, 0), "expand": lambda a, b: a[:1].expand(3, 3),
        "cat": lambda a, b: lib.cat([a, b]), "maximum": lambda a, b: a.maximum(b),
        "to": lambda a, b: a.to(lib.float32), "unbind": lambda a, b: a.unbind(0)[1],
        "log_softmax": lambda a, b: F.log_softmax(a, dim=1),
        "linear": lambda a, b: F.linear(a, b, a[0]),
        "linear_nobias": lambda a, b: F.linear(a, b),
    }


@needs_torch
@pytest.mark.parametrize("op", list(_ops(tg)))
def test_grad_fn_names_match_torch(op):
    r = np.random.default_rng(8)
    aa, ba = r.standard_normal((3, 3)), r.standard_normal((3, 3))
    ours = _ops(tg)[op](_pair(tg.tensor, aa), _pair(tg.tensor, ba))
    theirs = _ops(torch)[op](_pair(torch.tensor, aa), _pair(torch.tensor, ba))
    assert ours.grad_fn.name() == theirs.grad_fn.name()


@needs_torch
def test_grad_fn_next_functions_have_torchs_shape():
    x = tg.randn(3, requires_grad=True, dtype=tg.float64)
    c = tg.randn(3, dtype=tg.float64)
    assert x.grad_fn is None
    y = x * c
    z = (y + x).sum()
    assert z.grad_fn is z.grad_fn                     # one view per node
    (add, k), = z.grad_fn.next_functions
    assert add.name() == "AddBackward0" and k == 0
    (mul, _), (acc, _) = add.next_functions
    assert mul is y.grad_fn and acc.variable is x
    assert acc.name() == "torch::autograd::AccumulateGrad" and acc.next_functions == ()
    assert mul.next_functions[0][0] is acc and mul.next_functions[1] == (None, 0)
    assert repr(mul).startswith("<MulBackward0 object at 0x")
    tx = torch.ones(3, requires_grad=True)
    assert [(type(n).__name__ if n else None, i)
            for n, i in (tx * torch.ones(3)).grad_fn.next_functions] == [
        ("AccumulateGrad", 0), (None, 0)]


# ---------------------------------------------------------------- module forward hooks

def _traced(lib, log, seed):
    """A small model whose layers log every hook call; the same hooks in tilegrad and torch."""
    lin = lib.nn.Linear(3, 4).double()
    seq = lib.nn.Sequential(lin, lib.nn.ReLU())
    r = np.random.default_rng(seed)
    with lib.no_grad():
        lin.weight.copy_(lib.tensor(r.standard_normal((4, 3))))
        lin.bias.copy_(lib.tensor(r.standard_normal(4)))

    def pre(name):
        return lambda m, args: log.append(("pre", name, type(m).__name__, len(args)))

    def post(name):
        return lambda m, args, out: log.append(("post", name, tuple(out.shape)))

    handles = [seq.register_forward_pre_hook(pre("seq")), lin.register_forward_pre_hook(pre("a")),
               lin.register_forward_pre_hook(pre("first"), prepend=True),
               lin.register_forward_hook(post("lin")), seq.register_forward_hook(post("seq"))]
    # the pre-hook doubles the input, the forward hook adds one to the output
    lin.register_forward_pre_hook(lambda m, args: (args[0] * 2.0,))
    seq.register_forward_hook(lambda m, args, out: out + 1.0)
    seq[1].register_forward_pre_hook(lambda m, args, kwargs: log.append(("kw", len(kwargs))),
                                     with_kwargs=True)
    seq[1].register_forward_hook(lambda m, args, kwargs, out: out * 3.0, with_kwargs=True)
    return seq, handles


@needs_torch
def test_forward_hooks_match_torch_in_order_arguments_and_results():
    x = np.random.default_rng(9).standard_normal((5, 3))
    ours, theirs = [], []
    seq, handles = _traced(tg, ours, 1)
    tseq, thandles = _traced(torch, theirs, 1)
    y, ty = seq(tg.tensor(x)), tseq(torch.tensor(x))
    assert ours == theirs
    assert_close(y, ty.detach())
    for h in handles:
        h.remove()
    for h in thandles:
        h.remove()
    ours.clear()
    theirs.clear()
    assert_close(seq(tg.tensor(x)), tseq(torch.tensor(x)).detach())
    assert ours == theirs


def test_pre_hook_kwargs_and_always_call():
    class Scale(nn.Module):
        def forward(self, x, factor=1.0):
            if factor < 0:
                raise ValueError("negative factor")
            return x * factor

    m, calls = Scale(), []
    m.register_forward_pre_hook(lambda mod, args, kwargs: (args, {"factor": 4.0}),
                                with_kwargs=True)
    x = tg.randn(3)
    assert_close(m(x, factor=2.0), x.numpy() * 4.0)
    m2 = Scale()
    m2.register_forward_hook(lambda mod, args, out: calls.append("always"), always_call=True)
    m2.register_forward_hook(lambda mod, args, out: calls.append("normal"))
    with pytest.raises(ValueError, match="negative factor"):
        m2(x, -1.0)
    assert calls == ["always"]
    m3 = Scale()
    m3.register_forward_pre_hook(lambda mod, args, kwargs: 5, with_kwargs=True)
    with pytest.raises(RuntimeError, match="new_args, new_kwargs"):
        m3(x)


# ---------------------------------------------------------------- cuda

@pytest.mark.skipif(not tg.device("cuda").available, reason="device cuda unavailable")
def test_hooks_on_cuda_match_cpu_and_survive_graph_capture():
    r = np.random.default_rng(10)
    xa, da = r.standard_normal(5).astype(np.float32), r.standard_normal(5).astype(np.float32)

    def run(device, capture=False):
        x = tg.tensor(xa, device=device, requires_grad=True)
        d = tg.tensor(da, device=device)
        seen = []

        def step():
            x.grad = None
            y = x * d
            y.retain_grad()
            y.register_hook(lambda g: g * 2.0)
            (y.exp() * y).sum().backward()
            return y

        def halve(t):
            seen.append(1)
            with tg.no_grad():
                t.grad.mul_(0.5)
        x.register_post_accumulate_grad_hook(halve)
        if not capture:
            y = step()
            return x.grad.numpy(), y.grad.numpy(), len(seen)
        step()                                    # warm-up, then capture and replay
        g = tg.cuda.CUDAGraph()
        with tg.cuda.graph(g):
            y = step()
        d.copy_(tg.tensor(da * 0.0 + 1.0, device=device))
        g.replay()
        return x.grad.numpy(), y.grad.numpy(), len(seen)

    cpu, cuda = run("cpu"), run("cuda")
    assert_close(cuda[0], cpu[0])
    assert_close(cuda[1], cpu[1])
    assert cpu[2] == cuda[2] == 1
    da_saved = da.copy()
    replayed = run("cuda", capture=True)
    da[:] = 1.0                                   # what the replay ran with
    eager = run("cpu")
    da[:] = da_saved
    assert_close(replayed[0], eager[0])
    assert_close(replayed[1], eager[1])
