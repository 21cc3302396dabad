"""``x[key] = value`` (``Tensor.__setitem__``) and its ``index_put`` primitive: values and the
gradients of both operands against PyTorch in float64 on every device, for every kind of key;
integer tensors; a repeated index's last write; the version counter, the leaf rule and the
errors (by type, nothing written)."""
import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.backends import numpy as spec
from tilegrad.errors import DtypeError, ShapeError
from tilegrad.testing import assert_close, compare_with_torch, rng

if torch is None:
    pytest.skip("PyTorch is the reference here", allow_module_level=True)


def arr(*shape, seed=0):
    return rng(seed).standard_normal(shape)


def index(lib, values, device="cpu", dtype=None):
    """An index tensor of ``lib`` (tilegrad or torch) holding ``values``."""
    if lib is tg:
        return tg.tensor(values, device=device, dtype=dtype)
    return torch.tensor(values, dtype=dtype and getattr(torch, np.dtype(dtype).name))


# (key maker: lib, device -> key; shape of the value written). x is (5, 7, 3).
KEYS = {
    "int": (lambda lib, d: 2, (7, 3)),
    "negative int, broadcast value": (lambda lib, d: -1, (3,)),
    "two ints": (lambda lib, d: (1, 4), (3,)),
    "slice with a step": (lambda lib, d: (slice(0, 5, 2), slice(1, None, 3)), (3, 2, 3)),
    "slice, value with leading 1s": (lambda lib, d: slice(1, 3), (1, 1, 2, 7, 1)),
    "None and Ellipsis": (lambda lib, d: (None, Ellipsis, 1), (1, 5, 7)),
    "int64 tensor": (lambda lib, d: index(lib, [4, 0, -2], d), (3, 7, 3)),
    "int64 tensor beside a slice": (lambda lib, d: (slice(None), index(lib, [6, 1], d)), (2, 3)),
    "two int64 tensors": (lambda lib, d: (index(lib, [0, 3], d), index(lib, [[1], [5]], d)),
                          (2, 2, 3)),
    "bool mask": (lambda lib, d: index(lib, [True, False, True, True, False], d), (3, 7, 3)),
    "list": (lambda lib, d: (slice(None), slice(None), [2, 0]), (5, 7, 2)),
    "0-d int64 tensor": (lambda lib, d: index(lib, 3, d), (7, 3)),
}


def setitem(lib, key_of, device):
    def fn(x, v):
        y = x * 1                # a non-leaf: a leaf that requires grad refuses the write
        y[key_of(lib, device)] = v
        return y * 2
    return fn


@pytest.mark.parametrize("kind", KEYS)
def test_setitem_values_and_both_gradients_match_torch(device, kind):
    key_of, vshape = KEYS[kind]
    x, v = arr(5, 7, 3, seed=1), arr(*vshape, seed=2)
    tg_fn = setitem(tg, key_of, device)
    compare_with_torch(lambda a, b: tg_fn(a.to(device), b.to(device)).to("cpu"),
                       setitem(torch, key_of, "cpu"), x, v)


def test_scalar_value_and_negative_steps_as_numpy(device):
    x = arr(5, 4, seed=3)
    t = tg.tensor(x, device=device)
    t[::-2, 1:] = 7.5
    x[::-2, 1:] = 7.5
    t[index(tg, [True, False, False, True], device)[None, :].expand(5, 4)] = -1
    x[np.array([True, False, False, True])[None, :].repeat(5, 0)] = -1
    assert_close(t, x, rtol=0, atol=0)


def test_a_repeated_index_keeps_the_last_write_and_every_occurrence_gets_the_gradient(device):
    def fn(lib, dev):
        def f(x, v):
            y = x * 1
            y[(index(lib, [1, 1, 3, 1], dev),)] = v
            return y
        return f
    tg_fn = fn(tg, device)
    compare_with_torch(lambda a, b: tg_fn(a.to(device), b.to(device)).to("cpu"),
                       fn(torch, "cpu"), arr(5, 2, seed=4), arr(4, 2, seed=5))
    t = tg.zeros(5, device=device)
    t[index(tg, [1, 1, 3, 1], device)] = tg.tensor([1.0, 2.0, 3.0, 4.0], device=device)
    assert t.tolist() == [0.0, 4.0, 0.0, 3.0, 0.0]


def test_integer_tensors_as_a_tokenizer_fills_them(device):
    ids = tg.zeros(6, dtype=tg.int64, device=device)
    words = [17, 3, 17, 250, 9, 3]
    for i, w in enumerate(words):
        ids[i] = w
    assert ids.tolist() == words and ids.dtype == tg.int64
    ids[index(tg, [0, 5], device)] = tg.tensor([-4, 8], device=device)
    ids[1:3] = 2.9                      # a float number truncated into int64, as torch
    ref = torch.tensor(words)
    ref[torch.tensor([0, 5])] = torch.tensor([-4, 8])
    ref[1:3] = 2.9
    assert ids.tolist() == ref.tolist()
    mask = tg.zeros(4, dtype=tg.bool_, device=device)
    mask[index(tg, [2], device)] = True
    assert mask.tolist() == [False, False, True, False]


