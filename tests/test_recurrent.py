"""nn.RNN, nn.GRU, nn.RNNCell and nn.GRUCell against PyTorch (float64): torch's state dict loaded
into tilegrad's module (same keys, order and shapes), then outputs and the gradients of every
parameter, of the input and of the initial state compared to rtol 1e-8. On "cuda" (the
simulator) one small case per layer type; initialisation bounds and argument errors."""
import math

import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.testing import assert_close, rng


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [out]


def check(device, m, th, shapes, call=lambda mod, *xs: mod(*xs), seed=0):
    """Load ``th``'s state dict into ``m`` and compare outputs and all gradients."""
    if torch is None:
        pytest.skip("PyTorch is not installed")
    sd = th.state_dict()
    assert [(k, v.shape) for k, v in m.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in sd.items()]
    m.load_state_dict(sd)
    r = rng(seed)
    arrays = [r.standard_normal(s) for s in shapes]
    tg_in = [tg.tensor(a, device=device, requires_grad=True) for a in arrays]
    th_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    tg_out, th_out = _flat(call(m, *tg_in)), _flat(call(th, *th_in))
    assert len(tg_out) == len(th_out)
    weights = [r.standard_normal(tuple(o.shape)) for o in th_out]
    for k, (a, b) in enumerate(zip(tg_out, th_out)):
        assert_close(a, b, what=f"output {k}")
    sum((o * tg.tensor(w, device=device)).sum() for o, w in zip(tg_out, weights)).backward()
    sum((o * torch.tensor(w)).sum() for o, w in zip(th_out, weights)).backward()
    params = dict(m.named_parameters())
    for name, p in th.named_parameters():
        assert_close(params[name].grad, p.grad, what=f"gradient of {name}")
    for k, (a, b) in enumerate(zip(tg_in, th_in)):
        assert_close(a.grad, b.grad, what=f"gradient of input {k}")


LAYERS = [   # (name, args, kwargs, input shape, initial state shape or None)
    pytest.param("RNN", (3, 5), {}, (7, 2, 3), None, id="rnn-tanh"),
    pytest.param("RNN", (3, 5), {"nonlinearity": "relu", "num_layers": 2}, (4, 3, 3), (2, 3, 5),
                 id="rnn-relu-2layers-hx"),
    pytest.param("RNN", (3, 5, 2), {"bias": False, "batch_first": True}, (3, 4, 3), None,
                 id="rnn-nobias-batch-first"),
    pytest.param("RNN", (3, 5), {"bidirectional": True, "num_layers": 2}, (5, 2, 3), (4, 2, 5),
                 id="rnn-bidirectional-2layers"),
    pytest.param("GRU", (3, 5), {}, (7, 2, 3), None, id="gru"),
    pytest.param("GRU", (3, 5, 2), {}, (4, 3, 3), (2, 3, 5), id="gru-2layers-hx"),
    pytest.param("GRU", (3, 5), {"batch_first": True, "bias": False}, (3, 4, 3), (1, 3, 5),
                 id="gru-nobias-batch-first-hx"),
    pytest.param("GRU", (3, 5), {"bidirectional": True, "num_layers": 2, "batch_first": True},
                 (2, 5, 3), (4, 2, 5), id="gru-bidirectional-2layers"),
    pytest.param("GRU", (3, 5), {"bidirectional": True}, (4, 3), (2, 5), id="gru-unbatched"),
    pytest.param("RNN", (3, 5), {"dropout": 0.5, "num_layers": 2}, (3, 2, 3), None,
                 id="rnn-dropout-eval"),
]


@pytest.mark.parametrize("name, args, kwargs, x_shape, h_shape", LAYERS)
def test_layer_matches_torch(name, args, kwargs, x_shape, h_shape):
    m = getattr(tg.nn, name)(*args, dtype=tg.float64, **kwargs).eval()
    th = getattr(torch.nn, name)(*args, **kwargs).double().eval() if torch else None
    shapes = [x_shape] + ([h_shape] if h_shape else [])
    check("cpu", m, th, shapes, seed=len(x_shape))


@pytest.mark.parametrize("name, kwargs", [("RNN", {}), ("GRU", {"bidirectional": True})])
def test_layer_on_device_matches_torch(device, name, kwargs):
    """Every device, one tiny case each (the CUDA simulator runs a launch per op and step)."""
    m = getattr(tg.nn, name)(3, 2, device=device, dtype=tg.float64, **kwargs)
    th = getattr(torch.nn, name)(3, 2, **kwargs).double() if torch else None
    d = 2 if kwargs else 1
    check(device, m, th, [(3, 1, 3), (d, 1, 2)])


CELLS = [
    pytest.param("RNNCell", {}, [(3, 4)], id="rnncell-no-hx"),
    pytest.param("RNNCell", {"nonlinearity": "relu"}, [(3, 4), (3, 5)], id="rnncell-relu"),
    pytest.param("GRUCell", {}, [(3, 4), (3, 5)], id="grucell"),
    pytest.param("GRUCell", {"bias": False}, [(1, 4)], id="grucell-nobias-no-hx"),
    pytest.param("GRUCell", {}, [(4,), (5,)], id="grucell-unbatched"),
]


