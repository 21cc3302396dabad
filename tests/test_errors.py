"""Bad input gets a clear ValueError/TypeError naming the op and the shapes or dtypes involved,
and changes nothing: no parameter, gradient, optimizer state or model state is touched.

Every test runs once per available device, with that device as the default one, and ``refused``
checks that the error came before any computing primitive of the device's backend ran (on
"cuda": before any kernel launch). Making, copying and reading memory do not count.
"""
import contextlib
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tilegrad as tg
from tilegrad import nn
from tilegrad.errors import ArgumentError
from tilegrad.nn import functional as F


MEMORY = {"empty", "zeros", "full", "from_numpy", "to_numpy", "copy", "synchronize",
          "forbid_in_capture"}   # moves and guards, no computing


@pytest.fixture(autouse=True, params=[d.name for d in tg.devices() if d.available])
def default_device(request):
    tg.set_default_device(request.param)
    yield request.param
    tg.set_default_device("cpu")


@contextlib.contextmanager
def refused(exc, match=None):
    """``pytest.raises``, and no computing primitive of the default device's backend ran inside."""
    dev = tg.get_default_device()
    be = dev.backend if dev.available else None
    names = [] if be is None else [
        n for n, f in vars(be).items()
        if callable(f) and not n.startswith("_") and not isinstance(f, type) and n not in MEMORY
        and getattr(f, "__module__", "").startswith("tilegrad.backends")]
    ran, saved = [], {n: getattr(be, n) for n in names}

    def spy(name, f):
        def call(*args, **kwargs):
            ran.append(name)
            return f(*args, **kwargs)
        return call

    for n in names:
        setattr(be, n, spy(n, saved[n]))
    try:
        with pytest.raises(exc, match=match) as info:
            yield info
    finally:
        for n, f in saved.items():
            setattr(be, n, f)
    assert not ran, f"{dev.name}: {ran} ran before the error"


def msg(*parts):
    """A regex matching ``parts`` in order, each literally (shapes like "(3, 4)" included)."""
    return ".*".join(re.escape(str(p)) for p in parts)


def snapshot(*tensors):
    """Values and gradients of ``tensors`` as NumPy copies."""
    return [(t.numpy(), None if t.grad is None else t.grad.numpy()) for t in tensors]


def assert_unchanged(before, tensors):
    for k, ((values, grad), t) in enumerate(zip(before, tensors)):
        assert t.numpy().dtype == values.dtype and np.array_equal(t.numpy(), values), \
            f"tensor {k} changed"
        if grad is None:
            assert t.grad is None, f"tensor {k} got a gradient"
        else:
            assert np.array_equal(t.grad.numpy(), grad), f"gradient of tensor {k} changed"


def with_grads(module, *inputs):
    """Run one forward and backward so that every parameter holds a (non-zero) gradient."""
    out = module(*inputs)
    (out * tg.randn(*out.shape)).sum().backward()
    return list(module.parameters())


# ---------------------------------------------------------------- matmul

@pytest.mark.parametrize("op", [lambda a, b: a @ b, tg.matmul], ids=["@", "matmul"])
def test_matmul_inner_dimension_mismatch(op):
    a, b = tg.randn(3, 4, requires_grad=True), tg.randn(5, 2, requires_grad=True)
    before = snapshot(a, b)
    with refused(ValueError, match=msg("matmul", (3, 4), (5, 2))):
        op(a, b)
    assert_unchanged(before, [a, b])


def test_matmul_vector_and_batch_mismatch():
    with refused(ValueError, match=msg("matmul", (3,), (4,))):
        tg.randn(3) @ tg.randn(4)
    with refused(ValueError, match=msg("matmul", (7, 3), (4,))):
        tg.randn(7, 3) @ tg.randn(4)
    with refused(ValueError, match=msg("matmul", (2, 3, 4), (3, 4, 5))):
        tg.randn(2, 3, 4) @ tg.randn(3, 4, 5)
    with refused(ValueError, match=msg("matmul", (), (3,))):
        tg.matmul(tg.randn(()), tg.randn(3))


def test_matmul_dtype_mismatch():
    a, b = tg.randn(3, 4), tg.randn(4, 2, dtype=tg.float64)
    with refused(TypeError, match=msg("matmul", "float32", "float64")):
        a @ b


# ---------------------------------------------------------------- linear

