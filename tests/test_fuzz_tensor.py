"""Property-based fuzzing of the Tensor API and the top-level tensor functions against PyTorch.

Each case draws shapes (0-length and size-1 dimensions among them), dtypes, dims in and out of
range and the op's other arguments, and runs one call in tilegrad and in PyTorch through
``fuzz_helpers.compare``: the same shapes, dtypes, values (to 1e-10 in float64) and gradients,
or the same class of error. float32 is compared to ``F32_TOL``: PyTorch computes in float32 too,
with its own summation order and transcendental functions. Integer and bool tensors promote to
the default dtype in some ops; a case that has them draws the default dtype, so that those
results are checked to 1e-10 in float64 as well. Float inputs hold ties, zeros, NaN and
infinities where the op has a rule for them. Each case records the outcomes it exercised
(``record_property``: ``--junitxml`` lists them).

Not generated: what PyTorch accepts and tilegrad deliberately does not.

- Arithmetic (+ - * / maximum ``@``), ``cat`` and ``stack`` of tensors of two different dtypes:
  PyTorch promotes, tilegrad asks for a ``.to()`` (``test_binary_mixed_dtypes_refused`` checks
  the DtypeError). Comparisons do promote, as PyTorch.
- ``tensor ** tensor`` (tilegrad's exponent is a Python number; ``number ** tensor`` works).
- int32 and uint8 tensors on "cuda" (its kernels hold float32, float64, int64 and bool), and
  integer ``@`` on "cuda" (its matmul kernels are floating-point).
- Negative slice steps: PyTorch refuses them, tilegrad indexes as NumPy; the case compares them
  with PyTorch's ``flip`` and a positive step. Two Ellipses in one index (NumPy refuses them).
  Index tensors other than int64 and bool.
- ``max`` with a tuple of dims (values only, as ``amax``: PyTorch refuses the tuple),
  ``maximum`` with a Python number (PyTorch wants a tensor; ``clamp`` uses it).
- Moving between devices, other than ``cpu()`` and back (tests/test_cuda_device.py does);
  ``numpy()`` (PyTorch refuses it on a tensor that requires grad); ``randn``/``rand`` values.

Not generated either: PyTorch's own quirks, each noted where the strategy avoids it: ``False **
x``'s backward (an internal assert), ``x ** False``'s gradient at 0 (NaN), ``int()`` of an
infinity (OverflowError), ``torch.cat``'s legacy skip of 1-D empty tensors, and the checks it
skips on tensors of no elements (out-of-range indices, negative ``expand`` sizes, bool ``@``,
``tensor([[], [1]])``).
"""
import collections
import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tilegrad as tg
from fuzz_helpers import arrays, broadcastable, compare, dims, fuzz, shapes, tolerance

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")

# Examples per case on cpu and on cuda (the simulator runs every CUDA thread in Python): the whole
# file in about 25 s on 2 idle cores. TILEGRAD_FUZZ_SCALE multiplies them for a longer hunt.
BUDGET = (250, 50)
PER_OP = (60, 12)     # for a case run once per op of a family (parametrized)
QUICK = (30, 8)       # the same, for conversions and queries (fewer ways to go wrong)
F32_TOL = 1e-4     # float32 sums that cancel (a broadcast operand's gradient) reach ~5e-5
SEEDS = st.integers(0, 2**32 - 1)
SPECIAL = np.array([0.0, 0.0, 1.0, -1.0, 0.5, 2.0, -2.0, np.nan, np.inf, -np.inf])


def side(device):
    """The largest side of a drawn shape: the simulator runs every CUDA thread in Python."""
    return 3 if device == "cuda" else 4


def dtypes_of(device):
    """The dtypes ``device`` holds (float64 twice as often: it is checked to 1e-10)."""
    return st.sampled_from(["float64", "float64", "float32", "int64", "bool"] +
                           (["int32", "uint8"] if device == "cpu" else []))


def values(data, shape, dtype, special=False):
    """Random values of ``shape`` from a seed Hypothesis draws; with ``special``, a float array
    also holds ties, zeros, NaN and infinities."""
    seed = data.draw(SEEDS)
    a = arrays(shape, dtype, seed=seed)
    if special and a.dtype.kind == "f" and a.size:
        r = np.random.default_rng(seed + 1)
        pick = r.random(shape) < 0.4
        a = np.where(pick, SPECIAL[r.integers(0, len(SPECIAL), shape)], a).astype(a.dtype)
    return a


