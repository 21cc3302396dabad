"""The Module API against PyTorch's conventions, and the basics of the Tensor API."""
import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.testing import assert_close
from tilegrad import nn

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


# ---------------------------------------------------------------- models, in tilegrad and torch

def make_net(lib):
    """The same nested model in tilegrad (``lib`` = tilegrad.nn) or torch (torch.nn)."""

    class Net(lib.Module):
        def __init__(self):
            super().__init__()
            self.embed = lib.Embedding(7, 3)
            self.conv = lib.Conv2d(3, 4, 3, padding=1)
            self.block = lib.Sequential(lib.Linear(3, 5), lib.ReLU(), lib.Linear(5, 2, bias=False))
            self.lstm = lib.LSTM(2, 3, num_layers=2)
            self.head = lib.Linear(2, 4)

        def forward(self, x):
            return self.head(self.block(x))

    return Net()


NET_NAMES = ["embed.weight", "conv.weight", "conv.bias", "block.0.weight", "block.0.bias",
             "block.2.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
             "lstm.bias_hh_l0", "lstm.weight_ih_l1", "lstm.weight_hh_l1", "lstm.bias_ih_l1",
             "lstm.bias_hh_l1", "head.weight", "head.bias"]


def seq_pair():
    def make(lib):
        return lib.Sequential(lib.Linear(4, 5), lib.ReLU(), lib.Conv2d(3, 6, 3, padding=1),
                              lib.MaxPool2d(2), lib.Flatten())
    return make(nn), (make(torch.nn) if torch is not None else None)


# ---------------------------------------------------------------- traversal

def test_named_parameters_order_and_dotted_names():
    net = make_net(nn)
    names = [n for n, _ in net.named_parameters()]
    assert names == NET_NAMES
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for _, p in net.named_parameters())
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1)))
    assert [n for n, _ in seq.named_parameters()] == [
        "0.weight", "0.bias", "2.0.weight", "2.0.bias", "2.1.weight", "2.1.bias"]
    assert [n for n, _ in net.block.named_parameters()] == ["0.weight", "0.bias", "2.weight"]


@needs_torch
def test_named_parameters_match_torch():
    ours, theirs = make_net(nn), make_net(torch.nn)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [tuple(p.shape) for p in theirs.parameters()] == [p.shape for p in ours.parameters()]


def test_parameters_are_the_named_ones():
    net = make_net(nn)
    params = list(net.parameters())
    assert [id(p) for p in params] == [id(p) for _, p in net.named_parameters()]
    assert params[0] is net.embed.weight and params[-1] is net.head.bias
    assert net.block[2].bias is None   # bias=False registers no parameter


def test_children_and_modules():
    net = make_net(nn)
    assert list(net.children()) == [net.embed, net.conv, net.block, net.lstm, net.head]
    assert [n for n, _ in net.named_children()] == ["embed", "conv", "block", "lstm", "head"]
    mods = list(net.modules())
    assert mods[0] is net
    assert mods[1:] == [net.embed, net.conv, net.block, *net.block, net.lstm, net.head]
    assert [n for n, _ in net.named_modules()] == [
        "", "embed", "conv", "block", "block.0", "block.1", "block.2", "lstm", "head"]


def test_train_and_eval_propagate():
    net = make_net(nn)
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    assert net.train() is net
    assert all(m.training for m in net.modules())
    net.train(False)
    assert not net.block[1].training
    drop = nn.Sequential(nn.Dropout(0.5))
    x = tg.randn(4, 9)
    assert not np.array_equal(drop(x).numpy(), x.numpy())
    drop.eval()
    assert np.array_equal(drop(x).numpy(), x.numpy())


def test_zero_grad_sets_none():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    m(tg.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    opt = tg.optim.SGD(m.parameters(), lr=0.1)
    m(tg.randn(5, 3)).sum().backward()
    opt.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m(tg.randn(5, 3)).sum().backward()
    m.zero_grad(set_to_none=False)
    assert all(not p.grad.numpy().any() and p.grad.shape == p.shape for p in m.parameters())


def test_numpy_scalars_keep_their_dtype_as_torch():
    assert tg.tensor(np.float64(1.5)).dtype == tg.float64
    assert tg.tensor(np.int32(3)).dtype == tg.int32
    assert tg.tensor(1.5).dtype == tg.float32


def test_shared_parameter_appears_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5)
            self.out.weight = self.embed.weight

    m = Tied()
    assert [n for n, _ in m.named_parameters()] == ["embed.weight", "out.bias"]
    assert len(list(m.parameters())) == 2
    opt = tg.optim.SGD(m.parameters(), lr=0.1)
    assert len(opt.param_groups[0]["params"]) == 2