def test_functional_linear_shape_mismatch():
    x, w = tg.randn(3, 7), tg.randn(5, 4)
    with refused(ValueError, match=msg("linear", (3, 7), (5, 4))):
        F.linear(x, w)
    with refused(ValueError, match=msg("linear", "bias", (4,), (5, 4))):
        F.linear(tg.randn(3, 4), w, tg.randn(4))


def test_linear_module_shape_mismatch_changes_nothing():
    m = nn.Linear(4, 5)
    params = with_grads(m, tg.randn(3, 4))
    before = snapshot(*params)
    with refused(ValueError, match=msg("linear", (2, 3, 7), (5, 4))):
        m(tg.randn(2, 3, 7))
    assert_unchanged(before, params)


def test_linear_float64_input_into_float32_layer():
    m = nn.Linear(4, 5)
    params = with_grads(m, tg.randn(2, 4))
    before = snapshot(*params)
    with refused(TypeError, match=msg("linear", "float64", "float32")):
        m(tg.randn(2, 4, dtype=tg.float64))
    assert_unchanged(before, params)
    assert m(tg.randn(2, 4, dtype=tg.float64).float()).dtype == tg.float32


def test_linear_integer_input():
    m, x = nn.Linear(3, 2), tg.arange(6).reshape(2, 3)
    with refused(TypeError, match=msg("linear", "int64")):
        m(x)


# ---------------------------------------------------------------- conv2d

def test_conv2d_channel_mismatch():
    x, w = tg.randn(2, 3, 7, 9), tg.randn(4, 2, 3, 3)
    with refused(ValueError, match=msg("conv2d", (2, 3, 7, 9), (4, 2, 3, 3))):
        F.conv2d(x, w)


def test_conv2d_non_4d_input_changes_nothing():
    m = nn.Conv2d(3, 4, 3)
    params = with_grads(m, tg.randn(1, 3, 5, 6))
    before = snapshot(*params)
    # (A 3-D input is an unbatched image, as in PyTorch: 5-D is the error.)
    with refused(ValueError, match=msg("conv2d", (1, 1, 3, 7, 9))):
        m(tg.randn(1, 1, 3, 7, 9))
    assert_unchanged(before, params)


def test_conv2d_kernel_larger_than_input():
    x, w = tg.randn(2, 3, 4, 6), tg.randn(4, 3, 5, 5)
    with refused(ValueError, match=msg("conv2d", "kernel", (5, 5), (2, 3, 4, 6))):
        F.conv2d(x, w)
    # Padding counts: the same kernel fits once the input is padded to 6 x 8.
    assert F.conv2d(x, w, padding=1).shape == (2, 4, 2, 4)


def test_conv2d_dtype_mismatch():
    with refused(TypeError, match=msg("conv2d", "float32", "float64")):
        F.conv2d(tg.randn(1, 2, 5, 5), tg.randn(3, 2, 3, 3, dtype=tg.float64))


# ---------------------------------------------------------------- cross-entropy and embedding

def test_cross_entropy_shape_mismatch():
    logits = tg.randn(3, 5, requires_grad=True)
    with refused(ValueError, match=msg("cross_entropy", (3, 5), (2,))):
        F.cross_entropy(logits, tg.tensor([1, 2]))
    with refused(ValueError, match=msg("cross_entropy", (3, 5), (3, 1))):
        nn.CrossEntropyLoss()(logits, tg.tensor([[1], [2], [0]]))
    # (An unbatched input of shape (5,) takes a target of shape () or (1,), as in PyTorch.)
    with refused(ValueError, match=msg("cross_entropy", (5,), (2,))):
        F.cross_entropy(tg.randn(5), tg.tensor([1, 2]))
    assert logits.grad is None


def test_cross_entropy_non_integer_target():
    with refused(TypeError, match=msg("cross_entropy", "target", "float32")):
        F.cross_entropy(tg.randn(3, 5), tg.tensor([1.0, 2.0, 0.0]))
    with refused(TypeError, match=msg("cross_entropy", "target", "list")):
        F.cross_entropy(tg.randn(3, 5), [1, 2, 0])