@contextlib.contextmanager
def default_dtype(lib, name):
    saved = lib.tg.get_default_dtype()
    lib.tg.set_default_dtype(getattr(lib, name))
    try:
        yield
    finally:
        lib.tg.set_default_dtype(saved)


def check(call, arrs, device, seen, default="float32", what=""):
    """``compare`` with ``default`` as both frameworks' default dtype during the call, to
    ``F32_TOL`` where an input or PyTorch's result is float32 (else to 1e-10); counts the outcome
    in ``seen`` (under ``what``, the op of a case that draws among several)."""
    drawn = [np.shape(a) for a in arrs]
    loose = contextlib.ExitStack()

    def call_drawn(lib, *tensors):
        # compare makes its tensors through np.ascontiguousarray, which turns a 0-d array into
        # shape (1,): the op gets the shape that was drawn.
        tensors = [t.reshape(s) if tuple(t.shape) != s else t for t, s in zip(tensors, drawn)]
        with default_dtype(lib, default):
            out = call(lib, *tensors)
        if lib.tg is not tg and any(t.dtype == lib.float32 for t in tensors_in(out)):
            loose.enter_context(tolerance(F32_TOL))     # PyTorch runs first
        return out

    with loose:
        if any(a.dtype == np.float32 for a in arrs):
            loose.enter_context(tolerance(F32_TOL))
        outcome = compare(call_drawn, arrs, device)
    seen[f"{what} {'ok' if outcome is None else outcome.__name__}".strip()] += 1


def tensors_in(out):
    """The tensors of a result (a tensor, or nested tuples and lists of them and of numbers)."""
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in tensors_in(o)]
    return [out] if hasattr(out, "dtype") and hasattr(out, "shape") and \
        not isinstance(out, np.ndarray) else []


@pytest.fixture
def seen(record_property):
    counts = collections.Counter()
    yield counts
    record_property("outcomes", dict(counts))


def on(lib, device):
    """The device argument of a creation function: PyTorch's tensors stay on its cpu."""
    return device if lib.tg is tg else "cpu"


DEFAULTS = st.sampled_from(["float64", "float32"])

# ---------------------------------------------------------------- arithmetic

BINARY = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "maximum": lambda a, b: a.maximum(b),
}


@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_tensors(device, seen, op):
    """Two tensors of one dtype: broadcast shapes, and now and then shapes that do not."""
    @fuzz(device, *PER_OP)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        other = data.draw(st.one_of(broadcastable(shape), broadcastable(shape),
                                    shapes(max_side=side(device))))
        if data.draw(st.booleans()):
            shape, other = other, shape
        dtype = data.draw(dtypes_of(device))
        check(lambda lib, a, b: BINARY[op](a, b),
              [values(data, shape, dtype, special=op == "maximum"), values(data, other, dtype)],
              device, seen, data.draw(DEFAULTS))
    run()


def test_binary_mixed_dtypes_refused(device):
    """Tensors of two dtypes in arithmetic: refused (DtypeError names both), where PyTorch
    promotes. Not a comparison with PyTorch: the module docstring lists it as an exclusion."""
    @fuzz(device, *BUDGET)
    @given(st.data())
    def run(data):
        a_dtype, b_dtype = data.draw(dtypes_of(device)), data.draw(dtypes_of(device))
        if a_dtype == b_dtype:
            return
        a = tg.tensor(values(data, (2, 3), a_dtype), device=device)
        b = tg.tensor(values(data, (3,), b_dtype), device=device)
        name = data.draw(st.sampled_from(["+", "-", "*", "/", "maximum", "cat", "stack", "@"]))
        call = {"cat": lambda: tg.cat([a, b.expand(2, 3)]),
                "stack": lambda: tg.stack([a, b.expand(2, 3)]),
                "@": lambda: a @ b}.get(name, lambda: BINARY[name](a, b))
        with pytest.raises(tg.errors.DtypeError, match=f"{a.dtype}.*{b.dtype}"):
            call()
    run()


