"""tilegrad.models: shapes, the CNN's flatten size, and state-dict keys equal to PyTorch models
written with the same attribute names; nn.utils.clip_grad_norm_ against torch."""
import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.testing import assert_close, rng
from tilegrad import models


@pytest.mark.parametrize("channels,size,flat", [(1, 28, 256 * 3 * 3), (3, 32, 256 * 4 * 4),
                                                (1, 9, 256)])
def test_cnn_flatten_size_follows_the_input(channels, size, flat):
    m = models.CNN(in_channels=channels, image_size=size)
    assert m.classifier[1].in_features == flat
    x = tg.randn(2, channels, size, size)
    assert m(x).shape == (2, 10)


def test_cnn_refuses_an_image_too_small_for_three_poolings():
    with pytest.raises(ValueError, match="CNN: an image of size 7"):
        models.CNN(image_size=7)


def test_mlp_and_lm_shapes():
    assert models.MLP()(tg.randn(3, 1, 28, 28)).shape == (3, 10)
    lm = models.LSTMLanguageModel(vocab_size=37)
    logits, (h, c) = lm(tg.tensor(rng(0).integers(0, 37, (5, 3))))
    assert logits.shape == (5, 3, 37) and h.shape == c.shape == (1, 3, 256)
    assert lm.embedding.weight.shape == (37, 128) and lm.decoder.weight.shape == (37, 256)


def _torch_models():
    nn = torch.nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(),
                                     nn.Linear(128, 10))

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c = [], 1
            for k in (64, 128, 256):
                layers += [nn.Conv2d(c, k, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
                c = k
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(256 * 9, 1000), nn.ReLU(),
                                            nn.Linear(1000, 10))

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding, self.lstm = nn.Embedding(50, 128), nn.LSTM(128, 256)
            self.decoder = nn.Linear(256, 50)

    return {"mlp": MLP(), "cnn": CNN(), "lm": LM()}


def test_state_dict_keys_and_shapes_match_pytorch_models_with_the_same_names():
    if torch is None:
        pytest.skip("PyTorch is not installed")
    ours = {"mlp": models.MLP(), "cnn": models.CNN(), "lm": models.LSTMLanguageModel(50)}
    for name, th in _torch_models().items():
        assert [(k, tuple(v.shape)) for k, v in th.state_dict().items()] == \
               [(k, v.shape) for k, v in ours[name].state_dict().items()], name
        ours[name].load_state_dict({k: v.numpy() for k, v in th.state_dict().items()})


@pytest.mark.parametrize("max_norm", [0.25, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    if torch is None:
        pytest.skip("PyTorch is not installed")
    arrays = [rng(k).standard_normal(s) for k, s in enumerate([(3, 5), (7,), (2, 3, 1)])]
    grads = [rng(10 + k).standard_normal(a.shape) for k, a in enumerate(arrays)]
    ours = [tg.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    for p, q, g in zip(ours, theirs, grads):
        p.grad, q.grad = tg.tensor(g), torch.tensor(g)
    total = tg.nn.utils.clip_grad_norm_(ours, max_norm)
    ref = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert_close(total, ref.item(), rtol=1e-12)
    for p, q in zip(ours, theirs):
        assert_close(p.grad.numpy(), q.grad.numpy(), rtol=1e-12)
    assert np.isclose(np.sqrt(sum((p.grad.numpy() ** 2).sum() for p in ours)),
                      min(max_norm, ref.item()), rtol=1e-5)
