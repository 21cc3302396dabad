"""PyTorch's autograd rules: in-place operations and version counters, freeing the graph after
backward, grad modes, and Module attribute assignment. Each test marked "main:" failed before
these rules existed (the case it names, in words)."""
import numpy as np
import pytest

import tilegrad as tg
import tilegrad.nn as nn
from helpers import torch
from tilegrad.testing import assert_close


def _linear_loss(m, x):
    return (m(x) ** 2).sum()


# ---------------------------------------------------------------- in-place updates of parameters

def test_sgd_loop_with_in_place_subtraction_updates_the_weights(device):
    """main: ``p -= lr * p.grad`` under no_grad rebound the name and left every weight as it was."""
    m = nn.Linear(4, 3).to(device)
    before = [p.numpy() for p in m.parameters()]
    _linear_loss(m, tg.randn(5, 4, device=device)).backward()
    grads = [p.grad.numpy() for p in m.parameters()]
    with tg.no_grad():
        for p in m.parameters():
            p -= 0.1 * p.grad
    for p, b, g in zip(m.parameters(), before, grads):
        assert_close(p.numpy(), b - 0.1 * g, rtol=1e-6, atol=1e-7)
    assert [k for k, _ in m.named_parameters()] == ["weight", "bias"]


def test_in_place_on_a_parameter_keeps_it_registered():
    """main: ``m.weight += 1`` under no_grad unregistered the parameter (state_dict lost it)."""
    m = nn.Linear(3, 2)
    w = m.weight
    with tg.no_grad():
        m.weight += 1
    assert m.weight is w and isinstance(m.weight, nn.Parameter)
    assert list(m.state_dict()) == ["weight", "bias"]
    assert [p is w for p in m.parameters()] == [True, False]


def test_assigning_a_plain_tensor_to_a_parameter_is_a_type_error():
    """main: ``m.weight = tensor`` silently replaced the parameter with a plain tensor."""
    m = nn.Linear(3, 2)
    w = m.weight
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'weight'"):
        m.weight = tg.randn(2, 3)
    assert m.weight is w and list(m.state_dict()) == ["weight", "bias"]
    m.bias = None                        # None is allowed, and keeps the slot (as torch)
    assert m.bias is None and list(m.state_dict()) == ["weight"]
    m.bias = nn.Parameter(tg.zeros(2))   # a Parameter fills it again
    assert list(m.state_dict()) == ["weight", "bias"]
    seq = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="child module '0'"):
        seq.__setattr__("0", tg.zeros(2))


def test_in_place_on_a_leaf_that_requires_grad_is_refused_while_recording():
    w = tg.randn(3, requires_grad=True)
    before = w.numpy()
    for op in (lambda: w.add_(1), lambda: w.mul_(2), lambda: w.zero_(),
               lambda: w.copy_(tg.zeros(3))):
        with pytest.raises(RuntimeError, match="leaf tensor .* requires grad"):
            op()
    assert np.array_equal(w.numpy(), before) and w._version == 0
    with tg.no_grad():
        w.add_(1)
    assert_close(w.numpy(), before + 1) and w._version == 1


# ---------------------------------------------------------------- saved tensors changed in place

def _forward_then(device, change):
    m = nn.Linear(4, 3).to(device)
    loss = _linear_loss(m, tg.randn(5, 4, device=device))
    change(m)
    return m, loss


@pytest.mark.parametrize("change", ["sgd", "adam", "load_state_dict", "no_grad add_"])
def test_changing_a_saved_parameter_before_backward_raises(device, change):
    """main: an optimizer step or load_state_dict between forward and backward gave silently
    wrong gradients (off by up to 2.7 in a small Linear)."""
    def step(m):
        if change == "load_state_dict":
            m.load_state_dict({k: v + 1 for k, v in m.state_dict().items()})
        elif change == "no_grad add_":
            with tg.no_grad():
                m.weight.add_(1)
        else:
            for p in m.parameters():
                p.grad = tg.ones_like(p)
            opt = tg.optim.SGD(m.parameters(), lr=0.1) if change == "sgd" else \
                tg.optim.Adam(m.parameters())
            opt.step()
            opt.zero_grad()
    m, loss = _forward_then(device, step)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        loss.backward()
    assert all(p.grad is None for p in m.parameters()), "a refused backward changed a gradient"


