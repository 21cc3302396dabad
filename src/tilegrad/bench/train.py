"""Whole training steps of the three reference models, tilegrad against PyTorch, and a profiler
that splits tilegrad's step into the time of each backend primitive.

Each case is one full step (zero_grad, forward, loss, backward, gradient clipping for the LM,
optimizer step) at the model's reference batch size and recipe (``cli/tasks.py``'s RECIPES):

- ``mlp``: batch 64 of 1x28x28 images, SGD lr 0.01;
- ``cnn``: batch 64 of 1x28x28 images, SGD lr 0.01 momentum 0.9;
- ``lm``: vocabulary 10000, batch 20, BPTT 35, Adam lr 1e-3, gradient norm clipped to 0.25; the
  LSTM state starts at zeros in every step (nothing is carried: one step is timed).

On device cuda each model has a second case, "<model> (graph)": the same step captured once as
a CUDA graph (``tilegrad.cuda.CUDAGraph``) after one eager warm-up step, the weights and optimizer
state then put back in place, and timed as one replay plus the read of the loss. Every case
on cuda also counts the device operations of one step (kernel launches, copies and fills; a
replay is one graph launch), shown beside the case's name in the table.

Both sides start from the same weights (PyTorch's model is loaded from tilegrad's state dict) and
train on one fixed, seeded batch. Each call of ``tilegrad()`` or ``torch()`` updates its model, so
only the first call's loss is comparable: ``reference()`` is PyTorch's first-step loss, computed on
a separate copy of the initial weights (so it does not matter what ran before), and the runner
checks tilegrad's first ``tilegrad()`` against it.
"""
import time

import numpy as np

import tilegrad as tg
import tilegrad.nn.functional as F
from tilegrad import models
from tilegrad.nn.utils import clip_grad_norm_

from . import formulas
from .case import Case, Prepared
from .harness import on_gpu

SEED = 0
IMAGE = (1, 28, 28)          # Fashion-MNIST: the classifiers' reference input
LM_EMBED, LM_HIDDEN = 128, 256

# Per size: the shapes of each model's step. "small" is the real thing, as "full"; "tiny" is small
# enough for tests (the CNN's channels are fixed by the model, so only its batch shrinks).
_SIZES = {
    "full": dict(mlp=dict(batch=64), cnn=dict(batch=64), lm=dict(vocab=10000, batch=20, bptt=35)),
    "tiny": dict(mlp=dict(batch=4), cnn=dict(batch=2), lm=dict(vocab=50, batch=2, bptt=5)),
}
_SIZES["small"] = _SIZES["full"]

_RECIPES = {
    "mlp": dict(optimizer="sgd", lr=0.01, momentum=0.0),
    "cnn": dict(optimizer="sgd", lr=0.01, momentum=0.9),
    "lm": dict(optimizer="adam", lr=1e-3, clip=0.25),
}


# ---------------------------------------------------------------- cost formulas

def _forward_flops(kind, shape):
    """The forward pass's GEMM and convolution FLOPs (pointwise work, pooling, softmax and the
    embedding gather are left out)."""
    mm = lambda m, n, k: formulas.matmul(m, n, k)[0]  # noqa: E731
    if kind == "mlp":
        n = shape["batch"]
        return mm(n, 128, int(np.prod(IMAGE))) + mm(n, 10, 128)
    if kind == "cnn":
        n, (c, h, w) = shape["batch"], IMAGE
        flops = 0
        for f in (64, 128, 256):
            flops += formulas.conv2d(n, c, h, w, f, 3, 3, 1, 1)[0]
            c, h, w = f, h // 2, w // 2
        return flops + mm(n, 1000, c * h * w) + mm(n, 10, 1000)
    t, b, v = shape["bptt"], shape["batch"], shape["vocab"]
    g = 4 * LM_HIDDEN
    return mm(t * b, g, LM_EMBED) + t * mm(b, g, LM_HIDDEN) + mm(t * b, v, LM_HIDDEN)


def _optimizer_traffic(kind):
    """Arrays of parameter size read plus written by one optimizer step: SGD reads p and g and
    writes p (3); with momentum it also reads and writes the buffer (5); Adam reads p, g, m, v and
    writes p, m, v (7)."""
    r = _RECIPES[kind]
    if r["optimizer"] == "adam":
        return 7
    return 5 if r["momentum"] else 3


