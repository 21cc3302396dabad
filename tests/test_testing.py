"""tilegrad.testing, the oracles the tests (and users' tests) are built on: each must fail where
it should, and say where."""
import unittest

import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.autograd import Function
from tilegrad.testing import (ODD_SIZES, assert_close, compare_with_reference,
                              compare_with_torch, gradcheck, guarded, odd_shapes, random_array,
                              rng, tolerances)


def test_assert_close_names_the_first_mismatch():
    ref = rng(0).standard_normal((3, 4))
    got = ref.copy()
    got[1, 2] += 1e-3
    got[2, 0] += 1e-3
    with pytest.raises(AssertionError, match=r"2 of 12 elements differ; first at \(1, 2\)"):
        assert_close(got, ref, what="value")
    assert_close(ref.copy(), ref)


def test_assert_close_tolerances_follow_the_dtype():
    ref = rng(1).standard_normal(50)
    # float32 rounding of float64 values passes at float32's tolerance...
    assert_close(ref.astype(np.float32), ref)
    # ...and float64 values off by float32's rounding fail at float64's.
    with pytest.raises(AssertionError, match="rtol=1e-08"):
        assert_close(ref.astype(np.float32).astype(np.float64), ref)
    assert tolerances(np.float32) == (1e-4, 1e-5)
    assert tolerances(np.int64) == (0.0, 0.0)
    with pytest.raises(AssertionError):
        assert_close(np.array([1, 2]), np.array([1, 3]))


def test_assert_close_shapes_nans_and_infinities():
    with pytest.raises(AssertionError, match=r"shape \(3,\) != expected \(1, 3\)"):
        assert_close(np.ones(3), np.ones((1, 3)))
    nan = np.array([1.0, np.nan, np.inf])
    with pytest.raises(AssertionError, match="first at \\(1,\\)"):
        assert_close(nan, nan)
    assert_close(nan, nan, equal_nan=True)
    with pytest.raises(AssertionError):
        assert_close(np.array([np.inf]), np.array([-np.inf]))


def test_assert_close_takes_tensors_and_torch():
    x = rng(2).standard_normal((2, 3))
    assert_close(tg.tensor(x, dtype=tg.float64), x)
    t = tg.tensor(x, dtype=tg.float64, requires_grad=True)
    assert_close(t * 1, x)
    if torch is not None:
        assert_close(torch.tensor(x, requires_grad=True), x)


class _WrongSquare(Function):
    """x**2 with a backward off by a factor: what gradcheck exists to catch."""

    def forward(self, x):
        self.save_for_backward(x)
        return x * x

    def backward(self, grad):
        (x,) = self.saved
        return (grad * 2.1 * x,)


class _Square(_WrongSquare):
    def backward(self, grad):
        (x,) = self.saved
        return (grad * 2 * x,)


def test_gradcheck_passes_a_right_backward_and_fails_a_wrong_one():
    x = rng(3).standard_normal((3, 5))
    assert gradcheck(lambda t: _Square.apply(t), x) is True
    with pytest.raises(AssertionError, match="gradient of input 0"):
        gradcheck(lambda t: _WrongSquare.apply(t), x)


def test_gradcheck_several_inputs_and_outputs():
    a, b = rng(4).standard_normal((2, 3)), rng(5).standard_normal((3, 4))
    assert gradcheck(lambda x, y: (x @ y, (x * x).sum()), a, b)


def test_compare_with_torch():
    if torch is None:
        with pytest.raises(unittest.SkipTest):
            compare_with_torch(lambda x: x, lambda x: x, np.ones(2))
        return
    x = rng(6).standard_normal((4, 3))
    compare_with_torch(lambda t: t.relu() * 2, lambda t: t.relu() * 2, x)
    with pytest.raises(AssertionError, match="output 0"):
        compare_with_torch(lambda t: t.relu() * 2, lambda t: t.relu() * 2.001, x)
    with pytest.raises(AssertionError, match="gradient of input 0"):
        compare_with_torch(lambda t: _WrongSquare.apply(t), lambda t: t * t, x)


def test_compare_with_reference():
    x = rng(7).standard_normal((5, 2))
    compare_with_reference(lambda t: _Square.apply(t), lambda t: t * t, x)
    with pytest.raises(AssertionError, match="gradient of input 0"):
        compare_with_reference(lambda t: _WrongSquare.apply(t), lambda t: t * t, x)


def test_odd_shapes_and_random_arrays():
    every = odd_shapes(2)
    assert len(every) == len(ODD_SIZES) ** 2 and (1, 13) in every
    some = odd_shapes(3, limit=6, seed=1)
    assert len(some) == 6 and some[:2] == [(1, 1, 1), (13, 13, 13)]
    assert len(set(some)) == 6 and all(s in odd_shapes(3) for s in some)
    a = random_array((3, 7), "float32", seed=0)
    assert a.dtype == np.float32 and np.all(a != 0)
    assert np.array_equal(a, random_array((3, 7), "float32", seed=0))
    i = random_array((100,), "int64", seed=1, low=-2, high=3)
    assert i.min() >= -2 and i.max() <= 2
    assert random_array((4,), "bool", seed=2).dtype == np.bool_


def test_guarded_raises_outside_even_for_negative_indices():
    g = guarded(np.arange(6.0).reshape(2, 3))
    assert g[1, 2] == 5.0
    for key in ((2, 0), (0, 3), (-1, 0)):
        with pytest.raises(IndexError):
            g[key]
        with pytest.raises(IndexError):
            g[key] = 1.0
    assert np.array_equal(np.asarray(g), np.arange(6.0).reshape(2, 3))
