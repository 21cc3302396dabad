"""tilegrad.nn.functional and the layer modules against their oracles.

- Every functional op: gradients against central differences (float64, tiny odd shapes; on other
  devices than cpu, against cpu) and values and gradients against PyTorch (float64, rtol 1e-8),
  per device.
- Modules: built in torch, loaded into tilegrad through one state dict, outputs and parameter
  gradients compared; default initialisation against PyTorch's documented bounds.
- Dropout: the identity in eval; in training, scaling, keep rate and gradient of the mask.
"""
import contextlib
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tilegrad as tg
import tilegrad.nn.functional as F
from helpers import torch
from tilegrad.testing import (assert_close, compare_with_reference, compare_with_torch, gradcheck,
                              rng)

TF = torch.nn.functional if torch is not None else None


def on(device, fn):
    """``fn`` run on ``device``: inputs moved there and outputs back (both differentiable), so
    that the helpers, which build CPU tensors, can check any device."""
    def run(*tensors):
        out = fn(*(t.to(device) for t in tensors))
        return tuple(o.cpu() for o in out) if isinstance(out, tuple) else out.cpu()
    return run


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [out]


def make_inputs(spec, seed=0):
    """A shape becomes a fresh standard-normal float64 array; an array is used as given."""
    r = rng(seed)
    return [s if isinstance(s, np.ndarray) else r.standard_normal(s) for s in spec]


# ---------------------------------------------------------------- functional ops
# Indices with repeats (row 3 four times, row 5 three times), so the backward's scatter-add
# must accumulate rather than overwrite.
EMB_IDX = np.array([[0, 3, 3, 6, 1], [6, 0, 3, 2, 3], [5, 5, 5, 1, 0]], dtype=np.int64)
CE_TARGET_13 = rng(7).integers(0, 13, size=7)


def _lstm_cell_by_hand(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """PyTorch's documented LSTMCell equations, gates in the order i, f, g, o."""
    gates = x @ w_ih.T + h @ w_hh.T
    if b_ih is not None:
        gates = gates + b_ih + b_hh
    i, f, g, o = gates.chunk(4, dim=1)
    c2 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c2), c2


