"""Containers (ModuleList, ModuleDict, ParameterList, ParameterDict, Sequential's list methods)
and the rest of Module's everyday surface, against PyTorch: the same operations give the same
keys, the same order and, in float64, the same values."""
import collections

import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad import nn
from tilegrad.testing import assert_close

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def _keys(m):
    return list(m.state_dict().keys())


def _shapes(m):
    return [(n, tuple(p.shape)) for n, p in m.named_parameters()]


def _both(build):
    """``build(lib)`` for tilegrad and for torch."""
    return build(tg), build(torch)


# ---------------------------------------------------------------- ModuleList

def _list_ops(lib):
    L = lib.nn.Linear
    ml = lib.nn.ModuleList([L(1, 3), L(3, 7)])
    ml.append(L(7, 13))
    ml.extend([L(13, 1), L(1, 7)])
    ml.insert(1, L(5, 5))
    ml.insert(len(ml) - 1, L(3, 1))
    ml[2] = L(2, 2)
    ml[-1] = L(6, 6)
    del ml[0]
    del ml[-2]
    ml += [L(4, 4)]
    ml = ml + lib.nn.ModuleList([L(9, 1)])
    return ml


@needs_torch
def test_module_list_edits_give_torchs_keys_and_order():
    ours, theirs = _both(_list_ops)
    assert isinstance(ours, nn.ModuleList)
    assert _shapes(ours) == _shapes(theirs)
    assert _keys(ours) == _keys(theirs)
    assert len(ours) == len(theirs)
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs]
    for idx in (0, 3, -1, -len(ours)):
        assert ours[idx].weight.shape == tuple(theirs[idx].weight.shape)
    for sl in (slice(1, 4), slice(None, None, -2), slice(5, 1, -1)):
        part, tpart = ours[sl], theirs[sl]
        assert isinstance(part, nn.ModuleList) and _keys(part) == _keys(tpart)
        assert _shapes(part) == _shapes(tpart)
    names = [m.weight.shape for m in ours]
    ours.insert(-2, nn.Linear(8, 8))           # as list.insert (torch's raises KeyError here)
    names.insert(-2, (8, 8))
    assert [m.weight.shape for m in ours] == names
    del ours[-3]
    with pytest.raises(IndexError, match="out of range"):
        ours[len(ours)]
    with pytest.raises(IndexError):
        theirs[len(theirs)]
    popped, tpopped = ours.pop(1), theirs.pop(1)
    assert popped.weight.shape == tuple(tpopped.weight.shape) and _keys(ours) == _keys(theirs)


