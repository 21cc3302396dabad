"""The kernel benchmarks: each backend primitive at the reference models' own shapes, and matmul
at large squares, against the PyTorch op that does the same work.

``cases(sizes)`` lists them without allocating anything; ``Case.setup(device, torch)`` makes
seeded float32 inputs and returns a ``Prepared`` whose ``tilegrad()`` calls the primitives of
``device.backend`` directly (kernel-level: the same code times every backend), whose ``torch()``
calls the matching PyTorch op on the same values, and whose ``reference()`` is the NumPy backend in
float64 on the same values. Groups: matmul, conv2d, lstm, cross_entropy, max_pool2d, relu, adam.

Sizes: ``"full"`` the real shapes (the MLP and CNN at batch 64, the LM at 35 steps x batch 20
with a 10000-word vocabulary, squares 1024, 2048, 4096); ``"small"`` the same but squares only
up to 1024; ``"tiny"`` shapes small enough for the tests.

Tolerances (float32 results against float64): sums of K products of unit-scale values carry a
rounding error that grows with K (about eps32*K/2.5 if summed naively, much less blocked), while
their typical magnitude is sqrt(K); so reductions use ``atol = 1e-4 * sqrt(K)`` (1e-4 of the typical
output), ``rtol = 1e-4``. Max pooling, ReLU and their backward passes select or copy values and
must be exact.
"""
import zlib

import numpy as np

from ..backends import numpy as npb
from ..kernels import versions
from . import formulas
from .case import Case, Prepared
from .harness import on_gpu

GROUPS = ("matmul", "conv2d", "lstm", "cross_entropy", "max_pool2d", "relu", "adam")

# ---------------------------------------------------------------- shapes per size

# matmul: (label, m, n, k, trans_b). With trans_b the second operand is stored (n, k), as a
# Linear layer's weight, and the product is A @ B^T.
_MODEL_MATMULS = [
    ("MLP fc1 fwd", 64, 128, 784, True),
    ("MLP fc2 fwd", 64, 10, 128, True),
    ("CNN fc1 fwd", 64, 1000, 2304, True),
    ("CNN fc2 fwd", 64, 10, 1000, True),
    ("LM input projection, 35 steps x 20", 700, 1024, 128, True),
    ("LM hidden GEMM, one step", 20, 1024, 256, True),
    ("LM decoder, 35 steps x 20", 700, 10000, 256, True),
]
_CNN_CONVS = [("CNN conv1", 64, 1, 28, 28, 64), ("CNN conv2", 64, 64, 14, 14, 128),
              ("CNN conv3", 64, 128, 7, 7, 256)]
_CNN_ACTS = [("CNN block1", (64, 64, 28, 28)), ("CNN block2", (64, 128, 14, 14)),
             ("CNN block3", (64, 256, 7, 7))]

_SIZES = {
    "full": dict(matmul=_MODEL_MATMULS + [("square", n, n, n, False) for n in (1024, 2048, 4096)],
                 conv=_CNN_CONVS, acts=_CNN_ACTS, lstm=(35, 20, 128, 256), ce=(700, 10000),
                 vocab=10000),
    "small": dict(matmul=_MODEL_MATMULS + [("square", 1024, 1024, 1024, False)],
                  conv=_CNN_CONVS, acts=_CNN_ACTS, lstm=(35, 20, 128, 256), ce=(700, 10000),
                  vocab=10000),
    "tiny": dict(matmul=[("tiny linear", 4, 6, 16, True), ("tiny square", 32, 32, 32, False)],
                 conv=[("tiny conv1", 2, 1, 8, 8, 4), ("tiny conv2", 2, 4, 5, 5, 8)],
                 acts=[("tiny even", (2, 4, 8, 8)), ("tiny odd", (2, 3, 7, 7))],
                 lstm=(5, 3, 8, 16), ce=(6, 50), vocab=50),
}

# ---------------------------------------------------------------- helpers


def _seed(name):
    return zlib.crc32(name.encode())


def _torch_device(device, torch):
    return "cuda" if on_gpu(device, torch) else "cpu"


