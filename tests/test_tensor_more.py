"""sin and cos (primitives of every backend, and their gradients), the random fills uniform_ and
normal_, multinomial, and PyTorch's legacy conveniences ``type()`` and ``new()``, and the
``grad_fn`` that ``repr`` shows: against PyTorch in float64 where the result is deterministic,
by bounds, moments and frequencies of many draws where it is random."""
import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.backends import numpy as spec
from tilegrad.errors import ArgumentError, DtypeError, ShapeError
from tilegrad.testing import assert_close, compare_with_torch, rng

if torch is None:
    pytest.skip("PyTorch is the reference here", allow_module_level=True)


def arr(*shape, seed=0):
    return rng(seed).standard_normal(shape)


# ---------------------------------------------------------------- sin, cos
@pytest.mark.parametrize("name", ["sin", "cos"])
def test_sin_and_cos_values_and_gradients_match_torch(device, name):
    x = 4 * arr(3, 7, seed=1)
    compare_with_torch(lambda t: getattr(t.to(device), name)().to("cpu") * 2,
                       lambda t: getattr(t, name)() * 2, x)
    compare_with_torch(lambda t: getattr(tg, name)(t.to(device)).to("cpu"),
                       lambda t: getattr(torch, name)(t), x[:1])
    ints = tg.tensor([0, 1, -2], device=device)
    got = getattr(ints, name)()
    assert got.dtype == tg.float32
    assert_close(got, getattr(torch, name)(torch.tensor([0, 1, -2])).numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sin", "cos"])
def test_device_sin_and_cos_match_the_numpy_backend_at_special_values(device, name, dtype):
    x = np.concatenate([[0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, 700.0, -800.0],
                        10 * arr(13, seed=2)]).astype(dtype)
    be = tg.device(device).backend
    with np.errstate(invalid="ignore"):     # sin(inf) is NaN, and NumPy warns
        got = be.to_numpy(be.unary(name, be.from_numpy(x)))
        want = getattr(np, name)(x.astype(np.float64))
        assert spec.unary(name, x).dtype == dtype
    assert got.dtype == dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert_close(got[~np.isnan(want)], want[~np.isnan(want)],
                 rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6 if dtype == np.float32
                 else 1e-14)


def test_positional_encoding_as_torchs_transformer_tutorial_builds_it():
    d_model, max_len = 6, 5
    position = tg.arange(max_len).unsqueeze(1).float()   # tilegrad does not promote int * float
    div_term = (tg.arange(0, d_model, 2) * (-np.log(10000.0) / d_model)).exp()
    pe = tg.zeros(max_len, 1, d_model)
    pe[:, 0, 0::2] = tg.sin(position * div_term)
    pe[:, 0, 1::2] = tg.cos(position * div_term)
    tp = torch.arange(max_len).unsqueeze(1)
    tdiv = torch.exp(torch.arange(0, d_model, 2) * (-np.log(10000.0) / d_model))
    ref = torch.zeros(max_len, 1, d_model)
    ref[:, 0, 0::2] = torch.sin(tp * tdiv)
    ref[:, 0, 1::2] = torch.cos(tp * tdiv)
    assert_close(pe, ref.numpy(), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- uniform_, normal_
def test_uniform_fills_in_place_within_the_bounds_with_the_moments_of_the_distribution(device):
    t = tg.zeros(40000, dtype=tg.float64, device=device)
    assert t.uniform_(-2.0, 3.0) is t and t._version == 1
    x = t.numpy()
    assert x.min() >= -2.0 and x.max() < 3.0
    se = 5 / np.sqrt(12) / np.sqrt(x.size)             # standard error of the mean
    assert abs(x.mean() - 0.5) < 5 * se and abs(x.var() - 25 / 12) < 0.05
    t.uniform_(**{"from": 1.0, "to": 1.5})             # torch's keyword names
    assert 1.0 <= t.numpy().min() and t.numpy().max() < 1.5


def test_normal_fills_in_place_with_the_mean_and_std_asked(device):
    t = tg.empty(40000, device=device).normal_(2.0, 3.0)
    x = t.numpy().astype(np.float64)
    assert t.dtype == tg.float32
    assert abs(x.mean() - 2.0) < 5 * 3.0 / np.sqrt(x.size) and abs(x.std() - 3.0) < 0.05


def test_random_fills_are_reproducible_and_follow_the_rules_of_in_place_ops():
    tg.manual_seed(3)
    a = tg.empty(5).uniform_()
    tg.manual_seed(3)
    assert a.tolist() == tg.empty(5).uniform_().tolist()
    g = tg.Generator().manual_seed(1)
    b = tg.empty(5).normal_(generator=g).tolist()
    assert b == tg.empty(5).normal_(generator=tg.Generator().manual_seed(1)).tolist()
    w = tg.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.uniform_()
    with tg.no_grad():
        w.normal_()
    assert w.is_leaf and w.requires_grad
    with pytest.raises(DtypeError, match="uniform_"):
        tg.zeros(3, dtype=tg.int64).uniform_()
    with pytest.raises(RuntimeError, match="from=1 > to=0"):
        tg.zeros(3).uniform_(1, 0)
    with pytest.raises(RuntimeError, match="std >= 0.0"):
        tg.zeros(3).normal_(0, -1)
    y = tg.ones(4, requires_grad=True) * 2      # a non-leaf: the old values get no gradient
    y.uniform_()
    y.sum().backward()


# ---------------------------------------------------------------- multinomial
def test_multinomial_with_replacement_draws_in_proportion_to_the_weights(device):
    w = np.array([[1.0, 2.0, 0.0, 5.0, 2.0], [0.0, 0.0, 3.0, 0.0, 1.0]])
    n = 20000
    out = tg.multinomial(tg.tensor(w, device=device), n, replacement=True)
    assert out.shape == (2, n) and out.dtype == tg.int64 and out.device.name == device
    for row, weights in zip(out.numpy(), w):
        p = weights / weights.sum()
        freq = np.bincount(row, minlength=5) / n
        assert np.all(freq[p == 0] == 0)                       # never a weight of 0
        assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-12)
    assert torch.multinomial(torch.tensor(w), 3, True).shape == out[:, :3].shape


def test_multinomial_without_replacement_gives_distinct_indices_drawn_as_torchs():
    w = tg.tensor([0.5, 4.0, 1.0, 0.0, 2.5])
    runs = np.array([w.multinomial(4).tolist() for _ in range(3000)])
    assert all(len(set(r)) == 4 for r in runs) and (runs[:, :4] != 3).all()
    first = np.bincount(runs[:, 0], minlength=5) / len(runs)       # the first draw: w / sum
    assert_close(first, [0.0625, 0.5, 0.125, 0.0, 0.3125], rtol=0, atol=0.04)
    # the second draw, given the first, in proportion to the weights left (torch's too)
    tr = torch.stack([torch.multinomial(torch.tensor(w.numpy()), 2) for _ in range(3000)])
    both = (runs[:, 0] == 1) & (runs[:, 1] == 4)
    ref = ((tr[:, 0] == 1) & (tr[:, 1] == 4)).double().mean().item()
    assert abs(both.mean() - 0.5 * 2.5 / 4) < 0.04 and abs(ref - 0.5 * 2.5 / 4) < 0.04
    full = tg.multinomial(tg.tensor([[1.0, 0.0, 2.0]]), 3)     # zero weights come last
    assert full.tolist()[0][2] == 1 and sorted(full.tolist()[0]) == [0, 1, 2]


def test_multinomial_is_reproducible_from_the_seed_or_a_generator():
    w = tg.tensor([1.0, 2.0, 3.0])
    tg.manual_seed(5)
    a = tg.multinomial(w, 6, True).tolist()
    tg.manual_seed(5)
    assert a == tg.multinomial(w, 6, True).tolist()
    g = [tg.Generator().manual_seed(2) for _ in range(2)]
    assert w.multinomial(2, generator=g[0]).tolist() == w.multinomial(2, generator=g[1]).tolist()


MULTINOMIAL_ERRORS = {   # (weights, num_samples, replacement, tilegrad's class)
    "negative": ([1.0, -1.0], 1, True, ArgumentError),
    "nan": ([1.0, float("nan")], 1, True, ArgumentError),
    "inf": ([float("inf"), 1.0], 1, False, ArgumentError),
    "zero sum": ([[1.0, 1.0], [0.0, 0.0]], 1, True, ArgumentError),
    "too many without replacement": ([1.0, 1.0], 3, False, ArgumentError),
    "integer weights": ([1, 2], 1, True, DtypeError),
    "3-d": ([[[1.0]]], 1, True, ShapeError),
    "no samples": ([1.0], 0, True, ArgumentError),
}


@pytest.mark.parametrize("kind", MULTINOMIAL_ERRORS)
def test_multinomial_errors_as_torchs(kind):
    w, k, replacement, error = MULTINOMIAL_ERRORS[kind]
    with pytest.raises(error, match="multinomial"):
        tg.multinomial(tg.tensor(w), k, replacement)
    assert issubclass(error, RuntimeError)
    with pytest.raises(RuntimeError):
        torch.multinomial(torch.tensor(w), k, replacement)


# ---------------------------------------------------------------- type(), new(), repr
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "uint8", "bool"])
def test_type_names_and_conversions_are_torchs(dtype):
    x = tg.zeros(2, dtype=getattr(np, dtype))
    ref = torch.zeros(2, dtype=getattr(torch, dtype))
    assert x.type() == ref.type()
    assert x.type(tg.float64).dtype == tg.float64 and x.type(x.dtype) is x
    assert x.type("torch.LongTensor").dtype == ref.type("torch.LongTensor").numpy().dtype
    with pytest.raises(ValueError, match="type"):
        x.type("torch.NoSuchTensor")