# (tilegrad function, torch function, input spec): shared by the central-difference and the
# PyTorch test. Shapes are odd and small: central differences cost two forwards per element.
CASES = [
    pytest.param(F.linear, lambda x, w, b: TF.linear(x, w, b), [(3, 5), (7, 5), (7,)], id="linear"),
    pytest.param(F.linear, lambda x, w: TF.linear(x, w), [(3, 5), (7, 5)], id="linear-nobias"),
    pytest.param(F.linear, lambda x, w, b: TF.linear(x, w, b), [(2, 3, 5), (7, 5), (7,)],
                 id="linear-3d"),
    pytest.param(F.linear, lambda x, w, b: TF.linear(x, w, b), [(5,), (3, 5), (3,)],
                 id="linear-1d"),
    pytest.param(F.relu, lambda x: TF.relu(x), [(3, 7, 5)], id="relu"),
    pytest.param(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
                 lambda x, w, b: TF.conv2d(x, w, b, stride=2, padding=1),
                 [(2, 3, 7, 9), (5, 3, 3, 3), (5,)], id="conv2d-s2-p1-7x9"),
    pytest.param(lambda x, w, b: F.conv2d(x, w, b),
                 lambda x, w, b: TF.conv2d(x, w, b),
                 [(2, 3, 7, 9), (5, 3, 3, 3), (5,)], id="conv2d-s1-p0"),
    pytest.param(lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=(0, 2)),
                 lambda x, w: TF.conv2d(x, w, stride=(2, 1), padding=(0, 2)),
                 [(1, 3, 7, 9), (5, 3, 3, 3)], id="conv2d-s21-p02-nobias"),
    pytest.param(lambda x, w, b: F.conv2d(x, w, b, stride=2),        # last row and column unread
                 lambda x, w, b: TF.conv2d(x, w, b, stride=2),
                 [(1, 3, 7, 9), (5, 3, 2, 2), (5,)], id="conv2d-k2-s2-unread-edge"),
    pytest.param(lambda x, w: F.conv2d(x, w, padding=(2, 1)),         # padding > kernel - 1
                 lambda x, w: TF.conv2d(x, w, padding=(2, 1)),
                 [(1, 3, 5, 7), (3, 3, 1, 1)], id="conv2d-k1-p21"),
    pytest.param(lambda x, w, b: F.conv2d(x, w, b, stride=(1, 3), padding=(2, 1)),
                 lambda x, w, b: TF.conv2d(x, w, b, stride=(1, 3), padding=(2, 1)),
                 [(1, 1, 5, 7), (3, 1, 3, 5), (3,)], id="conv2d-rect-kernel-s13-p21"),
    pytest.param(lambda x: F.max_pool2d(x, 3, stride=2), lambda x: TF.max_pool2d(x, 3, stride=2),
                 [(2, 3, 7, 9)], id="maxpool-k3-s2"),
    pytest.param(lambda x: F.max_pool2d(x, 2), lambda x: TF.max_pool2d(x, 2),
                 [(2, 3, 7, 9)], id="maxpool-k2-default-stride"),
    pytest.param(lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
                 lambda x: TF.max_pool2d(x, 3, stride=2, padding=1),
                 [(1, 3, 7, 9)], id="maxpool-k3-s2-p1"),
    pytest.param(lambda x: F.max_pool2d(x, 3, stride=1, padding=1),
                 lambda x: TF.max_pool2d(x, 3, stride=1, padding=1),
                 [(1, 3, 5, 7)], id="maxpool-k3-s1-p1"),
    pytest.param(lambda x: F.max_pool2d(x, (2, 3), stride=(1, 2)),
                 lambda x: TF.max_pool2d(x, (2, 3), stride=(1, 2)),
                 [(1, 3, 5, 7)], id="maxpool-k23-s12"),
    pytest.param(F.flatten, lambda x: torch.flatten(x, 1), [(3, 5, 1, 7)], id="flatten"),
    pytest.param(lambda x: F.flatten(x, 0, 1), lambda x: torch.flatten(x, 0, 1),
                 [(3, 5, 7)], id="flatten-0-1"),
    pytest.param(lambda x: F.flatten(x, 1, 2), lambda x: torch.flatten(x, 1, 2),
                 [(3, 5, 1, 7)], id="flatten-1-2"),
    pytest.param(F.embedding, lambda i, w: TF.embedding(i, w), [EMB_IDX, (7, 3)], id="embedding"),
    pytest.param(F.embedding, lambda i, w: TF.embedding(i, w),
                 [np.array([4, 4, 0, 4, 2], dtype=np.int64), (5, 7)], id="embedding-1d"),
    pytest.param(lambda x, h, c, wi, wh, bi, bh: F.lstm_cell(x, (h, c), wi, wh, bi, bh),
                 lambda x, h, c, wi, wh, bi, bh: torch.lstm_cell(x, (h, c), wi, wh, bi, bh),
                 [(3, 5), (3, 7), (3, 7), (28, 5), (28, 7), (28,), (28,)], id="lstm_cell"),
    pytest.param(lambda x, h, c, wi, wh, bi, bh: F.lstm_cell(x, (h, c), wi, wh, bi, bh),
                 _lstm_cell_by_hand,
                 [(3, 5), (3, 7), (3, 7), (28, 5), (28, 7), (28,), (28,)], id="lstm_cell-by-hand"),
    pytest.param(lambda x, h, c, wi, wh: F.lstm_cell(x, (h, c), wi, wh),
                 lambda x, h, c, wi, wh: torch.lstm_cell(x, (h, c), wi, wh),
                 [(1, 3), (1, 5), (1, 5), (20, 3), (20, 5)], id="lstm_cell-nobias"),
    pytest.param(F.log_softmax, lambda x: TF.log_softmax(x, dim=-1), [(3, 7)],
                 id="log_softmax-last"),
    pytest.param(lambda x: F.log_softmax(x, dim=0), lambda x: TF.log_softmax(x, dim=0),
                 [(5, 3)], id="log_softmax-dim0"),
    pytest.param(lambda x: F.log_softmax(x, dim=1), lambda x: TF.log_softmax(x, dim=1),
                 [(3, 5, 7)], id="log_softmax-3d-dim1"),
    pytest.param(F.softmax, lambda x: TF.softmax(x, dim=-1), [(3, 7)], id="softmax"),
    *[pytest.param(lambda x, t, r=r: F.cross_entropy(x, t, reduction=r),
                   lambda x, t, r=r: TF.cross_entropy(x, t, reduction=r),
                   [(7, 13), CE_TARGET_13], id=f"cross_entropy-13-{r}")
      for r in ("mean", "sum", "none")],
    pytest.param(F.cross_entropy, lambda x, t: TF.cross_entropy(x, t),
                 [(1, 3), np.array([2])], id="cross_entropy-1-row"),
    pytest.param(lambda x, t: F.cross_entropy(x, t, reduction="none"),
                 lambda x, t: TF.cross_entropy(x, t, reduction="none"),
                 [(5, 3), np.array([1, 1, 0, 2, 1])], id="cross_entropy-repeated-targets"),
]


@pytest.mark.parametrize("tg_fn, torch_fn, spec", CASES)
def test_gradient_matches_central_differences(device, tg_fn, torch_fn, spec):
    """On "cpu" against central differences. Elsewhere (thousands of forward passes are too slow
    for the CUDA simulator) the values and gradients must equal cpu's, which this checks."""
    if device == "cpu":
        gradcheck(tg_fn, *make_inputs(spec))
    else:
        compare_with_reference(on(device, tg_fn), tg_fn, *make_inputs(spec))


@pytest.mark.parametrize("tg_fn, torch_fn, spec", CASES)
def test_matches_torch(device, tg_fn, torch_fn, spec):
    compare_with_torch(on(device, tg_fn), torch_fn, *make_inputs(spec))


@pytest.mark.parametrize("tg_fn, torch_fn, spec", CASES)
def test_float32_keeps_dtype_and_matches_float64(device, tg_fn, torch_fn, spec):
    """The same op in float32: outputs and gradients stay float32 and agree with float64 to
    float32's precision."""
    arrays = make_inputs(spec)
    results = {}
    for dt in (np.float32, np.float64):
        ts = [tg.tensor(a.astype(dt) if a.dtype.kind == "f" else a, device=device,
                        requires_grad=a.dtype.kind == "f") for a in arrays]
        outs = _flat(tg_fn(*ts))
        sum(o.sum() for o in outs).backward()
        grads = [t.grad for t in ts if t.requires_grad]
        assert all(o.dtype == dt for o in outs + grads), [str(o.dtype) for o in outs + grads]
        results[dt] = [o.numpy() for o in outs + grads]
    for k, (a, b) in enumerate(zip(results[np.float32], results[np.float64])):
        assert_close(a, b, rtol=1e-4, atol=1e-5, what=f"float32 result {k}")


