"""Whole-model parity: the three reference models, trained a few steps in tilegrad and in
PyTorch from one state dict, in float64, must agree step by step.

Each model is built in torch first; its state dict, as NumPy arrays, is loaded into the tilegrad
model (so the two start from the same weights and the dotted names must match). Then three
SGD-with-momentum steps and, separately from a fresh copy, three Adam steps run on the same random
batches in both: every step's loss, the first step's gradients, and every parameter at the end
must agree to ``rtol=1e-8``.
"""
import numpy as np
import pytest

import tilegrad as tg
import tilegrad.nn.functional as F
from helpers import torch
from tilegrad.testing import assert_close, rng

RTOL = 1e-8
STEPS = 3
VOCAB, T, B = 97, 7, 3      # LSTM LM: odd vocabulary, sequence length and batch


def _need_torch():
    if torch is None:
        pytest.skip("PyTorch is not installed")


def _close(actual, ref, what):
    # Relative 1e-8; the atol of 1e-12*max|ref| only covers entries that are (near) zero, where a
    # relative bound means nothing (e.g. a sum of cancelling terms, or a gradient of ~1e-17).
    ref = np.asarray(ref, dtype=np.float64)
    atol = 1e-12 * float(np.abs(ref).max()) if ref.size else 0.0
    assert_close(actual, ref, rtol=RTOL, atol=atol, what=what)


# ---------------------------------------------------------------- the models, in both frameworks
def mlp(nn):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn(nn):
    # 1x28x28 -> 64x14x14 -> 128x7x7 -> 256x3x3
    layers = []
    for c_in, c_out in [(1, 64), (64, 128), (128, 256)]:
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(256 * 3 * 3, 1000), nn.ReLU(),
                         nn.Linear(1000, 10))


class TgLM(tg.nn.Module):
    """Embedding(V, 128), LSTM(128, 256), Linear(256, V): token ids (T, B) -> logits (T*B, V)."""

    def __init__(self, vocab):
        super().__init__()
        self.embedding = tg.nn.Embedding(vocab, 128)
        self.lstm = tg.nn.LSTM(128, 256)
        self.decoder = tg.nn.Linear(256, vocab)

    def forward(self, tokens):
        out, _ = self.lstm(self.embedding(tokens))
        return self.decoder(out).reshape(-1, self.decoder.out_features)


if torch is not None:
    class TorchLM(torch.nn.Module):
        """The same model in PyTorch, with the same attribute (so state dict) names."""

        def __init__(self, vocab):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab, 128)
            self.lstm = torch.nn.LSTM(128, 256)
            self.decoder = torch.nn.Linear(256, vocab)

        def forward(self, tokens):
            out, _ = self.lstm(self.embedding(tokens))
            return self.decoder(out).reshape(-1, self.decoder.out_features)


def _images(r, batch):
    return r.standard_normal((batch, 1, 28, 28)), r.integers(0, 10, batch)


def _tokens(r):
    seq = r.integers(0, VOCAB, (T + 1, B))
    return seq[:-1], seq[1:].reshape(-1)        # predict the next token


MODELS = {
    # name: (tilegrad builder, torch builder, batch maker)
    "mlp": (lambda: mlp(tg.nn), lambda: mlp(torch.nn), lambda r: _images(r, 5)),
    "cnn": (lambda: cnn(tg.nn), lambda: cnn(torch.nn), lambda r: _images(r, 3)),
    "lstm_lm": (lambda: TgLM(VOCAB), lambda: TorchLM(VOCAB), _tokens),
}

OPTIMIZERS = {
    "sgd_momentum": (lambda ps: tg.optim.SGD(ps, lr=0.01, momentum=0.9),
                     lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9)),
    "adam": (lambda ps: tg.optim.Adam(ps, lr=1e-3), lambda ps: torch.optim.Adam(ps, lr=1e-3)),
}


