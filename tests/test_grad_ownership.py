"""A leaf keeps the gradient array its node made, without a copy, only when nothing else can see
that array: each leaf's .grad is its own, whatever path the gradients took."""
import numpy as np
import pytest

import tilegrad as tg


def _leaf(device, *shape):
    return tg.tensor(np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32),
                     device=device, requires_grad=True)


def _independent(a, b):
    """Changing a.grad in place leaves b.grad as it was."""
    before = b.grad.numpy().copy()
    with tg.no_grad():
        a.grad.mul_(3.0)
    np.testing.assert_array_equal(b.grad.numpy(), before)


def test_one_gradient_given_to_two_leaves_is_not_shared(device):
    a, b = _leaf(device, 3), _leaf(device, 3)
    (a + b).sum().backward()            # add's backward hands the same array to both
    _independent(a, b)
    _independent(b, a)


def test_a_view_of_the_incoming_gradient_is_copied(device):
    a, b = _leaf(device, 2, 3), _leaf(device, 6)
    y = a.reshape(6) * 1.0 + b          # a's gradient is a view of the gradient b receives
    y.sum().backward()
    _independent(a, b)
    _independent(b, a)


def test_a_leaf_root_does_not_keep_the_callers_gradient(device):
    a = _leaf(device, 4)
    g = tg.ones(4, device=device)
    a.backward(g)
    with tg.no_grad():
        g.mul_(5.0)
    np.testing.assert_array_equal(a.grad.numpy(), np.ones(4, np.float32))


def test_gradients_of_a_model_stay_right_when_clipped_in_place(device):
    tg.manual_seed(0)
    model = tg.nn.Sequential(tg.nn.Linear(4, 3), tg.nn.ReLU(), tg.nn.Linear(3, 2)).to(device)
    x = tg.randn(5, 4, device=device)
    model(x).sum().backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    total = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
    tg.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_allclose(p.grad.numpy(), g * min(1.0, 0.5 / (total + 1e-6)),
                                   rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("set_to_none", [False, True])
def test_zeroing_one_gradient_touches_no_other(device, set_to_none):
    a, b = _leaf(device, 3), _leaf(device, 3)
    (a * 2 + b * 2).sum().backward()
    opt = tg.optim.SGD([a], lr=0.1)
    opt.zero_grad(set_to_none=set_to_none)
    np.testing.assert_array_equal(b.grad.numpy(), np.full(3, 2, np.float32))