@settings(max_examples=30, deadline=None)
@given(h=st.integers(3, 9), w=st.integers(3, 9), kh=st.integers(1, 3), kw=st.integers(1, 3),
       sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
       c=st.integers(1, 3), f=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_conv2d_geometry_matches_torch(h, w, kh, kw, sh, sw, ph, pw, c, f, seed):
    """Strides that leave rows unread and paddings wider than the kernel: the cases the
    backward-data's crop and pad arithmetic must get right."""
    x, wt, b = make_inputs([(2, c, h, w), (f, c, kh, kw), (f,)], seed)
    compare_with_torch(lambda *t: F.conv2d(*t, stride=(sh, sw), padding=(ph, pw)),
                lambda *t: TF.conv2d(*t, stride=(sh, sw), padding=(ph, pw)), x, wt, b)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(4, 9), w=st.integers(4, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), pad=st.integers(0, 2),
       seed=st.integers(0, 2**16))
def test_max_pool2d_geometry_matches_torch(h, w, kh, kw, sh, sw, pad, seed):
    ph, pw = min(pad, kh // 2), min(pad, kw // 2)   # torch and tilegrad: padding <= kernel / 2
    (x,) = make_inputs([(2, 3, h, w)], seed)
    compare_with_torch(lambda t: F.max_pool2d(t, (kh, kw), (sh, sw), (ph, pw)),
                lambda t: TF.max_pool2d(t, (kh, kw), (sh, sw), (ph, pw)), x)


@pytest.mark.parametrize("call, error", [
    (lambda: F.conv2d(tg.randn(1, 3, 5, 5), tg.randn(2, 4, 3, 3)), ValueError),
    (lambda: F.conv2d(tg.randn(1, 3, 5, 5), tg.randn(2, 3, 3, 3), stride=0), ValueError),
    (lambda: F.conv2d(tg.randn(1, 3, 2, 2), tg.randn(2, 3, 3, 3)), ValueError),
    (lambda: F.linear(tg.randn(3, 5), tg.randn(7, 4)), ValueError),
    (lambda: F.linear(tg.randn(3, 5), tg.randn(7, 5), tg.randn(5)), ValueError),
    (lambda: F.max_pool2d(tg.randn(1, 1, 5, 5), 3, padding=2), ValueError),
    (lambda: F.embedding(tg.tensor([0, 7]), tg.randn(7, 3)), ValueError),
    (lambda: F.embedding(tg.randn(3), tg.randn(7, 3)), TypeError),
    (lambda: F.cross_entropy(tg.randn(3, 5), tg.tensor([0, 5, 1])), ValueError),
    (lambda: F.cross_entropy(tg.randn(3, 5), tg.tensor([0, 1, 1]), reduction="avg"), ValueError),
    (lambda: F.cross_entropy(tg.randn(3, 5), tg.randn(3)), TypeError),
    (lambda: F.lstm_cell(tg.randn(3, 5), (tg.randn(3, 7), tg.randn(3, 7)), tg.randn(28, 5),
                         tg.randn(28, 6)), ValueError),
    (lambda: F.dropout(tg.randn(3), p=1.5), ValueError),
    (lambda: F.log_softmax(tg.randn(3, 5), dim=2), IndexError),
    (lambda: F.log_softmax(tg.randn(3, 5), dim=-3), IndexError),
    (lambda: tg.nn.MaxPool2d(3, stride=0)(tg.randn(1, 1, 5, 5)), ValueError),
], ids=["conv-channels", "conv-stride0", "conv-kernel-too-big", "linear-in", "linear-bias",
        "pool-padding", "emb-range", "emb-float-idx", "ce-range", "ce-reduction",
        "ce-float-target", "lstm-hidden", "dropout-p", "log_softmax-dim", "log_softmax-neg-dim",
        "pool-module-stride0"])
def test_rejects_bad_arguments(call, error):
    with pytest.raises(error):
        call()


# ---------------------------------------------------------------- arguments checked as PyTorch's
# Regressions: each of these once ran, or failed with a raw NumPy or Python message.

def test_conv2d_layer_with_kernel_size_0_is_refused():
    # Bug: nn.Conv2d(3, 4, kernel_size=0) ran and made a (1, 4, 6, 6) output from a 5x5 input.
    # Refused in the constructor (PyTorch fails in forward, a RuntimeError: this is both).
    for kernel in (0, (0, 3), (3, 0)):
        with pytest.raises(ValueError, match="Conv2d.*kernel_size") as e:
            tg.nn.Conv2d(3, 4, kernel_size=kernel)
        assert isinstance(e.value, RuntimeError)
    with pytest.raises(RuntimeError, match="conv2d: kernel size"):   # and in F.conv2d
        F.conv2d(tg.randn(1, 3, 5, 5), tg.randn(4, 3, 0, 3))


@pytest.mark.parametrize("kwargs, error, name", [
    ({"stride": 1.5}, TypeError, "stride"),      # bug: "'float' object is not iterable"
    ({"padding": 1.5}, TypeError, "padding"),
    ({"stride": True}, TypeError, "stride"),     # PyTorch refuses a bool for an int
    ({"stride": (1, 1, 1)}, RuntimeError, "stride"),
    ({"stride": 0}, RuntimeError, "stride"),     # PyTorch: "non-positive stride is not supported"
    ({"padding": -1}, RuntimeError, "padding"),
])
def test_conv2d_checks_stride_and_padding(kwargs, error, name):
    with pytest.raises(error, match=f"conv2d.*{name}"):
        F.conv2d(tg.randn(1, 3, 5, 5), tg.randn(4, 3, 3, 3), **kwargs)
    if torch is not None:    # the class PyTorch raises
        with pytest.raises(error):
            TF.conv2d(torch.randn(1, 3, 5, 5), torch.randn(4, 3, 3, 3), **kwargs)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, dim", [((3, 0), 1), ((3, 0), -1), ((0,), 0), ((2, 0, 3), 1),
                                        ((), 0), ((), -1)])