def test_shared_module_appears_once():
    lin = nn.Linear(3, 3)
    m = nn.Sequential(lin, nn.ReLU(), lin)
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias"]
    assert [n for n, _ in m.named_modules()] == ["", "0", "1"]   # as torch: each module once


@needs_torch
def test_shared_parameters_state_dict_keys_match_torch():
    def tied(lib):
        class Tied(lib.Module):
            def __init__(self):
                super().__init__()
                self.embed = lib.Embedding(5, 3)
                self.out = lib.Linear(3, 5)
                self.out.weight = self.embed.weight
                self.again = self.out
        return Tied()

    ours, theirs = tied(nn), tied(torch.nn)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    # A torch checkpoint of the tied model loads strictly, and a tilegrad one round trips.
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    assert np.array_equal(ours.embed.weight.numpy(), theirs.embed.weight.detach().numpy())
    ours.load_state_dict(ours.state_dict())


# ---------------------------------------------------------------- repr

@needs_torch
def test_repr_matches_torch_sequential():
    ours, theirs = seq_pair()
    mine, ref = repr(ours).splitlines(), str(theirs).splitlines()
    assert len(mine) == len(ref) == 7
    assert mine[1] == "  (0): Linear(in_features=4, out_features=5, bias=True)"
    for a, b in zip(mine, ref):
        if "MaxPool2d" in b:   # torch also prints dilation and ceil_mode, which tilegrad lacks
            assert a == "  (3): MaxPool2d(kernel_size=2, stride=2, padding=0)"
            assert b.startswith(a[:-1])
        else:
            assert a == b


@needs_torch
def test_repr_matches_torch_nested():
    ours, theirs = make_net(nn), make_net(torch.nn)
    assert repr(ours) == str(theirs)
    assert repr(ours).splitlines()[3] == "  (block): Sequential("
    assert repr(ours).splitlines()[4] == "    (0): Linear(in_features=3, out_features=5, bias=True)"


def test_repr_without_torch():
    m = nn.Sequential(nn.Linear(4, 5), nn.Sequential(nn.ReLU(), nn.Linear(5, 1, bias=False)))
    assert repr(m).splitlines() == [
        "Sequential(",
        "  (0): Linear(in_features=4, out_features=5, bias=True)",
        "  (1): Sequential(",
        "    (0): ReLU()",
        "    (1): Linear(in_features=5, out_features=1, bias=False)",
        "  )",
        ")"]


# ---------------------------------------------------------------- state_dict

def test_state_dict_holds_numpy_copies():
    net = make_net(nn)
    sd = net.state_dict()
    assert list(sd) == NET_NAMES
    for k, p in net.named_parameters():
        assert type(sd[k]) is np.ndarray and sd[k].dtype == p.dtype and sd[k].shape == p.shape
        assert np.array_equal(sd[k], p.numpy())
    before = net.head.weight.numpy()
    sd["head.weight"] += 1.0
    sd["head.bias"][...] = 7
    assert np.array_equal(net.head.weight.numpy(), before)
    assert not np.any(net.head.bias.numpy() == 7)
    assert not np.shares_memory(net.state_dict()["head.weight"], net.head.weight._data)


@needs_torch
def test_state_dict_keys_and_shapes_match_torch_and_load_both_ways():
    ours, theirs = make_net(nn), make_net(torch.nn)
    sd_t = theirs.state_dict()
    sd = ours.state_dict()
    assert list(sd) == list(sd_t)
    assert {k: v.shape for k, v in sd.items()} == {k: tuple(v.shape) for k, v in sd_t.items()}
    ours.load_state_dict(sd_t)   # torch tensors load directly
    for k, v in ours.state_dict().items():
        assert np.array_equal(v, sd_t[k].numpy()), k
    x = np.random.default_rng(3).standard_normal((6, 3)).astype(np.float32)
    assert_close(ours(tg.tensor(x)).numpy(), theirs(torch.from_numpy(x)).detach().numpy(),
                 rtol=1e-5, atol=1e-6)
    fresh = make_net(nn)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in fresh.state_dict().items()})
    assert np.array_equal(theirs.head.weight.detach().numpy(), fresh.head.weight.numpy())


# ---------------------------------------------------------------- dtypes of modules