SCALAR_OPS = {
    "t+s": lambda t, s: t + s, "s+t": lambda t, s: s + t, "t-s": lambda t, s: t - s,
    "s-t": lambda t, s: s - t, "t*s": lambda t, s: t * s, "s*t": lambda t, s: s * t,
    "t/s": lambda t, s: t / s, "s/t": lambda t, s: s / t, "t**s": lambda t, s: t ** s,
    "s**t": lambda t, s: s ** t,
}
SCALARS = st.one_of(st.integers(-3, 3), st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.5, 3.0, -0.5]),
                    st.floats(-3, 3, allow_nan=False, width=32), st.booleans())


@pytest.mark.parametrize("op", sorted(SCALAR_OPS))
def test_scalar_operands(device, seen, op):
    """A tensor with a Python int, float or bool on either side: PyTorch's promotion (an int
    tensor times a float gives the default dtype, a bool tensor plus an int int64...)."""
    @fuzz(device, *PER_OP)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        dtype, s = data.draw(dtypes_of(device)), data.draw(SCALARS)
        if op == "s**t" and isinstance(s, bool):
            s = int(s)    # PyTorch's backward of False ** x fails an internal assert (its bug)
        if op == "t**s" and s is False:
            s = 0         # x ** False: see POWERS
        check(lambda lib, t: SCALAR_OPS[op](t, s), [values(data, shape, dtype, special=True)],
              device, seen, data.draw(DEFAULTS))
    run()


# (Not ``x ** False``: PyTorch's gradient at x = 0 is then NaN, as it misses its own shortcut
# for a zero exponent when that is a bool.)
POWERS = [0, 1, 2, 3, -1, -2, 0.0, 1.0, 0.5, 2.0, -0.5, -1.5, 1.5, 3.0, True]


def test_pow(device, seen):
    """``x ** p`` with zeros, ties, NaN and infinities in ``x``: values and the gradient, which
    at x = 0 is PyTorch's (0 for p = 0, inf for p = 0.5...)."""
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        dtype, p = data.draw(dtypes_of(device)), data.draw(st.sampled_from(POWERS))
        check(lambda lib, t: t ** p, [values(data, shape, dtype, special=True)], device, seen,
              data.draw(DEFAULTS))
    run()


UNARY = {
    "neg": lambda t: -t, "exp": lambda t: t.exp(), "log": lambda t: t.log(),
    "tanh": lambda t: t.tanh(), "sigmoid": lambda t: t.sigmoid(), "relu": lambda t: t.relu(),
    "sqrt": lambda t: t.sqrt(),
}


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary(device, seen, op):
    @fuzz(device, *PER_OP)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        dtype = data.draw(dtypes_of(device))
        check(lambda lib, t: UNARY[op](t), [values(data, shape, dtype, special=True)], device,
              seen, data.draw(DEFAULTS))
    run()


COMPARISONS = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def test_clamp(device, seen):
    """``clamp`` with Python numbers or None for either bound (min above max too), at ties."""
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        bound = st.one_of(st.none(), st.sampled_from([0.0, 0.5, -1.0, 1.0, 2, -1]))
        lo, hi = data.draw(bound), data.draw(bound)
        # (Not uint8: tilegrad's clamp(max=) negates, which wraps around; reported.)
        dtype = data.draw(st.sampled_from(["float64", "float64", "float32", "int64"] +
                                          (["int32"] if device == "cpu" else [])))
        check(lambda lib, t: t.clamp(lo, hi), [values(data, shape, dtype, special=True)], device,
              seen)
    run()


@pytest.mark.parametrize("op", sorted(COMPARISONS))
def test_comparisons(device, seen, op):
    """Against a tensor (broadcast; of another dtype too: comparisons promote, as PyTorch) or a
    Python number on either side."""
    @fuzz(device, *PER_OP)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        a = values(data, shape, data.draw(dtypes_of(device)), special=True)
        kind = data.draw(st.sampled_from(["tensor", "scalar", "reversed"]))
        if kind == "tensor":
            other = data.draw(st.one_of(broadcastable(shape), shapes(max_side=side(device))))
            b = values(data, other, data.draw(dtypes_of(device)), special=True)
            check(lambda lib, x, y: COMPARISONS[op](x, y), [a, b], device, seen, what=kind)
        else:
            s = data.draw(SCALARS)
            call = (lambda lib, x: COMPARISONS[op](x, s)) if kind == "scalar" else \
                (lambda lib, x: COMPARISONS[op](s, x))
            check(call, [a], device, seen, what=kind)
    run()


