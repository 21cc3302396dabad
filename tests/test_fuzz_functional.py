"""Property-based fuzzing of every public ``tilegrad.nn.functional`` op against PyTorch.

Each case draws shapes (0-length and 1-length dimensions among them), dtypes (float64, float32,
integers where the op takes them), dimensions out of range, strides, paddings and kernel sizes
(invalid ones too: zero, negative, float, bool, tuples of the wrong length) and calls the op in
both frameworks through ``fuzz_helpers.compare``: the same values to 1e-10 (1e-5 in float32) and
gradients, or the same class of error. Every case also counts the outcomes it exercised (the
``seen`` fixture) and, on cpu, asserts it reached both a result and an error, so that a strategy
that drifts into only one of them is noticed.

Not generated: inputs PyTorch accepts that tilegrad deliberately does not take.

- Every op: arguments tilegrad's signature lacks (conv2d ``dilation``/``groups``/string padding,
  max_pool2d ``dilation``/``ceil_mode``/``return_indices``, embedding ``padding_idx``/
  ``max_norm``/..., cross_entropy ``weight``/``ignore_index``/``label_smoothing``, softmax
  ``dtype`` and the deprecated implicit ``dim=None``, dropout ``inplace``).
- linear, conv2d, max_pool2d, lstm_cell, lstm_cell_pointwise: integer inputs (tilegrad's layers
  compute in floating point; mixing an integer tensor with a floating one is generated and is an
  error in both). embedding: an integer weight.
- conv2d: inputs of zero channels (PyTorch returns an output of 0 channels, not F, and checks
  no dtypes: tilegrad returns (N, F, Ho, Wo), zeros plus the bias); a kernel of height or width
  0 with an input of no elements (PyTorch's empty-input paths then fail with an internal
  IndexError); a weight or bias of another dtype with an input of no elements (PyTorch runs no
  kernel, so checks no dtype).
- lstm_cell: h or c of another floating dtype than the input (PyTorch promotes), tensors of more
  than 2 dimensions.
- log_softmax, softmax, cross_entropy, dropout: integer inputs with no elements, and uint8 class
  targets with no elements for a cross_entropy input of 3 or more dimensions (PyTorch runs no
  kernel, so checks no dtype, for them; tilegrad refuses the dtype whatever the size).
- linear: a bias of another floating dtype than the input's (PyTorch adds some biases in place,
  which promotes them, and others in addmm, which refuses them).
- cross_entropy: target value -100 (PyTorch's default ``ignore_index``); class probabilities of
  another floating dtype than the input (PyTorch promotes).
- dropout with 0 < p < 1 in training: PyTorch's mask comes from its own generator; that case is
  ``test_dropout_statistics`` instead.
"""
import collections
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tilegrad as tg
from fuzz_helpers import arrays, broadcastable, compare, dims, fuzz, shapes, tolerance
from helpers import torch

F32_TOL = 1e-5
# Examples per case: cpu runs a few hundred a second; the CUDA simulator runs each kernel thread
# in Python, some tens of milliseconds an example (TILEGRAD_FUZZ_SCALE multiplies both).
EXAMPLES, EXAMPLES_CUDA = 400, 60
SEEDS = st.integers(0, 2**32 - 1)
FLOATS = ["float64", "float64", "float32"]      # float64 more often: it checks to 1e-10


def side(device):
    """The largest side of a drawn shape: the simulator runs every CUDA thread in Python."""
    return 3 if device == "cuda" else 4


def rare(data, percent):
    """True ``percent`` times in a hundred: an unusual argument now and then. (Hypothesis favours
    the smallest values, so the rare event is the large ones.)"""
    return data.draw(st.integers(0, 99)) >= 100 - percent


def usually(data, common, others, percent=10):
    """``common``, or ``percent`` times in a hundred one of ``others`` (Hypothesis favours the
    ends of a ``sampled_from`` list, so repeating an entry in it weights it poorly)."""
    return data.draw(st.sampled_from(others)) if rare(data, percent) else common


def array(data, shape, dtype="float64"):
    """Random values of ``shape``, from a seed Hypothesis draws (reproducible examples)."""
    return arrays(shape, dtype, seed=data.draw(SEEDS))


def indices(data, shape, n, dtype="int64", out_of_range=10):
    """Integers in [0, n), and ``out_of_range`` percent of the time one at -1, -2, n or n + 1."""
    r = np.random.default_rng(data.draw(SEEDS))
    idx = r.integers(0, max(n, 1), size=shape)
    if idx.size and (n == 0 or rare(data, out_of_range)):
        idx.flat[r.integers(idx.size)] = data.draw(st.sampled_from([-2, -1, n, n + 1]))
    return idx.astype(dtype)


