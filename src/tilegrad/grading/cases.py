"""The oracle cases of each kernel family: the CUDA primitive against the NumPy backend.

A ``Case`` runs one primitive (or, for a backward pass, the primitive autograd calls) twice on
the same random inputs: on the CUDA backend, in the case's dtype, and on the NumPy backend (the
specification) in float64. ``run(cuda_backend)`` returns ``[(what, got, expected), ...]``, compared
by ``tilegrad.testing.assert_close`` with the tolerances of the case's dtype; float32's ``atol``
grows with the square root of the longest sum in an output (``k``), the size of its rounding.

Shapes are odd (1, 3, 7, 13, 33: never a multiple of a tile or a warp), values fresh normals
(seeded by the case's name, so a failure reproduces). ``quick`` keeps a few cases per primitive.
Each family's cases come from one function below, listed in ``BUILDERS``.
"""
import itertools
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tilegrad.backends import numpy as npb
from tilegrad.testing import odd_shapes

DTYPES = (np.float64, np.float32)
SIZES = (1, 3, 7, 13, 33)


@dataclass
class Case:
    primitive: str          # the row it is counted in: "matmul", "conv2d_bwd_data", ...
    dtype: str
    shape: str              # "M,N,K=7,3,13"
    flags: str              # "trans_a, bias, relu"; "" for none
    run: Callable           # cuda backend -> [(what, got, expected)]
    k: int = 1              # the longest sum in an output

    def label(self):
        return " ".join(filter(None, [self.primitive, self.dtype, self.shape, self.flags]))


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _f64(a):
    """The reference's copy of an input: floats in float64, lists element by element."""
    if isinstance(a, list):
        return [_f64(x) for x in a]
    if isinstance(a, np.ndarray) and a.dtype.kind == "f":
        return a.astype(np.float64)
    return a.copy() if isinstance(a, np.ndarray) else a


def _to_device(B, a):
    if isinstance(a, list):
        return [_to_device(B, x) for x in a]
    return B.from_numpy(a) if isinstance(a, np.ndarray) else a


def _host(B, out):
    """Outputs as a flat list of NumPy arrays (None kept)."""
    if isinstance(out, (tuple, list)):
        return [x for o in out for x in _host(B, o)]
    return [None if out is None else np.asarray(B.to_numpy(out) if B is not npb else out)]


def _compare(call, names, *inputs):
    """A ``run`` for ``call(backend, *inputs)``: the CUDA backend on ``inputs`` as given, the
    NumPy backend on their float64 copies; ``names`` name the outputs in order."""
    def run(B):
        got = _host(B, call(B, *_to_device(B, list(inputs))))
        want = _host(npb, call(npb, *_f64(list(inputs))))
        return [(names[i] if i < len(names) else f"output {i}", g, w)
                for i, (g, w) in enumerate(zip(got, want))]
    return run


def _normal(r, shape, dtype, scale=1.0):
    return (r.standard_normal(shape) * scale).astype(dtype)


def _dt(dtype):
    return np.dtype(dtype).name

# ---------------------------------------------------------------- matmul


def matmul(quick):
    shapes = [(1, 1, 1), (7, 3, 13), (13, 33, 7)] if quick else \
        odd_shapes(3, SIZES, limit=10, seed=1)
    flags = list(itertools.product((False, True), repeat=2))
    out = []
    for dt in DTYPES:
        for (m, n, k), (ta, tb) in itertools.product(shapes, flags):
            r = _rng("matmul", dt, m, n, k, ta, tb)
            a = _normal(r, (k, m) if ta else (m, k), dt)
            b = _normal(r, (n, k) if tb else (k, n), dt)
            out.append(Case("matmul", _dt(dt), f"M,N,K={m},{n},{k}", _flags(ta, tb), _compare(
                lambda be, a, b, ta=ta, tb=tb: be.matmul(a, b, ta, tb), ["value"], a, b), k))
        epilogues = [(True, True)] if quick else [(True, True), (True, False), (False, True)]
        for (bias, relu), (ta, tb) in itertools.product(epilogues, flags[:2] if quick else flags):
            m, n, k = 7, 13, 9
            r = _rng("matmul epilogue", dt, bias, relu, ta, tb)
            a = _normal(r, (k, m) if ta else (m, k), dt)
            b = _normal(r, (n, k) if tb else (k, n), dt)
            bv = _normal(r, (n,), dt) if bias else None
            out.append(Case("matmul", _dt(dt), f"M,N,K={m},{n},{k}",
                            _flags(ta, tb, bias=bias, relu=relu), _compare(
                                lambda be, a, b, bv, ta=ta, tb=tb, relu=relu:
                                be.matmul(a, b, ta, tb, bv, relu), ["value"], a, b, bv), k))
        if not quick:      # leading batch axes that broadcast against each other
            r = _rng("matmul batch", dt)
            a, b = _normal(r, (2, 1, 3, 7), dt), _normal(r, (3, 7, 5), dt)
            out.append(Case("matmul", _dt(dt), "A 2x1x3x7 @ B 3x7x5", "batch broadcast",
                            _compare(lambda be, a, b: be.matmul(a, b), ["value"], a, b), 7))
        # Backward of C = A @ B, as autograd calls it: dA = dC @ B^T, dB = A^T @ dC.
        for m, n, k in shapes[1:]:
            r = _rng("matmul bwd", dt, m, n, k)
            a, b, dc = _normal(r, (m, k), dt), _normal(r, (k, n), dt), _normal(r, (m, n), dt)
            out.append(Case("matmul backward", _dt(dt), f"M,N,K={m},{n},{k}", "", _compare(
                lambda be, a, b, dc: (be.matmul(dc, b, False, True),
                                      be.matmul(a, dc, True, False)),
                ["grad A", "grad B"], a, b, dc), max(m, n)))
    return out


