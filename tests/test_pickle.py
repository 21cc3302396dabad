"""pickle and copy.deepcopy of tensors, parameters, devices, modules (every reference model, on
every device) and optimizers, with PyTorch's rules: pickle carries values, device and
requires_grad but not .grad; deepcopy copies .grad, keeps shared storage shared (a tied weight
stays tied) and refuses a non-leaf that requires grad."""
import copy
import pickle

import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad import models, nn, optim
from tilegrad.testing import assert_close, rng


def values(*shape, seed=0):
    return rng(seed).standard_normal(shape)


def roundtrip(obj):
    return pickle.loads(pickle.dumps(obj))


# ---------------------------------------------------------------- tensors and devices
@pytest.mark.parametrize("dtype", [tg.float32, tg.float64, tg.int64, tg.bool_])
def test_pickled_tensor_comes_back_on_its_device(device, dtype):
    t = tg.tensor(values(3, 7, seed=1) * 3, device=device).to(dtype=dtype)
    back = roundtrip(t)
    assert type(back) is tg.Tensor and back.device.name == device and back.dtype == dtype
    assert np.array_equal(back.numpy(), t.numpy()) and back._data is not t._data


def test_pickle_keeps_requires_grad_but_not_grad_or_graph(device):
    x = tg.tensor(values(3, seed=2), device=device, requires_grad=True)
    (x * x).sum().backward()
    back = roundtrip(x)
    assert back.requires_grad and back.is_leaf and back.grad is None
    y = roundtrip(x * 2)            # a non-leaf comes back as a leaf that requires grad
    assert y.requires_grad and y.is_leaf and np.array_equal(y.numpy(), x.numpy() * 2)
    if torch is not None:           # what PyTorch does with the same tensors
        tx = torch.tensor(values(3, seed=2), requires_grad=True)
        (tx * tx).sum().backward()
        assert roundtrip(tx).grad is None and roundtrip(tx * 2).is_leaf


def test_pickled_parameter_stays_a_parameter(device):
    p = nn.Parameter(tg.tensor(values(2, 3, seed=3), device=device))
    frozen = nn.Parameter(tg.ones(2, device=device), requires_grad=False)
    for q, grad in ((p, True), (frozen, False)):
        for back in (roundtrip(q), copy.deepcopy(q)):
            assert type(back) is nn.Parameter and back.requires_grad is grad
            assert back.device.name == device and np.array_equal(back.numpy(), q.numpy())


def test_a_device_pickles_by_name():
    for dev in tg.devices():
        assert roundtrip(dev) is tg.device(dev.name) and copy.deepcopy(dev) is dev
    assert b"backends" in pickle.dumps(tg.device("cpu"))   # a reference, not the module


def test_public_attributes_of_a_tensor_travel():
    t = tg.ones(2)
    t.note = {"epoch": 3}
    assert roundtrip(t).note == {"epoch": 3} and copy.deepcopy(t).note == {"epoch": 3}


# ---------------------------------------------------------------- deepcopy
def test_deepcopy_copies_storage_and_grad(device):
    x = tg.tensor(values(3, 5, seed=4), device=device, requires_grad=True)
    (x * x).sum().backward()
    c = copy.deepcopy(x)
    assert c.requires_grad and c.is_leaf and c.device.name == device
    assert np.array_equal(c.numpy(), x.numpy()) and np.array_equal(c.grad.numpy(), x.grad.numpy())
    with tg.no_grad():
        c.add_(1.0)
        c.grad.add_(1.0)
    assert np.array_equal(x.numpy(), values(3, 5, seed=4))
    assert np.array_equal(x.grad.numpy(), 2 * values(3, 5, seed=4))
    if torch is not None:
        tx = torch.tensor(values(3, 5, seed=4), requires_grad=True)
        (tx * tx).sum().backward()
        assert_close(copy.deepcopy(tx).grad, c.grad.numpy() - 1.0)


def test_deepcopy_of_a_non_leaf_that_requires_grad_is_refused(device):
    x = tg.tensor(values(3, seed=5), device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="Only Tensors created explicitly by the user"):
        copy.deepcopy(x * 2)
    with tg.no_grad():
        assert np.array_equal(copy.deepcopy(x * 2).numpy(), x.numpy() * 2)
    assert np.array_equal(copy.deepcopy((x * 2).detach()).numpy(), x.numpy() * 2)


def test_deepcopy_keeps_shared_storage_shared(device):
    x = tg.tensor(values(2, 6, seed=6), device=device)
    alias, view = x.data, x.view(3, 4)
    cx, calias, cview = copy.deepcopy([x, alias, view])
    assert cx._data is calias._data and cx._data is not x._data
    calias.add_(1.0)                 # one storage, one version counter, as before the copy
    assert np.array_equal(cx.numpy(), values(2, 6, seed=6) + 1) and cx._version == 1
    assert np.array_equal(cview.numpy().reshape(2, 6), cx.numpy())
    assert np.array_equal(x.numpy(), values(2, 6, seed=6))


