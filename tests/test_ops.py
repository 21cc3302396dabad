"""Tensor operations: values and gradients against central differences and PyTorch (float64)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tilegrad as tg
from helpers import torch
from tilegrad.testing import assert_close, gradcheck, compare_with_torch, rng


def arr(*shape, seed=0, positive=False):
    a = rng(seed).standard_normal(shape)
    return np.abs(a) + 0.5 if positive else a


# Broadcasting in both directions: the left operand broadcast, the right, and both.
BROADCAST_SHAPES = [((3, 7), (3, 7)), ((3, 1), (1, 7)), ((7,), (5, 3, 7)), ((5, 3, 7), (3, 1)),
                    ((1,), (3, 5)), ((2, 1, 5), (3, 1))]
BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
}


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
def test_binary_broadcasting_matches_torch(op, shapes):
    a, b = arr(*shapes[0], seed=1), arr(*shapes[1], seed=2, positive=op == "div")
    compare_with_torch(BINARY[op][0], BINARY[op][1], a, b)


@pytest.mark.parametrize("op", BINARY)
def test_binary_gradients_central_differences(op):
    a, b = arr(3, 1, seed=3), arr(1, 5, seed=4, positive=True)
    gradcheck(BINARY[op][0], a, b)


SCALAR_FORMS = {
    "t+s": lambda t: t + 2.5, "s+t": lambda t: 2.5 + t, "t-s": lambda t: t - 1.5,
    "s-t": lambda t: 1.5 - t, "t*s": lambda t: t * -3.0, "s*t": lambda t: -3.0 * t,
    "t/s": lambda t: t / 4.0, "s/t": lambda t: 4.0 / t, "neg": lambda t: -t,
    "pow2": lambda t: t ** 2, "pow-1.5": lambda t: t ** -1.5, "pow3": lambda t: t ** 3,
}


@pytest.mark.parametrize("name", SCALAR_FORMS)
def test_scalar_operands_match_torch(name):
    f = SCALAR_FORMS[name]
    compare_with_torch(f, f, arr(3, 5, seed=5, positive=True))


UNARY = {
    "exp": (lambda t: t.exp(), lambda t: t.exp(), False),
    "log": (lambda t: t.log(), lambda t: t.log(), True),
    "tanh": (lambda t: t.tanh(), lambda t: t.tanh(), False),
    "sigmoid": (lambda t: t.sigmoid(), lambda t: t.sigmoid(), False),
    "relu": (lambda t: t.relu(), lambda t: t.relu(), False),
    "sqrt": (lambda t: t.sqrt(), lambda t: t.sqrt(), True),
}


@pytest.mark.parametrize("op", UNARY)
def test_unary_matches_torch_and_central_differences(op):
    tg_f, th_f, positive = UNARY[op]
    compare_with_torch(tg_f, th_f, arr(7, 3, seed=6, positive=positive))
    gradcheck(tg_f, arr(3, 1, 3, seed=7, positive=positive))


REDUCTIONS = [(d, k) for d in (0, 1, -1, (0, 2), (2, 0, 1)) for k in (False, True)]


@pytest.mark.parametrize("op", ["sum", "mean", "amax"])
def test_full_reductions_match_torch(op):
    compare_with_torch(lambda t: getattr(t, op)(), lambda t: getattr(t, op)(), arr(3, 5, 7, seed=8))


@pytest.mark.parametrize("dim,keepdim", REDUCTIONS, ids=str)
@pytest.mark.parametrize("op", ["sum", "mean", "amax"])
def test_reductions_match_torch(op, dim, keepdim):
    a = arr(3, 5, 7, seed=8)
    compare_with_torch(lambda t: getattr(t, op)(dim, keepdim),
                       lambda t: getattr(t, op)(dim, keepdim), a)


def test_reduction_numpy_spellings_axis_keepdims():
    a = arr(3, 5, seed=9)
    t = tg.tensor(a)
    assert_close(t.sum(axis=1, keepdims=True).numpy(), a.sum(axis=1, keepdims=True))
    assert_close(t.mean(axis=(0, 1)).numpy(), a.mean())
    assert_close(t.max(axis=0, keepdims=True).values.numpy(), a.max(axis=0, keepdims=True))


def test_max_with_dim_returns_values_and_indices_as_torch():
    a = arr(4, 7, seed=10)
    compare_with_torch(lambda t: t.max(1).values, lambda t: t.max(1).values, a)
    compare_with_torch(lambda t: t.max(), lambda t: t.max(), a)
    values, indices = tg.tensor(a).max(0, keepdim=True)
    assert values.shape == (1, 7)
    np.testing.assert_array_equal(indices.numpy(), a.argmax(0)[None])
    np.testing.assert_array_equal(tg.tensor(a).argmax().numpy(), a.argmax())


def test_max_gradient_is_shared_among_ties_as_torch_amax():
    t = tg.tensor([[1.0, 3.0, 3.0], [2.0, 0.5, -1.0]], dtype=tg.float64, requires_grad=True)
    t.amax(1).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [[0, 0.5, 0.5], [1, 0, 0]])


SHAPE_OPS = {
    "reshape": (lambda t: t.reshape(5, -1), lambda t: t.reshape(5, -1)),
    "view": (lambda t: t.view(3, 35), lambda t: t.view(3, 35)),
    "flatten": (lambda t: t.flatten(), lambda t: t.flatten()),
    "flatten12": (lambda t: t.flatten(1), lambda t: t.flatten(1)),
    "transpose": (lambda t: t.transpose(0, 2), lambda t: t.transpose(0, 2)),
    "permute": (lambda t: t.permute(2, 0, 1), lambda t: t.permute(2, 0, 1)),
    "T": (lambda t: t.reshape(15, 7).T, lambda t: t.reshape(15, 7).T),
    "unsqueeze": (lambda t: t.unsqueeze(1), lambda t: t.unsqueeze(1)),
    "expand": (lambda t: t[:, :1].expand(3, 4, 7), lambda t: t[:, :1].expand(3, 4, 7)),
}


@pytest.mark.parametrize("op", SHAPE_OPS)
def test_shape_ops_match_torch(op):
    compare_with_torch(*SHAPE_OPS[op], arr(3, 5, 7, seed=11))


INDEXING = {
    "int": lambda t: t[1],
    "negative": lambda t: t[-1, 2],
    "slice": lambda t: t[1:3, ::2],
    "step": lambda t: t[:, 4:0:-2],   # torch has no negative steps: compared with NumPy below
    "ellipsis": lambda t: t[..., 1],
    "none": lambda t: t[None, :, 2],
    "int_array_repeats": lambda t: t[[0, 2, 0, 0]],
    "two_arrays": lambda t: t[[0, 2, 2], [1, 1, 4]],
}


@pytest.mark.parametrize("name", [k for k in INDEXING if k != "step"])
def test_indexing_matches_torch(name):
    f = INDEXING[name]
    compare_with_torch(f, f, arr(3, 5, seed=12))


def test_indexing_with_tensor_index_and_bool_mask():
    a = arr(5, 3, seed=13)
    idx = np.array([4, 0, 4])
    compare_with_torch(lambda t: t[tg.tensor(idx)], lambda t: t[torch.tensor(idx)], a)
    mask = a[:, 0] > 0
    compare_with_torch(lambda t: t[tg.tensor(mask)], lambda t: t[torch.tensor(mask)], a)


def test_indexing_gradient_central_differences():
    gradcheck(INDEXING["step"], arr(3, 5, seed=14))
    gradcheck(INDEXING["int_array_repeats"], arr(3, 2, seed=15))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_and_stack_match_torch(dim):
    a, b, c = arr(3, 4, seed=16), arr(3, 4, seed=17), arr(3, 4, seed=18)
    compare_with_torch(lambda *ts: tg.stack(ts, dim), lambda *ts: torch.stack(ts, dim), a, b, c)
    shapes = {0: [(1, 4), (3, 4), (2, 4)], 1: [(3, 1), (3, 4), (3, 2)],
              -1: [(3, 1), (3, 4), (3, 2)]}
    ins = [arr(*s, seed=19 + k) for k, s in enumerate(shapes[dim])]
    compare_with_torch(lambda *ts: tg.cat(ts, dim), lambda *ts: torch.cat(ts, dim), *ins)


MATMUL_SHAPES = [((3, 5), (5, 7)), ((1, 3), (3, 1)), ((7, 3), (3,)), ((3,), (3, 5)), ((5,), (5,)),
                 ((2, 3, 5), (5, 4)), ((3, 5), (2, 5, 7)), ((2, 1, 3, 5), (3, 5, 2))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_matches_torch(shapes):
    a, b = arr(*shapes[0], seed=30), arr(*shapes[1], seed=31)
    compare_with_torch(lambda x, y: x @ y, lambda x, y: x @ y, a, b)


def test_matmul_gradient_central_differences():
    gradcheck(lambda x, y: x @ y, arr(2, 3, seed=32), arr(3, 1, seed=33))


def test_composite_graph_reuses_a_tensor():
    # x feeds three paths; gradients from all of them must add up.
    f = lambda x, w: ((x @ w).tanh() * x.sum(1, keepdim=True) + (x * x).mean()).sigmoid()  # noqa: E731
    compare_with_torch(f, f, arr(3, 4, seed=34), arr(4, 4, seed=35))
    gradcheck(f, arr(2, 3, seed=36), arr(3, 3, seed=37))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=0, max_size=3),
       st.lists(st.booleans(), min_size=3, max_size=3), st.booleans())
def test_broadcast_gradients_sum_to_operand_shape(shape, drop, swap):
    """Any shape against a copy with some dimensions set to 1 (and maybe fewer dimensions)."""
    small = [1 if d else n for n, d in zip(shape, drop)]
    small = small[1:] if swap and small else small
    a, b = arr(*shape, seed=40), arr(*small, seed=41)
    compare_with_torch(lambda x, y: x * y + y, lambda x, y: x * y + y, a, b)


def test_float32_values_close_to_float64_reference():
    a, b = arr(7, 3, seed=50), arr(3, 5, seed=51)
    t32 = (tg.tensor(a.astype(np.float32)) @ tg.tensor(b.astype(np.float32))).tanh()
    assert t32.dtype == tg.float32
    assert_close(t32.numpy(), np.tanh(a @ b), rtol=1e-5, atol=1e-6)


def test_no_grad_and_detach_stop_the_graph():
    x = tg.tensor(arr(3, seed=52), requires_grad=True)
    with tg.no_grad():
        y = x * 2
    assert not y.requires_grad
    z = (x.detach() * x).sum()
    z.backward()
    assert_close(x.grad.numpy(), x.numpy())


PROMOTIONS = {   # integer and bool tensors promoted as torch promotes them
    "int*float": lambda m, t: t * 0.5,
    "float*int": lambda m, t: 0.5 * t,
    "int/int-scalar": lambda m, t: t / 2,
    "int-scalar/int": lambda m, t: 3 / (t + 1),
    "int/int": lambda m, t: t / (t + 1),
    "int+int": lambda m, t: t + 2,
    "int**2": lambda m, t: t ** 2,
    "float**-1": lambda m, t: (t + 1.0) ** -1,
    "exp(int)": lambda m, t: t.exp(),
    "sigmoid(int)": lambda m, t: t.sigmoid(),
    "bool+1": lambda m, t: (t > 2) + 1,
    "int.mean": lambda m, t: t.float().mean(),
    "ne": lambda m, t: t != 3,
    "ge": lambda m, t: t >= 3,
    "le": lambda m, t: t <= 3,
    "eq-tensor": lambda m, t: t == m.tensor([0, 1, 7, 3, 9]),
}


@pytest.mark.parametrize("name", PROMOTIONS)
def test_integer_promotion_and_comparisons_match_torch(name):
    if torch is None:
        pytest.skip("PyTorch is not installed")
    f = PROMOTIONS[name]
    got, ref = f(tg, tg.arange(5)), f(torch, torch.arange(5))
    assert str(got.dtype) == str(ref.dtype).replace("torch.", ""), (got.dtype, ref.dtype)
    assert_close(got.numpy(), ref.numpy(), rtol=1e-6)


def test_truth_value_of_one_element_only():
    assert bool(tg.tensor([2.0]) > 1) and not bool(tg.tensor(0))
    assert float(tg.tensor([[2.5]])) == 2.5 and int(tg.tensor(7)) == 7
    with pytest.raises(ValueError, match=r"bool: .*\(3,\)"):
        bool(tg.tensor([1, 2, 3]) > 1)


def test_integer_to_negative_power_is_an_error_as_in_torch():
    with pytest.raises(ValueError, match=r"pow: .*int64.*-1"):
        tg.arange(1, 4) ** -1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # NumPy's, for 0 ** -1 and the like
@pytest.mark.parametrize("p", [0, 0.0, 1, 1.0, 0.5, -0.5, 2, 3, -1, 1.5, -1.5])
def test_pow_at_zero_matches_torch(p):
    """x ** p and its gradient where x is 0 (and -0.0, and negative). Bug on main: the gradient
    of x ** 0 at 0 was NaN (0 * 0 ** -1); PyTorch's is 0. Elsewhere PyTorch's values stand,
    infinities and NaN included: x ** 0.5 has gradient inf at 0, x ** -0.5 is -inf at -0.0."""
    if torch is None:
        pytest.skip("PyTorch is not installed")
    a = np.array([0.0, -0.0, 2.0, -3.0])
    t, r = tg.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    (t ** p).backward(tg.ones(4, dtype=tg.float64))
    (r ** p).backward(torch.ones(4, dtype=torch.float64))
    np.testing.assert_allclose((t ** p).numpy(), (r ** p).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(t.grad.numpy(), r.grad.numpy(), rtol=1e-12)
    y, ref = (t ** p).numpy(), (r ** p).detach().numpy()
    assert np.array_equal(np.signbit(y[~np.isnan(y)]), np.signbit(ref[~np.isnan(ref)]))


@pytest.mark.parametrize("op", SHAPE_OPS)
def test_shape_ops_gradients_central_differences(op):
    gradcheck(SHAPE_OPS[op][0], arr(3, 5, 7, seed=60))


@pytest.mark.parametrize("dim,keepdim", [(None, False), (1, False), ((0, 2), True)], ids=str)
@pytest.mark.parametrize("op", ["sum", "mean", "amax"])
def test_reduction_gradients_central_differences(op, dim, keepdim):
    f = (lambda t: getattr(t, op)()) if dim is None else (lambda t: getattr(t, op)(dim, keepdim))
    gradcheck(f, arr(3, 2, 3, seed=61))


def test_cat_stack_gradients_central_differences():
    a, b = arr(2, 3, seed=62), arr(1, 3, seed=63)
    gradcheck(lambda x, y: tg.cat([x, y, x], 0), a, b)
    gradcheck(lambda x, y: tg.stack([x, y * 2], 1), b, arr(1, 3, seed=64))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_unbind_matches_torch_including_unused_slices(dim):
    # Only some slices reach the output: the others' gradients must be zeros.
    f = lambda t, m: sum(s * (k + 1) for k, s in enumerate(t.unbind(dim)) if k != 1)  # noqa: E731
    compare_with_torch(lambda t: f(t, tg), lambda t: f(t, torch), arr(3, 4, 5, seed=70))
    gradcheck(lambda t: f(t, tg), arr(3, 2, 3, seed=71))
    assert len(tg.randn(7, 2).unbind(0)) == 7
