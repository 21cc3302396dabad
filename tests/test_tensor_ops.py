"""PyTorch's tensor methods and torch-namespace functions beyond the core ones (tensor_ops.py,
clamp in inplace.py, the creation functions): values and gradients against PyTorch in float64 on
every device, integer results exactly, and the errors by type."""
import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.errors import ArgumentError, DtypeError, ShapeError
from tilegrad.testing import assert_close, compare_with_torch, rng

if torch is None:
    pytest.skip("PyTorch is the reference here", allow_module_level=True)


def arr(*shape, seed=0):
    return rng(seed).standard_normal(shape)


def on(device, fn):
    """``fn`` run on ``device``, its outputs brought back to the cpu (differentiably), so that
    ``compare_with_torch`` can weigh them."""
    def run(*ts):
        out = fn(*(t.to(device) for t in ts))
        return tuple(o.to("cpu") for o in out) if isinstance(out, tuple) else out.to("cpu")
    return run


def same(device, tg_fn, th_fn, *arrays):
    compare_with_torch(on(device, tg_fn), th_fn, *arrays)


# ---------------------------------------------------------------- elementwise
def test_abs_and_its_gradient_at_zero(device):
    x = arr(3, 7, seed=1)
    x[0, :3] = [0.0, -0.0, 2.0]
    same(device, lambda t: t.abs(), lambda t: t.abs(), x)
    same(device, lambda t: tg.abs(t) * 2, lambda t: torch.abs(t) * 2, x)
    ints = np.array([-3, 0, 5])
    assert tg.tensor(ints, device=device).abs().tolist() == [3, 0, 5]
    with pytest.raises(DtypeError, match="abs"):
        tg.tensor([True]).abs()


CLAMPS = {
    "min": (lambda t: t.clamp(min=-0.5), lambda t: t.clamp(min=-0.5)),
    "max": (lambda t: t.clamp(max=0.25), lambda t: t.clamp(max=0.25)),
    "both": (lambda t: tg.clamp(t, -0.5, 0.25), lambda t: torch.clamp(t, -0.5, 0.25)),
    "inverted": (lambda t: t.clip(0.5, -0.5), lambda t: t.clip(0.5, -0.5)),
}


@pytest.mark.parametrize("kind", CLAMPS)
def test_clamp_with_numbers_passes_the_gradient_at_the_bounds(device, kind):
    x = arr(5, 7, seed=2)
    x[0, :4] = [-0.5, 0.25, 0.5, -0.5]     # exactly on the bounds
    same(device, CLAMPS[kind][0], CLAMPS[kind][1], x)


def test_clamp_with_tensor_bounds_matches_torch_at_ties_and_inverted_bounds(device):
    x, lo, hi = arr(3, 7, seed=3), arr(3, 1, seed=4) - 0.5, arr(7, seed=5) + 0.5
    x[0, 0], x[1, 1], x[2, 2] = lo[0, 0], hi[1], hi[2]        # ties with each bound
    lo[2, 0] = hi[2] = 0.0                                    # lo == hi
    hi[3] = lo[1, 0] - 1.0                                    # lo > hi in a column
    same(device, lambda a, b, c: a.clamp(b, c), lambda a, b, c: a.clamp(b, c), x, lo, hi)
    same(device, lambda a, b: a.clamp(min=b), lambda a, b: a.clamp(min=b), x, lo)
    same(device, lambda a, c: a.clamp(max=c), lambda a, c: a.clamp(max=c), x, hi)


def test_clamp_keeps_nan_and_promotes_integers_as_torch():
    x = np.array([np.nan, -2.0, 3.0])
    assert_close(tg.tensor(x).clamp(-1, 1), torch.tensor(x).clamp(-1, 1), equal_nan=True)
    ints = np.array([-3, 0, 5])
    for lo, hi in ((-1, 2), (-0.5, 2.5)):
        got, want = tg.tensor(ints).clamp(lo, hi), torch.tensor(ints).clamp(lo, hi)
        assert got.tolist() == want.tolist() and str(got.dtype) in str(want.dtype)
    t = tg.tensor(x.copy())
    assert t.clamp_(max=0.0) is t and t.numpy()[1] == -2.0 and t.numpy()[2] == 0.0
    with pytest.raises(RuntimeError, match="at least one"):
        tg.tensor(x).clamp()