def _flags(trans_a=False, trans_b=False, **more):
    names = [n for n, on in (("trans_a", trans_a), ("trans_b", trans_b), *more.items()) if on]
    return ", ".join(names)

# ---------------------------------------------------------------- conv2d

# (N, C, H, W, F, KH, KW, stride, padding): one input channel takes v2's direct kernels; a
# stride above 1 its gather kernel for backward-data.
CONV_QUICK = [(2, 3, 7, 7, 4, 3, 3, (1, 1), (1, 1)), (1, 1, 5, 7, 3, 3, 3, (1, 1), (1, 1)),
              (2, 3, 7, 5, 3, 3, 2, (2, 1), (0, 1))]
CONV_FULL = CONV_QUICK + [(3, 2, 13, 7, 5, 1, 1, (1, 1), (0, 0)),
                          (1, 4, 7, 7, 2, 5, 5, (2, 2), (2, 2)),
                          (2, 1, 13, 13, 1, 3, 3, (2, 2), (1, 1)),
                          (1, 3, 3, 3, 7, 3, 3, (1, 1), (0, 0)),
                          (1, 5, 13, 33, 3, 3, 3, (1, 1), (1, 1))]


def conv2d(quick):
    out = []
    for dt in DTYPES:
        for spec in (CONV_QUICK if quick else CONV_FULL):
            n, c, h, w, f, kh, kw, s, p = spec
            ho, wo = (h + 2 * p[0] - kh) // s[0] + 1, (w + 2 * p[1] - kw) // s[1] + 1
            r = _rng("conv2d", dt, spec)
            x, wt = _normal(r, (n, c, h, w), dt), _normal(r, (f, c, kh, kw), dt)
            bias, gy = _normal(r, (f,), dt), _normal(r, (n, f, ho, wo), dt)
            shape = f"x {n}x{c}x{h}x{w} w {f}x{c}x{kh}x{kw}"
            flags = f"stride {s}, padding {p}"
            for with_bias in ((True,) if quick else (True, False)):
                out.append(Case("conv2d_fwd", _dt(dt), shape,
                                flags + (", bias" if with_bias else ""), _compare(
                                    lambda be, x, wt, b, s=s, p=p: be.conv2d_fwd(x, wt, b, s, p),
                                    ["value"], x, wt, bias if with_bias else None), c * kh * kw))
            out.append(Case("conv2d_bwd_data", _dt(dt), shape, flags, _compare(
                lambda be, gy, wt, xs=x.shape, s=s, p=p: be.conv2d_bwd_data(gy, wt, xs, s, p),
                ["grad x"], gy, wt), f * kh * kw))
            out.append(Case("conv2d_bwd_weight", _dt(dt), shape, flags, _compare(
                lambda be, gy, x, ws=wt.shape, s=s, p=p: be.conv2d_bwd_weight(gy, x, ws, s, p),
                ["grad w"], gy, x), n * ho * wo))
    return out

# ---------------------------------------------------------------- softmax, cross-entropy