@contextlib.contextmanager
def refused_now_or_at_sync(exc, match):
    """An index out of range: refused at the call (``refused``) on a device that checks indices
    on the host; on one whose kernels check them ("cuda") the call runs, and the error comes at
    the next sync, which the block's ``info.sync`` names (an output to read back)."""
    class Info:
        sync = None
    info = Info()
    if not getattr(tg.get_default_device().backend, "CHECKS_INDICES", False):
        with refused(exc, match=match):
            yield info
        return
    yield info
    with pytest.raises(exc, match=match):
        info.sync.numpy()
    info.sync.numpy()                      # raised once: the flag is clear


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("bad", [5, 17, -1, -6])
def test_cross_entropy_class_index_out_of_range(bad, reduction):
    logits = tg.randn(4, 5, requires_grad=True)
    before = snapshot(logits)
    target = tg.tensor([1, 4, bad, 0])
    with refused_now_or_at_sync(ValueError, match=msg("cross_entropy", bad, "5 classes")) as e:
        e.sync = F.cross_entropy(logits, target, reduction=reduction)
    assert_unchanged(before, [logits])


@pytest.mark.parametrize("bad", [6, 11, -1])
def test_embedding_index_out_of_range(bad):
    m = nn.Embedding(6, 3)
    params = with_grads(m, tg.tensor([[0, 5], [2, 2]]))
    before = snapshot(*params)
    with refused_now_or_at_sync(ValueError, match=msg("embedding", bad, "6 rows")) as e:
        e.sync = m(tg.tensor([[1, bad], [3, 0]]))
    assert_unchanged(before, params)


def test_embedding_index_out_of_range_with_no_columns_is_an_argument_error():
    # PyTorch gathers rows of no columns another way, whose range error is a RuntimeError.
    weight = tg.randn(6, 0)
    with refused_now_or_at_sync(ArgumentError, match=msg("embedding", 6, "6 rows")) as e:
        e.sync = F.embedding(tg.tensor([0, 6]), weight)


def test_embedding_float_indices():
    m, x = nn.Embedding(6, 3), tg.tensor([1.0, 2.0])
    with refused(TypeError, match=msg("embedding", "float32")):
        m(x)


# ---------------------------------------------------------------- dtypes

@pytest.mark.parametrize("name, op", [("add", lambda a, b: a + b), ("sub", lambda a, b: a - b),
                                      ("mul", lambda a, b: a * b), ("div", lambda a, b: a / b)])
def test_float32_with_float64(name, op):
    a = tg.randn(3, 4, requires_grad=True)
    b = tg.randn(3, 4, dtype=tg.float64, requires_grad=True)
    before = snapshot(a, b)
    with refused(TypeError, match=msg(name, "float32", "float64")):
        op(a, b)
    with refused(TypeError, match=msg(name, "float64", "float32")):
        op(b, a)
    assert_unchanged(before, [a, b])


# ---------------------------------------------------------------- devices

@pytest.mark.parametrize("make", [
    lambda: tg.tensor([1.0, 2.0], device="cuda"),
    lambda: tg.randn(2, 3, device="cuda:0"),
    lambda: tg.zeros(3, device="cuda"),
    lambda: nn.Linear(2, 3, device="cuda"),
], ids=["tensor", "randn", "zeros", "Linear"])
def test_unavailable_device_gives_the_reason(make, disabled_cuda):
    with refused(tg.DeviceUnavailableError, match=msg("cuda", disabled_cuda.reason)):
        make()
    with refused(tg.DeviceUnavailableError, match=msg("cuda", disabled_cuda.reason)):
        tg.set_default_device("cuda")


def test_moving_to_unavailable_device_changes_nothing(default_device, disabled_cuda):
    if default_device == "cuda":
        pytest.skip("the default device is the one disabled here")
    x = tg.randn(3, 2)
    with refused(tg.DeviceUnavailableError, match=msg("cuda", disabled_cuda.reason)):
        x.to("cuda")
    assert x.device == tg.device(default_device)
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    params = with_grads(m, tg.randn(5, 3))
    before = snapshot(*params)
    with refused(tg.DeviceUnavailableError):
        m.to("cuda")
    assert_unchanged(before, params)
    assert all(p.device.name == default_device for p in params)


def test_unknown_device_name():
    with refused(ValueError, match=msg("device", "tpu", "cpu")):
        tg.tensor([1.0], device="tpu")
    with refused(ValueError, match=msg("device", "npu:1")):
        tg.randn(2, device="npu:1")
    with refused(TypeError, match=msg("device", "int")):
        tg.zeros(2, device=3)


def _on_other_device(t):
    """``t`` on a second device (the NumPy backend under another name): no GPU needed to see
    that ops refuse to mix devices."""
    other = tg.Device("cpu-other", tg.device("cpu").backend)
    return tg.Tensor(t.numpy(), other)