def test_module_to_double_and_back():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    before = m.state_dict()
    m(tg.randn(2, 3)).sum().backward()
    assert m.double() is m
    for k, p in m.named_parameters():
        assert p.dtype == tg.float64 and isinstance(p, nn.Parameter) and p.requires_grad
        assert np.array_equal(p.numpy(), before[k].astype(np.float64))
        assert p.grad is None
    y = m(tg.randn(5, 3, dtype=tg.float64))
    assert y.dtype == tg.float64
    y.sum().backward()
    assert all(p.grad.dtype == tg.float64 for p in m.parameters())
    m.to(tg.float32)
    assert all(p.dtype == tg.float32 for p in m.parameters())
    assert all(np.array_equal(p.numpy(), before[k]) for k, p in m.named_parameters())
    m.to(dtype=tg.float64)
    assert all(p.dtype == tg.float64 for p in m.parameters())
    assert m.float() is m and all(p.dtype == tg.float32 for p in m.parameters())


def test_module_optimizer_after_double():
    m = nn.Linear(3, 2).double()
    opt = tg.optim.SGD(m.parameters(), lr=0.5)
    w = m.weight.numpy()
    m(tg.randn(4, 3, dtype=tg.float64)).sum().backward()
    g = m.weight.grad.numpy()
    opt.step()
    assert_close(m.weight.numpy(), w - 0.5 * g, rtol=1e-12)


# ---------------------------------------------------------------- Tensor basics

@pytest.mark.parametrize("data, dtype", [
    (1.5, tg.float32), ([1.0, 2], tg.float32), ([[1.5], [2.5]], tg.float32), (3, tg.int64),
    ([1, 2, 3], tg.int64), (True, tg.bool_),
    (np.array([1.5, 2.5]), tg.float64), (np.array([1, 2], dtype=np.int32), tg.int32),
    (np.array([0.5], dtype=np.float32), tg.float32), (np.array([3], dtype=np.uint8), tg.uint8),
])
def test_tensor_dtype_inference(data, dtype):
    t = tg.tensor(data)
    assert t.dtype == dtype
    assert np.array_equal(t.numpy(), np.asarray(data))
    if torch is not None:
        assert str(torch.tensor(data).dtype) == f"torch.{dtype}"


def test_tensor_default_dtype_and_explicit_dtype():
    tg.set_default_dtype(tg.float64)
    assert tg.tensor(1.5).dtype == tg.float64
    assert tg.randn(2).dtype == tg.float64
    assert tg.tensor([1, 2]).dtype == tg.int64
    tg.set_default_dtype(tg.float32)
    assert tg.tensor([1, 2], dtype=tg.float64).dtype == tg.float64
    assert tg.tensor(np.array([1.5]), dtype=tg.float32).dtype == tg.float32


def test_creation_shapes_and_dtypes():
    z = tg.zeros(2, 3)
    assert z.shape == (2, 3) and z.dtype == tg.float32 and not z.numpy().any()
    o = tg.ones((4, 1, 3), dtype=tg.int64)
    assert o.shape == (4, 1, 3) and o.dtype == tg.int64 and (o.numpy() == 1).all()
    assert tg.zeros(()).shape == () and tg.ones(0, 5).shape == (0, 5)
    r = tg.randn(3, 5, 2)
    assert r.shape == (3, 5, 2) and r.dtype == tg.float32
    assert r.numpy().std() > 0.5
    assert tg.randn(7, dtype=tg.float64).dtype == tg.float64
    u = tg.rand(6, 7)
    assert u.shape == (6, 7) and u.dtype == tg.float32
    assert (u.numpy() >= 0).all() and (u.numpy() < 1).all() and len(np.unique(u.numpy())) > 40
    a = tg.arange(5)
    assert a.dtype == tg.int64 and a.tolist() == [0, 1, 2, 3, 4]
    assert tg.arange(2, 11, 3).tolist() == [2, 5, 8]
    f = tg.arange(1, 2, 0.25)
    assert f.dtype == tg.float32 and f.tolist() == [1.0, 1.25, 1.5, 1.75]
    assert tg.arange(3, dtype=tg.float64).dtype == tg.float64
    full = tg.full((2, 3), 1.5)
    assert full.dtype == tg.float32 and (full.numpy() == 1.5).all()


def test_manual_seed_reproducible():
    tg.manual_seed(1234)
    a, b = tg.randn(3, 7), tg.rand(5)
    tg.manual_seed(1234)
    assert np.array_equal(tg.randn(3, 7).numpy(), a.numpy())
    assert np.array_equal(tg.rand(5).numpy(), b.numpy())
    tg.manual_seed(1235)
    assert not np.array_equal(tg.randn(3, 7).numpy(), a.numpy())
    tg.manual_seed(9)
    state = tg.get_rng_state()
    c = tg.randn(4)
    tg.set_rng_state(state)
    assert np.array_equal(tg.randn(4).numpy(), c.numpy())
    tg.manual_seed(5)
    w1 = nn.Linear(3, 4).weight.numpy()
    tg.manual_seed(5)
    assert np.array_equal(nn.Linear(3, 4).weight.numpy(), w1)