def softmax_cross_entropy(quick):
    rows = [(1, 1), (3, 7), (13, 33)] if quick else [(1, 1), (3, 7), (13, 33), (7, 13), (2, 97)]
    out = []
    for dt in DTYPES:
        for n, c in rows:
            r = _rng("softmax", dt, n, c)
            x, g = _normal(r, (n, c), dt), _normal(r, (n, c), dt)
            y = npb.log_softmax_fwd(x.astype(np.float64)).astype(dt)
            shape = f"N,C={n},{c}"
            out.append(Case("log_softmax_fwd", _dt(dt), shape, "", _compare(
                lambda be, x: be.log_softmax_fwd(x), ["value"], x), c))
            out.append(Case("log_softmax_bwd", _dt(dt), shape, "", _compare(
                lambda be, g, y: be.log_softmax_bwd(g, y), ["grad x"], g, y), c))
        cases = [(n, c, 1.0) for n, c in rows] + [(7, 13, 60.0)]   # 60: exp overflows unshifted
        for (n, c, scale), red in itertools.product(cases, ("none", "sum", "mean")):
            if quick and red != "none" and c > 7:
                continue
            r = _rng("cross_entropy", dt, n, c, scale, red)
            x = _normal(r, (n, c), dt, scale)
            t = r.integers(0, c, n).astype(np.int64)
            gl = _normal(r, (n,) if red == "none" else (), dt)
            shape, flags = f"N,C={n},{c}", f"reduction={red}" + (f", scale {scale:g}"
                                                                 if scale != 1 else "")
            out.append(Case("cross_entropy_fwd", _dt(dt), shape, flags, _compare(
                lambda be, x, t, red=red: be.cross_entropy_fwd(x, t, red), ["loss"], x, t),
                n * c))
            out.append(Case("cross_entropy_bwd", _dt(dt), shape, flags, _compare(
                lambda be, x, t, gl, red=red: be.cross_entropy_bwd(x, t, gl, red),
                ["grad logits"], x, t, gl), c))
        out += _ignored_cross_entropy(dt, [(3, 7)] if quick else [(3, 7), (13, 33)])
    return out


def _ignored_cross_entropy(dt, rows):
    """Cross-entropy with about 40% of the targets ignore_index (-100, the default; the first
    kept): loss and gradient 0 there, 'mean' over the rows kept, counted on the device."""
    out = []
    for (n, c), red in itertools.product(rows, ("none", "sum", "mean")):
        r = _rng("cross_entropy ignore_index", dt, n, c, red)
        x = _normal(r, (n, c), dt)
        t = np.where(r.random(n) < 0.4, -100, r.integers(0, c, n)).astype(np.int64)
        t[0] = c - 1
        gl = _normal(r, (n,) if red == "none" else (), dt)
        shape, flags = f"N,C={n},{c}", f"reduction={red}, ignore_index=-100"
        out.append(Case("cross_entropy_fwd", _dt(dt), shape, flags, _compare(
            lambda be, x, t, red=red: be.cross_entropy_fwd(x, t, red, -100), ["loss"], x, t),
            n * c))
        out.append(Case("cross_entropy_bwd", _dt(dt), shape, flags, _compare(
            lambda be, x, t, gl, red=red: be.cross_entropy_bwd(x, t, gl, red, -100),
            ["grad logits"], x, t, gl), c))
    return out

# ---------------------------------------------------------------- reductions


REDUCE_QUICK = [((13,), (0,)), ((3, 7), (1,)), ((7, 3, 5), (0, 2)), ((1, 33), ())]
REDUCE_FULL = REDUCE_QUICK + [((3, 7), (0,)), ((3, 7), (0, 1)), ((7, 3, 5), (1,)),
                              ((7, 3, 5), (0, 1, 2)), ((13, 1, 33), (2,)), ((33, 13), (0,))]


def reduce(quick):
    out = []
    for dt in DTYPES:
        for (shape, axes), keep in itertools.product(REDUCE_QUICK if quick else REDUCE_FULL,
                                                     (False, True)):
            if quick and keep and len(shape) < 3:
                continue
            r = _rng("reduce", dt, shape, axes, keep)
            x = _normal(r, shape, dt)
            k = int(np.prod([shape[a] for a in axes])) if axes else 1
            label, flags = "x " + "x".join(map(str, shape)), f"axes={axes}, keepdims={keep}"
            for op in ("sum", "amax"):
                out.append(Case(op, _dt(dt), label, flags, _compare(
                    lambda be, x, op=op, axes=axes, keep=keep: getattr(be, op)(x, axes, keep),
                    ["value"], x), k))
            for axis in (None, len(shape) - 1) if keep else (0,):
                out.append(Case("argmax", _dt(dt), label, f"axis={axis}, keepdims={keep}",
                                _compare(lambda be, x, axis=axis, keep=keep:
                                         be.argmax(x, axis, keep), ["index"], x)))
    return out