def test_device_mismatch(default_device):
    a, b = tg.randn(3, 4), _on_other_device(tg.randn(3, 4))
    bt, w = b.T, _on_other_device(tg.randn(2, 4))
    with refused(ValueError, match=msg("add", "different devices", default_device, "cpu-other")):
        a + b
    with refused(ValueError, match=msg("matmul", "different devices")):
        a @ bt
    with refused(ValueError, match=msg("linear", "different devices")):
        F.linear(a, w)


# ---------------------------------------------------------------- backward

def test_backward_non_scalar_needs_gradient():
    x = tg.randn(3, 5, requires_grad=True)
    y = x.exp()
    with refused(ValueError, match=msg("backward", (3, 5))):
        y.backward()
    assert x.grad is None


def test_backward_wrongly_shaped_gradient_changes_nothing():
    x = tg.randn(3, 5, requires_grad=True)
    (x * x).sum().backward()
    before = snapshot(x)
    y = x * 3
    with refused(ValueError, match=msg("backward", (5, 3), (3, 5))):
        y.backward(tg.randn(5, 3))
    with refused(ValueError, match=msg("backward", (15,), (3, 5))):
        y.backward(np.ones(15, dtype=np.float32))
    with refused(TypeError, match=msg("backward", "float64", "float32")):
        y.backward(tg.randn(3, 5, dtype=tg.float64))
    assert_unchanged(before, [x])


def test_backward_without_requires_grad():
    total = tg.randn(3).sum()
    with refused(ValueError, match=msg("backward", "does not require grad")):
        total.backward()


# ---------------------------------------------------------------- broadcasting

def _shapes_that_do_not_broadcast():
    def fix(pair):
        a, b = pair
        try:
            np.broadcast_shapes(a, b)
            return None
        except ValueError:
            return a, b
    dims = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)
    return st.tuples(dims, dims).map(fix).filter(lambda p: p is not None)


@settings(max_examples=40, deadline=None)
@given(_shapes_that_do_not_broadcast())
def test_broadcast_failure_names_both_shapes(shapes):
    sa, sb = shapes
    a, b = tg.randn(*sa, requires_grad=True), tg.randn(*sb, requires_grad=True)
    before = snapshot(a, b)
    with refused(ValueError, match=msg("add", sa, sb, "broadcast")):
        a + b
    with refused(ValueError, match=msg("mul", sa, sb, "broadcast")):
        a * b
    assert_unchanged(before, [a, b])


def test_broadcast_failure_with_numpy_operand():
    x = tg.randn(3, 4)
    with refused(ValueError, match=msg("add", (3, 4), (5,))):
        x + np.ones(5, dtype=np.float32)
    with refused(ValueError, match=msg("mul", (3, 4), (2, 4))):
        np.ones((2, 4), dtype=np.float32) * x


# ---------------------------------------------------------------- dimension arguments

# Every dimension argument is checked: IndexError as in PyTorch, naming the op and the shape.
# The first four cases were bugs on main: they returned a wrong shape (the dim taken modulo the
# rank) instead of raising.
@pytest.mark.parametrize("name, call", [
    ("transpose", lambda t: t.transpose(0, 5)),
    ("unsqueeze", lambda t: t.unsqueeze(5)),
    ("unsqueeze", lambda t: t.unsqueeze(-5)),
    ("stack", lambda t: tg.stack([t, t], dim=7)),
    ("transpose", lambda t: t.transpose(-3, 0)),
    ("stack", lambda t: tg.stack([t, t], dim=-4)),
    ("cat", lambda t: tg.cat([t, t], 2)),
    ("flatten", lambda t: t.flatten(0, 2)),
    ("squeeze", lambda t: t.squeeze(2)),
    ("unbind", lambda t: t.unbind(-3)),
    ("permute", lambda t: t.permute(0, 2)),
    ("size", lambda t: t.size(2)),
    ("sum", lambda t: t.sum((0, 2))),
    ("mean", lambda t: t.mean(-3)),
    ("amax", lambda t: t.amax(2)),
    ("max", lambda t: t.max(2)),
    ("argmax", lambda t: t.argmax(-3)),
], ids=["transpose(0,5)", "unsqueeze(5)", "unsqueeze(-5)", "stack(dim=7)", "transpose(-3,0)",
        "stack(dim=-4)", "cat", "flatten", "squeeze", "unbind", "permute", "size", "sum", "mean",
        "amax", "max", "argmax"])
def test_dimension_out_of_range_is_an_index_error(name, call):
    t = tg.randn(2, 3, requires_grad=True)
    before = snapshot(t)
    with refused(IndexError, match=msg(name, "out of range", (2, 3))):
        call(t)
    assert_unchanged(before, [t])