def test_softmax_over_empty_or_0d_is_as_pytorch(device, name, shape, dim):
    # Bug: over an empty dimension NumPy's "zero-size array to reduction operation maximum";
    # a 0-d tensor was refused. PyTorch returns an empty result, and 0 (log) or 1 for a 0-d one.
    x = np.zeros(shape)
    compare_with_torch(on(device, lambda t: getattr(F, name)(t, dim)),
                lambda t: getattr(TF, name)(t, dim), x)


@pytest.mark.parametrize("call", [
    lambda: F.log_softmax(tg.randn(3, 5), dim=2),
    lambda: F.softmax(tg.randn(3, 5), dim=-3),
    lambda: F.log_softmax(tg.tensor(1.0), dim=1),        # a 0-d tensor takes only 0 and -1
    lambda: F.flatten(tg.randn(2, 3), 0, 2),             # once ValueError
    lambda: F.flatten(tg.randn(2, 3), -3, 1),
    lambda: F.flatten(tg.tensor(1.0), 1, -1),            # once flattened, whatever the dims
    lambda: tg.nn.Flatten(start_dim=4)(tg.randn(2, 3)),
    lambda: F.cross_entropy(tg.randn(()), tg.randn(())), # no class dimension 1
    lambda: F.lstm_cell(tg.randn(3), (tg.randn(1, 4), tg.randn(1, 4)), tg.randn(16, 3),
                        tg.randn(16, 4)),                # PyTorch reads input.size(1)
], ids=["log_softmax-2", "softmax--3", "log_softmax-0d", "flatten-end", "flatten-start",
        "flatten-0d", "Flatten-module", "cross_entropy-0d", "lstm_cell-1d"])
def test_dims_out_of_range_are_index_errors(call):
    with pytest.raises(IndexError):
        call()


@pytest.mark.parametrize("call, error", [
    # An index out of range: PyTorch's IndexError (once a ValueError; the class is both).
    (lambda: F.embedding(tg.tensor([0, 7]), tg.randn(7, 3)), IndexError),
    (lambda: F.cross_entropy(tg.randn(3, 5), tg.tensor([0, 5, 1])), IndexError),
    # Shapes and dtypes that do not fit: PyTorch's RuntimeError (once ValueError, TypeError).
    (lambda: F.linear(tg.randn(3, 5), tg.randn(7, 4)), RuntimeError),
    (lambda: F.linear(tg.randn(3, 5), tg.randn(7, 5).double()), RuntimeError),
    (lambda: F.embedding(tg.randn(3), tg.randn(7, 3)), RuntimeError),
    (lambda: F.log_softmax(tg.tensor([1, 2])), RuntimeError),
    (lambda: F.max_pool2d(tg.randn(1, 0, 4, 4), 2), RuntimeError),
    (lambda: F.dropout(tg.randn(3), float("nan")), RuntimeError),
], ids=["embedding-range", "ce-range", "linear-shape", "linear-dtype", "embedding-float",
        "log_softmax-int", "pool-no-channels", "dropout-nan"])
def test_error_classes_are_pytorchs(call, error):
    with pytest.raises(error):
        call()


# ---------------------------------------------------------------- index range checks
# On "cpu" F.embedding and F.cross_entropy read the indices at the call and raise there. On "cuda"
# the kernels check them and the error comes at the next sync: the call reads nothing back, so a
# training step can be captured as a CUDA graph.

CUDA = tg.device("cuda")
needs_cuda = pytest.mark.skipif(not CUDA.available, reason=f"cuda: {CUDA.reason}")


def _index_calls(device, bad):
    """op -> (call with index ``bad``, its error message, the call with good indices)."""
    w = tg.tensor(rng(1).standard_normal((7, 3)), device=device, requires_grad=True)
    x = tg.tensor(rng(2).standard_normal((3, 5)), device=device, requires_grad=True)
    x3 = tg.tensor(rng(3).standard_normal((2, 5, 3)), device=device, requires_grad=True)

    def emb(i):
        return lambda: F.embedding(tg.tensor([[0, i], [6, 2]], device=device), w)

    def ce(k, reduction="mean"):
        return lambda: F.cross_entropy(x, tg.tensor([0, k, 1], device=device), reduction=reduction)

    def ce3(k):           # logits (N, C, d): the kernels see the permuted rows
        return lambda: F.cross_entropy(x3, tg.tensor([[0, 4, 1], [k, 2, 2]], device=device))

    emb_msg = f"embedding: index {bad} is out of range for a weight of 7 rows"
    ce_msg = f"cross_entropy: target {bad} is out of range for 5 classes"
    return {"embedding": (emb(bad), emb_msg, emb(3)),
            "cross_entropy-mean": (ce(bad), ce_msg, ce(4)),
            "cross_entropy-none": (ce(bad, "none"), ce_msg, ce(4, "none")),
            "cross_entropy-3d": (ce3(bad), ce_msg, ce3(4))}