def test_matmul(device, seen):
    """``@`` and ``tilegrad.matmul``: vectors, matrices and broadcast batches, with inner sizes
    that match or not, 0-d operands, integer and bool operands."""
    @fuzz(device, BUDGET[0], 20)      # the simulator's matmul kernels are the slowest
    @given(st.data())
    def run(data):
        n, k, m = (data.draw(st.integers(0, 3)) for _ in range(3))
        batch = data.draw(shapes(max_dims=2, max_side=3))
        a_shape = data.draw(st.sampled_from([(k,), (n, k), batch + (n, k), ()]))
        k_b = k if data.draw(st.integers(0, 9)) else data.draw(st.integers(0, 3))
        b_shape = data.draw(st.sampled_from([(k_b,), (k_b, m), broadcastable_tail(data, batch) +
                                             (k_b, m), ()]))
        dtype = data.draw(dtypes_of(device) if device == "cpu" else
                          st.sampled_from(["float64", "float32", "bool"]))
        if dtype == "bool" and 0 in a_shape + b_shape:
            dtype = "float64"   # PyTorch multiplies empty bool operands, without a dtype check
        form = data.draw(st.sampled_from(["@", "matmul"]))
        call = (lambda lib, a, b: a @ b) if form == "@" else (lambda lib, a, b: lib.tg.matmul(a, b))
        check(call, [values(data, a_shape, dtype), values(data, b_shape, dtype)], device, seen,
              what=form)
    run()


def broadcastable_tail(data, batch):
    return data.draw(st.one_of(broadcastable(batch), shapes(max_dims=2, max_side=3)))

# ---------------------------------------------------------------- reductions


def reduction_dims(data, ndim):
    """None, an int (out of range too), or a tuple of them (empty, repeated...)."""
    return data.draw(st.one_of(st.none(), dims(ndim), st.lists(dims(ndim), max_size=3).map(tuple)))


def test_sum_mean(device, seen):
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        op = data.draw(st.sampled_from(["sum", "mean"]))
        d, keep = reduction_dims(data, len(shape)), data.draw(st.booleans())
        form = data.draw(st.sampled_from(["positional", "keyword", "bare"]))
        call = {"positional": lambda lib, t: getattr(t, op)(d, keep),
                "keyword": lambda lib, t: getattr(t, op)(dim=d, keepdim=keep),
                "bare": lambda lib, t: getattr(t, op)()}[form]
        check(call, [values(data, shape, data.draw(dtypes_of(device)))], device, seen,
              what=op)
    run()


def test_amax_max(device, seen):
    """``amax(dim)``, ``max()`` and ``max(dim)`` (values and indices) with ties, NaN and
    infinities: the gradient of ``max(dim)`` goes to the index it returns, ``amax``'s and
    ``max()``'s is shared among ties."""
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        op = data.draw(st.sampled_from(["amax", "max()", "max(dim)"]))
        keep = data.draw(st.booleans())
        if op == "amax":
            d = reduction_dims(data, len(shape))
            call = lambda lib, t: t.amax(d, keep)          # noqa: E731
        elif op == "max()":
            call = lambda lib, t: t.max()                  # noqa: E731
        else:
            d = data.draw(dims(len(shape)))
            call = lambda lib, t: t.max(d, keepdim=keep)   # noqa: E731
        dtype = data.draw(dtypes_of(device))
        check(call, [values(data, shape, dtype, special=True)], device, seen, what=op)
    run()


def test_argmax(device, seen):
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        d = data.draw(st.one_of(st.none(), dims(len(shape))))
        keep = data.draw(st.booleans())
        dtype = data.draw(dtypes_of(device))
        check(lambda lib, t: t.argmax(d, keep), [values(data, shape, dtype, special=True)],
              device, seen)
    run()

# ---------------------------------------------------------------- shapes


