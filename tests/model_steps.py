"""Training steps of the three reference models, scaled down, for comparing two backends.

``MODELS`` maps "mlp", "cnn", "lm" to a maker returning (model, x, y): tilegrad.models' own classes
with small odd sizes (no size a multiple of a tile or block). ``train(kind, make, device, steps)``
starts from the same float64 weights each time it is called (seeded) and takes ``steps`` steps of
the model's real recipe (SGD with momentum for the MLP and CNN, Adam for the LM, gradient clipping
as in training) on the same batch; it returns the losses, the last step's gradients and the
parameters after the last update, as NumPy arrays.
"""
import tilegrad as tg
import tilegrad.nn.functional as F
from tilegrad.testing import rng
from tilegrad import models


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


MODELS = {"mlp": _mlp, "cnn": _cnn, "lm": _lm}


def _loss(model, x, y, kind, device):
    if kind == "lm":
        logits, _ = model(tg.tensor(x, device=device))
        return F.cross_entropy(logits.reshape(-1, model.vocab_size),
                               tg.tensor(y.reshape(-1), device=device))
    return F.cross_entropy(model(tg.tensor(x, device=device)), tg.tensor(y, device=device))


def train(kind, device, steps=1, make=None):
    """(losses, last gradients, parameters after) of ``steps`` steps from the seeded weights."""
    tg.set_default_dtype(tg.float64)
    tg.manual_seed(7)
    model, x, y = (make or MODELS[kind])()
    model = model.to(device)
    params = list(model.parameters())
    opt = tg.optim.Adam(params, lr=1e-2) if kind == "lm" else \
        tg.optim.SGD(params, lr=0.1, momentum=0.9)
    losses, grads = [], {}
    for _ in range(steps):
        loss = _loss(model, x, y, kind, device)
        opt.zero_grad()
        loss.backward()
        tg.nn.utils.clip_grad_norm_(params, 0.5)
        grads = {n: p.grad.numpy() for n, p in model.named_parameters()}
        opt.step()
        losses.append(loss.item())
    return losses, grads, {n: p.numpy() for n, p in model.named_parameters()}