@pytest.mark.parametrize("bad", [7, -1])
@pytest.mark.parametrize("op", ["embedding", "cross_entropy-mean", "cross_entropy-none",
                                "cross_entropy-3d"])
def test_index_out_of_range_raises_at_the_call_on_cpu_and_at_the_next_sync_on_cuda(device, op,
                                                                                    bad):
    call, message, good = _index_calls(device, bad)[op]
    if device == "cpu":
        with pytest.raises(IndexError, match=re.escape(message)):
            call()
    else:
        out = call()                                    # the kernel has reported it: no error yet
        with pytest.raises(IndexError, match=re.escape(message)):
            out.numpy()
        out.numpy()                                     # raised once: the flag is clear
    # The next good call works, on the same tensors, forward and backward, as on cpu.
    out = good()
    out.sum().backward()
    want = _index_calls("cpu", bad)[op][2]()
    assert_close(out.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


@needs_cuda
def test_no_host_read_in_embedding_and_cross_entropy_on_cuda(monkeypatch):
    """Forward and backward of both ops with every copy to the host and every sync refused:
    nothing is read back (the cpu results are compared afterwards)."""
    from tilegrad.backends.cuda import backend, runtime

    def make(device):
        return [tg.tensor(rng(4).standard_normal((7, 3)), device=device, requires_grad=True),
                tg.tensor(rng(5).standard_normal((5, 7)), device=device, requires_grad=True),
                tg.tensor(rng(6).integers(0, 7, (2, 5)), device=device),
                tg.tensor(rng(7).integers(0, 7, 5), device=device)]

    def step(w, x, idx, t):
        h = F.embedding(idx, w).sum(0) @ w.T + x        # (5, 7) logits from the embedding
        losses = [F.cross_entropy(h, t, reduction=r) for r in ("mean", "sum")]
        losses.append(F.cross_entropy(h, t, reduction="none").sum())
        (losses[0] + losses[1] * 0.5 + losses[2] * 0.25).backward()
        return losses

    tensors = make("cuda")

    def refuse(*args, **kwargs):
        raise AssertionError("a host read or sync")
    for module, name in [(backend, "to_numpy"), (runtime, "to_numpy"), (backend, "synchronize"),
                         (runtime, "synchronize"), (runtime, "check_errors")]:
        monkeypatch.setattr(module, name, refuse)
    losses = step(*tensors)
    monkeypatch.undo()
    cpu = make("cpu")
    want = step(*cpu)
    for a, b in zip(losses, want):
        assert_close(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12, what="loss")
    for a, b in zip(tensors[:2], cpu[:2]):
        assert_close(a.grad.numpy(), b.grad.numpy(), rtol=1e-12, atol=1e-12, what="gradient")


@needs_cuda
@pytest.mark.parametrize("reduction, fwd, bwd", [("mean", 2, 2), ("sum", 2, 1), ("none", 1, 1)])
def test_cross_entropy_launches_on_cuda(reduction, fwd, bwd):
    """The fused forward (per-row losses, then one reduction that also counts the targets not
    ignored and divides by them) and one backward kernel, which reads the loss's gradient where
    it lies ('mean': after a one-block kernel that counts the targets not ignored)."""
    from tilegrad.backends.cuda import runtime
    x = tg.tensor(rng(8).standard_normal((7, 13)), device="cuda", requires_grad=True)
    t = tg.tensor(rng(9).integers(0, 13, 7), device="cuda")
    before = runtime.counts()
    loss = F.cross_entropy(x, t, reduction=reduction)
    seed = tg.ones(loss.shape, dtype=tg.float64, device="cuda")    # a fill: one kernel
    mid = runtime.counts()
    loss.backward(seed)
    after = runtime.counts()
    assert mid["kernels"] - before["kernels"] == fwd + 1
    assert after["kernels"] - mid["kernels"] == bwd


def _captured_step():
    """A step using both ops, captured once on "cuda": (its replay with new indices, loss, the
    weight's gradient, the same step eagerly on cpu)."""
    w = tg.tensor(rng(10).standard_normal((6, 5)), device="cuda", requires_grad=True)
    idx = tg.tensor(rng(11).integers(0, 6, 4), device="cuda")
    t = tg.tensor(rng(12).integers(0, 6, 4), device="cuda")

    def step():
        w.grad = None
        loss = F.cross_entropy(F.embedding(idx, w) @ w.T, t)
        loss.backward()
        return loss

    def replay(i, k):
        with tg.no_grad():
            idx.copy_(tg.tensor(i, device="cuda"))
            t.copy_(tg.tensor(k, device="cuda"))
        graph.replay()

    def on_cpu(i, k):
        wc = tg.tensor(w.numpy(), requires_grad=True)
        loss = F.cross_entropy(F.embedding(tg.tensor(i), wc) @ wc.T, tg.tensor(k))
        loss.backward()
        return loss.numpy(), wc.grad.numpy()

    step().numpy()                                          # warm up: compile, no error
    graph = tg.cuda.CUDAGraph()
    with tg.cuda.graph(graph):
        loss = step()
    return replay, loss, w.grad, on_cpu


@needs_cuda
def test_captured_cross_entropy_and_embedding_follow_new_indices():
    """Captured once, replayed with new indices copied in: the results follow them (the
    launches read them on the device; nothing was read on the host while capturing)."""
    replay, loss, grad, on_cpu = _captured_step()
    for seed in (13, 14):
        i, k = rng(seed).integers(0, 6, 4), rng(seed + 1).integers(0, 6, 4)
        replay(i, k)
        want_loss, want_grad = on_cpu(i, k)
        assert_close(loss.numpy(), want_loss, rtol=1e-12, atol=1e-12, what="replayed loss")
        assert_close(grad.numpy(), want_grad, rtol=1e-12, atol=1e-12, what="replayed gradient")


@needs_cuda
def test_captured_cross_entropy_and_embedding_report_bad_indices_after_each_replay():
    """A bad index copied into a captured step's inputs is raised at the sync after each replay
    (the runtime must look at the error flag after every replay, not only the first)."""
    from tilegrad.backends.cuda import runtime
    replay, loss, _, _ = _captured_step()
    replay([0, 1, 2, 3], [0, 1, 2, 3])
    loss.item()                                             # a good replay, then bad ones
    try:
        for bad_idx, bad_t, message in [([0, 6, 1, 2], [0, 1, 2, 3], "embedding: index 6"),
                                        ([0, 1, 1, 2], [0, 1, -1, 3], "cross_entropy: target -1")]:
            replay(bad_idx, bad_t)
            with pytest.raises(IndexError, match=message):
                loss.item()
            loss.item()                                     # raised once
    finally:                                                # leave no report to later tests
        runtime.expect_errors()
        with contextlib.suppress(IndexError):
            runtime.synchronize()


@pytest.mark.parametrize("make, error", [
    (lambda: tg.nn.Linear(-1, 3), RuntimeError),          # PyTorch: a tensor of negative size
    (lambda: tg.nn.Linear(3, 1.5), TypeError),
    (lambda: tg.nn.Conv2d(-1, 4, 3), RuntimeError),
    (lambda: tg.nn.Conv2d(3, 4, 3, stride=0), ValueError),  # PyTorch: RuntimeError in forward
    (lambda: tg.nn.Conv2d(3, 4, 3, padding=-1), ValueError),
    (lambda: tg.nn.Conv2d(3, 4, 1.5), TypeError),
    (lambda: tg.nn.MaxPool2d(0), ValueError),
    (lambda: tg.nn.MaxPool2d(2, padding=2), ValueError),
    (lambda: tg.nn.MaxPool2d(2, stride=-1), ValueError),
    (lambda: tg.nn.Embedding(-1, 3), RuntimeError),
    (lambda: tg.nn.Embedding(3, 2.0), TypeError),
    (lambda: tg.nn.LSTMCell(3, -1), RuntimeError),
    (lambda: tg.nn.LSTM(3, 0), ValueError),                  # PyTorch: hidden_size > 0
    (lambda: tg.nn.LSTM(0, 3), ValueError),
    (lambda: tg.nn.LSTM(3, 2, num_layers=0), ValueError),
    (lambda: tg.nn.LSTM(3, 2.5), TypeError),
    (lambda: tg.nn.LSTM(3, 2, dropout="a"), ValueError),     # once a TypeError
    (lambda: tg.nn.LSTM(3, 2, dropout=float("nan")), ValueError),
    (lambda: tg.nn.Dropout(1.5), ValueError),
    (lambda: tg.nn.Dropout(float("nan")), ValueError),       # PyTorch: RuntimeError in forward
    (lambda: tg.nn.Dropout("a"), TypeError),
    (lambda: tg.nn.CrossEntropyLoss(reduction="avg"), ValueError),  # PyTorch: in forward
], ids=["linear-neg", "linear-float", "conv-neg-channels", "conv-stride0", "conv-neg-padding",
        "conv-float-kernel", "pool-kernel0", "pool-padding", "pool-neg-stride", "emb-neg",
        "emb-float", "lstmcell-neg", "lstm-hidden0", "lstm-input0", "lstm-layers0", "lstm-float",
        "lstm-dropout-str", "lstm-dropout-nan", "dropout-1.5", "dropout-nan", "dropout-str",
        "ce-reduction"])
def test_layer_constructors_reject_what_pytorch_rejects(make, error):
    """With PyTorch's class where PyTorch's constructor raises; where it raises only in forward
    (or never), tilegrad's constructor raises, with the class of that forward's error."""
    with pytest.raises(error):
        make()


# ---------------------------------------------------------------- dropout

def test_dropout_is_identity_in_eval():
    x = tg.tensor(rng(3).standard_normal((5, 7)), requires_grad=True)
    for out in (F.dropout(x, 0.5, training=False), F.dropout(x, 0.0),
                tg.nn.Dropout(0.5).eval()(x)):
        assert_close(out.numpy(), x.numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.7])
