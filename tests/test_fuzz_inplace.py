"""In-place operations fuzzed against PyTorch (see fuzz_helpers.py): values, the gradients through
the history an in-place operation gives a tensor, and the error classes for results that do not
fit (broadcasting the changed tensor, float results into integer tensors) and for leaves that
require grad."""
from hypothesis import given
from hypothesis import strategies as st

from fuzz_helpers import arrays, broadcastable, compare, fuzz, shapes

BINARY = {
    "add_": lambda t, o: t.add_(o),
    "add_ alpha": lambda t, o: t.add_(o, alpha=-2),
    "sub_": lambda t, o: t.sub_(o),
    "mul_": lambda t, o: t.mul_(o),
    "div_": lambda t, o: t.div_(o),
    "+=": lambda t, o: t.__iadd__(o),
    "-=": lambda t, o: t.__isub__(o),
    "*=": lambda t, o: t.__imul__(o),
    "/=": lambda t, o: t.__itruediv__(o),
    "copy_": lambda t, o: t.copy_(o),
    "clamp_ tensor min": lambda t, o: t.clamp_(min=o),
}
DTYPES = ["float64", "int64"]


def _target(t, leaf):
    """The tensor changed in place: the input itself (a leaf, maybe requiring grad) or a
    non-leaf copy of it (so that the in-place operation rewrites a history)."""
    return t if leaf else t * 1


def test_binary_in_place_ops(device):
    @fuzz(device, examples=200, examples_cuda=20)
    @given(st.sampled_from(sorted(BINARY)), shapes(max_dims=3), st.data())
    def run(op, shape, data):
        other = data.draw(st.one_of(broadcastable(shape), shapes(max_dims=3)))
        # One dtype, or a float result into an integer tensor (refused by both); tilegrad does
        # not promote between two tensors, where PyTorch would turn int64 + float64 into float64.
        dt_self, dt_other = data.draw(st.sampled_from([("float64",) * 2, ("int64",) * 2,
                                                       ("int64", "float64")]))
        leaf = data.draw(st.booleans())
        compare(lambda lib, x, y: BINARY[op](_target(x, leaf), y),
                [arrays(shape, dt_self), arrays(other, dt_other, seed=1)], device)
    run()


SCALAR = {
    "add_": lambda t, s: t.add_(s),
    "sub_": lambda t, s: t.sub_(s),
    "mul_": lambda t, s: t.mul_(s),
    "div_": lambda t, s: t.div_(s),
    "+=": lambda t, s: t.__iadd__(s),
    "*=": lambda t, s: t.__imul__(s),
    "fill_": lambda t, s: t.fill_(s),
    "clamp_ min": lambda t, s: t.clamp_(min=s),
    "clamp_ max": lambda t, s: t.clamp_(max=s),
    "clamp_ both": lambda t, s: t.clamp_(min=s, max=s + 1),
    "clamp_ crossed": lambda t, s: t.clamp_(min=s + 1, max=s),
    "clamp": lambda t, s: t.clamp(-abs(s), abs(s)),
}


def test_scalar_in_place_ops(device):
    @fuzz(device, examples=200, examples_cuda=20)
    @given(st.sampled_from(sorted(SCALAR)), shapes(max_dims=3), st.sampled_from(DTYPES),
           st.one_of(st.integers(-3, 3), st.floats(-2, 2, allow_nan=False)), st.booleans())
    def run(op, shape, dtype, scalar, leaf):
        compare(lambda lib, x: SCALAR[op](_target(x, leaf), scalar), [arrays(shape, dtype)],
                device)
    run()


def test_zero_and_chains(device):
    @fuzz(device, examples=60, examples_cuda=8)
    @given(shapes(max_dims=3))
    def run(shape):
        def chain(lib, x, w):
            y = x * 2
            y.mul_(w).add_(x, alpha=3)
            z = y * 1
            z.zero_()
            return y.clamp_(-1, 1), z + x
        compare(chain, [arrays(shape), arrays(shape, seed=3)], device)
    run()


def test_no_grad_updates_of_leaves(device):
    """The SGD update a course writes first: on leaves that require grad, inside no_grad."""
    @fuzz(device, examples=40, examples_cuda=8)
    @given(shapes(max_dims=3))
    def run(shape):
        def update(lib, p, g):
            with lib.tg.no_grad():
                p -= 0.1 * g
                p *= 0.5
            return p.detach()
        compare(update, [arrays(shape), arrays(shape, seed=5)], device)
    run()
