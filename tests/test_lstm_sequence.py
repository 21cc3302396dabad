"""nn.LSTM's fused sequence path (``ops.rnn.LSTMLayer`` on the ``lstm_seq_*`` primitives) against
PyTorch's nn.LSTM and against the step-by-step composition of the cell's ops that nn.LSTM used
before, on every device, float32 and float64: outputs, h_n, c_n and the gradients of the input,
h0, c0 and every parameter. Then launch counts, determinism, the saved-tensor checks, dropout
between layers and bad input."""
import numpy as np
import pytest

import tilegrad as tg
import tilegrad.nn.functional as F
from helpers import torch
from tilegrad.testing import assert_close, rng
from tilegrad.errors import DtypeError, ShapeError
from tilegrad.nn.rnn import lstm_layer

# (T, B, I, H, nn.LSTM keyword arguments, whether hx is given)
CASES = [
    pytest.param(5, 3, 7, 5, {}, True, id="T5-B3"),
    pytest.param(5, 3, 7, 5, {"num_layers": 2}, True, id="2layers"),
    pytest.param(4, 3, 6, 5, {"batch_first": True}, True, id="batch-first"),
    pytest.param(1, 2, 3, 4, {}, True, id="T1"),
    pytest.param(6, 1, 3, 4, {}, False, id="B1-no-hx"),
    pytest.param(3, 2, 5, 3, {"num_layers": 2, "batch_first": True, "bias": False}, False,
                 id="2layers-batch-first-nobias-no-hx"),
]
DTYPES = [pytest.param(np.float64, 1e-9, id="f64"), pytest.param(np.float32, 2e-4, id="f32")]
# Which outputs the loss uses: all, the sequence only, or the final state only (grad_y None).
USES = ["all", "y", "state"]


def _inputs(t, b, i, h, kwargs, with_state, seed):
    r = rng(seed)
    layers = kwargs.get("num_layers", 1)
    x = r.standard_normal((b, t, i) if kwargs.get("batch_first") else (t, b, i))
    state = [r.standard_normal((layers, b, h)) for _ in range(2)] if with_state else None
    return x, state


def _loss_weights(shapes, seed):
    r = rng(seed)
    return [r.standard_normal(s) for s in shapes]


def _run_tilegrad(m, x, state, dtype, device, uses, seed, forward=None):
    """(outputs, gradients by name) of tilegrad's LSTM ``m`` on the float64 arrays given."""
    ts = [tg.tensor(a.astype(dtype), device=device, requires_grad=True)
          for a in ([x] + (state or []))]
    call = forward or (lambda mod, x_, hx: mod(x_, hx))
    out, (hn, cn) = call(m, ts[0], tuple(ts[1:]) if state else None)
    outs = [out, hn, cn]
    w = _loss_weights([o.shape for o in outs], seed)
    picked = {"all": (0, 1, 2), "y": (0,), "state": (1, 2)}[uses]
    sum((outs[k] * tg.tensor(w[k].astype(dtype), device=device)).sum() for k in picked).backward()
    grads = {name: p.grad for name, p in m.named_parameters()}
    grads.update({n: t.grad for n, t in zip(("x", "h0", "c0"), ts)})
    return [o.numpy() for o in outs], {k: (None if v is None else v.numpy())
                                       for k, v in grads.items()}


def _run_torch(th, x, state, uses, seed):
    ts = [torch.tensor(a, requires_grad=True) for a in ([x] + (state or []))]
    out, (hn, cn) = th(ts[0], tuple(ts[1:]) if state else None)
    outs = [out, hn, cn]
    w = _loss_weights([tuple(o.shape) for o in outs], seed)
    picked = {"all": (0, 1, 2), "y": (0,), "state": (1, 2)}[uses]
    sum((outs[k] * torch.tensor(w[k])).sum() for k in picked).backward()
    grads = {name: p.grad for name, p in th.named_parameters()}
    grads.update({n: t.grad for n, t in zip(("x", "h0", "c0"), ts)})
    return [o.detach().numpy() for o in outs], {k: (None if v is None else v.numpy())
                                                for k, v in grads.items()}