def target_shape(data, shape):
    """A shape for reshape/view: the elements' count split another way (with one -1 now and
    then), or a wrong one: a bad count, two -1, a size below -1."""
    n = int(np.prod(shape))
    kind = data.draw(st.sampled_from(["split", "split", "split", "any"]))
    if kind == "any":
        return tuple(data.draw(st.lists(st.integers(-2, 5), max_size=4)))
    sizes, rest = [], n
    for _ in range(data.draw(st.integers(0, 3))):
        f = data.draw(st.sampled_from([k for k in range(1, 5) if rest % k == 0] or [1]))
        sizes.append(f)
        rest //= f
    sizes.append(rest)
    if n == 0:
        sizes.insert(data.draw(st.integers(0, len(sizes))), 0)
    out = data.draw(st.permutations(sizes))
    if out and data.draw(st.booleans()):
        out[data.draw(st.integers(0, len(out) - 1))] = -1
    return tuple(out)


def test_reshape_view(device, seen):
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        new = target_shape(data, shape)
        name = data.draw(st.sampled_from(["reshape", "view"]))
        packed = data.draw(st.booleans())
        call = (lambda lib, t: getattr(t, name)(new)) if packed else \
            (lambda lib, t: getattr(t, name)(*new))
        check(call, [values(data, shape, data.draw(dtypes_of(device)))], device, seen,
              what=name)
    run()


def test_flatten_unsqueeze_squeeze(device, seen):
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        n = len(shape)
        op = data.draw(st.sampled_from(["flatten", "unsqueeze", "squeeze()", "squeeze(d)",
                                        "squeeze(dims)"]))
        d, e = data.draw(dims(n + (op == "unsqueeze"))), data.draw(dims(n))
        ds = tuple(data.draw(st.lists(dims(n), max_size=3)))
        call = {"flatten": lambda lib, t: t.flatten(d, e),
                "unsqueeze": lambda lib, t: t.unsqueeze(d),
                "squeeze()": lambda lib, t: t.squeeze(),
                "squeeze(d)": lambda lib, t: t.squeeze(d),
                "squeeze(dims)": lambda lib, t: t.squeeze(ds)}[op]
        check(call, [values(data, shape, data.draw(dtypes_of(device)))], device, seen,
              what=op)
    run()


def test_unbind(device, seen):
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        d = data.draw(dims(len(shape)))
        check(lambda lib, t: t.unbind(d), [values(data, shape, data.draw(dtypes_of(device)))],
              device, seen)
    run()


def test_permute_transpose(device, seen):
    """``permute`` (permutations, and dims repeated, missing or out of range), ``transpose``,
    ``t()`` and ``.T``."""
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        n = len(shape)
        op = data.draw(st.sampled_from(["permute", "permute", "transpose", "t", "T"]))
        if op == "permute":
            perm = tuple(data.draw(st.one_of(st.permutations(range(n)),
                                             st.lists(dims(n), max_size=n + 1))))
            perm = tuple(p - n if p >= 0 and data.draw(st.booleans()) else p for p in perm)
            packed = data.draw(st.booleans())
            call = (lambda lib, t: t.permute(perm)) if packed else \
                (lambda lib, t: t.permute(*perm))
        elif op == "transpose":
            d0, d1 = data.draw(dims(n)), data.draw(dims(n))
            call = lambda lib, t: t.transpose(d0, d1)      # noqa: E731
        else:
            call = (lambda lib, t: t.t()) if op == "t" else (lambda lib, t: t.T)
        check(call, [values(data, shape, data.draw(dtypes_of(device)))], device, seen,
              what=op)
    run()


def test_expand(device, seen):
    """To new leading sizes, with -1 for kept ones and size-1 dimensions grown (to 0 too), and
    to sizes that do not fit."""
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        # -1 for a new leading size: PyTorch refuses it, except on a 0-d tensor, where
        # expand(0, -1) returns a tensor of shape (0, -1) (its bug): not generated there.
        lead = tuple(data.draw(st.lists(st.integers(-1 if shape else 0, 3), max_size=2)))
        own = tuple(data.draw(st.sampled_from([1, -1, 1, 2, 0, -2] if n == 1 else
                                              [n, -1, n, n + 1])) for n in shape)
        target = lead + own
        if 0 in shape + target:
            # A size-1 dimension to -2 is an error, but PyTorch returns a negative shape when
            # there are no elements: not generated there.
            target = tuple(2 if n == -2 else n for n in target)
        if data.draw(st.integers(0, 9)) == 0:
            target = target[1:]
        packed = data.draw(st.booleans())
        call = (lambda lib, t: t.expand(target)) if packed else (lambda lib, t: t.expand(*target))
        check(call, [values(data, shape, data.draw(dtypes_of(device)))], device, seen)
    run()