# Reductions without an identity (max, argmax) over no elements. Bugs on main: amax raised
# ValueError and argmax passed NumPy's raw "attempt to get argmax of an empty sequence"; PyTorch
# raises IndexError for a named dim of length 0, RuntimeError (IndexError for argmax) without one.
@pytest.mark.parametrize("name, call, error", [
    ("amax", lambda t: t.amax(0), IndexError),
    ("argmax", lambda t: t.argmax(0), IndexError),
    ("argmax", lambda t: t.argmax(), IndexError),
    ("max", lambda t: t.max(0), IndexError),
    ("amax", lambda t: t.amax((1, 0)), IndexError),
    ("amax", lambda t: t.amax(), RuntimeError),
    ("max", lambda t: t.max(), RuntimeError),
], ids=["amax(0)", "argmax(0)", "argmax()", "max(0)", "amax((1,0))", "amax()", "max()"])
def test_reduction_over_no_elements(name, call, error):
    t = tg.zeros(0, 3, requires_grad=True)
    with refused(error, match=msg(name, (0, 3))):
        call(t)


def test_reduction_along_a_nonempty_dimension_of_an_empty_tensor():
    t = tg.zeros(3, 0)
    assert t.amax(0).shape == t.argmax(0).shape == t.max(0).indices.shape == (0,)


# ---------------------------------------------------------------- reshape and requires_grad

@pytest.mark.parametrize("shape", [(5, 2), (-1, 4), (2, -1, -1), (0, -1), (13,)])
def test_reshape_incompatible(shape):
    x = tg.randn(3, 5, requires_grad=True)
    before = snapshot(x)
    with refused(ValueError, match=msg("reshape", shape, (3, 5), "15")):
        x.reshape(*shape)
    with refused(ValueError, match=msg("reshape", shape, (3, 5))):
        x.view(shape)
    assert_unchanged(before, [x])


@pytest.mark.parametrize("dtype", [tg.int64, tg.int32, tg.uint8, tg.bool_])
def test_requires_grad_on_integer_tensor(dtype, default_device):
    if default_device == "cuda" and dtype in (tg.int32, tg.uint8):
        with refused(TypeError, match=msg("ones", dtype, "not supported on device 'cuda'")):
            tg.ones(4, dtype=dtype)
        return
    with refused(TypeError, match=msg("requires_grad", dtype)):
        tg.zeros(2, 3, dtype=dtype, requires_grad=True)
    t = tg.ones(4, dtype=dtype)
    with refused(TypeError, match=msg("requires_grad", dtype)):
        t.requires_grad_()
    with refused(TypeError, match=msg("requires_grad", dtype)):
        t.requires_grad = True
    assert t.requires_grad is False


def test_requires_grad_on_python_ints():
    with refused(TypeError, match=msg("requires_grad", "int64")):
        tg.tensor([1, 2, 3], requires_grad=True)
    with refused(TypeError, match=msg("randn", "int64")):
        tg.randn(2, dtype=tg.int64)


# ---------------------------------------------------------------- load_state_dict

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(3, 6)
        self.block = nn.Sequential(nn.ReLU(), nn.Linear(6, 4), nn.ReLU())
        self.head = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


def _fresh_state(model):
    """A state dict for ``model`` with new random values (so that a partial write shows)."""
    r = np.random.default_rng(7)
    return {k: r.standard_normal(v.shape).astype(v.dtype) for k, v in model.state_dict().items()}


@pytest.fixture
def net():
    m = Net()
    with_grads(m, tg.randn(5, 3))
    return m


def _assert_model_unchanged(model, before_state, before_params):
    after = model.state_dict()
    assert list(after) == list(before_state)
    for k in before_state:
        assert np.array_equal(after[k], before_state[k]), f"{k} changed"
    assert_unchanged(before_params, list(model.parameters()))


@pytest.mark.parametrize("strict", [True, False])
def test_load_state_dict_mis_shaped_key(net, strict):
    before_state, before_params = net.state_dict(), snapshot(*net.parameters())
    bad = _fresh_state(net)
    bad["block.1.weight"] = np.ones((6, 4), dtype=np.float32)
    with refused(ValueError, match=msg("load_state_dict", "block.1.weight", (6, 4), (4, 6))):
        net.load_state_dict(bad, strict=strict)
    _assert_model_unchanged(net, before_state, before_params)