def _compare(got, want, tol):
    (outs, grads), (want_outs, want_grads) = got, want
    for k, (a, b) in enumerate(zip(outs, want_outs)):
        assert_close(a, b, rtol=tol, atol=tol, what=("output", "h_n", "c_n")[k])
    for name, b in want_grads.items():
        if b is None:
            continue
        assert grads[name] is not None, f"{name}: no gradient"
        assert_close(grads[name], b, rtol=tol, atol=tol, what=f"gradient of {name}")


@pytest.mark.parametrize("uses", USES)
@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("t,b,i,h,kwargs,with_state", CASES)
def test_lstm_matches_torch(device, t, b, i, h, kwargs, with_state, dtype, tol, uses):
    if torch is None:
        pytest.skip("PyTorch is not installed")
    torch.manual_seed(t * 10 + b)
    th = torch.nn.LSTM(i, h, **kwargs).double()
    m = tg.nn.LSTM(i, h, device=device, dtype=dtype, **kwargs)
    m.load_state_dict(th.state_dict())
    x, state = _inputs(t, b, i, h, kwargs, with_state, seed=t + b)
    _compare(_run_tilegrad(m, x, state, dtype, device, uses, seed=7),
             _run_torch(th, x, state, uses, seed=7), tol)


def _stepwise(m, x, hx):
    """nn.LSTM as it ran before the fused path: per layer one input-projection GEMM, then per
    step ``x_t + linear(h, w_hh, b_hh)`` and the pointwise cell through autograd, then stack."""
    x = x.transpose(0, 1) if m.batch_first else x
    steps, batch = x.shape[:2]
    h_n, c_n = [], []
    for k in range(m.num_layers):
        w_ih, w_hh, b_ih, b_hh = m._layer_params(k)
        if hx is None:
            h = c = tg.zeros(batch, m.hidden_size, dtype=x.dtype, device=x.device)
        else:
            h, c = hx[0][k], hx[1][k]
        xproj = F.linear(x.reshape(steps * batch, x.shape[2]), w_ih, b_ih).reshape(steps, batch, -1)
        ys = []
        for x_t in xproj.unbind(0):
            h, c = F.lstm_cell_pointwise(x_t + F.linear(h, w_hh, b_hh), c)
            ys.append(h)
        x = tg.stack(ys)
        h_n.append(h)
        c_n.append(c)
    out = x.transpose(0, 1) if m.batch_first else x
    return out, (tg.stack(h_n), tg.stack(c_n))


@pytest.mark.parametrize("t,b,i,h,kwargs,with_state", CASES)
def test_lstm_matches_the_stepwise_composition(device, t, b, i, h, kwargs, with_state):
    uses = "all"                       # (the torch test varies which outputs the loss uses)
    tg.manual_seed(t + 100 * b)
    m = tg.nn.LSTM(i, h, device=device, dtype=tg.float64, **kwargs)
    x, state = _inputs(t, b, i, h, kwargs, with_state, seed=3 * t + b)
    fused = _run_tilegrad(m, x, state, np.float64, device, uses, seed=5)
    for p in m.parameters():
        p.grad = None
    _compare(fused, _run_tilegrad(m, x, state, np.float64, device, uses, seed=5,
                                  forward=_stepwise), 1e-10)