@pytest.mark.parametrize("op", ["eq", "ne", "gt", "ge", "lt", "le"])
def test_comparison_methods(device, op):
    a, b = np.round(arr(3, 7, seed=6)), np.round(arr(7, seed=7))
    got = getattr(tg.tensor(a, device=device), op)(tg.tensor(b, device=device))
    assert np.array_equal(got.numpy(), getattr(torch.tensor(a), op)(torch.tensor(b)).numpy())
    scalar = getattr(tg, op)(tg.tensor(a, device=device), 0.0)
    assert np.array_equal(scalar.numpy(), getattr(torch, op)(torch.tensor(a), 0.0).numpy())
    with pytest.raises(TypeError, match=op):
        getattr(tg.tensor(a), op)("x")


def test_named_arithmetic_and_functions_match_the_operators(device):
    x, y = arr(3, 5, seed=8), np.abs(arr(3, 5, seed=9)) + 0.5
    same(device, lambda a, b: a.add(b, alpha=2).sub(b, alpha=0.5).mul(a).div(b).pow(2).neg(),
         lambda a, b: a.add(b, alpha=2).sub(b, alpha=0.5).mul(a).div(b).pow(2).neg(), x, y)
    for name in ("exp", "tanh", "sigmoid", "relu"):
        same(device, getattr(tg, name), getattr(torch, name), x)
    for name in ("log", "sqrt"):
        same(device, getattr(tg, name), getattr(torch, name), y)
    with pytest.raises(TypeError, match="exp"):
        tg.exp([1.0])


# ---------------------------------------------------------------- reductions
def test_min_amin_argmin_values_indices_and_gradients(device):
    x = arr(5, 7, 3, seed=10)
    same(device, lambda t: t.min(), lambda t: t.min(), x)
    same(device, lambda t: t.min(1).values, lambda t: t.min(1).values, x)
    same(device, lambda t: t.min(dim=-1, keepdim=True)[0],
         lambda t: t.min(dim=-1, keepdim=True)[0], x)
    same(device, lambda t: tg.amin(t, (0, 2)), lambda t: torch.amin(t, (0, 2)), x)
    got, want = tg.tensor(x, device=device).min(1), torch.tensor(x).min(1)
    assert type(got).__name__ == "min" and np.array_equal(got.indices.numpy(), want.indices)
    kept = tg.tensor(x, device=device).min(-1, keepdim=True).indices
    assert np.array_equal(kept.numpy(), torch.tensor(x).min(-1, keepdim=True).indices)
    assert tg.argmin(tg.tensor(x, device=device), 2).tolist() == x.argmin(2).tolist()


def test_min_of_ties_shares_the_gradient_as_torch(device):
    x = np.array([[1.0, -2.0, -2.0], [3.0, 3.0, 4.0]])
    same(device, lambda t: t.min(), lambda t: t.min(), x)
    same(device, lambda t: t.amin(1), lambda t: t.amin(1), x)
    same(device, lambda t: t.min(0).values, lambda t: t.min(0).values, x)


def test_min_of_integers_reaches_the_dtype_ends_and_bools_work():
    big = np.iinfo(np.int64)
    x = np.array([[5, big.min, 3], [big.max, -1, 0]])
    assert tg.tensor(x).min().item() == big.min
    values, indices = tg.tensor(x).min(1)
    assert values.tolist() == x.min(1).tolist() and indices.tolist() == x.argmin(1).tolist()
    u = np.array([0, 255, 7], dtype=np.uint8)
    assert tg.tensor(u).amin().item() == 0 and tg.tensor(u).min(0).indices.item() == 0
    b = tg.tensor([[True, False, True]])
    assert b.min().item() is False and b.min(1).indices.tolist() == [1]
    assert b.amin(1).dtype == tg.bool_