def _num_params(kind, shape):
    if kind == "mlp":
        return 784 * 128 + 128 + 128 * 10 + 10
    if kind == "cnn":
        n, c = 0, IMAGE[0]
        for f in (64, 128, 256):
            n += f * c * 9 + f
            c = f
        return n + 256 * 3 * 3 * 1000 + 1000 + 1000 * 10 + 10
    v, e, h = shape["vocab"], LM_EMBED, LM_HIDDEN
    return v * e + 4 * h * (e + h) + 2 * 4 * h + h * v + v


def _costs(kind, shape):
    """FLOPs: the forward GEMM/convolution FLOPs times 3, for the forward pass and the two GEMMs
    of the backward pass (data and weight gradients) that each forward GEMM has. A rough figure:
    the first convolution's data gradient is not computed (its input needs none), and pointwise
    work is not counted.

    Bytes: the optimizer's traffic alone, parameters * 4 bytes * (arrays read + written per
    step; see ``_optimizer_traffic``), a rough lower bound that leaves out the activations."""
    flops = 3 * _forward_flops(kind, shape)
    nbytes = _num_params(kind, shape) * 4 * _optimizer_traffic(kind)
    return flops, nbytes


# ---------------------------------------------------------------- the PyTorch models

def _torch_model(torch, kind, shape):
    """The reference model as torch.nn modules with tilegrad's attribute names, so that the
    state-dict keys are the same (``models.py``)."""
    nn = torch.nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(IMAGE)), 128), nn.ReLU(),
                                     nn.Linear(128, 10))

        def forward(self, x):
            return self.net(x)

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c, s = [], IMAGE[0], IMAGE[1]
            for f in (64, 128, 256):
                layers += [nn.Conv2d(c, f, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
                c, s = f, s // 2
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * s * s, 1000), nn.ReLU(),
                                            nn.Linear(1000, 10))

        def forward(self, x):
            return self.classifier(self.features(x))

    class LSTMLanguageModel(nn.Module):
        def __init__(self, vocab_size):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, LM_EMBED)
            self.lstm = nn.LSTM(LM_EMBED, LM_HIDDEN)
            self.decoder = nn.Linear(LM_HIDDEN, vocab_size)

        def forward(self, tokens):
            output, _ = self.lstm(self.embedding(tokens))
            return self.decoder(output)

    if kind == "mlp":
        return MLP()
    if kind == "cnn":
        return CNN()
    return LSTMLanguageModel(shape["vocab"])


def _tilegrad_model(kind, shape):
    if kind == "mlp":
        return models.MLP(in_features=int(np.prod(IMAGE)))
    if kind == "cnn":
        return models.CNN(in_channels=IMAGE[0], image_size=IMAGE[1])
    return models.LSTMLanguageModel(shape["vocab"], LM_EMBED, LM_HIDDEN)


def _batch(kind, shape, seed=SEED):
    """One fixed batch as NumPy arrays (x, y): images (N, 1, 28, 28) float32 and labels (N,)
    int64; for the LM, token ids (T, B) and the next tokens flattened to (T*B,)."""
    r = np.random.default_rng(seed)
    if kind == "lm":
        t, b, v = shape["bptt"], shape["batch"], shape["vocab"]
        seq = r.integers(0, v, (t + 1, b), dtype=np.int64)
        return seq[:-1].copy(), seq[1:].reshape(-1).copy()
    n = shape["batch"]
    return (r.standard_normal((n,) + IMAGE).astype(np.float32),
            r.integers(0, 10, n, dtype=np.int64))


def _torch_device(torch, device):
    return torch.device("cuda" if on_gpu(device, torch) else "cpu")


# ---------------------------------------------------------------- steps

def _tilegrad_loss(kind, model, x, y):
    out = model(x)
    if kind == "lm":
        logits, _ = out           # the state starts at zeros (hidden=None) in every step
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y)
    return F.cross_entropy(out, y)


def _tilegrad_optimizer(kind, params):
    r = _RECIPES[kind]
    if r["optimizer"] == "adam":
        return tg.optim.Adam(params, lr=r["lr"])
    return tg.optim.SGD(params, lr=r["lr"], momentum=r["momentum"])


def _torch_loss(torch, kind, model, x, y):
    out = model(x)
    if kind == "lm":
        out = out.reshape(-1, out.shape[-1])
    return torch.nn.functional.cross_entropy(out, y)