def test_cuda_type_names(device):
    if device == "cuda":
        assert tg.zeros(2, device="cuda").type() == "torch.cuda.FloatTensor"
        assert tg.zeros(2).type("torch.cuda.DoubleTensor").device.name == "cuda"


def test_new_is_torchs_legacy_constructor(device):
    x = tg.zeros(3, dtype=tg.float64, device=device)
    ref = torch.zeros(3, dtype=torch.float64)
    for args in [(2, 5), ([1, 2],), ((4.0, 5.0),), ()]:
        got, want = x.new(*args), ref.new(*args)
        assert got.shape == tuple(want.shape) and got.dtype == tg.float64
        assert got.device.name == device
        if args and not isinstance(args[0], int):
            assert got.tolist() == want.tolist()


def test_repr_shows_torchs_grad_fn_name():
    a = tg.ones(2, requires_grad=True)
    assert "grad_fn=<MulBackward0>" in repr(a * 2)
    assert "grad_fn=<SumBackward0>" in repr((a * 2).sum())
    assert repr(torch.ones(2, requires_grad=True) * 2).endswith("grad_fn=<MulBackward0>)")


def test_index_of_an_integer_tensor(device):
    words = ["a", "b", "c", "d"]
    assert words[tg.tensor(2, device=device)] == "c"
    assert words[tg.tensor([1], device=device)] == "b"
    assert words[:tg.tensor(3)] == ["a", "b", "c"]
    for bad in (tg.tensor(1.0), tg.tensor([1, 2])):
        with pytest.raises(TypeError, match="single element"):
            words[bad]
