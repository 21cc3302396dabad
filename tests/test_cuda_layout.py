"""The CUDA layout kernels in Numba's simulator against the NumPy backend: permute, broadcast_to,
index and index_bwd, concat, copy_into, astype, full, reshape; tiny odd shapes, fresh random
inputs (never zeros), float64 exactly and float32 to its tolerance."""
import os

import numpy as np
import pytest

from tilegrad.testing import assert_close, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as ref          # noqa: E402
from tilegrad.backends.cuda import layout as L      # noqa: E402

DTYPES = [np.float64, np.float32]


def _rand(shape, dtype=np.float64, seed=0):
    return (rng(seed).standard_normal(shape) + 0.5).astype(dtype)


def _check(got, want):
    assert got.dtype == want.dtype, f"dtype {got.dtype} != reference {want.dtype}"
    assert got.flags.c_contiguous
    # Data movement is exact in any dtype.
    assert_close(got, want, rtol=0, atol=0)

# ---------------------------------------------------------------- permute, broadcast, reshape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axes", [
    ((3, 7), (1, 0)), ((3, 7), (0, 1)), ((1, 7), (1, 0)),
    ((3, 1, 7), (2, 0, 1)), ((3, 5, 7), (1, 2, 0)), ((3, 5, 7), (0, 2, 1)),
    ((2, 3, 5, 7), (3, 1, 0, 2)), ((2, 3, 1, 7), (0, 3, 2, 1)), ((2, 3, 5, 7), (0, 1, 3, 2)),
    ((3, 5, 7), (-1, 0, -2)),
], ids=str)
def test_permute(shape, axes, dtype):
    x = _rand(shape, dtype, seed=len(shape))
    _check(L.permute(x, axes), ref.permute(x, axes))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("src,dst", [((3, 1), (3, 7)), ((7,), (2, 3, 7)), ((1,), (5,)),
                                     ((3, 1, 5), (2, 3, 7, 5)), ((), (3, 1)), ((3, 7), (3, 7))],
                         ids=str)
def test_broadcast_to(src, dst, dtype):
    x = _rand(src, dtype, seed=1)
    _check(L.broadcast_to(x, dst), ref.broadcast_to(x, dst))


def test_reshape_is_a_view():
    x = _rand((3, 7))
    y = L.reshape(x, (7, 3))
    assert y.shape == (7, 3) and np.shares_memory(y, x)
    _check(y, ref.reshape(x, (7, 3)))

# ---------------------------------------------------------------- index, index_bwd


KEYS = [
    2, -1, (1, -2), slice(1, None, 2), (slice(None, None, -1), slice(5, 0, -2)),
    (slice(None), None, 3), (Ellipsis, 1), (None, Ellipsis, slice(2, 4)),
    [0, 2, 2, 0], (slice(None), np.array([6, 0, 6, 3, -1])),
    (np.array([0, 2, 2]), np.array([1, 6, 1])),
    (np.array([[0], [2]]), slice(1, 4), np.array([0, 4, 4])),
    (1, 2, 3),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_index(key, dtype):
    x = _rand((3, 7, 5), dtype, seed=2)
    _check(L.index(x, key), ref.index(x, key))


@pytest.mark.parametrize("dtype", DTYPES)
def test_index_bool_mask(dtype):
    x = _rand((3, 7), dtype, seed=3)
    mask = rng(4).standard_normal((3, 7)) > 0
    assert mask.any() and not mask.all()
    _check(L.index(x, mask), ref.index(x, mask))
    rows = np.array([True, False, True])
    _check(L.index(x, (rows, slice(None, None, 3))), ref.index(x, (rows, slice(None, None, 3))))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("key", KEYS + [np.array([[True] * 7, [False] * 7, [True, False] * 3
                                                   + [True]])], ids=repr)
def test_index_bwd_accumulates_repeats(key, dtype):
    shape = (3, 7, 5) if not (isinstance(key, np.ndarray) and key.dtype == np.bool_) else (3, 7)
    out_shape = np.empty(shape)[key].shape
    grad = _rand(out_shape, dtype, seed=5)
    got = L.index_bwd(grad, key, shape)
    want = ref.index_bwd(grad, key, shape)
    assert got.dtype == want.dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14     # atomic order of repeated adds varies
    assert_close(got, want, rtol=tol, atol=tol)


def test_index_bwd_repeats_really_add():
    grad = np.array([1.5, 2.25, 4.0, 8.0])
    got = L.index_bwd(grad, ([1, 1, 0, 1],), (3,))
    assert_close(got, [4.0, 11.75, 0.0], rtol=0, atol=0)


def test_index_bwd_broadcasts_grad_like_add_at():
    grad = np.array(2.5)
    key = (slice(None), [0, 0])
    got = L.index_bwd(grad, key, (3, 2))
    assert_close(got, ref.index_bwd(grad, key, (3, 2)), rtol=0, atol=0)

# ---------------------------------------------------------------- concat, copy_into


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_concat_each_axis(axis, dtype):
    base = [3, 5, 7]
    xs = []
    for k, n in enumerate((1, 3, 2)):
        shape = list(base)
        shape[axis] = n
        xs.append(_rand(tuple(shape), dtype, seed=10 + k))
    _check(L.concat(xs, axis), ref.concat(xs, axis))


def test_concat_with_an_empty_input_and_1d():
    xs = [_rand((3,)), np.empty((0,)), _rand((7,), seed=1)]
    _check(L.concat(xs, 0), ref.concat(xs, 0))


@pytest.mark.parametrize("dtype", DTYPES + [np.int64])
def test_copy_into(dtype):
    src = (_rand((3, 7), seed=6) * 10).astype(dtype)
    dst = _rand((3, 7), seed=7).astype(dtype)
    want = dst.copy()
    ref.copy_into(want, src)
    assert L.copy_into(dst, src) is None
    _check(dst, want)

# ---------------------------------------------------------------- astype, full


PAIRS = [(a, b) for a in (np.float32, np.float64, np.int64, np.bool_)
         for b in (np.float32, np.float64, np.int64, np.bool_)]


@pytest.mark.parametrize("src,dst", PAIRS, ids=lambda d: np.dtype(d).name)
def test_astype(src, dst):
    x = _rand((3, 7), seed=8) * 4               # some |x| < 1 (zero as int), some negative
    if src == np.bool_:
        x = x > 0.5
    elif src == np.int64:
        x = np.trunc(x)
    x = x.astype(src)
    x.reshape(-1)[0] = 0                        # a zero, for the to-bool conversions
    _check(L.astype(x, dst), ref.astype(x, dst))


def test_astype_nan_to_bool_is_true():
    x = np.array([np.nan, 0.0, -0.0, 2.0])
    _check(L.astype(x, np.bool_), ref.astype(x, np.bool_))


def test_astype_refuses_unsupported_dtypes():
    with pytest.raises(TypeError, match="int32 is not supported"):
        L.astype(_rand((3,)), np.int32)
    with pytest.raises(TypeError, match="float16 is not supported"):
        L.astype(_rand((3,)).astype(np.float16), np.float32)


@pytest.mark.parametrize("shape,value,dtype", [
    ((3, 7), 1.25, np.float64), ((7,), -3.5, np.float32), ((), 1, np.float32),
    ((1, 3), 7, np.int64), ((5,), True, np.bool_), ((2, 0), 2.0, np.float64),
], ids=str)
def test_full(shape, value, dtype):
    _check(L.full(shape, value, dtype), ref.full(shape, value, dtype))