def test_load_state_dict_missing_key(net):
    before_state, before_params = net.state_dict(), snapshot(*net.parameters())
    bad = _fresh_state(net)
    del bad["stem.bias"]
    with refused(ValueError, match=msg("load_state_dict", "missing", "stem.bias")):
        net.load_state_dict(bad)
    _assert_model_unchanged(net, before_state, before_params)


def test_load_state_dict_extra_key(net):
    before_state, before_params = net.state_dict(), snapshot(*net.parameters())
    bad = _fresh_state(net)
    bad["head.bias"] = np.zeros(2, dtype=np.float32)
    with refused(ValueError, match=msg("load_state_dict", "unexpected", "head.bias")):
        net.load_state_dict(bad)
    _assert_model_unchanged(net, before_state, before_params)


def test_load_state_dict_non_numeric_value(net):
    before_state, before_params = net.state_dict(), snapshot(*net.parameters())
    bad = _fresh_state(net)
    bad["head.weight"] = np.array([["a", "b", "c", "d"]] * 2)
    with refused(TypeError, match=msg("load_state_dict", "head.weight")):
        net.load_state_dict(bad)
    _assert_model_unchanged(net, before_state, before_params)


def test_load_state_dict_not_strict_loads_the_rest(net):
    new = _fresh_state(net)
    old_bias = net.stem.bias.numpy()
    partial = {k: v for k, v in new.items() if k != "stem.bias"}
    partial["extra.weight"] = np.ones(3, dtype=np.float32)
    result = net.load_state_dict(partial, strict=False)
    assert result.missing_keys == ["stem.bias"]
    assert result.unexpected_keys == ["extra.weight"]
    missing, unexpected = result   # unpacks like torch's named tuple
    assert (missing, unexpected) == (["stem.bias"], ["extra.weight"])
    after = net.state_dict()
    assert np.array_equal(after["stem.bias"], old_bias)
    for k, v in partial.items():
        if k in after:
            assert np.array_equal(after[k], v), k


# ---------------------------------------------------------------- optimizers

def _optimizer_state(opt):
    sd = opt.state_dict()
    return {k: {n: (v.copy() if isinstance(v, np.ndarray) else v) for n, v in s.items()}
            for k, s in sd["state"].items()}, [dict(g) for g in sd["param_groups"]]


def _assert_optimizer_unchanged(opt, before):
    state, groups = _optimizer_state(opt)
    assert groups == before[1]
    assert state.keys() == before[0].keys()
    for k in state:
        for n, v in state[k].items():
            assert np.array_equal(v, before[0][k][n]), f"state {k}.{n} changed"


@pytest.mark.parametrize("make", [lambda ps: tg.optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: tg.optim.Adam(ps, lr=0.01)], ids=["SGD", "Adam"])
def test_optimizer_step_with_mismatched_grad_changes_nothing(make):
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    params = with_grads(m, tg.randn(5, 3))
    opt = make(params)
    opt.step()
    with_grads(m, tg.randn(5, 3))
    params[2].grad = tg.randn(4, 2)           # transposed: wrong shape
    before, before_state = snapshot(*params), _optimizer_state(opt)
    with refused(ValueError, match=msg(type(opt).__name__, (4, 2), (2, 4))):
        opt.step()
    assert_unchanged(before, params)
    _assert_optimizer_unchanged(opt, before_state)
    params[2].grad = tg.randn(2, 4, dtype=tg.float64)
    before = snapshot(*params)
    with refused(TypeError, match=msg(type(opt).__name__, "float64", "float32")):
        opt.step()
    assert_unchanged(before, params)
    _assert_optimizer_unchanged(opt, before_state)


def test_optimizer_load_state_dict_mismatch_changes_nothing():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = tg.optim.Adam(m.parameters(), lr=0.01)
    with_grads(m, tg.randn(5, 3))
    opt.step()
    before = _optimizer_state(opt)
    bad = opt.state_dict()
    bad["param_groups"][0]["lr"] = 0.5
    bad["state"][3]["exp_avg"] = np.ones(7, dtype=np.float32)
    with refused(ValueError, match=msg("Adam", "exp_avg", (7,), (2,))):
        opt.load_state_dict(bad)
    _assert_optimizer_unchanged(opt, before)
    fewer = opt.state_dict()
    fewer["param_groups"][0]["params"] = fewer["param_groups"][0]["params"][:3]
    with refused(ValueError, match=msg("Adam", "[3]", "[4]")):
        opt.load_state_dict(fewer)
    _assert_optimizer_unchanged(opt, before)