def test_dropout_training_scales_kept_and_gradient_is_the_mask(device, p):
    x_np = rng(4).standard_normal((201, 301))          # 60501 elements, none zero
    x = tg.tensor(x_np, device=device, requires_grad=True)
    out = F.dropout(x, p, training=True)
    assert out.dtype == tg.float64 and out.shape == x.shape
    y = out.numpy()
    kept = y != 0
    assert_close(y[kept], x_np[kept] / (1 - p), rtol=1e-15, atol=0, what="kept elements")
    # The kept fraction is binomial: standard error sqrt(p(1-p)/n) < 0.0021, allow ~5 of them.
    assert abs(kept.mean() - (1 - p)) < 0.01, f"kept {kept.mean():.4f}, expected {1 - p}"
    w = rng(5).standard_normal(x.shape)
    (out * tg.tensor(w, device=device)).sum().backward()
    assert_close(x.grad.numpy(), w * kept / (1 - p), rtol=1e-15, atol=0, what="gradient")


def test_dropout_draws_a_new_mask_each_call_and_edges():
    x = tg.tensor(rng(6).standard_normal((31, 17)))
    a, b = F.dropout(x, 0.5).numpy() != 0, F.dropout(x, 0.5).numpy() != 0
    assert (a != b).any(), "two calls drew the same mask"
    assert (F.dropout(x, 1.0).numpy() == 0).all()
    m = tg.nn.Dropout(0.5)
    assert ((m(x).numpy() == 0).mean() > 0.3)                    # a fresh module is training
    assert_close(m.eval()(x).numpy(), x.numpy(), rtol=0, atol=0)  # and eval() switches it off
    assert F.dropout(x.float(), 0.5).dtype == tg.float32