@pytest.mark.parametrize("name, kwargs, shapes", CELLS)
def test_cell_matches_torch(name, kwargs, shapes):
    m = getattr(tg.nn, name)(4, 5, dtype=tg.float64, **kwargs)
    th = getattr(torch.nn, name)(4, 5, **kwargs).double() if torch else None
    check("cpu", m, th, shapes)


def test_gru_cell_on_device_matches_torch(device):
    m = tg.nn.GRUCell(4, 5, device=device, dtype=tg.float64)
    th = torch.nn.GRUCell(4, 5).double() if torch else None
    check(device, m, th, [(3, 4), (3, 5)])


def test_gru_trains_like_torch_for_three_steps():
    """Three SGD steps of an embedding, a GRU and a decoder with NLLLoss, as the word-level
    language model: the parameters stay equal to PyTorch's."""
    if torch is None:
        pytest.skip("PyTorch is not installed")
    tn, nn = torch.nn, tg.nn
    th = [tn.Embedding(11, 4).double(), tn.GRU(4, 5, 2).double(), tn.Linear(5, 11).double()]
    ours = [nn.Embedding(11, 4, dtype=tg.float64), nn.GRU(4, 5, 2, dtype=tg.float64),
            nn.Linear(5, 11, dtype=tg.float64)]
    for a, b in zip(ours, th):
        a.load_state_dict(b.state_dict())
    r = rng(3)
    for _ in range(3):
        idx, tgt = r.integers(0, 11, (6, 2)), r.integers(0, 11, 12)
        losses = []
        for mods, lib, F in ((ours, tg, tg.nn.functional), (th, torch, tn.functional)):
            out, _ = mods[1](mods[0](lib.tensor(idx)))
            logp = F.log_softmax(mods[2](out).reshape(-1, 11), dim=1)
            loss = F.nll_loss(logp, lib.tensor(tgt))
            loss.backward()
            losses.append(loss.item())
        assert_close(losses[0], losses[1], what="loss")
        with tg.no_grad(), torch.no_grad():
            for a, b in zip(ours, th):
                for pa, pb in zip(a.parameters(), b.parameters()):
                    pa.sub_(pa.grad * 0.5)
                    pb.sub_(pb.grad * 0.5)
                    pa.grad, pb.grad = None, None
    for a, b in zip(ours, th):
        for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
            assert_close(pa, pb, what=name)


@pytest.mark.parametrize("make, hidden", [(lambda: tg.nn.GRU(31, 9, 2, bidirectional=True), 9),
                                          (lambda: tg.nn.RNNCell(3, 11), 11),
                                          (lambda: tg.nn.GRUCell(3, 11), 11)])
def test_init_within_one_over_sqrt_hidden(make, hidden):
    bound = 1 / math.sqrt(hidden)
    for name, p in make().state_dict().items():
        assert np.abs(p).max() <= bound, name
        assert np.abs(p).max() > 0.7 * bound, name


def test_names_shapes_and_dropout_in_training():
    m = tg.nn.GRU(3, 4, num_layers=2, bidirectional=True, bias=False)
    assert list(m.state_dict()) == ["weight_ih_l0", "weight_hh_l0", "weight_ih_l0_reverse",
                                    "weight_hh_l0_reverse", "weight_ih_l1", "weight_hh_l1",
                                    "weight_ih_l1_reverse", "weight_hh_l1_reverse"]
    assert m.weight_ih_l1.shape == (12, 8) and m.weight_hh_l0.shape == (12, 4)
    r = tg.nn.RNN(3, 4, 2, dropout=0.5)
    x = tg.randn(5, 2, 3)
    a, b = r(x)[0].numpy(), r(x)[0].numpy()
    assert not np.allclose(a, b), "dropout between layers drew no mask in training"
    r.eval()
    assert_close(r(x)[0], r(x)[0], rtol=0, atol=0)
    assert "nonlinearity='relu'" in repr(tg.nn.RNN(3, 4, nonlinearity="relu"))


@pytest.mark.parametrize("call, error", [
    (lambda: tg.nn.RNN(3, 4, nonlinearity="sigmoid"), ValueError),
    (lambda: tg.nn.GRU(3, 0), ValueError),
    (lambda: tg.nn.GRU(3, 4, dropout=1.5), ValueError),
    (lambda: tg.nn.GRU(3, 4)(tg.randn(2, 3, 4)), ValueError),               # input size
    (lambda: tg.nn.GRU(3, 4)(tg.randn(2, 3, 3, 1)), ValueError),            # 4-D
    (lambda: tg.nn.GRU(3, 4)(tg.randn(2, 3, 3), tg.randn(2, 3, 4)), RuntimeError),  # hx layers
    (lambda: tg.nn.RNN(3, 4)(tg.randn(0, 2, 3)), ValueError),               # no steps
    (lambda: tg.nn.GRUCell(3, 4)(tg.randn(2, 3), tg.randn(3, 4)), ValueError),
    (lambda: tg.nn.RNNCell(3, 4)(tg.randn(2, 2, 3)), ValueError),
])
def test_bad_arguments_raise(call, error):
    with pytest.raises(error):
        call()


def test_dropout_with_one_layer_warns_as_torch():
    with pytest.warns(UserWarning, match="dropout"):
        tg.nn.GRU(3, 4, dropout=0.2)
