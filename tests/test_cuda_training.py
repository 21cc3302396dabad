"""One training step of each reference model, scaled down, on device "cuda" against device "cpu".

The models are tilegrad.models' own classes with small odd sizes (so that no size is a multiple
of a tile). Each starts from the same float64 weights on both devices and takes one step of its
real recipe's optimizer (SGD with momentum for the MLP and CNN, Adam for the LM, with gradient
clipping as in training) on the same batch; the loss, every gradient and every updated parameter
must agree. Under NUMBA_ENABLE_CUDASIM=1 "cuda" runs in Numba's simulator; on a GPU, for real.
"""
import numpy as np
import pytest

import tilegrad as tg
import tilegrad.nn.functional as F
from helpers import assert_close, rng
from tilegrad import models

if not tg.device("cuda").available:
    pytest.skip(f"device cuda: {tg.device('cuda').reason}", allow_module_level=True)

RTOL = 1e-9


def _mlp():
    x = rng(1).standard_normal((5, 1, 3, 4))
    return models.MLP(in_features=12, hidden=7, num_classes=3), x, rng(2).integers(0, 3, 5)


def _cnn():
    # 9x9 -> 4x4 -> 2x2 -> 1x1 through three blocks of conv 3x3 padding 1, ReLU, max-pool 2.
    x = rng(3).standard_normal((3, 2, 9, 9))
    model = models.CNN(in_channels=2, image_size=9, num_classes=3, channels=(3, 5, 7), hidden=11)
    return model, x, rng(4).integers(0, 3, 3)


def _lm():
    tokens = rng(5).integers(0, 13, (4, 3))     # (T, B)
    targets = rng(6).integers(0, 13, (4, 3))
    return models.LSTMLanguageModel(13, embedding_dim=5, hidden_dim=7), tokens, targets


def _step(model, x, y, kind, device):
    model = model.to(device)
    params = list(model.parameters())
    if kind == "lm":
        opt = tg.optim.Adam(params, lr=1e-2)
        logits, _ = model(tg.tensor(x, device=device))
        loss = F.cross_entropy(logits.reshape(-1, model.vocab_size),
                               tg.tensor(y.reshape(-1), device=device))
    else:
        opt = tg.optim.SGD(params, lr=0.1, momentum=0.9)
        loss = F.cross_entropy(model(tg.tensor(x, device=device)), tg.tensor(y, device=device))
    opt.zero_grad()
    loss.backward()
    tg.nn.utils.clip_grad_norm_(params, 0.5)
    grads = {n: p.grad.numpy() for n, p in model.named_parameters()}
    opt.step()
    return loss.item(), grads, {n: p.numpy() for n, p in model.named_parameters()}


@pytest.mark.parametrize("kind,make", [("mlp", _mlp), ("cnn", _cnn), ("lm", _lm)])
def test_one_training_step_on_cuda_matches_cpu(kind, make):
    tg.set_default_dtype(tg.float64)
    tg.manual_seed(7)
    model, x, y = make()
    state = {k: v.copy() for k, v in model.state_dict().items()}
    cpu = _step(model, x, y, kind, "cpu")
    model.load_state_dict(state)
    cuda = _step(model, x, y, kind, "cuda")
    assert all(p.device.name == "cuda" for p in model.parameters())
    assert_close(cuda[0], cpu[0], rtol=RTOL, what=f"{kind} loss")
    for name in cpu[1]:
        assert np.abs(cpu[1][name]).max() > 0, f"{kind}: {name} got no gradient"
        assert_close(cuda[1][name], cpu[1][name], rtol=RTOL, atol=1e-12, what=f"{kind} grad {name}")
        assert_close(cuda[2][name], cpu[2][name], rtol=RTOL, atol=1e-12, what=f"{kind} {name}")
        assert not np.array_equal(cpu[2][name], state[name]), f"{kind}: {name} did not move"