def size(data, lo, hi, bad=0, percent=8):
    """A size from [lo, hi], or ``bad`` ``percent`` times in a hundred."""
    return bad if rare(data, percent) else data.draw(st.integers(lo, hi))


def geometry(data, lo, hi, bad):
    """A kernel size, stride or padding: an int or a pair (or 1-tuple, or NumPy int) of ints from
    [lo, hi]; one in ten from ``bad`` instead (out of range), and one in twelve of a type or
    length PyTorch refuses (a float, a bool, None, a triple, an empty tuple)."""
    if rare(data, 8):
        return data.draw(st.sampled_from([1.5, 2.0, True, None, (1, 1, 1), (), (1, 2.0)]))
    n = st.sampled_from(bad) if rare(data, 10) else st.integers(lo, hi)
    return data.draw(st.one_of(n, st.tuples(n, n), st.tuples(n), n.map(np.int64)))


def floating_if_empty(dtype, shape):
    """``dtype``, or float64 for an integer tensor of no elements (excluded: module docstring)."""
    return "float64" if dtype.startswith(("int", "uint")) and 0 in shape else dtype


def ints_of(device):
    """The integer dtypes besides int64 that ``device`` has (the CUDA backend has none)."""
    return ["int32", "uint8"] if device == "cpu" else []


def op(lib, name):
    """The op ``name`` of ``lib``: torch's lives in torch.nn.functional or, for flatten and
    lstm_cell, in torch itself."""
    return getattr(lib.F, name, None) or getattr(lib.tg, name)


def check(call, arrs, device, seen, grad=True):
    """``compare`` (to F32_TOL where an array is float32), counting the outcome in ``seen``."""
    drawn = [np.shape(a) for a in arrs]

    def call_drawn(lib, *tensors):
        # compare makes its tensors through np.ascontiguousarray, which turns a 0-d array into
        # shape (1,): give the op the shape that was drawn.
        return call(lib, *(t.reshape(s) if tuple(t.shape) != s else t
                           for t, s in zip(tensors, drawn)))

    if any(a.dtype == np.float32 for a in arrs):
        with tolerance(F32_TOL):
            outcome = compare(call_drawn, arrs, device, grad)
    else:
        outcome = compare(call_drawn, arrs, device, grad)
    seen["ok" if outcome is None else outcome.__name__] += 1


@pytest.fixture
def seen(device, request):
    """The outcomes of one case, kept in the test's ``user_properties`` (``--junitxml`` with
    ``-o junit_family=legacy`` writes them out); on cpu (the full budget) both a result and an
    error must be among them."""
    counts = collections.Counter()
    yield counts
    request.node.user_properties.append(("outcomes", dict(counts)))
    if device == "cpu" and counts:
        assert counts["ok"], f"no example returned a result: {dict(counts)}"
        assert sum(counts.values()) > counts["ok"], f"no example raised: {dict(counts)}"


# ---------------------------------------------------------------- elementwise and shape

def test_relu(device, seen):
    @fuzz(device, EXAMPLES, EXAMPLES_CUDA)
    @given(st.data())
    def run(data):
        shape = data.draw(shapes(max_side=side(device)))
        dtype = data.draw(st.sampled_from(FLOATS + ["int64", "bool"] + ints_of(device)))
        check(lambda lib, x: lib.F.relu(x), [array(data, shape, dtype)], device, seen)
    run()


def test_flatten(device, seen):
    @fuzz(device, EXAMPLES, EXAMPLES_CUDA)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        start, end = data.draw(dims(len(shape))), data.draw(dims(len(shape)))
        dtype = data.draw(st.sampled_from(FLOATS + ["int64", "bool"]))
        check(lambda lib, x: op(lib, "flatten")(x, start, end), [array(data, shape, dtype)],
              device, seen)
    run()


@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
def test_softmax(device, seen, name):
    @fuzz(device, EXAMPLES, EXAMPLES_CUDA)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        d = data.draw(dims(len(shape)))
        dtype = data.draw(st.sampled_from(FLOATS + ["int64"]))
        dtype = floating_if_empty(dtype, shape)
        check(lambda lib, x: getattr(lib.F, name)(x, dim=d), [array(data, shape, dtype)],
              device, seen)
    run()


# ---------------------------------------------------------------- linear