# ---------------------------------------------------------------- elementwise


UNARY = ("neg", "exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs")
BINARY = ("add", "sub", "mul", "div", "maximum", "pow", "eq", "ne", "gt", "ge", "lt", "le")
BROADCASTS = [((3, 7), (3, 7)), ((7, 1), (1, 13)), ((2, 3, 5), (5,)), ((13,), None)]


def elementwise(quick):
    out = []
    for dt in DTYPES:
        shape = (7, 13)
        for op in UNARY:
            r = _rng("unary", dt, op)
            x = _normal(r, shape, dt)
            if op in ("log", "sqrt"):
                x = np.abs(x) + dt(0.1)
            out.append(Case("unary", _dt(dt), "x 7x13", op, _compare(
                lambda be, x, op=op: be.unary(op, x), ["value"], x)))
        for op, (sa, sb) in itertools.product(BINARY, BROADCASTS[:2] if quick else BROADCASTS):
            r = _rng("binary", dt, op, sa, sb)
            a = _normal(r, sa, dt)
            b = dt(1.5) if sb is None else _normal(r, sb, dt)
            if op == "pow":
                a = np.abs(a) + dt(0.1)
            if op in ("eq", "ne", "ge", "le") and sb == sa:
                b = np.where(r.random(sa) < 0.5, a, b).astype(dt)     # some equal pairs
            label = "a " + "x".join(map(str, sa)) + (", b scalar" if sb is None else
                                                      ", b " + "x".join(map(str, sb)))
            out.append(Case("binary", _dt(dt), label, op, _compare(
                lambda be, a, b, op=op: be.binary(op, a, b), ["value"], a, b)))
        for p in (2.0, 0.5, -1.5, 3.0):
            r = _rng("pow_scalar", dt, p)
            x = np.abs(_normal(r, shape, dt)) + dt(0.1)
            out.append(Case("pow_scalar", _dt(dt), "x 7x13", f"p={p}", _compare(
                lambda be, x, p=p: be.pow_scalar(x, p), ["value"], x)))
        r = _rng("relu_bwd", dt)
        g, y = _normal(r, (3, 33), dt), np.maximum(_normal(r, (3, 33), dt), 0)
        out.append(Case("relu_bwd", _dt(dt), "3x33", "", _compare(
            lambda be, g, y: be.relu_bwd(g, y), ["grad x"], g, y)))
        for scalar in (False, True):
            r = _rng("where", dt, scalar)
            mask, a = r.random((7, 13)) < 0.5, _normal(r, (7, 13), dt)
            b = dt(-2.5) if scalar else _normal(r, (7, 13), dt)
            out.append(Case("where_mask", _dt(dt), "7x13", "b scalar" if scalar else "", _compare(
                lambda be, mask, a, b: be.where_mask(mask, a, b), ["value"], mask, a, b)))
    return out

# ---------------------------------------------------------------- max_pool2d


POOL = [((2, 3, 7, 7), (2, 2), (2, 2), (0, 0)), ((1, 2, 13, 5), (3, 3), (2, 1), (1, 1)),
        ((1, 1, 3, 3), (3, 3), (1, 1), (1, 1)), ((2, 1, 7, 13), (3, 2), (3, 2), (1, 0))]


def pool(quick):
    out = []
    for dt in DTYPES:
        for shape, k, s, p in (POOL[:2] if quick else POOL):
            r = _rng("pool", dt, shape, k, s, p)
            x = _normal(r, shape, dt)
            y, idx = npb.max_pool2d_fwd(x.astype(np.float64), k, s, p)
            gy = _normal(r, y.shape, dt)
            label, flags = "x " + "x".join(map(str, shape)), f"kernel {k}, stride {s}, padding {p}"
            out.append(Case("max_pool2d_fwd", _dt(dt), label, flags, _compare(
                lambda be, x, k=k, s=s, p=p: be.max_pool2d_fwd(x, k, s, p),
                ["value", "argmax"], x)))
            out.append(Case("max_pool2d_bwd", _dt(dt), label, flags, _compare(
                lambda be, gy, idx, xs=shape: be.max_pool2d_bwd(gy, idx, xs), ["grad x"],
                gy, idx)))
    return out

# ---------------------------------------------------------------- LSTM