def test_init_functions_are_in_place_writes():
    m = nn.Linear(3, 2)
    loss = _linear_loss(m, tg.randn(4, 3))
    before = m.weight._version
    nn.init.normal_(m.weight)
    assert m.weight._version == before + 1
    with pytest.raises(RuntimeError, match=r"\(nn.init\)"):
        loss.backward()


def test_version_counter_is_shared_by_views_and_detach():
    x = tg.randn(2, 3) * 1
    v, d = x.reshape(6), x.detach()
    d.add_(1)
    assert x._version == v._version == d._version == 1
    v.mul_(2)
    assert x._version == 2
    assert_close(x.numpy().reshape(6), v.numpy())


def test_a_change_nothing_saved_is_not_an_error():
    """As PyTorch: add saves neither operand, so changing one afterwards is fine."""
    x = tg.randn(3, requires_grad=True)
    y = x * 1
    z = (y + 2).sum()
    y.add_(5)
    z.backward()
    assert_close(x.grad.numpy(), np.ones(3))


def test_saved_output_changed_in_place_raises():
    x = tg.randn(3, requires_grad=True)
    y = x.exp()
    y.add_(1)
    with pytest.raises(RuntimeError, match=r"exp saved .* \(add_\)"):
        y.sum().backward()


# ---------------------------------------------------------------- retain_graph