def test_linear(device, seen):
    @fuzz(device, EXAMPLES, EXAMPLES_CUDA)
    @given(st.data())
    def run(data):
        s = side(device)
        lead = data.draw(shapes(0, 3, max_side=s))
        n_in, n_out = data.draw(st.integers(0, s)), data.draw(st.integers(0, s))
        x_shape = () if rare(data, 5) else lead + (n_in,)
        w_in = n_in + 1 if rare(data, 10) else n_in
        w_shape = usually(data, (n_out, w_in), [(w_in,), (w_in,), (), (1, n_out, w_in)], 15)
        # Biases that broadcast to the output or to its 2-D flattening (rows, out_features):
        # PyTorch takes some of them, by rules of its internal paths (see
        # tilegrad.nn._args.bias_target).
        rows = int(np.prod(lead))
        out_shape = lead + (n_out,) if len(w_shape) == 2 else lead
        bias = usually(data, data.draw(st.sampled_from([None, (n_out,)])),
                       [broadcastable(out_shape), broadcastable((rows, n_out)),
                        st.just((n_out + 1,))], 40)
        b_shape = bias if bias is None or isinstance(bias, tuple) else data.draw(bias)
        dtype = data.draw(st.sampled_from(FLOATS))
        dtypes = [dtype] * (2 if b_shape is None else 3)
        if rare(data, 10):       # the input or weight of another dtype: an error in both
            other = "float32" if dtype == "float64" else "float64"
            dtypes[data.draw(st.integers(0, 1))] = data.draw(st.sampled_from([other, "int64"]))
        arrs = [array(data, sh, dt) for sh, dt in zip([x_shape, w_shape, b_shape], dtypes)]
        check(lambda lib, *t: lib.F.linear(*t), arrs, device, seen)
    run()


# ---------------------------------------------------------------- conv2d and max_pool2d

def test_conv2d(device, seen):
    @fuzz(device, EXAMPLES, EXAMPLES_CUDA)
    @given(st.data())
    def run(data):
        s = side(device)
        n, c, f = data.draw(st.integers(0, 2)), data.draw(st.integers(1, 3)), size(data, 1, 3)
        h, w = size(data, 1, s + 1), size(data, 1, s + 1)
        kh, kw = size(data, 1, 3), size(data, 1, 3)
        x_shape = usually(data, (n, c, h, w), [(c, h, w), (c, h, w), (c, h), (1, n, c, h, w)], 25)
        if 0 in x_shape and 0 in (kh, kw):
            kh, kw = 1, 1        # excluded (module docstring)
        w_c = c + 1 if rare(data, 5) else c
        w_shape = (f, w_c, kh) if rare(data, 4) else (f, w_c, kh, kw)
        b_shape = usually(data, data.draw(st.sampled_from([None, (f,)])), [(f + 1,), (f, 1)], 5)
        stride, padding = geometry(data, 1, 3, bad=[0, -1]), geometry(data, 0, 2, bad=[-1])
        dtype = data.draw(st.sampled_from(FLOATS))
        dtypes = [dtype] * 3
        if rare(data, 8) and 0 not in x_shape:      # excluded for empty inputs (docstring)
            dtypes[data.draw(st.integers(0, 1))] = "float32" if dtype == "float64" else "float64"
        arrs = [array(data, sh, dt) for sh, dt in zip([x_shape, w_shape, b_shape], dtypes)
                if sh is not None]
        check(lambda lib, x, wt, *b: lib.F.conv2d(x, wt, *(b or [None]), stride=stride,
                                                  padding=padding), arrs, device, seen)
    run()


def test_max_pool2d(device, seen):
    @fuzz(device, EXAMPLES, EXAMPLES_CUDA)
    @given(st.data())
    def run(data):
        s = side(device)
        n, c = data.draw(st.integers(0, 2)), size(data, 1, 2)
        h, w = size(data, 1, s + 1), size(data, 1, s + 1)
        x_shape = usually(data, (n, c, h, w), [(c, h, w), (c, h, w), (c, h), (1, n, c, h, w)], 25)
        kernel = geometry(data, 1, 3, bad=[0, -1])
        stride = usually(data, None, [()], 5) if data.draw(st.booleans()) else \
            geometry(data, 1, 3, bad=[0, -1])
        padding = geometry(data, 0, 1, bad=[-1, 2])     # 2: more than half most kernels
        x = array(data, x_shape, data.draw(st.sampled_from(FLOATS)))
        check(lambda lib, t: lib.F.max_pool2d(t, kernel, stride, padding), [x], device, seen)
    run()