# ---------------------------------------------------------------- modules against torch

def check_module(device, m, th, spec, call=lambda mod, *xs: mod(*xs), seed=0):
    """``m`` (tilegrad, float64) and ``th`` (torch, double) share torch's state dict: their keys,
    order and shapes must agree; outputs and the gradients of ``sum(w * out)`` with respect to
    every parameter and float input must agree to rtol 1e-8."""
    if torch is None:
        pytest.skip("PyTorch is not installed")
    sd = th.state_dict()
    assert ([(k, v.shape) for k, v in m.state_dict().items()]
            == [(k, tuple(v.shape)) for k, v in sd.items()])
    m.load_state_dict({k: v.numpy() for k, v in sd.items()})
    arrays = make_inputs(spec, seed)
    tg_in = [tg.tensor(a, device=device, requires_grad=a.dtype.kind == "f") for a in arrays]
    th_in = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    tg_out, th_out = _flat(call(m, *tg_in)), _flat(call(th, *th_in))
    assert len(tg_out) == len(th_out)
    r = rng(seed + 1)
    weights = [r.standard_normal(tuple(o.shape)) for o in th_out]
    for k, (a, b) in enumerate(zip(tg_out, th_out)):
        assert_close(a.numpy(), b.detach().numpy(), what=f"output {k}")
    sum((o * tg.tensor(w, device=device)).sum() for o, w in zip(tg_out, weights)).backward()
    sum((o * torch.tensor(w)).sum() for o, w in zip(th_out, weights)).backward()
    tg_params = dict(m.named_parameters())
    for name, p in th.named_parameters():
        assert tg_params[name].grad is not None, f"{name}: no gradient"
        assert_close(tg_params[name].grad.numpy(), p.grad.numpy(), what=f"gradient of {name}")
    for k, (a, b) in enumerate(zip(tg_in, th_in)):
        if b.grad is not None:
            assert_close(a.grad.numpy(), b.grad.numpy(), what=f"gradient of input {k}")


MODULES = [   # (name, constructor args, keyword args, input spec)
    pytest.param("Linear", (5, 7), {}, [(3, 5)], id="linear"),
    pytest.param("Linear", (5, 7), {"bias": False}, [(2, 3, 5)], id="linear-nobias-3d"),
    pytest.param("Conv2d", (3, 5, 3), {"stride": 2, "padding": 1}, [(2, 3, 7, 9)],
                 id="conv2d-s2-p1"),
    pytest.param("Conv2d", (3, 5, (3, 1)), {"stride": (2, 1), "padding": (0, 2), "bias": False},
                 [(1, 3, 7, 9)], id="conv2d-rect-nobias"),
    pytest.param("Embedding", (7, 3), {}, [EMB_IDX], id="embedding"),
    pytest.param("LSTMCell", (5, 7), {}, [(3, 5)], id="lstmcell-no-hx"),
    pytest.param("LSTMCell", (5, 7), {"bias": False}, [(3, 5)], id="lstmcell-nobias"),
    pytest.param("LSTM", (7, 5), {}, [(5, 3, 7)], id="lstm-1layer"),
    pytest.param("LSTM", (7, 5), {"num_layers": 2}, [(5, 3, 7)], id="lstm-2layers"),
    pytest.param("LSTM", (7, 5), {"batch_first": True}, [(3, 5, 7)], id="lstm-batch-first"),
    pytest.param("LSTM", (7, 5), {"num_layers": 2, "batch_first": True}, [(3, 5, 7)],
                 id="lstm-2layers-batch-first"),
    pytest.param("LSTM", (3, 5), {"bias": False}, [(5, 1, 3)], id="lstm-nobias-batch1"),
]