def _to_numpy(device):
    """Backend arrays through ``device.backend.to_numpy``, torch tensors through
    ``.detach().cpu().numpy()``, tuples element by element."""
    be = device.backend

    def conv(out):
        if isinstance(out, (tuple, list)):
            return tuple(conv(o) for o in out)
        if hasattr(out, "detach") and hasattr(out, "cpu"):       # a torch tensor
            return out.detach().cpu().numpy()
        return be.to_numpy(out)

    return conv


def _sync(device, torch):
    """Wait for queued device work (nothing to wait for on the CPU)."""
    if device.name == "cpu":
        return lambda: None
    be = device.backend

    def sync():
        if hasattr(be, "synchronize"):
            be.synchronize()
        if on_gpu(device, torch):
            torch.cuda.synchronize()

    return sync


class _Inputs:
    """Seeded float32 NumPy inputs of one case, and their copies on the device, in torch and in
    float64."""

    def __init__(self, name, device, torch):
        self.rng = np.random.default_rng(_seed(name))
        self.device, self.torch, self.tdev = device, torch, _torch_device(device, torch)

    def normal(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def uniform(self, *shape, bound=1.0):
        return self.rng.uniform(-bound, bound, shape).astype(np.float32)

    def dev(self, a):
        return self.device.backend.from_numpy(a)

    def tt(self, a):
        return None if self.torch is None else self.torch.from_numpy(np.array(a)).to(self.tdev)


def _f64(a):
    return a.astype(np.float64)


def _prepared(device, torch, tilegrad, torch_fn, reference, rtol=1e-4, atol=1e-5):
    return Prepared(tilegrad=tilegrad, torch=torch_fn if torch is not None else None,
                    reference=reference, to_numpy=_to_numpy(device), rtol=rtol, atol=atol,
                    sync=_sync(device, torch))

# ---------------------------------------------------------------- matmul


class _Ladder:
    """One version of the CUDA matmul under the backend's ``matmul`` name."""

    def __init__(self, fn):
        self.fn = fn

    def matmul(self, a, b, trans_a=False, trans_b=False, bias=None, relu=False):
        return self.fn(a, b, trans_a, trans_b, bias, relu)


def _ladder_backend(device, module, version):
    """``device.backend``, or for ``version`` that rung's launchers from the CUDA family module
    ``module`` (softmax, reduce): objects with the backend's primitive names."""
    if version is None:
        return device.backend
    import importlib
    return importlib.import_module(f"..backends.cuda.{module}", __package__).VERSIONS[version]


def _matmul_case(label, m, n, k, trans_b, version=None):
    """``version`` None: the matmul in use (``tilegrad.kernels``); else that rung of the CUDA
    ladder, called directly (device "cuda" only)."""
    b_shape = (n, k) if trans_b else (k, n)
    name = f"matmul {m}x{k} @ {n}x{k}^T ({label})" if trans_b else \
        f"matmul {m}x{k} @ {k}x{n} ({label})"
    flops, nbytes = formulas.matmul(m, n, k)

    def setup(device, torch):
        inp = _Inputs(name, device, torch)
        a, b = inp.normal(m, k), inp.normal(*b_shape)
        da, db = inp.dev(a), inp.dev(b)
        ta, tb = inp.tt(a), inp.tt(b)
        be = device.backend
        if version is not None:
            from ..backends.cuda import matmul as ladder
            be = _Ladder(ladder.VERSIONS[version])
        # tilegrad: backend.matmul(a, b, trans_b=...) with no bias or ReLU.
        # torch: F.linear(a, b) (no bias; a @ b^T) where trans_b, else torch.matmul(a, b).
        if torch is None:
            torch_fn = None
        elif trans_b:
            torch_fn = lambda: torch.nn.functional.linear(ta, tb)          # noqa: E731
        else:
            torch_fn = lambda: torch.matmul(ta, tb)                        # noqa: E731
        return _prepared(
            device, torch, lambda: be.matmul(da, db, trans_b=trans_b), torch_fn,
            lambda: npb.matmul(_f64(a), _f64(b), trans_b=trans_b),
            rtol=1e-4, atol=1e-4 * np.sqrt(k))   # unit-normal inputs: outputs ~ sqrt(k)

    return Case("matmul", name, f"{m}x{n}x{k}", flops, nbytes, "compute", setup)

# ---------------------------------------------------------------- conv2d


def _conv_cases(label, n, c, h, w, f):
    """Forward (with bias, as the model's layer), backward-data and backward-weight of a 3x3
    convolution with padding 1 and stride 1."""
    stride, padding = (1, 1), (1, 1)
    flops, nbytes = formulas.conv2d(n, c, h, w, f, 3, 3, stride=1, padding=1)
    ho, wo = formulas.conv2d_out(h, w, 3, 3, 1, 1)
    shape = f"{n}x{c}x{h}x{w} * {f}x{c}x3x3"
    cases = []

    def inputs(name, device, torch):
        inp = _Inputs(name, device, torch)
        x, wt = inp.normal(n, c, h, w), inp.normal(f, c, 3, 3)
        bias, gy = inp.normal(f), inp.normal(n, f, ho, wo)
        return inp, x, wt, bias, gy

    name = f"conv2d fwd {shape} pad 1 ({label})"

    def setup_fwd(device, torch, name=name):
        inp, x, wt, bias, _ = inputs(name, device, torch)
        dx, dw, db = inp.dev(x), inp.dev(wt), inp.dev(bias)
        tx, tw, tb = inp.tt(x), inp.tt(wt), inp.tt(bias)
        be = device.backend
        # tilegrad: backend.conv2d_fwd(x, w, bias). torch: F.conv2d(x, w, bias, 1, 1).
        return _prepared(
            device, torch, lambda: be.conv2d_fwd(dx, dw, db, stride, padding),
            lambda: torch.nn.functional.conv2d(tx, tw, tb, 1, 1),
            lambda: npb.conv2d_fwd(_f64(x), _f64(wt), _f64(bias), stride, padding),
            atol=1e-4 * np.sqrt(9 * c))          # each output sums 9*c products

    cases.append(Case("conv2d", name, shape, flops, nbytes, "compute", setup_fwd))

    # The first layer's backward-data (the gradient of the image) is not needed in training;
    # it is timed anyway, for the kernel's sake at a 1-channel output.
    name = f"conv2d bwd-data {shape} pad 1 ({label})"

    def setup_bwd_data(device, torch, name=name):
        inp, x, wt, _, gy = inputs(name, device, torch)
        dgy, dw = inp.dev(gy), inp.dev(wt)
        tgy, tx, tw = inp.tt(gy), inp.tt(x), inp.tt(wt)
        be = device.backend
        # tilegrad: backend.conv2d_bwd_data(grad_out, w, x_shape).
        # torch: aten.convolution_backward with output_mask (input only), as autograd calls it;
        # x is passed for its shape.
        return _prepared(
            device, torch, lambda: be.conv2d_bwd_data(dgy, dw, (n, c, h, w), stride, padding),
            lambda: torch.ops.aten.convolution_backward(
                tgy, tx, tw, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                [True, False, False])[0],
            lambda: npb.conv2d_bwd_data(_f64(gy), _f64(wt), (n, c, h, w), stride, padding),
            atol=1e-4 * np.sqrt(9 * f))          # each input gradient sums 9*f products

    cases.append(Case("conv2d", name, shape, flops, nbytes, "compute", setup_bwd_data))

    name = f"conv2d bwd-weight {shape} pad 1 ({label})"

    def setup_bwd_weight(device, torch, name=name):
        inp, x, wt, _, gy = inputs(name, device, torch)
        dgy, dx = inp.dev(gy), inp.dev(x)
        tgy, tx, tw = inp.tt(gy), inp.tt(x), inp.tt(wt)
        be = device.backend
        # tilegrad: backend.conv2d_bwd_weight(grad_out, x, w_shape).
        # torch: aten.convolution_backward with output_mask (weight only; no bias gradient,
        # which tilegrad computes by a separate sum); w is passed for its shape.
        return _prepared(
            device, torch, lambda: be.conv2d_bwd_weight(dgy, dx, (f, c, 3, 3), stride, padding),
            lambda: torch.ops.aten.convolution_backward(
                tgy, tx, tw, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                [False, True, False])[1],
            lambda: npb.conv2d_bwd_weight(_f64(gy), _f64(x), (f, c, 3, 3), stride, padding),
            atol=1e-4 * np.sqrt(n * ho * wo))    # each weight gradient sums n*ho*wo products

    cases.append(Case("conv2d", name, shape, flops, nbytes, "compute", setup_bwd_weight))
    return cases

# ---------------------------------------------------------------- LSTM


def _lstm_weights(inp, i, h):
    """PyTorch's initialisation, U(-1/sqrt(h), 1/sqrt(h)), under torch.nn.LSTM's names."""
    bound = 1 / np.sqrt(h)
    return {"weight_ih_l0": inp.uniform(4 * h, i, bound=bound),
            "weight_hh_l0": inp.uniform(4 * h, h, bound=bound),
            "bias_ih_l0": inp.uniform(4 * h, bound=bound),
            "bias_hh_l0": inp.uniform(4 * h, bound=bound)}


def _lstm_step_case(b, i, h):
    name = f"lstm step B={b} I={i} H={h} (2 gate GEMMs + cell)"
    flops, nbytes = formulas.lstm_step(b, i, h)

    def setup(device, torch):
        inp = _Inputs(name, device, torch)
        wts = _lstm_weights(inp, i, h)
        w_ih, w_hh, b_ih, b_hh = (wts[k] for k in
                                  ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
        x, h0, c0 = inp.normal(b, i), inp.normal(b, h, scale=0.5), inp.normal(b, h, scale=0.5)
        be = device.backend
        d = [inp.dev(a) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]
        t = [inp.tt(a) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]

        def step(be, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
            # tilegrad, as nn.LSTM runs a step: x @ W_ih^T + b_ih and h @ W_hh^T + b_hh (two
            # matmuls with trans_b and bias), their sum, then the fused pointwise cell.
            gates = be.binary("add", be.matmul(x, w_ih, trans_b=True, bias=b_ih),
                              be.matmul(h0, w_hh, trans_b=True, bias=b_hh))
            h1, c1, _ = be.lstm_cell_fwd(gates, c0)
            return h1, c1

        # torch: torch.lstm_cell (ATen's cell: both GEMMs and the pointwise part) -> (h, c).
        return _prepared(
            device, torch, lambda: step(be, *d),
            lambda: torch.lstm_cell(t[0], (t[1], t[2]), t[3], t[4], t[5], t[6]),
            lambda: step(npb, *[_f64(a) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]),
            atol=1e-5)    # h and c are O(1), from sums of i+h products of O(1/sqrt(h)) weights

    return Case("lstm", name, f"B={b} I={i} H={h}", flops, nbytes, "compute", setup)


def _lstm_sequence_case(t, b, i, h):
    name = f"lstm sequence T={t} B={b} I={i} H={h} fwd+bwd (nn.LSTM, autograd)"
    flops, nbytes = formulas.lstm_sequence(t, b, i, h, backward=True)
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")

    def setup(device, torch):
        import tilegrad as tg
        inp = _Inputs(name, device, torch)
        wts = _lstm_weights(inp, i, h)
        x, w = inp.normal(t, b, i), inp.normal(t, b, h)

        def tilegrad_side(dev, dtype):
            model = tg.nn.LSTM(i, h, device=dev, dtype=dtype)
            model.load_state_dict(wts)
            tx = tg.tensor(x, dtype=dtype, device=dev, requires_grad=True)
            tw = tg.tensor(w, dtype=dtype, device=dev)
            params = [getattr(model, k) for k in names]

            def run():
                # tilegrad: the whole sequence through the Tensor API: nn.LSTM forward (one
                # input-projection GEMM, then per step a hidden GEMM and the fused cell), then
                # autograd backward of sum(w * out). Gradients are cleared first so that each
                # call returns one call's gradients.
                model.zero_grad()
                tx.grad = None
                out, _ = model(tx)
                (out * tw).sum().backward()
                return tuple(v._data for v in [out, tx.grad] + [p.grad for p in params])

            return run

        run_tg = tilegrad_side(device, tg.float32)
        # reference: the same tilegrad model in float64 on the NumPy backend (values, not time).
        run_ref = tilegrad_side("cpu", tg.float64)

        torch_fn = None
        if torch is not None:
            tdev = _torch_device(device, torch)
            tmodel = torch.nn.LSTM(i, h).to(tdev)
            tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in wts.items()})
            ttx = inp.tt(x).requires_grad_(True)
            ttw = inp.tt(w)
            tparams = [getattr(tmodel, k) for k in names]

            def run_torch():
                # torch: torch.nn.LSTM forward (its fused sequence kernel: cuDNN on a GPU) and
                # autograd backward of sum(w * out), gradients cleared first.
                tmodel.zero_grad(set_to_none=True)
                ttx.grad = None
                out, _ = tmodel(ttx)
                (out * ttw).sum().backward()
                return tuple([out, ttx.grad] + [p.grad for p in tparams])

            torch_fn = run_torch

        be_cpu = tg.device("cpu").backend

        def reference():
            return tuple(be_cpu.to_numpy(a) for a in run_ref())

        # Validated on the output and every gradient: the output is O(1); gradients sum up to
        # t*b O(1) products, hence atol scaled by sqrt(t*b).
        return _prepared(device, torch, run_tg, torch_fn, reference,
                         rtol=1e-4, atol=1e-5 * np.sqrt(t * b))

    return Case("lstm", name, f"T={t} B={b} I={i} H={h}", flops, nbytes, "compute", setup)

# ---------------------------------------------------------------- softmax cross-entropy


def _ce_cases(n, c, label, version=None):
    """Forward, backward, and both; ``version`` None: the backend's (the version in use), else
    that rung of the CUDA softmax_cross_entropy ladder (device "cuda" only)."""
    shape = f"{n}x{c}"
    f_fwd, b_fwd = formulas.cross_entropy(n, c)
    f_bwd, b_bwd = formulas.cross_entropy(n, c, backward=True)

    def inputs(name, device, torch):
        inp = _Inputs(name, device, torch)
        logits = inp.normal(n, c, scale=2.0)
        target = inp.rng.integers(0, c, n).astype(np.int64)
        grad_loss = np.full(n, 1.0 / n, dtype=np.float32)     # the gradient of the mean loss
        return inp, logits, target, grad_loss

    # Losses are O(log c) and accurate to float32's relative precision; gradients are at most
    # 1/n in magnitude, hence atol scaled by 1/n.
    tol_fwd = dict(rtol=1e-4, atol=1e-5)
    tol_bwd = dict(rtol=1e-4, atol=1e-5 / n)

    name_fwd = f"cross_entropy fwd {shape} ({label})"

    def setup_fwd(device, torch):
        inp, logits, target, _ = inputs(name_fwd, device, torch)
        dl, dt = inp.dev(logits), inp.dev(target)
        tl, tt = inp.tt(logits), inp.tt(target)
        be = _ladder_backend(device, "softmax", version)
        # tilegrad: backend.cross_entropy_fwd -> per-row losses.
        # torch: F.cross_entropy(reduction="none") -> per-row losses (log_softmax + nll_loss).
        return _prepared(
            device, torch, lambda: be.cross_entropy_fwd(dl, dt),
            lambda: torch.nn.functional.cross_entropy(tl, tt, reduction="none"),
            lambda: npb.cross_entropy_fwd(_f64(logits), target), **tol_fwd)

    name_bwd = f"cross_entropy bwd {shape} ({label}; torch from saved log-softmax)"

    def setup_bwd(device, torch):
        inp, logits, target, grad_loss = inputs(name_bwd, device, torch)
        dl, dt, dg = inp.dev(logits), inp.dev(target), inp.dev(grad_loss)
        be = _ladder_backend(device, "softmax", version)
        torch_fn = None
        if torch is not None:
            tl, tt, tg_ = inp.tt(logits), inp.tt(target), inp.tt(grad_loss)
            logp = torch.log_softmax(tl, 1)       # saved by torch's forward, not timed
            total_weight = torch.tensor(float(n), device=tl.device)

            def run_torch():
                # torch: what autograd runs for cross_entropy(reduction="none"):
                # nll_loss_backward then _log_softmax_backward_data, from the log-softmax its
                # forward saved. tilegrad's cross_entropy_bwd starts from the logits and
                # recomputes the softmax, so it does more work: compare the fwd+bwd case too.
                g = torch.ops.aten.nll_loss_backward(tg_, logp, tt, None, 0, -100, total_weight)
                return torch.ops.aten._log_softmax_backward_data(g, logp, 1, tl.dtype)

            torch_fn = run_torch

        # tilegrad: backend.cross_entropy_bwd(logits, target, grad_loss) -> dL/dlogits.
        return _prepared(
            device, torch, lambda: be.cross_entropy_bwd(dl, dt, dg), torch_fn,
            lambda: npb.cross_entropy_bwd(_f64(logits), target, _f64(grad_loss)), **tol_bwd)

    name_both = f"cross_entropy fwd+bwd {shape} ({label})"

    def setup_both(device, torch):
        inp, logits, target, grad_loss = inputs(name_both, device, torch)
        dl, dt, dg = inp.dev(logits), inp.dev(target), inp.dev(grad_loss)
        be = _ladder_backend(device, "softmax", version)
        torch_fn = None
        if torch is not None:
            tl = inp.tt(logits).requires_grad_(True)
            tt, tg_ = inp.tt(target), inp.tt(grad_loss)

            def run_torch():
                # torch: F.cross_entropy(reduction="none") forward and autograd backward of the
                # losses with the same grad_loss: the per-row losses and dL/dlogits.
                loss = torch.nn.functional.cross_entropy(tl, tt, reduction="none")
                (g,) = torch.autograd.grad(loss, tl, tg_)
                return loss, g

            torch_fn = run_torch

        # tilegrad: backend.cross_entropy_fwd then backend.cross_entropy_bwd.
        return _prepared(
            device, torch, lambda: (be.cross_entropy_fwd(dl, dt), be.cross_entropy_bwd(dl, dt, dg)),
            torch_fn,
            lambda: (npb.cross_entropy_fwd(_f64(logits), target),
                     npb.cross_entropy_bwd(_f64(logits), target, _f64(grad_loss))),
            rtol=1e-4, atol=tol_bwd["atol"])

    return [Case("cross_entropy", name_fwd, shape, f_fwd, b_fwd, "memory", setup_fwd),
            Case("cross_entropy", name_bwd, shape, f_bwd, b_bwd, "memory", setup_bwd),
            Case("cross_entropy", name_both, shape, f_fwd + f_bwd, b_fwd + b_bwd, "memory",
                 setup_both)]

# ---------------------------------------------------------------- reduce (ladder only)


def _sum_case(label, shape, axis, version):
    """``sum`` over one axis with that rung of the CUDA reduce ladder (device "cuda" only)."""
    rows, cols = shape
    n_red, n_out = shape[axis], shape[1 - axis]
    name = f"sum {rows}x{cols} over axis {axis} ({label})"

    def setup(device, torch):
        inp = _Inputs(name, device, torch)
        x = inp.normal(rows, cols)
        dx, tx = inp.dev(x), inp.tt(x)
        be = _ladder_backend(device, "reduce", version)
        # tilegrad: the rung's sum(x, (axis,), False); torch: x.sum(dim=axis).
        return _prepared(device, torch, lambda: be.sum(dx, (axis,), False),
                         lambda: tx.sum(dim=axis), lambda: npb.sum(_f64(x), (axis,), False),
                         rtol=1e-4, atol=1e-4 * np.sqrt(n_red))

    return Case("reduce", name, f"{rows}x{cols}", rows * cols, (rows * cols + n_out) * 4,
                "memory", setup)

# ---------------------------------------------------------------- max_pool2d


def _pool_cases(label, shape):
    n, c, h, w = shape
    desc = "x".join(map(str, shape))
    k = (2, 2)
    ho, wo = h // 2, w // 2

    name_fwd = f"max_pool2d fwd {desc} k2 ({label})"

    def setup_fwd(device, torch):
        inp = _Inputs(name_fwd, device, torch)
        x = inp.normal(*shape)
        dx, tx = inp.dev(x), inp.tt(x)
        be = device.backend
        # tilegrad: backend.max_pool2d_fwd -> (out, argmax). torch: aten.max_pool2d_with_indices
        # -> (out, indices), what autograd runs in training; both index into the input's H*W.
        return _prepared(
            device, torch, lambda: be.max_pool2d_fwd(dx, k, k, (0, 0)),
            lambda: torch.ops.aten.max_pool2d_with_indices(tx, [2, 2], [2, 2]),
            lambda: npb.max_pool2d_fwd(_f64(x), k, k, (0, 0)),
            rtol=0, atol=0)       # a max and its position are exact

    name_bwd = f"max_pool2d bwd {desc} k2 ({label})"

    def setup_bwd(device, torch):
        inp = _Inputs(name_bwd, device, torch)
        x, gy = inp.normal(*shape), inp.normal(n, c, ho, wo)
        be = device.backend
        dx, dgy = inp.dev(x), inp.dev(gy)
        _, darg = be.max_pool2d_fwd(dx, k, k, (0, 0))
        _, ref_arg = npb.max_pool2d_fwd(_f64(x), k, k, (0, 0))
        torch_fn = None
        if torch is not None:
            tx, tgy = inp.tt(x), inp.tt(gy)
            _, tidx = torch.ops.aten.max_pool2d_with_indices(tx, [2, 2], [2, 2])

            def run_torch():
                # torch: aten.max_pool2d_with_indices_backward (x passed for its shape).
                return torch.ops.aten.max_pool2d_with_indices_backward(
                    tgy, tx, [2, 2], [2, 2], [0, 0], [1, 1], False, tidx)

            torch_fn = run_torch

        # tilegrad: backend.max_pool2d_bwd(grad_out, argmax, x_shape).
        return _prepared(
            device, torch, lambda: be.max_pool2d_bwd(dgy, darg, shape), torch_fn,
            lambda: npb.max_pool2d_bwd(_f64(gy), ref_arg, shape),
            rtol=0, atol=0)       # windows do not overlap: each input gets at most one value

    f_fwd, b_fwd = formulas.max_pool2d(n, c, h, w, 2)
    f_bwd, b_bwd = formulas.max_pool2d(n, c, h, w, 2, backward=True)
    return [Case("max_pool2d", name_fwd, desc, f_fwd, b_fwd, "memory", setup_fwd),
            Case("max_pool2d", name_bwd, desc, f_bwd, b_bwd, "memory", setup_bwd)]

# ---------------------------------------------------------------- ReLU


def _relu_cases(label, shape):
    desc = "x".join(map(str, shape))
    size = formulas.numel(shape)

    name_fwd = f"relu fwd {desc} ({label})"

    def setup_fwd(device, torch):
        inp = _Inputs(name_fwd, device, torch)
        x = inp.normal(*shape)
        dx, tx = inp.dev(x), inp.tt(x)
        be = device.backend
        # tilegrad: backend.unary("relu", x). torch: torch.relu(x).
        return _prepared(device, torch, lambda: be.unary("relu", dx), lambda: torch.relu(tx),
                         lambda: npb.unary("relu", _f64(x)), rtol=0, atol=0)

    name_bwd = f"relu bwd {desc} ({label})"

    def setup_bwd(device, torch):
        inp = _Inputs(name_bwd, device, torch)
        y = np.maximum(inp.normal(*shape), 0)
        gy = inp.normal(*shape)
        dy, dgy, ty, tgy = inp.dev(y), inp.dev(gy), inp.tt(y), inp.tt(gy)
        be = device.backend
        # tilegrad: backend.relu_bwd(grad, y). torch: aten.threshold_backward(grad, y, 0), what
        # autograd runs for torch.relu.
        return _prepared(
            device, torch, lambda: be.relu_bwd(dgy, dy),
            lambda: torch.ops.aten.threshold_backward(tgy, ty, 0),
            lambda: npb.relu_bwd(_f64(gy), _f64(y)), rtol=0, atol=0)

    f_fwd, b_fwd = formulas.relu(size)
    f_bwd, b_bwd = formulas.relu(size, backward=True)
    return [Case("relu", name_fwd, desc, f_fwd, b_fwd, "memory", setup_fwd),
            Case("relu", name_bwd, desc, f_bwd, b_bwd, "memory", setup_bwd)]

# ---------------------------------------------------------------- Adam


def _lm_param_shapes(vocab, emb=128, hidden=256):
    """The LSTM language model's parameters, in its state_dict order."""
    g = 4 * hidden
    return [("embedding.weight", (vocab, emb)), ("lstm.weight_ih_l0", (g, emb)),
            ("lstm.weight_hh_l0", (g, hidden)), ("lstm.bias_ih_l0", (g,)),
            ("lstm.bias_hh_l0", (g,)), ("decoder.weight", (vocab, hidden)),
            ("decoder.bias", (vocab,))]


def _adam_case(vocab, emb, hidden):
    shapes = [s for _, s in _lm_param_shapes(vocab, emb, hidden)]
    total = sum(formulas.numel(s) for s in shapes)
    name = f"adam step over the LM's {len(shapes)} parameters, {total} values (V={vocab})"
    flops, nbytes = formulas.adam(total)
    lr, betas, eps = 1e-3, (0.9, 0.999), 1e-8

    def setup(device, torch):
        inp = _Inputs(name, device, torch)
        params = [inp.normal(*s, scale=0.1) for s in shapes]
        grads = [inp.normal(*s) for s in shapes]
        be = device.backend
        dp = [inp.dev(p) for p in params]
        dg = [inp.dev(g) for g in grads]
        dm = [be.zeros(s, np.float32) for s in shapes]
        dv = [be.zeros(s, np.float32) for s in shapes]
        count = [0]

        def tilegrad_fn():
            # tilegrad: backend.adam_step on each parameter in turn (in place), as optim.Adam.
            # Each call is the next step; validation uses the first call after setup.
            count[0] += 1
            for p, g, m, v in zip(dp, dg, dm, dv):
                be.adam_step(p, g, m, v, count[0], lr, betas[0], betas[1], eps, 0)
            return tuple(dp)

        torch_fn = None
        if torch is not None:
            tp = [inp.tt(p).requires_grad_(True) for p in params]
            for p, g in zip(tp, grads):
                p.grad = inp.tt(g)
            # torch: torch.optim.Adam's default implementation: foreach=None picks the
            # single-tensor for-loop on CPU tensors and the foreach (multi-tensor) kernels on
            # CUDA; fused=True, not the default, is not used.
            opt = torch.optim.Adam(tp, lr=lr, betas=betas, eps=eps)

            def run_torch():
                opt.step()
                return tuple(tp)

            torch_fn = run_torch

        def reference():
            out = []
            for p, g in zip(params, grads):
                p64, m, v = _f64(p), np.zeros(p.shape), np.zeros(p.shape)
                npb.adam_step(p64, _f64(g), m, v, 1, lr, betas[0], betas[1], eps, 0)
                out.append(p64)
            return tuple(out)

        # After one step each parameter (~0.1) has moved by about lr; atol is 1e-3 of that move.
        return _prepared(device, torch, tilegrad_fn, torch_fn, reference, rtol=1e-5, atol=1e-6)

    return Case("adam", name, f"{total} values", flops, nbytes, "memory", setup)

# ---------------------------------------------------------------- the list


def cases(sizes="full", ladder=False):
    """Every kernel case at ``sizes`` ("full", "small" or "tiny"); nothing is allocated until a
    case's ``setup`` is called. ``ladder``: also each version of the CUDA matmul on the largest
    square, of softmax_cross_entropy (fwd+bwd) and of reduce (sum along and across rows) at the
    LM loss's shape (for device "cuda"; the version in use is the plain row)."""
    if sizes not in _SIZES:
        raise ValueError(f"cases: sizes must be one of {', '.join(_SIZES)}, got {sizes!r}")
    s = _SIZES[sizes]
    out = [_matmul_case(*spec) for spec in s["matmul"]]
    if ladder:
        label, m, n, k, trans_b = s["matmul"][-1]
        out += [_matmul_case(f"{label}, matmul {v}", m, n, k, trans_b, version=v)
                for v in versions()["matmul"][0]]
    for spec in s["conv"]:
        out += _conv_cases(*spec)
    t, b, i, h = s["lstm"]
    out += [_lstm_step_case(b, i, h), _lstm_sequence_case(t, b, i, h)]
    n, c = s["ce"]
    out += _ce_cases(n, c, "LM loss" if sizes != "tiny" else "tiny")
    if ladder:      # fwd+bwd with each softmax version; sums along and across rows, each reduce
        label = "LM loss" if sizes != "tiny" else "tiny"
        out += [_ce_cases(n, c, f"{label}, softmax_cross_entropy {v}", version=v)[-1]
                for v in versions()["softmax_cross_entropy"][0]]
        out += [_sum_case(f"{label}, reduce {v}", (n, c), axis, v)
                for axis in (1, 0) for v in versions()["reduce"][0]]
    for label, shape in s["acts"]:
        out += _pool_cases(label, shape)
    for label, shape in s["acts"]:
        out += _relu_cases(label, shape)
    out.append(_adam_case(s["vocab"], i, h))
    return out