# ---------------------------------------------------------------- embedding

def test_embedding(device, seen):
    @fuzz(device, EXAMPLES, EXAMPLES_CUDA)
    @given(st.data())
    def run(data):
        s = side(device)
        v, d = data.draw(st.integers(0, s)), data.draw(st.integers(0, s))
        idx_shape = data.draw(shapes(0, 3, max_side=s))
        idx_dtype = data.draw(st.sampled_from(["int64"] * 5 + ["float64"] + ints_of(device)))
        idx = array(data, idx_shape, idx_dtype) if idx_dtype == "float64" else \
            indices(data, idx_shape, v, idx_dtype, out_of_range=30)
        w_shape = data.draw(st.sampled_from([(v, d)] * 8 + [(v,), (v, d, 1)]))
        weight = array(data, w_shape, data.draw(st.sampled_from(FLOATS)))
        check(lambda lib, i, wt: lib.F.embedding(i, wt), [idx, weight], device, seen)
    run()


# ---------------------------------------------------------------- LSTM cell

def _lstm_pointwise_reference(lib, gates, c):
    """PyTorch's LSTM cell equations after its two GEMMs (it has no such op of its own), with
    tilegrad's contract (gates (B, 4H), c (B, H), one dtype; PyTorch's equations would broadcast
    and promote) as a RuntimeError; for tilegrad the op."""
    if lib.tg is tg:
        return lib.F.lstm_cell_pointwise(gates, c)
    if c.ndim != 2 or tuple(gates.shape) != (c.shape[0], 4 * c.shape[1]) or gates.dtype != c.dtype:
        raise RuntimeError(f"gates {tuple(gates.shape)} {gates.dtype} and c {tuple(c.shape)} "
                           f"{c.dtype} do not match")
    i, f, g, o = gates.chunk(4, dim=1) if c.shape[1] else (gates,) * 4
    c2 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c2), c2


# One change at a time to an otherwise valid LSTM cell's arguments (most examples have none).
LSTM_MUTATIONS = ["none"] * 8 + ["x_1d", "x_cols", "x_batch", "w_ih_rows", "w_hh_cols",
                                 "w_hh_rows", "h_batch", "c_hidden", "h_1d", "w_ih_1d",
                                 "bias_len", "x_dtype", "w_dtype", "all_int"]


def test_lstm_cell(device, seen):
    @fuzz(device, EXAMPLES, EXAMPLES_CUDA)
    @given(st.data())
    def run(data):
        s = side(device) - 1
        b, n_in, hid = (data.draw(st.integers(0, s)) for _ in range(3))
        m = data.draw(st.sampled_from(LSTM_MUTATIONS))
        x = (n_in,) if m == "x_1d" else (b + (m == "x_batch"), n_in + (m == "x_cols"))
        h = (hid,) if m == "h_1d" else (b + (m == "h_batch"), hid)
        c = (b, hid + (m == "c_hidden"))
        w_ih = (4 * hid,) if m == "w_ih_1d" else (4 * hid + (m == "w_ih_rows"), n_in)
        w_hh = (4 * hid + (m == "w_hh_rows"), hid + (m == "w_hh_cols"))
        n_bias = data.draw(st.sampled_from([0, 1, 2, 2]))
        biases = [(4 * hid + (m == "bias_len"),)] + [(4 * hid,)] * (n_bias - 1)
        spec = [x, h, c, w_ih, w_hh] + biases[:n_bias]
        dtype = data.draw(st.sampled_from(FLOATS))
        dtypes = [dtype] * len(spec)
        other = "float32" if dtype == "float64" else "float64"
        if m == "x_dtype":
            dtypes[0] = other
        if m == "w_dtype":
            dtypes[3] = data.draw(st.sampled_from([other, "int64"]))
        if m == "all_int":
            dtypes = ["int64"] * len(spec)
        arrs = [array(data, sh, dt) for sh, dt in zip(spec, dtypes)]
        check(lambda lib, x, h, c, *w: op(lib, "lstm_cell")(x, (h, c), *w), arrs, device, seen)
    run()


def test_lstm_cell_pointwise(device, seen):
    @fuzz(device, EXAMPLES, EXAMPLES_CUDA)
    @given(st.data())
    def run(data):
        s = side(device)
        b, hid = data.draw(st.integers(0, s)), data.draw(st.integers(0, s))
        m = data.draw(st.sampled_from(["none"] * 6 + ["gates_cols", "c_batch", "c_1d", "dtype"]))
        gates = (b, 4 * hid + (m == "gates_cols"))
        c = (hid,) if m == "c_1d" else (b + (m == "c_batch"), hid)
        dtype = data.draw(st.sampled_from(FLOATS))
        other = "float32" if dtype == "float64" else "float64"
        arrs = [array(data, gates, dtype), array(data, c, other if m == "dtype" else dtype)]
        check(_lstm_pointwise_reference, arrs, device, seen)
    run()