@pytest.mark.parametrize("name, args, kwargs, spec", MODULES)
def test_module_matches_torch(device, name, args, kwargs, spec):
    m = getattr(tg.nn, name)(*args, device=device, dtype=tg.float64, **kwargs)
    th = getattr(torch.nn, name)(*args, **kwargs).double() if torch is not None else None
    check_module(device, m, th, spec)


def test_lstmcell_with_state_matches_torch(device):
    m = tg.nn.LSTMCell(5, 7, device=device, dtype=tg.float64)
    th = torch.nn.LSTMCell(5, 7).double() if torch is not None else None
    check_module(device, m, th, [(3, 5), (3, 7), (3, 7)], call=lambda mod, x, h, c: mod(x, (h, c)))


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
def test_lstm_five_steps_with_state_matches_torch(device, num_layers, batch_first):
    """Output, h_n and c_n over 5 time steps from a given (h_0, c_0), and the gradients of every
    parameter, of the input and of the initial state."""
    tg.set_default_dtype(tg.float64)      # the fixture resets it
    m = tg.nn.LSTM(7, 5, num_layers=num_layers, batch_first=batch_first, device=device)
    th = torch.nn.LSTM(7, 5, num_layers=num_layers, batch_first=batch_first).double() \
        if torch is not None else None
    x_shape = (3, 5, 7) if batch_first else (5, 3, 7)
    state = (num_layers, 3, 5)
    check_module(device, m, th, [x_shape, state, state], seed=num_layers,
                 call=lambda mod, x, h, c: mod(x, (h, c)))


def test_sequential_cnn_matches_torch(device):
    """Conv, ReLU, pool, flatten, linear and the loss composed, as a model would use them."""
    if torch is None:
        pytest.skip("PyTorch is not installed")
    tn, nn = torch.nn, tg.nn
    th = tn.Sequential(tn.Conv2d(3, 5, 3, padding=1), tn.ReLU(), tn.MaxPool2d(3, 2), tn.Flatten(),
                       tn.Linear(5 * 3 * 4, 13)).double()
    m = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(),
                      nn.Linear(5 * 3 * 4, 13)).to(device, tg.float64)
    target = CE_TARGET_13[:2]

    def call(mod, x):
        loss = (nn.CrossEntropyLoss() if mod is m else tn.CrossEntropyLoss())
        logits = mod(x)
        t = tg.tensor(target, device=device) if mod is m else torch.tensor(target)
        return logits, loss(logits, t)

    check_module(device, m, th, [(2, 3, 7, 9)], call=call)


# ---------------------------------------------------------------- default initialisation

def _assert_uniform_within(state, bound):
    """Every parameter in [-bound, bound] and spread over it (each has 31 or more values, so a
    maximum under 0.7*bound has odds below 0.7**31 ~ 2e-5): a bound that is too large fails the
    first check, one too small (or a constant fill) the second."""
    for name, p in state.items():
        top = np.abs(p).max()
        assert p.size >= 31, f"{name}: too few values ({p.size}) to check the spread"
        assert top <= bound, f"{name}: |value| up to {top:.4f} exceeds the bound {bound:.4f}"
        assert top > 0.7 * bound, f"{name}: |value| at most {top:.4f}, bound {bound:.4f}"
        assert abs(p.mean()) < 0.5 * bound, f"{name}: mean {p.mean():.4f}, bound {bound:.4f}"


@pytest.mark.parametrize("make, fan_in", [
    (lambda: tg.nn.Linear(7, 31), 7),
    (lambda: tg.nn.Linear(101, 37), 101),
    (lambda: tg.nn.Conv2d(3, 31, 3), 27),
    (lambda: tg.nn.Conv2d(5, 33, (3, 1)), 15),
])
def test_linear_and_conv_init_within_one_over_sqrt_fan_in(make, fan_in):
    _assert_uniform_within(make().state_dict(), 1 / math.sqrt(fan_in))


# Input sizes far from the hidden size, so that a bound from the wrong one fails.
@pytest.mark.parametrize("make, hidden", [(lambda: tg.nn.LSTMCell(3, 11), 11),
                                          (lambda: tg.nn.LSTM(31, 9, num_layers=2), 9)])
def test_lstm_init_within_one_over_sqrt_hidden(make, hidden):
    _assert_uniform_within(make().state_dict(), 1 / math.sqrt(hidden))


def test_embedding_init_is_standard_normal():
    w = tg.nn.Embedding(1001, 31).weight.numpy()      # 31031 draws
    # Standard errors: mean 1/sqrt(n) ~ 0.0057, std ~ 1/sqrt(2n) ~ 0.004; allow about 5.
    assert abs(w.mean()) < 0.03, f"mean {w.mean():.4f}"
    assert abs(w.std() - 1) < 0.02, f"std {w.std():.4f}"


def test_modules_follow_default_dtype_and_are_reproducible():
    tg.set_default_dtype(tg.float64)
    tg.manual_seed(3)
    a = tg.nn.LSTM(3, 5, num_layers=2).state_dict()
    tg.manual_seed(3)
    b = tg.nn.LSTM(3, 5, num_layers=2).state_dict()
    for k in a:
        assert a[k].dtype == np.float64, f"{k}: {a[k].dtype}"
        assert_close(a[k], b[k], rtol=0, atol=0, what=k)
    tg.set_default_dtype(tg.float32)
    assert tg.nn.Conv2d(3, 5, 3).weight.dtype == tg.float32