def test_minimum_and_min_of_two_tensors(device):
    a, b = arr(3, 7, seed=11), arr(7, seed=12)
    a[0, :2] = b[:2]      # ties share the gradient
    same(device, lambda s, t: tg.minimum(s, t), lambda s, t: torch.minimum(s, t), a, b)
    same(device, lambda s, t: tg.min(s, t) + tg.max(s, t),
         lambda s, t: torch.min(s, t) + torch.max(s, t), a, b)


VARS = {
    "all": (lambda t: t.var(), lambda t: t.var()),
    "dim": (lambda t: t.std(1), lambda t: t.std(1)),
    "biased": (lambda t: t.var(0, unbiased=False), lambda t: t.var(0, unbiased=False)),
    "bool": (lambda t: t.std(False), lambda t: t.std(False)),
    "correction": (lambda t: tg.var(t, (0, 2), correction=2, keepdim=True),
                   lambda t: torch.var(t, (0, 2), correction=2, keepdim=True)),
    "fn": (lambda t: tg.std(t, -1, keepdim=True), lambda t: torch.std(t, -1, keepdim=True)),
}


@pytest.mark.parametrize("kind", VARS)
def test_var_and_std_match_torch(device, kind):
    same(device, VARS[kind][0], VARS[kind][1], arr(3, 5, 7, seed=13))


def test_var_of_one_element_is_nan_and_integers_are_refused():
    with pytest.warns(UserWarning, match="degrees of freedom"):     # torch's warning
        assert np.isnan(torch.tensor([1.5]).var().item())
    assert np.isnan(tg.tensor([1.5]).var().item())
    with pytest.raises(DtypeError, match="var"):
        tg.tensor([1, 2]).var()
    with pytest.raises(ArgumentError, match="var"):
        tg.tensor([1.0, 2.0]).var(unbiased=True, correction=1)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the simulator's NumPy: inf - inf
def test_all_any_isclose_allclose(device):
    a = np.array([1.0, np.inf, -np.inf, np.nan, 2.0, 1e-9])
    b = np.array([1.0 + 1e-7, np.inf, np.inf, np.nan, 2.1, 0.0])
    ta, tb, pa, pb = tg.tensor(a, device=device), tg.tensor(b, device=device), *map(
        torch.tensor, (a, b))
    for kw in ({}, {"equal_nan": True}, {"rtol": 0.1, "atol": 0.0}):
        assert tg.isclose(ta, tb, **kw).tolist() == torch.isclose(pa, pb, **kw).tolist()
        assert ta.allclose(tb, **kw) == torch.allclose(pa, pb, **kw)
    assert tg.allclose(ta[:2], tb[:2]) is True
    ints = tg.tensor([1, 2, 3], device=device)
    assert ints.isclose(tg.tensor([1, 3, 3], device=device)).tolist() == [True, False, True]
    m = tg.tensor([[True, False], [True, True]], device=device)
    assert m.all().item() is False and m.any().item() is True
    assert m.all(1).tolist() == [False, True] and tg.any(m, 0, keepdim=True).shape == (1, 2)


# ---------------------------------------------------------------- selection
def test_where_broadcasts_promotes_and_differentiates(device):
    cond = rng(14).random((3, 1, 7)) < 0.5
    a, b = arr(5, 1, seed=15), arr(1, 7, seed=16)
    c = tg.tensor(cond, device=device)
    compare_with_torch(lambda x, y: tg.where(c, x.to(device), y.to(device)).to("cpu"),
                       lambda x, y: torch.where(torch.tensor(cond), x, y), a, b)
    compare_with_torch(lambda x: x.to(device).where(c, 2.5).to("cpu"),
                       lambda x: x.where(torch.tensor(cond), 2.5), a)
    tc = torch.tensor(cond)
    for x, y in ((1, 2.5), (1, 2), (True, False)):
        got, want = tg.where(c, x, y), torch.where(tc, x, y)
        assert got.tolist() == want.tolist() and str(got.dtype) in str(want.dtype)
    with pytest.raises(DtypeError, match="boolean"):
        tg.where(tg.tensor([1, 0]), 1.0, 2.0)
    with pytest.raises(ShapeError, match="where"):
        tg.where(c, tg.ones(4, device=device), 0.0)