def lstm(quick):
    out = []
    for dt in DTYPES:
        for b, h in ([(1, 1), (3, 7)] if quick else [(1, 1), (3, 7), (13, 5), (2, 33)]):
            r = _rng("lstm cell", dt, b, h)
            gates, c_prev = _normal(r, (b, 4 * h), dt), _normal(r, (b, h), dt)
            _, c, acts = npb.lstm_cell_fwd(gates.astype(np.float64), c_prev.astype(np.float64))
            gh, gc = _normal(r, (b, h), dt), _normal(r, (b, h), dt)
            shape = f"B,H={b},{h}"
            out.append(Case("lstm_cell_fwd", _dt(dt), shape, "", _compare(
                lambda be, g, c: be.lstm_cell_fwd(g, c), ["h", "c", "gates"], gates, c_prev)))
            out.append(Case("lstm_cell_bwd", _dt(dt), shape, "", _compare(
                lambda be, *a: be.lstm_cell_bwd(*a), ["grad gates", "grad c_prev"],
                gh, gc, acts.astype(dt), c.astype(dt), c_prev)))
        seqs = [(3, 2, 5, True)] if quick else [(1, 1, 1, False), (3, 2, 5, True),
                                                (7, 3, 4, False), (5, 1, 13, True)]
        for t, b, h, state in seqs:
            out += _lstm_seq(dt, t, b, h, state, quick)
        r = _rng("lstm bias", dt)
        g = _normal(r, (3, 2, 28), dt)
        out.append(Case("lstm_bias_bwd", _dt(dt), "3x2x28", "", _compare(
            lambda be, g: be.lstm_bias_bwd(g), ["grad b_ih", "grad b_hh"], g), 6))
    return out


def _lstm_seq(dt, t, b, h, state, quick):
    r = _rng("lstm seq", dt, t, b, h, state)
    xproj, w_hh = _normal(r, (t, b, 4 * h), dt), _normal(r, (4 * h, h), dt, 0.5)
    h0, c0 = (_normal(r, (b, h), dt), _normal(r, (b, h), dt)) if state else (None, None)
    b_hh = _normal(r, (4 * h,), dt) if state else None
    f64 = [None if a is None else a.astype(np.float64) for a in (xproj, h0, c0, w_hh, b_hh)]
    _, _, _, _, cs, acts = npb.lstm_seq_fwd(*f64)
    gy, ghn, gcn = _normal(r, (t, b, h), dt), _normal(r, (b, h), dt), _normal(r, (b, h), dt)
    shape, flags = f"T,B,H={t},{b},{h}", "h0, c0, b_hh" if state else "zero state, no b_hh"
    cases = [Case("lstm_seq_fwd", _dt(dt), shape, flags, _compare(
        lambda be, *a: be.lstm_seq_fwd(*a), ["y", "h_n", "c_n", "h_prev", "cs", "gates"],
        xproj, h0, c0, w_hh, b_hh), h)]
    for grads in ([(True, True)] if quick else [(True, True), (False, True), (True, False)]):
        need_dh0 = grads[0]
        args = (gy if grads[0] else None, ghn, gcn if grads[1] else None, cs.astype(dt),
                acts.astype(dt), w_hh)
        cases.append(Case("lstm_seq_bwd", _dt(dt), shape, f"grad_y={grads[0]}, "
                          f"grad_c_n={grads[1]}, need_dh0={need_dh0}", _compare(
                              lambda be, *a, nd=need_dh0: be.lstm_seq_bwd(*a, nd),
                              ["grad gates", "grad h0", "grad c0"], *args), 4 * h))
    return cases

# ---------------------------------------------------------------- embedding


def embedding(quick):
    out = []
    for dt in DTYPES:
        for (v, d), ishape in itertools.product([(1, 1), (13, 7), (7, 33)],
                                                [(3,), (2, 5)] if not quick else [(2, 5)]):
            r = _rng("embedding", dt, v, d, ishape)
            weight = _normal(r, (v, d), dt)
            idx = r.integers(0, v, ishape).astype(np.int64)       # repeats: rows added twice
            gy = _normal(r, ishape + (d,), dt)
            shape = f"V,D={v},{d}, idx " + "x".join(map(str, ishape))
            out.append(Case("embedding_fwd", _dt(dt), shape, "", _compare(
                lambda be, w, i: be.embedding_fwd(w, i), ["value"], weight, idx)))
            out.append(Case("embedding_bwd", _dt(dt), shape, "", _compare(
                lambda be, g, i, v=v: be.embedding_bwd(g, i, v), ["grad weight"], gy, idx),
                int(np.prod(ishape))))
    return out