def _torch_optimizer(torch, kind, params):
    r = _RECIPES[kind]
    if r["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=r["lr"])
    return torch.optim.SGD(params, lr=r["lr"], momentum=r["momentum"])


def _torch_side(torch, kind, shape, state, x_np, y_np, dev):
    """A PyTorch model on ``dev`` loaded with ``state`` (tilegrad's state dict), and the batch
    as torch tensors on ``dev``."""
    model = _torch_model(torch, kind, shape)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model.to(dev).train()
    x, y = torch.from_numpy(x_np).to(dev), torch.from_numpy(y_np).to(dev)
    return model, x, y


def _seeded_model(kind, shape):
    """The tilegrad model with the initial weights of seed SEED; the caller's RNG state is kept."""
    rng_state = tg.get_rng_state()
    tg.manual_seed(SEED)
    try:
        return _tilegrad_model(kind, shape)
    finally:
        tg.set_rng_state(rng_state)


def _counts(device):
    """The CUDA runtime's operation counters, or None on a device without them."""
    if device.name != "cuda":
        return None
    from tilegrad.backends.cuda import runtime
    return runtime.counts()


def _launch_counter(device, step):
    """``launches()`` for Prepared: one more ``step()``, and the device operations it issued."""
    if device.name != "cuda":
        return None

    def launches():
        before = _counts(device)
        step()
        after = _counts(device)
        return {k: after[k] - before[k] for k in before}
    return launches


def _captured(device, model, opt, body):
    """``body()`` (a whole step returning its loss tensor) captured as a CUDA graph, after one
    eager warm-up step (it compiles the kernels and makes the optimizer state); then the
    parameters and the optimizer state are put back to where they were, in place (the graph
    holds those tensors), so that the first replay is the first step. Returns the step:
    one replay and a read of the loss."""
    if device.name != "cuda":
        raise tg.DeviceUnavailableError("a captured training step needs device cuda")
    initial = model.state_dict()
    body()
    graph = tg.cuda.CUDAGraph()
    with tg.cuda.graph(graph):
        loss = body()
    model.load_state_dict(initial)
    with tg.no_grad():           # a fresh state: zero moments, momentum and step counters
        counts = list(getattr(opt, "_counts", {}).values())   # SGD's, kept beside its state
        for v in counts + [v for state in opt.state.values() for v in state.values()]:
            if isinstance(v, tg.Tensor):
                v.zero_()

    def replay():
        graph.replay()
        return loss.item()
    return replay


def _setup(kind, shape, device, torch, graph=False):
    device = tg.device(device)
    model = _seeded_model(kind, shape).to(device, tg.float32)
    model.train()
    state = model.state_dict()    # NumPy copies of the initial weights, for the references
    x_np, y_np = _batch(kind, shape)
    x, y = tg.tensor(x_np, device=device), tg.tensor(y_np, device=device)
    params = list(model.parameters())
    opt = _tilegrad_optimizer(kind, params)
    clip = _RECIPES[kind].get("clip")

    def body():
        opt.zero_grad()
        loss = _tilegrad_loss(kind, model, x, y)
        loss.backward()
        if clip:
            clip_grad_norm_(params, clip)
        opt.step()
        return loss

    if graph:
        tilegrad_step = _captured(device, model, opt, body)
    else:
        def tilegrad_step():
            return body().item()

    torch_step = None
    if torch is not None:
        dev = _torch_device(torch, device)
        t_model, t_x, t_y = _torch_side(torch, kind, shape, state, x_np, y_np, dev)
        t_params = list(t_model.parameters())
        t_opt = _torch_optimizer(torch, kind, t_params)

        def run_torch_step():
            t_opt.zero_grad(set_to_none=True)
            loss = _torch_loss(torch, kind, t_model, t_x, t_y)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(t_params, clip)
            t_opt.step()
            return loss.item()

        torch_step = run_torch_step

    cache = []

    def reference():
        """The first step's loss (the loss of the initial weights on the batch), by PyTorch on a
        fresh copy of the initial weights; without PyTorch, by tilegrad in float64 on the CPU."""
        if not cache:
            if torch is not None:
                r_model, r_x, r_y = _torch_side(torch, kind, shape, state, x_np, y_np,
                                                _torch_device(torch, device))
                with torch.no_grad():
                    value = _torch_loss(torch, kind, r_model, r_x, r_y).item()
            else:
                r_model = _seeded_model(kind, shape).to("cpu", tg.float64)
                r_model.load_state_dict(state)
                r_model.train()
                r_x = tg.tensor(x_np.astype(np.float64) if kind != "lm" else x_np)
                with tg.no_grad():
                    value = _tilegrad_loss(kind, r_model, r_x, tg.tensor(y_np)).item()
            cache.append(np.asarray(value, dtype=np.float64))
        return cache[0]

    def to_numpy(out):
        return np.asarray(float(out), dtype=np.float64)

    return Prepared(tilegrad=tilegrad_step, torch=torch_step, reference=reference,
                    to_numpy=to_numpy, rtol=1e-4, atol=1e-5,
                    launches=_launch_counter(device, tilegrad_step))


def _describe(kind, shape):
    r = _RECIPES[kind]
    if kind == "lm":
        head = f"V={shape['vocab']} B={shape['batch']} T={shape['bptt']}"
        return f"{head}, Adam lr={r['lr']:g}, clip {r['clip']:g}"
    opt = f"SGD lr={r['lr']:g}" + (f" momentum {r['momentum']:g}" if r["momentum"] else "")
    return f"N={shape['batch']} {'x'.join(map(str, IMAGE))}, {opt}"


def cases(sizes="full", graph=False):
    """One Case per reference model's training step (group "train", bound "compute"); with
    ``graph`` (device cuda) also the same step captured once as a CUDA graph and replayed,
    named "<model> (graph)"."""
    if sizes not in _SIZES:
        raise ValueError(f"train cases: sizes must be one of {', '.join(_SIZES)}, got {sizes!r}")
    out = []
    for captured in (False, True) if graph else (False,):
        for kind, shape in _SIZES[sizes].items():
            flops, nbytes = _costs(kind, shape)
            out.append(Case(group="train", name=kind + (" (graph)" if captured else ""),
                            shape=_describe(kind, shape), flops=flops, bytes=nbytes,
                            bound="compute",
                            setup=lambda device, torch, kind=kind, shape=shape, g=captured:
                                _setup(kind, shape, device, torch, g)))
    return out


# ---------------------------------------------------------------- profiling

def _primitives(backend):
    """The backend's public functions: callables not starting with "_" that tilegrad defines
    (NumPy helpers the module imports, such as ``sliding_window_view``, are left alone)."""
    root = backend.__name__.split(".")[0]
    names = []
    for name, obj in vars(backend).items():
        if name.startswith("_") or isinstance(obj, type) or not callable(obj):
            continue
        if str(getattr(obj, "__module__", "") or "").split(".")[0] == root:
            names.append(name)
    return names


def profile_step(prepared_or_case, device, steps=3, warmup=1, sync=None):
    """Seconds per step spent in each backend primitive during tilegrad's training step.

    Every public function of ``device.backend`` is replaced, for the duration, by a wrapper that
    adds its ``perf_counter`` time under its name (``unary`` and ``binary`` under ``"unary:exp"``,
    ``"binary:add"``: their first argument); a primitive called from inside another (through the
    module, as ``cross_entropy_fwd`` calls ``log_softmax_fwd``) counts only in the outer one. The
    originals are put back afterwards, also when the step raises.

    ``prepared_or_case``: a Prepared, or a Case to set up on ``device`` (without PyTorch).
    ``warmup`` steps run first, unprofiled (the optimizer allocates its state in the first step).
    ``sync``, by default the backend's ``synchronize`` where it has one, is called after each
    outermost primitive so that an asynchronous device's time lands on the primitive that queued
    it; without one, the times on such a device are launch times.

    Returns ``{key: seconds per step}`` (the mean over ``steps``), sorted by time, largest first,
    plus ``"_total"`` (the step's wall time) and ``"_python"`` (``_total`` minus the primitives:
    the framework's own overhead).
    """
    device = tg.device(device)
    prepared = prepared_or_case
    if isinstance(prepared_or_case, Case):
        prepared = prepared_or_case.setup(device, None)
    for _ in range(warmup):
        prepared.tilegrad()
    backend = device.backend
    if sync is None:
        sync = getattr(backend, "synchronize", None)
    names = [n for n in _primitives(backend) if n != "synchronize"]
    originals = {n: getattr(backend, n) for n in names}
    acc, depth = {}, [0]

    def wrap(name, fn):
        keyed = name in ("unary", "binary")

        def timed(*args, **kwargs):
            if depth[0]:
                return fn(*args, **kwargs)
            depth[0] += 1
            start = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
                if sync is not None:
                    sync()
                return out
            finally:
                dt = time.perf_counter() - start
                depth[0] -= 1
                key = f"{name}:{args[0]}" if keyed and args else name
                acc[key] = acc.get(key, 0.0) + dt

        timed.__wrapped__ = fn
        return timed

    try:
        for n, fn in originals.items():
            setattr(backend, n, wrap(n, fn))
        start = time.perf_counter()
        for _ in range(steps):
            prepared.tilegrad()
        total = time.perf_counter() - start
    finally:
        for n, fn in originals.items():
            setattr(backend, n, fn)
    result = {k: v / steps for k, v in sorted(acc.items(), key=lambda kv: -kv[1])}
    result["_total"] = total / steps
    result["_python"] = result["_total"] - sum(acc.values()) / steps
    return result