def test_masked_fill_out_of_place_and_in_place(device):
    x = arr(3, 7, seed=17)
    mask = rng(18).random((1, 7)) < 0.5
    m = tg.tensor(mask, device=device)
    same(device, lambda t: t.masked_fill(m, float("-inf")).exp(),
         lambda t: t.masked_fill(torch.tensor(mask), float("-inf")).exp(), x)
    same(device, lambda t, v: tg.masked_fill(t, m, v.to(device)),
         lambda t, v: t.masked_fill(torch.tensor(mask), v), x, np.array(0.75))
    t = tg.tensor(x, device=device)
    assert t.masked_fill_(m, 0.5) is t and t._version == 1
    assert np.array_equal(t.numpy(), torch.tensor(x).masked_fill_(torch.tensor(mask), 0.5))
    ints = tg.tensor([1, 2])
    assert ints.masked_fill(tg.tensor([True, False]), 0.5).tolist() == [0, 2]   # as torch
    with pytest.raises(DtypeError, match="boolean"):
        t.masked_fill(tg.tensor([1] * 7, device=device), 0.0)
    with pytest.raises(ShapeError, match="0-dimensional"):
        t.masked_fill(m, tg.ones(2, device=device))


@pytest.mark.parametrize("diagonal", [0, 1, -2])
def test_triu_tril(device, diagonal):
    x = arr(2, 5, 7, seed=19)
    same(device, lambda t: tg.triu(t, diagonal), lambda t: torch.triu(t, diagonal), x)
    same(device, lambda t: tg.tril(t, diagonal=diagonal),
         lambda t: torch.tril(t, diagonal=diagonal), x)
    mask = tg.triu(tg.ones(3, 3, device=device)) == 1
    assert mask.tolist() == (torch.triu(torch.ones(3, 3)) == 1).tolist()
    with pytest.raises(ShapeError, match="triu"):
        tg.triu(tg.ones(3))


# ---------------------------------------------------------------- shape
def test_view_as_reshape_as_expand_as_flatten(device):
    x, y = arr(3, 7, seed=20), arr(7, 3, seed=21)
    same(device, lambda a, b: a.view_as(b) * b, lambda a, b: a.view_as(b) * b, x, y)
    same(device, lambda a, b: a.reshape_as(b) + b, lambda a, b: a.reshape_as(b) + b, x, y)
    same(device, lambda a: a[:1].expand_as(a) * a, lambda a: a[:1].expand_as(a) * a, x)
    same(device, lambda a: tg.flatten(a.unsqueeze(0), 1), lambda a: torch.flatten(
        a.unsqueeze(0), 1), x)


def test_narrow_and_its_errors(device):
    x = arr(3, 7, seed=22)
    same(device, lambda t: t.narrow(1, 2, 3), lambda t: t.narrow(1, 2, 3), x)
    same(device, lambda t: tg.narrow(t, -1, -3, 2), lambda t: torch.narrow(t, -1, -3, 2), x)
    t = tg.tensor(x)
    with pytest.raises(IndexError, match="start out of range"):
        t.narrow(0, 4, 1)
    with pytest.raises(ArgumentError, match="exceeds dimension size"):
        t.narrow(0, 2, 2)
    with pytest.raises(ShapeError, match="0-dim"):
        tg.tensor(1.0).narrow(0, 0, 1)


def test_contiguous_copies_what_torch_would_have_viewed(device):
    t = tg.tensor(arr(3, 7, seed=23), device=device)
    assert t.contiguous() is t and t.is_contiguous()
    batch = t.view(7, -1).t().contiguous()          # word_language_model's batchify
    assert np.array_equal(batch.numpy(), torch.tensor(t.numpy()).view(7, -1).t().contiguous())
    batch.add_(1.0)    # allowed, as on PyTorch's contiguous() copy; t is unchanged
    assert np.array_equal(t.numpy(), arr(3, 7, seed=23))