def test_second_backward_raises_unless_the_graph_was_retained(device):
    """main: backward() twice on one graph accumulated twice; PyTorch raises."""
    x = tg.randn(3, device=device, requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    first = x.grad.numpy()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        loss.backward()
    assert np.array_equal(x.grad.numpy(), first)
    x.grad = None
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    assert_close(x.grad.numpy(), 4 * x.numpy())


def test_backward_frees_what_the_graph_saved():
    x = tg.randn(3, requires_grad=True)
    y = x.tanh()
    node = y._ctx
    assert len(node.saved) == 1
    y.sum().backward()
    assert node.saved == () and node.freed


def test_a_graph_without_saved_tensors_can_run_backward_twice():
    """As PyTorch: nothing was freed, so nothing is missing."""
    x = tg.randn(3, requires_grad=True)
    y = (x + x).sum()
    y.backward()
    y.backward()
    assert_close(x.grad.numpy(), np.full(3, 4.0))


# ---------------------------------------------------------------- grad modes

def test_set_grad_enabled_as_context_manager_and_function():
    """main: ``with tg.set_grad_enabled(False):`` raised TypeError and left gradients off."""
    x = tg.randn(2, requires_grad=True)
    with tg.set_grad_enabled(False):
        assert not tg.is_grad_enabled()
        assert not (x * 2).requires_grad
    assert tg.is_grad_enabled() and (x * 2).requires_grad
    tg.set_grad_enabled(False)
    try:
        assert not tg.is_grad_enabled()
        with tg.enable_grad():
            assert (x * 2).requires_grad
        assert not tg.is_grad_enabled()
    finally:
        tg.set_grad_enabled(True)
    with pytest.raises(TypeError, match="set_grad_enabled: mode must be a bool"):
        tg.set_grad_enabled("no")
    assert tg.is_grad_enabled()


def test_grad_modes_as_decorators_and_nested():
    @tg.no_grad()
    def f(x):
        return x * 2

    @tg.set_grad_enabled(False)
    def g(x):
        return x * 2

    x = tg.randn(2, requires_grad=True)
    assert tg.is_grad_enabled()   # the decorator form changes nothing until called
    assert not f(x).requires_grad and not g(x).requires_grad and tg.is_grad_enabled()
    with tg.no_grad():
        with tg.enable_grad():
            assert (x * 2).requires_grad
        with tg.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()


# ---------------------------------------------------------------- in-place semantics

def test_in_place_ops_give_a_tensor_a_history(device):
    x = tg.randn(3, device=device, dtype=tg.float64, requires_grad=True)
    w = tg.randn(3, device=device, dtype=tg.float64, requires_grad=True)
    y = x * 2
    y.mul_(w).add_(x, alpha=3).clamp_(-1, 1)
    y.sum().backward()
    xs, ws = x.numpy(), w.numpy()
    inner = 2 * xs * ws + 3 * xs
    passes = (inner >= -1) & (inner <= 1)
    assert_close(y.numpy(), np.clip(inner, -1, 1))
    assert_close(x.grad.numpy(), np.where(passes, 2 * ws + 3, 0))
    assert_close(w.grad.numpy(), np.where(passes, 2 * xs, 0))


def test_in_place_changes_refused_where_pytorch_has_a_view_and_tilegrad_a_copy():
    x = tg.randn(2, 3)
    for view in (lambda: x.t(), lambda: x.transpose(0, 1), lambda: x.T, lambda: x[0],
                 lambda: x.expand(4, 2, 3), lambda: x.unbind(0)[1], lambda: x.permute(1, 0)):
        with pytest.raises(RuntimeError, match="returns a view in PyTorch"):
            view().add_(1)
    x[0].clone().add_(1)           # an explicit copy may change
    x[tg.tensor([0, 1])].add_(1)   # advanced indexing copies in PyTorch too


def test_in_place_history_on_a_view_is_refused():
    y = tg.randn(2, 3, requires_grad=True) * 1
    with pytest.raises(RuntimeError, match="view of a tensor of shape"):
        y.reshape(6).add_(1)
    with tg.no_grad():
        y.reshape(6).add_(1)   # no history: a plain write through the view


def test_in_place_shape_and_dtype_errors_change_nothing():
    x = tg.randn(3)
    before = x.numpy()
    with pytest.raises(RuntimeError, match="cannot broadcast"):
        x.add_(tg.randn(2, 3))
    i = tg.tensor([1, 2, 3])
    with pytest.raises(RuntimeError, match="cannot be stored in place in a int64"):
        i.add_(0.5)
    with pytest.raises(RuntimeError, match="cannot be stored"):
        i /= 2
    assert np.array_equal(x.numpy(), before) and x._version == 0
    assert i.tolist() == [1, 2, 3] and i._version == 0
    i += 2
    assert i.tolist() == [3, 4, 5] and i.dtype == tg.int64


def test_fill_zero_copy(device):
    x = tg.randn(2, 3, device=device, dtype=tg.float64, requires_grad=True)
    y = x * 3
    z = y * 1
    z.fill_(2.5)
    assert np.array_equal(z.numpy(), np.full((2, 3), 2.5))
    s = tg.randn(3, device=device, dtype=tg.float64, requires_grad=True)
    y.copy_(s)                      # broadcast (3,) into (2, 3); the gradient goes to s
    (y * tg.tensor(np.arange(6.0).reshape(2, 3), device=device)).sum().backward()
    assert_close(s.grad.numpy(), np.arange(6.0).reshape(2, 3).sum(0))
    assert_close(x.grad.numpy(), np.zeros((2, 3)))
    k = tg.zeros(2, 3, dtype=tg.int64)
    k.copy_(tg.tensor([[1.7, -2.2, 3.0]]))
    assert k.tolist() == [[1, -2, 3]] * 2
    k.zero_()
    assert k.tolist() == [[0, 0, 0]] * 2


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_in_place_errors_match_pytorch_classes():
    pairs = [
        (lambda m: m.ones(3).add_(m.ones(2, 3)), RuntimeError),
        (lambda m: m.tensor([1, 2]).add_(0.5), RuntimeError),
        (lambda m: m.ones(3).clamp_(), RuntimeError),
        (lambda m: m.ones(3, requires_grad=True).mul_(2), RuntimeError),
    ]
    for make, cls in pairs:
        for lib in (tg, torch):
            with pytest.raises(cls):
                make(lib)