# ---------------------------------------------------------------- indexing


@st.composite
def basic_keys(draw, shape):
    """A tuple of ints (out of range too), slices (negative and zero steps too), None and at most
    one Ellipsis, sometimes more than the tensor has dimensions."""
    key, ellipsis = [], False
    for k in range(draw(st.integers(0, len(shape) + 1))):
        n = shape[k] if k < len(shape) else 2
        kind = draw(st.sampled_from(["int", "slice", "slice", "none", "ellipsis"]))
        if kind == "int":
            key.append(draw(st.integers(-n - 1, n)))
        elif kind == "slice":
            bound = st.one_of(st.none(), st.integers(-n - 2, n + 2))
            step = draw(st.sampled_from([None, 1, 2, 3, -1, -2, 0] if k % 2 else
                                        [None, 1, 2, -1]))
            key.append(slice(draw(bound), draw(bound), step))
        elif kind == "ellipsis" and not ellipsis:
            key.append(Ellipsis)
            ellipsis = True
        else:
            key.append(None)
    return tuple(key)


def torch_key(key, shape):
    """For PyTorch, which has no negative steps: (dims to flip, the key with each negative step
    turned into a positive one over the flipped dimension). Unchanged where the key is invalid
    (the error is what is compared) or has no negative step."""
    if not any(isinstance(k, slice) and (k.step or 1) < 0 for k in key):
        return (), key
    try:
        np.empty(shape)[key]
    except (IndexError, ValueError):
        return (), tuple(slice(k.start, k.stop, -k.step) if isinstance(k, slice) and
                         (k.step or 1) < 0 else k for k in key)
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    flips, out, d = [], [], 0          # d: the input dimension the next item indexes
    for k in key:
        if isinstance(k, slice) and (k.step or 1) < 0:
            n = shape[d]
            start, stop, step = k.indices(n)       # element i is n - 1 - i once flipped
            flips.append(d)
            out.append(slice(n - 1 - start, n - 1 - stop, -step))
        else:
            out.append(k)
        d += len(shape) - consumed if k is Ellipsis else k is not None
    return tuple(flips), tuple(out)


def test_getitem_basic(device, seen):
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        key = data.draw(basic_keys(shape))
        key = key[0] if len(key) == 1 and data.draw(st.booleans()) else key
        tup = key if isinstance(key, tuple) else (key,)
        flips, th_key = torch_key(tup, shape)

        def call(lib, t):
            if lib.tg is tg:
                return t[key]
            return (t.flip(flips) if flips else t)[th_key]
        check(call, [values(data, shape, data.draw(dtypes_of(device)))], device, seen)
    run()


def test_getitem_advanced(device, seen):
    """Index tensors (int64, with negative and out-of-range entries, empty ones too), bool masks
    (of the right shape or not), lists of ints, mixed with slices and an Ellipsis."""
    @fuzz(device, *BUDGET)
    @given(shapes(min_dims=1, max_side=side(device)), st.data())
    def run(shape, data):
        n = shape[0]
        kind = data.draw(st.sampled_from(["index", "index", "mask", "list", "two", "after"]))
        if 0 in shape and kind in ("two", "after"):
            kind = "index"   # their indices may be out of range, which PyTorch ignores here
        r = np.random.default_rng(data.draw(SEEDS))
        idx_shape = data.draw(shapes(max_dims=2, max_side=3))
        # Out-of-range entries now and then, where the tensor has elements: PyTorch checks no
        # index when the result is empty.
        wide = data.draw(st.integers(0, 5)) == 0 and 0 not in shape
        idx = r.integers(-n - wide, n + wide, size=idx_shape) if n or wide else \
            np.zeros(idx_shape, np.int64)
        idx = idx.astype(np.int64)
        mask_shape = shape[:data.draw(st.integers(1, len(shape)))]
        if data.draw(st.integers(0, 5)) == 0:
            mask_shape = (mask_shape[0] + 1,) + mask_shape[1:]
        mask = r.random(mask_shape) < 0.5
        after_ellipsis = data.draw(st.booleans())

        def call(lib, t):
            as_t = lambda a: lib.tg.tensor(a, device=t.device)   # noqa: E731
            if kind == "index":
                return t[as_t(idx)]
            if kind == "mask":
                return t[as_t(mask)]
            if kind == "list":
                return t[idx.reshape(-1).tolist()]
            if kind == "two":
                return t[as_t(idx), as_t(idx[..., :1] if idx.ndim else idx)]
            return t[..., as_t(idx)] if after_ellipsis else t[:, as_t(idx)]
        check(call, [values(data, shape, data.draw(dtypes_of(device)))], device, seen,
              what=kind)
    run()