def test_the_value_is_cast_to_the_tensors_dtype_and_keeps_its_gradient(device):
    x = tg.zeros(3, 4, device=device)                     # float32
    v = tg.tensor(arr(4, seed=6), device=device, requires_grad=True)   # float64
    x[1] = v
    assert x.dtype == tg.float32 and x.requires_grad and x.grad_fn.name() == "IndexPutBackward0"
    (x * 3).sum().backward()
    assert v.grad.dtype == tg.float64
    assert_close(v.grad, np.full(4, 3.0))
    assert_close(x[1], arr(4, seed=6).astype(np.float32))
    y = tg.zeros(3, dtype=tg.int64, device=device)
    y[0] = tg.tensor(2.7, device=device)                  # basic key: cast (as torch's copy_)
    assert y.tolist() == [2, 0, 0]


def test_the_version_counter_and_the_saved_tensors_rule(device):
    a = tg.tensor(arr(4, 3, seed=7), device=device, requires_grad=True) * 1
    b = a * a                            # saves a
    before = a._version
    a[0] = 1.0
    assert a._version == before + 1
    with pytest.raises(RuntimeError, match=r"modified by an in-place operation \(setitem\)"):
        b.sum().backward()
    base = tg.zeros(6, device=device)
    view = base.view(2, 3)
    view[1, 2] = 5.0                     # a view shares the storage: the base sees the write
    assert base.tolist() == [0, 0, 0, 0, 0, 5] and base._version == view._version == 1


def test_a_leaf_that_requires_grad_is_refused_as_in_torch_and_no_grad_allows_it(device):
    x = tg.tensor(arr(3, 4, seed=8), device=device, requires_grad=True)
    before = x.numpy()
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in "
                                           "an in-place operation"):
        x[0] = 1.0
    assert_close(x, before, rtol=0, atol=0)
    assert x._version == 0
    with tg.no_grad():
        x[0] = 1.0
    assert x.is_leaf and x.numpy()[0].tolist() == [1.0] * 4 and x._version == 1
    with pytest.raises(RuntimeError, match="copy made by permute"):
        tg.zeros(3, 4, device=device).t()[0] = 1.0     # a view in torch, a copy here


ERRORS = {   # (key maker, value maker, error class): torch raises each of these too
    "index out of range": (lambda d: 5, lambda d: 1.0, IndexError),
    "index tensor out of range": (lambda d: index(tg, [0, 9], d), lambda d: 1.0, IndexError),
    "float index tensor": (lambda d: index(tg, [0.0], d), lambda d: 1.0, IndexError),
    "value does not broadcast": (lambda d: 0, lambda d: tg.ones(2, device=d), ShapeError),
    "value has more dimensions": (lambda d: index(tg, [0, 1], d),
                                  lambda d: tg.ones(2, 1, 4, device=d), ShapeError),
    "dtype differs with an index tensor": (lambda d: index(tg, [0], d),
                                           lambda d: tg.ones(4, dtype=tg.float64, device=d),
                                           DtypeError),
    "value is a list": (lambda d: 0, lambda d: [1.0, 2.0, 3.0, 4.0], TypeError),
}


@pytest.mark.parametrize("kind", ERRORS)
def test_errors_name_setitem_and_write_nothing(device, kind):
    key_of, value_of, error = ERRORS[kind]
    x = tg.tensor(arr(3, 4, seed=9).astype(np.float32), device=device)
    with pytest.raises(error, match="setitem"):
        x[key_of(device)] = value_of(device)
    assert_close(x, arr(3, 4, seed=9).astype(np.float32), rtol=0, atol=0)
    assert x._version == 0
    if error is not TypeError:   # torch's class for the same mistake (all RuntimeError or below)
        t = torch.tensor(arr(3, 4, seed=9).astype(np.float32))
        key = key_of("cpu")
        key = torch.tensor(key.numpy()) if isinstance(key, tg.Tensor) else key
        value = value_of("cpu")
        value = torch.tensor(value.numpy()) if isinstance(value, tg.Tensor) else value
        with pytest.raises((RuntimeError, IndexError)):
            t[key] = value


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
def test_index_put_primitive_matches_the_numpy_backend(device, dtype):
    be = tg.device(device).backend
    x = (10 * arr(6, 5, seed=10)).astype(dtype)
    v = (10 * arr(4, 5, seed=11)).astype(dtype)
    keys = [(np.array([5, 0, 5, 2]),), (slice(1, 5),), (np.array([1, 1, 3, 1]), slice(None))]
    for key in keys:
        dev_key = tuple(be.from_numpy(k) if isinstance(k, np.ndarray) else k for k in key)
        got = be.to_numpy(be.index_put(be.from_numpy(x), dev_key, be.from_numpy(v)))
        want = spec.index_put(x, key, v)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == dtype
    # the specification itself: a copy, the last of a repeated index's writes
    out = spec.index_put(x, (np.array([2, 2]),), v[:2])
    np.testing.assert_array_equal(out[2], v[1])
    np.testing.assert_array_equal(out[[0, 1, 3, 4, 5]], x[[0, 1, 3, 4, 5]])