@needs_torch
def test_a_model_holding_containers_has_torchs_state_dict_and_forward():
    def build(lib):
        class Net(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = lib.nn.ModuleList([lib.nn.Linear(3, 7), lib.nn.Linear(7, 5)])
                self.heads = lib.nn.ModuleDict({"b": lib.nn.Linear(5, 1), "a": lib.nn.Linear(5, 2)})
                self.scales = lib.nn.ParameterList([lib.nn.Parameter(lib.ones(7)),
                                                    lib.nn.Parameter(lib.ones(5))])
                self.extra = lib.nn.ParameterDict({"shift": lib.nn.Parameter(lib.zeros(2))})

            def forward(self, x):
                for lin, s in zip(self.layers, self.scales):
                    x = (lin(x) * s).tanh()
                return self.heads["a"](x) + self.extra["shift"] + self.heads["b"](x)

        return build_net(lib, Net)

    def build_net(lib, cls):
        return cls().double()

    ours, theirs = _both(build)
    assert _keys(ours) == _keys(theirs) == [
        "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
        "heads.b.weight", "heads.b.bias", "heads.a.weight", "heads.a.bias",
        "scales.0", "scales.1", "extra.shift"]
    r = np.random.default_rng(1)
    state = {k: r.standard_normal(tuple(v.shape)) for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    x = r.standard_normal((4, 3))
    out, tout = ours(tg.tensor(x)), theirs(torch.tensor(x))
    assert_close(out, tout.detach())
    out.sum().backward()
    tout.sum().backward()
    for (n, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert_close(p.grad, tp.grad, what=f"gradient of {n}")


# ---------------------------------------------------------------- ModuleDict

def _dict_ops(lib):
    L = lib.nn.Linear
    md = lib.nn.ModuleDict({"z": L(1, 3), "a": L(3, 1)})
    md.update([("m", L(2, 2)), ("z", L(7, 7))])       # z keeps its place, with a new module
    md["q"] = L(1, 1)
    md.update(collections.OrderedDict(b=L(3, 3)))
    popped = md.pop("a")
    del md["m"]
    return md, popped


@needs_torch
def test_module_dict_has_torchs_dict_api_and_order():
    (ours, popped), (theirs, tpopped) = _both(_dict_ops)
    assert list(ours.keys()) == list(theirs.keys()) == ["z", "q", "b"]
    assert list(ours) == list(theirs)
    assert [k for k, _ in ours.items()] == [k for k, _ in theirs.items()]
    assert [m.weight.shape for m in ours.values()] == [tuple(m.weight.shape)
                                                       for m in theirs.values()]
    assert popped.weight.shape == tuple(tpopped.weight.shape)
    assert ("q" in ours) and ("a" not in ours) and len(ours) == len(theirs) == 3
    assert _keys(ours) == _keys(theirs)
    ours.clear()
    theirs.clear()
    assert len(ours) == 0 and _keys(ours) == _keys(theirs) == []
    with pytest.raises(KeyError):
        ours["nope"]
    with pytest.raises(KeyError):
        ours["a.b"] = nn.ReLU()
    with pytest.raises(TypeError):
        ours["x"] = 3
    with pytest.raises(ValueError, match="pair"):
        ours.update([("x", nn.ReLU(), 1)])


# ---------------------------------------------------------------- ParameterList / ParameterDict

@needs_torch
def test_parameter_list_and_dict_match_torch():
    def build(lib):
        r = np.random.default_rng(2)
        pl = lib.nn.ParameterList([lib.nn.Parameter(lib.tensor(r.standard_normal(3)))])
        pl.append(lib.tensor(r.standard_normal((2, 3))))          # a tensor becomes a Parameter
        pl.extend([lib.nn.Parameter(lib.tensor(r.standard_normal(1)))])
        pl[0] = lib.nn.Parameter(lib.tensor(r.standard_normal(7)))
        pd = lib.nn.ParameterDict({"w": lib.tensor(r.standard_normal(5))})
        pd["b"] = lib.nn.Parameter(lib.tensor(r.standard_normal(1)))
        pd.update({"c": lib.tensor(r.standard_normal(2))})
        pd.pop("w")
        holder = lib.nn.Module()
        holder.pl, holder.pd = pl, pd
        return holder

    ours, theirs = _both(build)
    assert _shapes(ours) == _shapes(theirs)
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in ours.parameters())
    for k, v in theirs.state_dict().items():
        assert_close(ours.state_dict()[k], v)
    assert len(ours.pl) == 3 and list(ours.pd) == ["b", "c"] and "c" in ours.pd
    assert [p.shape for p in ours.pl[1:]] == [tuple(p.shape) for p in theirs.pl[1:]]
    assert ours.pl[-1] is list(ours.pl)[-1]
    with pytest.raises(TypeError):
        ours.pl.append("x")


# ---------------------------------------------------------------- Sequential

@needs_torch
def test_sequential_list_methods_and_ordered_dict_match_torch():
    def build(lib):
        L = lib.nn.Linear
        s = lib.nn.Sequential(collections.OrderedDict(first=L(3, 5), act=lib.nn.ReLU()))
        s.append(L(5, 7))
        s.extend([L(7, 2)])
        s[0] = L(3, 5)
        del s[1]                          # renumbers: "0", "1", "2"
        assert s.insert(1, lib.nn.ReLU()) is s
        s.insert(-1, L(7, 7))
        return s

    ours, theirs = _both(build)
    assert _keys(ours) == _keys(theirs)
    assert _keys(ours[1:]) == _keys(theirs[1:])    # a slice keeps the names
    assert _keys(ours + ours[:1]) == _keys(theirs + theirs[:1])
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs]
    assert len(ours) == len(theirs) and ours.pop(-1) is not None and theirs.pop(-1) is not None
    assert _keys(ours) == _keys(theirs)
    x = tg.randn(2, 3)
    assert ours(x).shape == (2, 7)
    with pytest.raises(IndexError, match="out of range"):
        ours.insert(9, nn.ReLU())


# ---------------------------------------------------------------- Module's surface

def _net(lib):
    shared = lib.nn.Linear(3, 3)
    net = lib.nn.Sequential(shared, lib.nn.ReLU(), lib.nn.Sequential(shared, lib.nn.Linear(3, 2)))
    net.register_buffer("count", lib.zeros(2, dtype=lib.int64))
    net[2].register_buffer("stat", lib.ones(3))
    return net


@needs_torch
def test_traversal_arguments_match_torch():
    ours, theirs = _both(_net)
    for kwargs in ({}, {"prefix": "m"}, {"remove_duplicate": False}):
        assert [n for n, _ in ours.named_modules(**kwargs)] == \
            [n for n, _ in theirs.named_modules(**kwargs)]
    assert [n for n, _ in ours.named_modules(memo={ours[2]})] == \
        [n for n, _ in theirs.named_modules(memo={theirs[2]})]
    for kwargs in ({}, {"prefix": "m"}, {"recurse": False}, {"remove_duplicate": False}):
        assert [n for n, _ in ours.named_parameters(**kwargs)] == \
            [n for n, _ in theirs.named_parameters(**kwargs)]
        assert [n for n, _ in ours.named_buffers(**kwargs)] == \
            [n for n, _ in theirs.named_buffers(**kwargs)]
    assert len(list(ours[2].parameters(recurse=False))) == 0
    assert len(list(ours.children())) == len(list(theirs.children()))
    seen, tseen = [], []
    ours.apply(lambda m: seen.append(type(m).__name__))
    theirs.apply(lambda m: tseen.append(type(m).__name__))
    assert seen == tseen


@needs_torch
def test_state_dict_arguments_match_torch():
    ours, theirs = _both(_net)
    assert list(ours.state_dict(prefix="model.")) == list(theirs.state_dict(prefix="model."))
    kept = ours.state_dict(keep_vars=True)
    assert kept["0.weight"] is ours[0].weight and kept["count"] is ours.count
    dest = {"other": 1}
    assert ours.state_dict(destination=dest) is dest and list(dest)[0] == "other"
    assert list(dest)[1:] == list(theirs.state_dict())
    assert isinstance(ours.state_dict()["0.weight"], np.ndarray)


def test_get_submodule_parameter_buffer_and_errors():
    net = _net(tg)
    assert net.get_submodule("") is net and net.get_submodule("2.1") is net[2][1]
    assert net.get_parameter("2.1.bias") is net[2][1].bias
    assert net.get_buffer("2.stat") is net[2].stat
    with pytest.raises(AttributeError, match="no submodule `9`"):
        net.get_submodule("2.9")
    with pytest.raises(AttributeError, match="`stat` is not an nn.Parameter"):
        net.get_parameter("2.stat")
    with pytest.raises(AttributeError, match="no attribute `nope`"):
        net.get_parameter("0.nope")


def test_add_module_register_module_and_errors():
    m = nn.Module()
    lin = nn.Linear(2, 3)
    m.add_module("lin", lin)
    m.register_module("act", nn.ReLU())
    assert m.lin is lin and [n for n, _ in m.named_children()] == ["lin", "act"]
    assert [n for n, _ in m.named_parameters()] == ["lin.weight", "lin.bias"]
    with pytest.raises(KeyError, match="contain"):
        m.add_module("a.b", nn.ReLU())
    with pytest.raises(KeyError, match="already exists"):
        m.add_module("training", nn.ReLU())
    with pytest.raises(TypeError, match="not a Module"):
        m.add_module("x", 3)


def test_requires_grad_freezes_and_dtype_moves_follow_buffers():
    net = _net(tg)
    assert net.requires_grad_(False) is net
    assert not any(p.requires_grad for p in net.parameters())
    net[2].requires_grad_()
    assert [n for n, p in net.named_parameters() if p.requires_grad] == \
        ["0.weight", "0.bias", "2.1.weight", "2.1.bias"]   # the shared layer belongs to both
    net.double()
    assert net[2].stat.dtype == tg.float64 and net.count.dtype == tg.int64
    assert all(p.dtype == tg.float64 for p in net.parameters())
    net.float()
    assert net[2].stat.dtype == tg.float32 and net.count.dtype == tg.int64
    assert net.cpu() is net and net[0].weight.device.name == "cpu"


@pytest.mark.skipif(not tg.device("cuda").available, reason="device cuda unavailable")
def test_cuda_moves_a_model_with_containers():
    net = nn.ModuleList([nn.Linear(3, 1)])
    net.register_buffer("stat", tg.ones(1))
    assert net.cuda() is net
    assert net[0].weight.device.name == "cuda" and net.stat.device.name == "cuda"
    x = tg.randn(2, 3)
    expected = net[0].cpu()(x).numpy()
    net.cuda(0)
    assert_close(net[0](x.to("cuda")), expected)