# ---------------------------------------------------------------- conversions and queries


@pytest.mark.parametrize("op", ["clone", "detach", "float", "double", "long", "cpu", "to",
                                "to(cpu, dtype)", "requires_grad_"])
def test_clone_detach_to(device, seen, op):
    @fuzz(device, *QUICK)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        target = data.draw(st.sampled_from(["float32", "float64", "int64", "bool"]))
        flag = data.draw(st.booleans())
        call = {"to": lambda lib, t: t.to(getattr(lib, target)),
                # (Back to the device: compare's gradient weights are made there.)
                "cpu": lambda lib, t: t.cpu().to(t.device),
                "to(cpu, dtype)": lambda lib, t: t.to("cpu", getattr(lib, target)).to(t.device),
                "requires_grad_": lambda lib, t: t.detach().requires_grad_(flag).requires_grad,
                }.get(op, lambda lib, t: getattr(t, op)())
        # (Finite values only: a float NaN or infinity to an integer is undefined in both.)
        check(call, [values(data, shape, data.draw(dtypes_of(device)))], device, seen)
    run()


QUERIES = {
    "item": lambda t: t.item(), "tolist": lambda t: np.asarray(t.tolist()),
    "numel": lambda t: t.numel(), "size()": lambda t: tuple(t.size()), "dim": lambda t: t.dim(),
    "len": lambda t: len(t), "shape": lambda t: tuple(t.shape), "ndim": lambda t: t.ndim,
    "int": lambda t: int(t), "float": lambda t: float(t), "bool": lambda t: bool(t),
    "dtype": lambda t: str(t.dtype).replace("torch.", ""), "is_leaf": lambda t: (t * 1).is_leaf,
}


@pytest.mark.parametrize("op", sorted(QUERIES) + ["size(d)"])
def test_python_values(device, seen, op):
    """What a tensor tells Python: item, tolist, numel, size(), size(d), dim, len, shape, and
    int/float/bool of a tensor (of one element, or not)."""
    @fuzz(device, *QUICK)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        d = data.draw(dims(len(shape)))
        call = (lambda lib, t: t.size(d)) if op == "size(d)" else (lambda lib, t: QUERIES[op](t))
        # (int() of an infinity is an OverflowError in both, outside compare's error classes.)
        check(call, [values(data, shape, data.draw(dtypes_of(device)), special=op != "int")],
              device, seen)
    run()

# ---------------------------------------------------------------- cat and stack


def test_cat_stack(device, seen):
    """1-3 tensors of one dtype: shapes that differ only along ``dim`` (cat) or not at all
    (stack), and now and then in another dimension or rank; dims out of range; 0-d tensors."""
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        op = data.draw(st.sampled_from(["cat", "stack"]))
        d = data.draw(dims(len(shape) + (op == "stack")))
        count = data.draw(st.integers(1, 3))
        ins = []
        for _ in range(count):
            s = list(shape)
            if op == "cat" and s and -len(s) <= d < len(s):
                s[d] = data.draw(st.integers(0, 3))
            if data.draw(st.integers(0, 9)) == 0:
                s = list(data.draw(shapes(max_side=side(device))))
            ins.append(tuple(s))
        # PyTorch's cat skips 1-D empty tensors (a legacy rule): not generated beside tensors of
        # another rank, and when all are, no dim is checked, so it is drawn in range.
        if any(len(s) != 1 for s in ins):
            ins = [(1,) if s == (0,) else s for s in ins]
        if op == "cat" and all(s == (0,) for s in ins):
            d = data.draw(st.integers(-1, 0))
        dtype = data.draw(dtypes_of(device))
        form = data.draw(st.sampled_from(["list", "tuple"]))
        wrap = list if form == "list" else tuple
        check(lambda lib, *ts: getattr(lib.tg, op)(wrap(ts), d),
              [values(data, s, dtype) for s in ins], device, seen, what=op)
    run()