class Tied(nn.Module):
    """An embedding and a decoder sharing one weight (word_language_model's --tied)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(7, 5)
        self.decoder = nn.Linear(5, 7)
        self.decoder.weight = self.encoder.weight
        self.scale = 0.5


def test_deepcopy_and_pickle_keep_tied_weights_tied():
    m = Tied()
    for c in (copy.deepcopy(m), roundtrip(m)):
        assert c.decoder.weight is c.encoder.weight and c.decoder.weight is not m.encoder.weight
        assert len(list(c.parameters())) == 2 and c.scale == 0.5


# ---------------------------------------------------------------- modules
def reference_models():
    return {"mlp": lambda: models.MLP(in_features=13, hidden=7, num_classes=3),
            "cnn": lambda: models.CNN(in_channels=1, image_size=8, num_classes=3,
                                      channels=(3, 5), hidden=7),
            "lstm": lambda: models.LSTMLanguageModel(13, embedding_dim=5, hidden_dim=7),
            "sequential": lambda: nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Dropout(0.25))}


def model_input(name):
    r = rng(7)
    if name == "mlp":
        return tg.tensor(r.standard_normal((3, 13)), dtype=tg.float32)
    if name == "cnn":
        return tg.tensor(r.standard_normal((2, 1, 8, 8)), dtype=tg.float32)
    if name == "lstm":
        return tg.tensor(r.integers(0, 13, (3, 2)))
    return tg.tensor(r.standard_normal((3, 5)), dtype=tg.float32)


@pytest.mark.parametrize("name", reference_models())
def test_every_reference_model_pickles_and_deepcopies(device, name):
    tg.manual_seed(1)
    m = reference_models()[name]().to(device).eval()
    for c in (roundtrip(m), copy.deepcopy(m)):     # no "cannot pickle 'module' object"
        assert type(c) is type(m) and not c.training
        for (k, p), (k2, q) in zip(m.state_dict().items(), c.state_dict().items()):
            assert k == k2 and np.array_equal(np.asarray(p), np.asarray(q))
        for p, q in zip(m.parameters(), c.parameters()):
            assert type(q) is nn.Parameter and q.requires_grad and q.device.name == device
            assert q._data is not p._data
    if device == "cpu":                            # the same function (the simulator is slow)
        x = model_input(name)
        out, again = m(x), roundtrip(m)(x)
        out, again = (out[0], again[0]) if isinstance(out, tuple) else (out, again)
        assert np.array_equal(out.numpy(), again.numpy())


# ---------------------------------------------------------------- optimizers
def stepped(make_opt, device, steps=2):
    tg.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2)).to(device)
    opt = make_opt(model.parameters())
    x = tg.tensor(values(7, 5, seed=8), dtype=tg.float32, device=device)
    for _ in range(steps):
        step(model, opt, x)
    return model, opt, x


def step(model, opt, x):
    opt.zero_grad()
    (model(x) ** 2).mean().backward()
    opt.step()


OPTIMIZERS = {"sgd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
              "adam": lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1)}


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_deepcopied_optimizer_goes_on_as_the_original(device, kind):
    model, opt, x = stepped(OPTIMIZERS[kind], device)
    clone_model, clone_opt = copy.deepcopy((model, opt))   # one memo: copies refer to each other
    assert [id(p) for p in clone_opt.param_groups[0]["params"]] == \
        [id(p) for p in clone_model.parameters()]
    assert set(map(id, clone_opt.state)) == set(map(id, clone_model.parameters()))
    step(model, opt, x)
    step(clone_model, clone_opt, x)
    for p, q in zip(model.parameters(), clone_model.parameters()):
        assert_close(q, p, rtol=0, atol=0)
    alone = copy.deepcopy(opt)      # without the model: its own copies of the parameters
    assert all(q is not p for p, q in zip(opt.param_groups[0]["params"],
                                          alone.param_groups[0]["params"]))


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_optimizer_state_dict_pickles_and_loads(device, kind):
    model, opt, x = stepped(OPTIMIZERS[kind], device)
    saved = roundtrip(opt.state_dict())
    for k, (a, b) in enumerate(zip(opt.state_dict()["state"].values(), saved["state"].values())):
        assert a.keys() == b.keys()
        for name in a:
            assert np.array_equal(np.asarray(a[name]), np.asarray(b[name])), (k, name)
    again_model = copy.deepcopy(model)
    again = OPTIMIZERS[kind](again_model.parameters())
    again.load_state_dict(saved)
    step(model, opt, x)
    step(again_model, again, x)
    for p, q in zip(model.parameters(), again_model.parameters()):
        assert_close(q, p, rtol=0, atol=0)
    model2, opt2 = roundtrip((model, opt))      # the whole optimizer pickles too
    step(model, opt, x)
    step(model2, opt2, x)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert_close(q, p, rtol=0, atol=0)