def _pair(name, seed=0):
    """A float64 torch model and a tilegrad model loaded from its state dict."""
    make_tg, make_th, _ = MODELS[name]
    torch.manual_seed(seed)
    th_model = make_th().double()
    tg.set_default_dtype(tg.float64)          # the conftest fixture sets it back
    tg_model = make_tg()
    assert list(tg_model.state_dict()) == list(th_model.state_dict())
    tg_model.load_state_dict({k: v.detach().numpy() for k, v in th_model.state_dict().items()})
    for p in tg_model.parameters():
        assert p.dtype == tg.float64
    return tg_model, th_model


def _compare_params(tg_model, th_model, what):
    ref = dict(th_model.named_parameters())
    for k, p in tg_model.named_parameters():
        _close(p.numpy(), ref[k].detach().numpy(), f"{what}: {k}")


# ---------------------------------------------------------------- training parity
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("model", list(MODELS))
def test_training_steps_match_torch(model, opt):
    _need_torch()
    tg_model, th_model = _pair(model)
    make_tg_opt, make_th_opt = OPTIMIZERS[opt]
    tg_opt, th_opt = make_tg_opt(tg_model.parameters()), make_th_opt(th_model.parameters())
    make_batch = MODELS[model][2]
    r = rng(1)
    losses = []
    for step in range(STEPS):
        x, y = make_batch(r)
        tg_opt.zero_grad()
        th_opt.zero_grad()
        tg_loss = F.cross_entropy(tg_model(tg.tensor(x)), tg.tensor(y))
        th_loss = torch.nn.functional.cross_entropy(th_model(torch.tensor(x)), torch.tensor(y))
        tg_loss.backward()
        th_loss.backward()
        _close(tg_loss.item(), th_loss.item(), f"{model}/{opt}: loss at step {step}")
        if step == 0:   # pinpoints a wrong backward before the optimizer blurs it
            ref = dict(th_model.named_parameters())
            for k, p in tg_model.named_parameters():
                assert p.grad is not None, f"{k}: no gradient"
                _close(p.grad.numpy(), ref[k].grad.numpy(), f"{model}/{opt}: gradient of {k}")
        tg_opt.step()
        th_opt.step()
        losses.append(th_loss.item())
    _compare_params(tg_model, th_model, f"{model}/{opt} after {STEPS} steps")
    assert len(set(losses)) == STEPS   # the steps did change the model


# ---------------------------------------------------------------- weights move both ways
@pytest.mark.parametrize("model", list(MODELS))
def test_state_dict_round_trip_with_torch(model):
    _need_torch()
    make_tg, make_th, make_batch = MODELS[model]
    tg.set_default_dtype(tg.float64)
    tg.manual_seed(3)
    tg_model = make_tg()                      # tilegrad's own initialisation
    torch.manual_seed(4)
    th_model = make_th().double()
    sd = tg_model.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in sd.values())
    th_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x, _ = make_batch(rng(5))
    with tg.no_grad():
        out = tg_model(tg.tensor(x)).numpy()
    with torch.no_grad():
        ref = th_model(torch.tensor(x)).numpy()
    _close(out, ref, f"{model}: outputs after tilegrad -> torch")

    # ... and back: torch's state dict (its tensors, as they are) into a fresh tilegrad model.
    torch.manual_seed(6)
    th_model2 = make_th().double()
    tg_model.load_state_dict(th_model2.state_dict())
    for k, v in th_model2.state_dict().items():
        np.testing.assert_array_equal(tg_model.state_dict()[k], v.numpy(), err_msg=k)
    with tg.no_grad():
        out = tg_model(tg.tensor(x)).numpy()
    with torch.no_grad():
        ref = th_model2(torch.tensor(x)).numpy()
    _close(out, ref, f"{model}: outputs after torch -> tilegrad")


def test_state_dict_keys_match_torch_names():
    _need_torch()
    for name in MODELS:
        tg_model, th_model = _pair(name)
        tg_sd, th_sd = tg_model.state_dict(), th_model.state_dict()
        assert list(tg_sd) == list(th_sd), name
        for k in th_sd:
            assert tg_sd[k].shape == tuple(th_sd[k].shape), k
    lm_keys = list(TgLM(VOCAB).state_dict())
    assert lm_keys == ["embedding.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0",
                       "lstm.bias_ih_l0", "lstm.bias_hh_l0", "decoder.weight", "decoder.bias"]