def test_cat_stack_empty_list(device, seen):
    for op in ("cat", "stack"):
        check(lambda lib, op=op: getattr(lib.tg, op)([]), [], device, seen, what=op)

# ---------------------------------------------------------------- creation


def creation_shape(data):
    """A shape for zeros/ones/full: small sizes, a negative one now and then."""
    return tuple(data.draw(st.lists(st.integers(-1 if data.draw(st.integers(0, 5)) == 0 else 0,
                                                3), max_size=3)))


def test_zeros_ones_full(device, seen):
    @fuzz(device, *BUDGET)
    @given(st.data())
    def run(data):
        shape = creation_shape(data)
        op = data.draw(st.sampled_from(["zeros", "ones", "full"]))
        dtype = data.draw(st.one_of(st.none(), dtypes_of(device)))
        packed = data.draw(st.booleans())
        value = data.draw(SCALARS)

        def call(lib):
            kw = {"device": on(lib, device)}
            if dtype is not None:
                kw["dtype"] = getattr(lib, dtype)
            if op == "full":
                return lib.tg.full(shape, value, **kw)
            fn = getattr(lib.tg, op)
            return fn(shape, **kw) if packed else fn(*shape, **kw)
        check(call, [], device, seen, data.draw(DEFAULTS), what=op)
    run()


def test_zeros_ones_like(device, seen):
    @fuzz(device, *BUDGET)
    @given(shapes(max_side=side(device)), st.data())
    def run(shape, data):
        op = data.draw(st.sampled_from(["zeros_like", "ones_like"]))
        dtype = data.draw(st.one_of(st.none(), dtypes_of(device)))
        kw = lambda lib: {} if dtype is None else {"dtype": getattr(lib, dtype)}   # noqa: E731
        check(lambda lib, t: getattr(lib.tg, op)(t, **kw(lib)),
              [values(data, shape, data.draw(dtypes_of(device)))], device, seen, what=op)
    run()


def test_arange(device, seen):
    """Integer and float bounds and steps (zero and of the wrong sign too)."""
    @fuzz(device, *BUDGET)
    @given(st.data())
    def run(data):
        number = st.one_of(st.integers(-4, 6), st.sampled_from([0.5, -1.5, 2.25, 3.0]))
        args = tuple(data.draw(st.lists(number, min_size=1, max_size=3)))
        if len(args) == 3 and data.draw(st.integers(0, 5)) == 0:
            args = args[:2] + (0,)
        dtype = data.draw(st.sampled_from([None, None, "float64", "int64"]))
        kw = lambda lib: {"device": on(lib, device)} if dtype is None else \
            {"device": on(lib, device), "dtype": getattr(lib, dtype)}            # noqa: E731
        check(lambda lib: lib.tg.arange(*args, **kw(lib)), [], device, seen, data.draw(DEFAULTS))
    run()


def has_empty(rows):
    return rows == [] or any(has_empty(r) for r in rows if isinstance(r, list))


def nested(data, depth=0):
    """Nested lists of Python numbers, ragged now and then."""
    leaf = st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False, width=32),
                     st.booleans())
    if depth == 2 or data.draw(st.integers(0, 3)) == 0:
        return data.draw(st.lists(leaf, max_size=3))
    n = data.draw(st.integers(0, 3))
    first = nested(data, depth + 1)
    rows = [first] * n
    if n > 1 and not has_empty(first) and data.draw(st.integers(0, 5)) == 0:
        # Ragged. (Not after an empty first row: PyTorch takes [[], [1]] as shape (2, 0).)
        rows[-1] = first + [1]
    return [list(r) for r in rows]


def test_tensor_from_data(device, seen):
    """``tilegrad.tensor`` of Python numbers, nested lists (ragged too): dtype inference."""
    @fuzz(device, *BUDGET)
    @given(st.data())
    def run(data):
        obj = data.draw(st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False),
                                  st.booleans(), st.just(None).map(lambda _: nested(data))))
        dtype = data.draw(st.sampled_from([None, None, "float64", "int64", "bool"]))
        kw = lambda lib: {"device": on(lib, device)} if dtype is None else \
            {"device": on(lib, device), "dtype": getattr(lib, dtype)}            # noqa: E731
        check(lambda lib: lib.tg.tensor(obj, **kw(lib)), [], device, seen, data.draw(DEFAULTS))
    run()