def test_from_numpy_copies():
    a = np.random.default_rng(1).standard_normal((3, 4))
    t = tg.from_numpy(a)
    assert t.dtype == tg.float64 and np.array_equal(t.numpy(), a)
    a[0, 0] = 99.0
    assert t.numpy()[0, 0] != 99.0
    view = t.numpy()
    view[...] = 0
    assert t.numpy().any()
    with pytest.raises(TypeError, match="from_numpy"):
        tg.from_numpy([1.0, 2.0])


def test_item():
    assert tg.tensor([[2.5]]).item() == 2.5 and isinstance(tg.tensor([[2.5]]).item(), float)
    assert tg.tensor(7).item() == 7 and isinstance(tg.tensor(7).item(), int)
    x = tg.randn(3, requires_grad=True)
    assert x.sum().item() == pytest.approx(float(x.numpy().sum()), rel=1e-6)
    with pytest.raises(ValueError, match=r"item.*\(2, 3\)"):
        tg.randn(2, 3).item()
    with pytest.raises(ValueError, match=r"item.*\(0,\)"):
        tg.zeros(0).item()


def test_detach_cuts_the_graph():
    x = tg.randn(4, 3, requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and d.grad is None
    assert np.array_equal(d.numpy(), y.numpy())
    (d * x).sum().backward()
    # Only the direct path reaches x: d/dx sum(d * x) = d, not 4x.
    assert np.array_equal(x.grad.numpy(), d.numpy())


def test_no_grad_records_nothing():
    x = tg.randn(3, 2, requires_grad=True)
    with tg.no_grad():
        assert not tg.is_grad_enabled()
        y = (x * 3).exp().sum()
        lin = nn.Linear(2, 4)(x)
    assert tg.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert not lin.requires_grad and lin.is_leaf
    with pytest.raises(ValueError, match="backward"):
        y.backward()
    with pytest.raises(RuntimeError), tg.no_grad():
        raise RuntimeError("inside")
    assert tg.is_grad_enabled()


def test_gradients_accumulate():
    x = tg.randn(2, 5, requires_grad=True)
    w = tg.randn(2, 5)
    (x * w).sum().backward()
    first = x.grad.numpy()
    assert np.array_equal(first, w.numpy())
    (x * w).sum().backward()
    assert np.array_equal(x.grad.numpy(), 2 * w.numpy())
    y = x * x          # one graph, two backward calls: the first keeps what the graph saved
    y.sum().backward(retain_graph=True)
    y.sum().backward()
    assert_close(x.grad.numpy(), 2 * w.numpy() + 4 * x.numpy(), rtol=1e-6, atol=1e-6)


def test_to_float64():
    x = tg.randn(3, 4, requires_grad=True)
    y = x.to(tg.float64)
    assert y.dtype == tg.float64 and x.dtype == tg.float32
    assert np.array_equal(y.numpy(), x.numpy().astype(np.float64))
    assert x.to(tg.float32) is x and x.to(dtype=tg.float32) is x
    (y * y).sum().backward()
    assert x.grad.dtype == tg.float32
    assert_close(x.grad.numpy(), 2 * x.numpy(), rtol=1e-6)
    assert x.double().dtype == tg.float64 and x.to("cpu", tg.float64).dtype == tg.float64
    assert tg.arange(3).to(tg.float64).tolist() == [0.0, 1.0, 2.0]


def test_to_moves_tensors_and_modules_to_another_device_and_gradients_back():
    """A second device on the NumPy backend stands in for a GPU: .to() must move the values
    there (the output's device is the target's, not the input's), and backward must bring the
    gradient back to the original device."""
    from tilegrad.backends import Device, _registry
    import tilegrad.backends.numpy as numpy_backend
    other = Device("other", numpy_backend)
    _registry()["other"] = other
    try:
        x = tg.randn(3, 4, requires_grad=True)
        y = x.to("other", tg.float64)
        assert y.device == other and y.dtype == tg.float64
        (y * y).sum().backward()
        assert x.grad.device == x.device and x.grad.dtype == tg.float32
        assert_close(x.grad.numpy(), 2 * x.numpy(), rtol=1e-6)
        m = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).to("other")
        assert all(p.device == other for p in m.parameters())
        with pytest.raises(ValueError, match="different devices"):
            m(tg.randn(2, 4))
        assert m(tg.randn(2, 4, device="other")).device == other
    finally:
        del _registry()["other"]