def test_an_empty_batch_gives_empty_outputs_and_zero_weight_gradients(device):
    m = tg.nn.LSTM(3, 4, device=device, dtype=tg.float64)
    x = tg.zeros(5, 0, 3, device=device, dtype=tg.float64, requires_grad=True)
    out, (hn, cn) = m(x)
    assert out.shape == (5, 0, 4) and hn.shape == cn.shape == (1, 0, 4)
    (out.sum() + hn.sum() + cn.sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and not p.grad.numpy().any(), name


# ---------------------------------------------------------------- launches and determinism

def _counts():
    from tilegrad.backends.cuda import runtime
    return runtime.counts()


def _issued(before, after):
    return (after["kernels"] - before["kernels"]) + (after["copies"] - before["copies"])


def _layer_tensors(steps, batch, n_in, hidden, h0_grad, seed=0):
    r = rng(seed)
    g = 4 * hidden

    def t(*shape, grad=True, scale=1.0):
        return tg.tensor(scale * r.standard_normal(shape), device="cuda", dtype=tg.float32,
                         requires_grad=grad)
    return (t(steps, batch, n_in), t(g, n_in, scale=0.5), t(g, hidden, scale=0.5), t(g), t(g),
            t(batch, hidden, grad=h0_grad), t(batch, hidden))


@pytest.mark.parametrize("steps", [1, 4, 35])
@pytest.mark.parametrize("h0_grad", [True, False])
def test_launches_per_layer(steps, h0_grad):
    """Forward 2T + 1 (the projection GEMM, then a GEMM and a cell kernel a step); backward of
    the node 2T + 4, or 2T + 3 when h0 needs no gradient."""
    if not tg.device("cuda").available:
        pytest.skip(f"device cuda unavailable: {tg.device('cuda').reason}")
    inputs = _layer_tensors(steps, 2, 3, 4, h0_grad)
    r = rng(1)
    grads = [tg.tensor(r.standard_normal(s), device="cuda", dtype=tg.float32)._data
             for s in ((steps, 2, 4), (2, 4), (2, 4))]
    for _ in range(2):                  # the first run makes its cached tables: count the second
        before = _counts()
        y, h_n, c_n = lstm_layer(*inputs)
        forward = _issued(before, _counts())
        before = _counts()
        y._ctx.backward(*grads)
        backward = _issued(before, _counts())
    assert forward == 2 * steps + 1
    assert backward == 2 * steps + (4 if h0_grad else 3)


def test_backward_is_deterministic():
    if not tg.device("cuda").available:
        pytest.skip(f"device cuda unavailable: {tg.device('cuda').reason}")
    runs = []
    for _ in range(2):
        inputs = _layer_tensors(6, 3, 5, 7, True, seed=4)
        y, h_n, c_n = lstm_layer(*inputs)
        (y.sum() + (h_n * c_n).sum()).backward()
        runs.append([t.grad.numpy() for t in inputs])
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


def test_a_captured_forward_and_backward_replays_the_eager_result_bit_for_bit():
    """Two layers with a given state, captured as a CUDA graph: replayed on new inputs copied into
    the captured ones, it gives what an eager step on those inputs gives, bit for bit (nothing in
    the layer depends on host work done per call)."""
    if not tg.device("cuda").available:
        pytest.skip(f"device cuda unavailable: {tg.device('cuda').reason}")
    m = tg.nn.LSTM(3, 4, num_layers=2, device="cuda")
    r = rng(11)
    arrays = [[r.standard_normal(s).astype(np.float32) for s in ((5, 2, 3), (2, 2, 4), (2, 2, 4))]
              for _ in range(2)]
    x, h, c = (tg.tensor(a, device="cuda", requires_grad=True) for a in arrays[0])
    w = tg.randn(5, 2, 4, device="cuda")

    def step():
        for t in (*m.parameters(), x, h, c):
            t.grad = None
        out, (hn, cn) = m(x, (h, c))
        ((out * w).sum() + (hn * cn).sum()).backward()
        return [out, hn, cn] + [t.grad for t in (*m.parameters(), x, h, c)]

    step()                              # warm-up: cached tables are made outside the capture
    graph = tg.cuda.CUDAGraph()
    with tg.cuda.graph(graph):
        captured = step()
    for a, t in zip(arrays[1], (x, h, c)):
        with tg.no_grad():
            t.copy_(tg.tensor(a, device="cuda"))
    graph.replay()
    replayed = [t.numpy() for t in captured]
    eager = [t.numpy() for t in step()]
    for k, (a, b) in enumerate(zip(replayed, eager)):
        assert np.array_equal(a, b), f"result {k} differs between replay and eager"


# ---------------------------------------------------------------- saved tensors, dropout, errors

@pytest.mark.parametrize("change", ["output", "weight_hh", "input"])
def test_an_in_place_change_of_a_saved_tensor_makes_backward_raise(device, change):
    m = tg.nn.LSTM(3, 4, device=device, dtype=tg.float64)
    x = tg.randn(5, 2, 3, device=device, dtype=tg.float64, requires_grad=True)
    xin = x * 1.0                           # not a leaf: may be changed in place
    out, _ = m(xin)
    with tg.no_grad():
        {"output": out, "weight_hh": m.weight_hh_l0, "input": xin}[change].add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        out.sum().backward()
    assert x.grad is None and all(p.grad is None for p in m.parameters())


def test_dropout_between_layers_goes_through_f_dropout(device, monkeypatch):
    calls = []
    real = F.dropout
    monkeypatch.setattr(F, "dropout", lambda x, p, training: calls.append((p, training)) or
                        real(x, p, training))
    m = tg.nn.LSTM(3, 4, num_layers=3, dropout=0.25, device=device, dtype=tg.float64)
    x = tg.randn(4, 2, 3, device=device, dtype=tg.float64)
    m(x)
    assert calls == [(0.25, True), (0.25, True)]
    calls.clear()
    m.eval()
    eval_out, _ = m(x)
    plain = tg.nn.LSTM(3, 4, num_layers=3, device=device, dtype=tg.float64)
    plain.load_state_dict(m.state_dict())
    assert_close(eval_out.numpy(), plain(x)[0].numpy(), rtol=0, atol=0, what="eval output")


# Bad input: each builder makes the tensors on device d and returns the call that must fail.

def _no_steps(d):
    m, x = tg.nn.LSTM(3, 4, device=d), tg.randn(0, 2, 3, device=d)
    return lambda: m(x)


def _hx_batch(d):
    m, x, h = tg.nn.LSTM(3, 4, device=d), tg.randn(5, 2, 3, device=d), tg.randn(1, 3, 4, device=d)
    return lambda: m(x, (h, h))


def _hx_dtype(d):
    m, x = tg.nn.LSTM(3, 4, device=d), tg.randn(5, 2, 3, device=d)
    h = tg.randn(1, 2, 4, device=d, dtype=tg.float64)
    return lambda: m(x, (h, h))


def _w_ih_shape(d):
    x, w, u = tg.randn(5, 2, 3, device=d), tg.randn(16, 2, device=d), tg.randn(16, 4, device=d)
    return lambda: lstm_layer(x, w, u)


def _b_ih_shape(d):
    x, w, u = tg.randn(5, 2, 3, device=d), tg.randn(16, 3, device=d), tg.randn(16, 4, device=d)
    b = tg.randn(12, device=d)
    return lambda: lstm_layer(x, w, u, b)


BAD = [
    pytest.param(_no_steps, ShapeError, "sequence length", id="T0"),
    pytest.param(_hx_batch, ShapeError, "hx must be", id="hx-shape"),
    pytest.param(_hx_dtype, DtypeError, "LSTM: dtype mismatch", id="hx-dtype"),
    pytest.param(_w_ih_shape, ShapeError, r"LSTM: w_ih has shape \(16, 2\), expected \(16, 3\)",
                 id="w_ih-shape"),
    pytest.param(_b_ih_shape, ShapeError, r"LSTM: b_ih has shape \(12,\)", id="b_ih-shape"),
]


@pytest.mark.parametrize("make,error,match", BAD)
def test_bad_input_raises_naming_the_op_and_launches_nothing(device, make, error, match):
    call = make(device)
    before = _counts() if device == "cuda" else None
    with pytest.raises(error, match=match):
        call()
    if device == "cuda":
        assert _counts() == before
