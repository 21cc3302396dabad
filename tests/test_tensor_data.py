"""``Tensor.data``: PyTorch's view of a tensor's values outside the graph, sharing its storage."""
import numpy as np
import pytest

import tilegrad as tg
from tilegrad.testing import assert_close


def test_data_shares_storage_and_is_not_recorded(device):
    w = tg.nn.Parameter(tg.randn(3, 7, dtype=tg.float64, device=device))
    before = w.numpy()
    g = tg.randn(3, 7, dtype=tg.float64, device=device)
    d = w.data
    assert not d.requires_grad and d.is_leaf and d.shape == w.shape
    d.add_(g, alpha=-0.1)   # the word-language-model example's SGD step
    assert_close(w, before - 0.1 * g.numpy())
    assert w.is_leaf and w.requires_grad


def test_data_assignment_swaps_storage(device):
    t = tg.randn(2, 3, dtype=tg.float64, device=device, requires_grad=True)
    other = tg.randn(5, dtype=tg.float64, device=device)
    t.data = other
    assert t.shape == (5,) and t.requires_grad
    assert_close(t, other)
    (t * t).sum().backward()
    assert_close(t.grad, 2 * other.numpy())
    with pytest.raises(TypeError, match="Tensor.data"):
        t.data = np.zeros(5)