# ---------------------------------------------------------------- new tensors and conversions
def test_new_tensors_take_the_dtype_and_device(device):
    t = tg.ones(2, dtype=tg.float64, device=device)
    for made in (t.new_zeros(3, 2), t.new_ones((3, 2)), t.new_empty(3, 2), t.new_full((3, 2), 7),
                 t.new_tensor(np.ones((3, 2)))):
        assert (made.shape, made.dtype, made.device.name) == ((3, 2), tg.float64, device)
    assert t.new_full((2,), 7).tolist() == [7.0, 7.0] and t.new_zeros(2).tolist() == [0.0, 0.0]
    other = t.new_zeros(2, dtype=tg.int64, device="cpu")
    assert other.dtype == tg.int64 and other.device.name == "cpu"
    assert t.new_ones(2, requires_grad=True).requires_grad


def test_dtype_conversions_as_torch(device):
    x = np.array([-1.5, 0.0, 2.7])
    t, p = tg.tensor(x, device=device), torch.tensor(x)
    for name in ("float", "double", "long", "int", "bool"):
        if name == "int" and device == "cuda":   # the CUDA kernels have no int32
            with pytest.raises(TypeError, match="int32"):
                t.int()
            continue
        got, want = getattr(t, name)(), getattr(p, name)()
        assert got.tolist() == want.tolist() and str(got.dtype) in str(want.dtype)
    assert t.type_as(tg.ones(1, dtype=tg.int64)).dtype == tg.int64
    assert t.cuda().device.name == "cuda" and t.cuda().is_cuda if device == "cuda" else True
    assert not tg.ones(1).is_cuda


def test_creation_functions():
    tg.manual_seed(3)
    r = tg.randint(3, 9, (5, 7))
    assert r.dtype == tg.int64 and r.shape == (5, 7) and 3 <= r.min().item() <= r.max().item() < 9
    assert tg.randint(13, (2, 2)).max().item() < 13 and tg.randint(5, size=(3,)).shape == (3,)
    assert tg.randint(0, 2, (4,), dtype=tg.float32).dtype == tg.float32
    with pytest.raises(ArgumentError, match="low"):
        tg.randint(5, 5, (2,))
    with pytest.raises(TypeError, match="randint"):
        tg.randint(5)
    assert np.array_equal(tg.eye(3, 5).numpy(), torch.eye(3, 5).numpy())
    assert tg.eye(4, dtype=tg.int64).tolist() == torch.eye(4, dtype=torch.int64).tolist()
    with pytest.raises(ArgumentError, match="eye"):
        tg.eye(-1)
    e = tg.empty(2, 3, dtype=tg.float64)
    assert e.shape == (2, 3) and e.dtype == tg.float64
    base = tg.ones(3, 2, dtype=tg.float64)
    for made in (tg.empty_like(base), tg.full_like(base, 2.5), tg.randn_like(base),
                 tg.rand_like(base)):
        assert made.shape == (3, 2) and made.dtype == tg.float64
    assert tg.full_like(base, 2.5).tolist() == [[2.5, 2.5]] * 3
    assert 0 <= tg.rand_like(base).min().item() and tg.rand_like(base).max().item() < 1
    with pytest.raises(TypeError, match="floating"):
        tg.randn_like(tg.ones(2, dtype=tg.int64))


def test_legacy_add_overload_of_word_language_model():
    p = tg.ones(3)
    with pytest.warns(UserWarning, match="deprecated"):
        p.add_(-0.5, tg.full((3,), 2.0))
    assert p.tolist() == [0.0, 0.0, 0.0]


def test_public_functions_are_annotated():
    import inspect
    import typing
    from tilegrad import interop, tensor_ops
    for module in (tensor_ops, interop):
        for name, fn in vars(module).items():
            if inspect.isfunction(fn) and not name.startswith("_") and \
                    fn.__module__ == module.__name__:
                hints = typing.get_type_hints(fn, localns={"Tensor": tg.Tensor})
                assert "return" in hints, name
    for name, fn in vars(tensor_ops.TensorOps).items():
        fn = getattr(fn, "fget", fn)
        if inspect.isfunction(fn) and not name.startswith("_"):
            hints = typing.get_type_hints(fn, localns={"Tensor": tg.Tensor})
            params = list(inspect.signature(fn).parameters)[1:]
            assert "return" in hints and all(p in hints for p in params), name