# ---------------------------------------------------------------- cross-entropy

def test_cross_entropy(device, seen):
    @fuzz(device, EXAMPLES, EXAMPLES_CUDA)
    @given(st.data())
    def run(data):
        s = side(device)
        n, c = data.draw(st.integers(0, s)), data.draw(st.integers(0, s))
        kind = data.draw(st.sampled_from(["2d"] * 4 + ["1d", "nd", "nd", "prob", "prob", "0d"]))
        extra = data.draw(shapes(1, 2, max_side=2)) if kind == "nd" else ()
        x_shape = {"1d": (c,), "0d": ()}.get(kind, (n, c) + extra)
        if kind == "prob":
            x_shape = data.draw(st.sampled_from([(n, c), (c,), (n, c, 2)]))
        t_shape = () if kind in ("1d", "0d") else (n,) + extra
        if rare(data, 8):       # a target of the wrong shape
            t_shape = data.draw(st.sampled_from([(n + 1,), (n, 1), (), (1,), (n, c + 1)]))
        dtype = data.draw(st.sampled_from(FLOATS))
        x_dtype = "int64" if rare(data, 5) and 0 not in x_shape else dtype  # empty: docstring
        x = array(data, x_shape, x_dtype)
        if kind == "prob":
            target = array(data, x_shape, dtype)
        else:
            t_dtype = data.draw(st.sampled_from(["int64"] * 6 + ["float64"] + ints_of(device)))
            target = array(data, t_shape, t_dtype) if t_dtype == "float64" else \
                indices(data, t_shape, c, t_dtype, out_of_range=15)
            if t_dtype == "uint8":
                target = np.abs(target.astype(np.int64)).astype(np.uint8)
                if len(x_shape) > 2 and target.size == 0:
                    target = target.astype(np.int64)      # excluded (module docstring)
        reduction = data.draw(st.sampled_from(["mean", "sum", "none"] * 3 + ["avg"]))
        # PyTorch takes a target (1,) for an input (C,) as (), but its backward then fails.
        grad = not (len(x_shape) == 1 and target.shape == (1,))
        check(lambda lib, x, t: lib.F.cross_entropy(x, t, reduction=reduction), [x, target],
              device, seen, grad)
    run()


# ---------------------------------------------------------------- dropout

def test_dropout_deterministic_cases(device, seen):
    """p = 0 or 1, training off, and the invalid probabilities: all without PyTorch's RNG."""
    @fuzz(device, EXAMPLES, EXAMPLES_CUDA)
    @given(shapes(0, 3, max_side=side(device)), st.data())
    def run(shape, data):
        p = data.draw(st.sampled_from([0.0, 1.0, 0, 1, 0.5, 0.3, -0.1, 1.5, math.nan, math.inf]))
        training = data.draw(st.booleans())
        dtype = floating_if_empty(data.draw(st.sampled_from(FLOATS + ["int64"])), shape)
        if training and 0 < p < 1 and dtype != "int64":
            training = False     # a random mask: test_dropout_statistics
        check(lambda lib, x: lib.F.dropout(x, p, training), [array(data, shape, dtype)],
              device, seen)
    run()


def test_dropout_statistics(device):
    """0 < p < 1 in training: each element is x/(1-p) or 0, about a fraction p of them 0, and the
    gradient is the same mask."""
    @fuzz(device, examples=10, examples_cuda=2)
    @given(st.floats(0.05, 0.95), st.data())
    def run(p, data):
        n = 2000 if device == "cpu" else 300
        x_np = array(data, (n,))
        x = tg.tensor(x_np, device=device, requires_grad=True)
        out = tg.nn.functional.dropout(x, p)
        y = out.numpy()
        kept = y != 0
        np.testing.assert_allclose(y[kept], x_np[kept] / (1 - p), rtol=1e-15)
        # The kept count is binomial(n, 1-p): allow 6 standard deviations.
        assert abs(kept.sum() - n * (1 - p)) <= 6 * math.sqrt(n * p * (1 - p)) + 1
        w = array(data, (n,))
        (out * tg.tensor(w, device=device)).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), w * kept / (1 - p), rtol=1e-15)
    run()