# ---------------------------------------------------------------- optimizers (in place)


SGD = [(0.0, 0.0, 0.0, False, False), (0.9, 0.0, 0.0, False, True), (0.9, 0.1, 0.01, False, False),
       (0.9, 0.0, 0.01, True, False)]      # momentum, dampening, weight_decay, nesterov, first


def optim(quick):
    out = []
    shapes = [(7, 3)] if quick else [(1,), (7, 3), (13, 33)]
    multi = [(3,), (7, 5), (1,)]
    for dt in DTYPES:
        for shape, (mom, damp, wd, nest, first) in itertools.product(shapes, SGD):
            r = _rng("sgd", dt, shape, mom, damp, wd, nest, first)
            p, g, buf = (_normal(r, shape, dt) for _ in range(3))
            flags = f"momentum={mom}, dampening={damp}, weight_decay={wd}, nesterov={nest}, " \
                    f"first={first}"
            out.append(Case("sgd_step", _dt(dt), "x".join(map(str, shape)), flags, _compare(
                lambda be, p, g, buf, a=(mom, damp, wd, nest, first):
                (be.sgd_step(p, g, buf, 0.1, *a), (p, buf))[1], ["param", "buf"], p, g, buf)))
        for shape, (step, wd) in itertools.product(shapes, [(1, 0.0), (3, 0.01)]):
            r = _rng("adam", dt, shape, step, wd)
            p, g, m = (_normal(r, shape, dt) for _ in range(3))
            v = np.abs(_normal(r, shape, dt))
            out.append(Case("adam_step", _dt(dt), "x".join(map(str, shape)),
                            f"step={step}, weight_decay={wd}", _compare(
                                lambda be, p, g, m, v, step=step, wd=wd:
                                (be.adam_step(p, g, m, v, step, 1e-2, 0.8, 0.99, 1e-6, wd),
                                 (p, m, v))[1], ["param", "m", "v"], p, g, m, v)))
        for mom, damp, wd, nest, _ in (SGD[:2] if quick else SGD):
            r = _rng("sgd multi", dt, mom, damp, wd, nest)
            ps, gs, bufs = ([_normal(r, s, dt) for s in multi] for _ in range(3))
            steps = [np.array(s, np.float32) for s in (0, 2, 0)]
            out.append(Case("sgd_step_multi", _dt(dt), "3 params", f"momentum={mom}, "
                            f"dampening={damp}, weight_decay={wd}, nesterov={nest}", _compare(
                                lambda be, ps, gs, bufs, steps, lr, a=(mom, damp, wd, nest):
                                (be.sgd_step_multi(ps, gs, bufs, steps, lr, *a),
                                 (ps, bufs, steps))[1], ["param", "buf", "step"],
                                ps, gs, bufs, steps, np.array(0.1, dt))))
        for wd in (0.0, 0.01):
            r = _rng("adam multi", dt, wd)
            ps, gs, ms = ([_normal(r, s, dt) for s in multi] for _ in range(3))
            vs = [np.abs(_normal(r, s, dt)) for s in multi]
            steps = [np.array(s, np.float32) for s in (0, 2, 0)]
            out.append(Case("adam_step_multi", _dt(dt), "3 params", f"weight_decay={wd}",
                            _compare(lambda be, ps, gs, ms, vs, steps, lr, wd=wd:
                                     (be.adam_step_multi(ps, gs, ms, vs, steps, lr, 0.8, 0.99,
                                                         1e-6, wd), (ps, ms, vs, steps))[1],
                                     ["param", "m", "v", "step"], ps, gs, ms, vs, steps,
                                     np.array(1e-2, dt))))
    return out


BUILDERS = {"matmul": matmul, "conv2d": conv2d, "softmax_cross_entropy": softmax_cross_entropy,
            "reduce": reduce, "elementwise": elementwise, "pool": pool, "lstm": lstm,
            "embedding": embedding, "optim": optim}


def has_cases(family):
    return family.name.startswith("conv2d_") or family.name in BUILDERS


def for_family(family, quick=False):
    """The cases of ``family`` (a ``families.Family``): a conv2d pass gets its own pass's cases;
    [] for a family with no builder here."""
    if family.name.startswith("conv2d_"):
        return [c for c in conv2d(quick) if c.primitive == family.name]
    builder = BUILDERS.get(family.name)
    return builder(quick) if builder else []
