"""Indexing with an int64 index tensor on cuda without reading it back: ``x[idx]``, ``x[:, idx]``,
``x[..., idx]``, with slices and adjacent ints, gathered by a kernel that range-checks each index
on the device (the error raised at the next sync), and its backward summing repeated indices in a
fixed order; values and gradients against NumPy and PyTorch, the work captured in a CUDA graph
and replayed with new index values; keys that still need the host (bool masks, several index
tensors) refused while capturing."""
import os

import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.testing import assert_close, rng
from tilegrad.errors import CaptureError, IndexRangeError

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("the cuda device runs here only in Numba's simulator", allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends.cuda import layout as L    # noqa: E402
from tilegrad.backends.cuda import runtime as rt  # noqa: E402

SHAPE = (5, 6, 4)

# (key maker from an index tensor, index values): each key has one int64 index tensor.
KEYS = {
    "x[idx]": (lambda i: (i,), [3, -1, 0, 3, 4]),
    "x[idx2d]": (lambda i: (i,), [[1, -5], [4, 1], [0, 0]]),
    "x[:, idx]": (lambda i: (slice(None), i), [5, 0, -6, 2, 2, 2, 1]),
    "x[..., idx]": (lambda i: (Ellipsis, i), [[3], [-4]]),
    "x[1:5:2, idx, ::-1]": (lambda i: (slice(1, 5, 2), i, slice(None, None, -1)), [0, 5, 5]),
    "x[::-2, ..., idx]": (lambda i: (slice(None, None, -2), Ellipsis, i), [1, 1, 3]),
    "x[2, idx]": (lambda i: (2, i), [4, -2, 4]),
    "x[idx, -1]": (lambda i: (i, -1), [[0, 1, 2, 0]]),
    "x[:, idx, 3]": (lambda i: (slice(None), i, 3), [1, 1]),
    "x[0-d idx]": (lambda i: (i,), 2),
    "x[:, empty idx]": (lambda i: (slice(None), i), np.zeros((0,), np.int64)),
}


def idx_tensor(values, device):
    return tg.tensor(np.array(values, dtype=np.int64), device=device)


def make_x(dtype, requires_grad=False):
    x = rng(1).standard_normal(SHAPE) * 3
    return x.astype(dtype) if dtype != np.bool_ else x > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
@pytest.mark.parametrize("name", KEYS)
def test_values_match_numpy_and_take_the_device_path(name, dtype):
    make_key, values = KEYS[name]
    x_np = make_x(dtype)
    x = tg.tensor(x_np, device="cuda")
    key = make_key(idx_tensor(values, "cuda"))
    assert L._index_plan(SHAPE, tuple(k._data if isinstance(k, tg.Tensor) else k
                                      for k in key)) is not None
    want = x_np[make_key(np.array(values, dtype=np.int64))]
    got = x[key].numpy()
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", KEYS)
def test_gradients_with_repeated_indices_equal_the_cpu_bits_and_torch(name):
    make_key, values = KEYS[name]
    x_np = make_x(np.float64)
    w = None
    grads = {}
    for device in ("cpu", "cuda"):
        x = tg.tensor(x_np, device=device, requires_grad=True)
        y = x[make_key(idx_tensor(values, device))]
        w = rng(2).standard_normal(y.shape) if w is None else w
        (y * tg.tensor(w, device=device)).sum().backward()
        grads[device] = x.grad.numpy()
    # Repeated indices add in index order on both devices (as np.add.at): the same bits.
    np.testing.assert_array_equal(grads["cuda"], grads["cpu"])
    want = np.zeros(SHAPE)
    np.add.at(want, make_key(np.array(values, dtype=np.int64)), w)
    assert_close(grads["cuda"], want, rtol=1e-15, atol=0)
    if torch is not None and "-" not in name:                  # PyTorch has no negative steps
        xt = torch.tensor(x_np, requires_grad=True)
        (xt[make_key(torch.tensor(np.array(values, dtype=np.int64)))] * torch.tensor(w)) \
            .sum().backward()
        assert_close(grads["cuda"], xt.grad.numpy(), rtol=1e-15, atol=0)


def test_many_indices_take_the_atomic_backward(monkeypatch):
    monkeypatch.setattr(L, "ORDERED_BWD_MAX", 2)
    idx = np.array([1, 4, 1, 1, 0, 4])
    grad = rng(3).standard_normal((6, 3))
    got = L.index_bwd(grad, (idx,), (5, 3))
    want = np.zeros((5, 3))
    np.add.at(want, idx, grad)
    assert_close(got, want, rtol=1e-14, atol=1e-15)

# ---------------------------------------------------------------- range errors on the device


@pytest.mark.parametrize("key, axis, bad", [
    (lambda i: (i,), 0, 5), (lambda i: (slice(None), i), 1, -7), (lambda i: (Ellipsis, i), 2, 4),
])
def test_an_index_out_of_range_raises_at_the_next_sync(key, axis, bad):
    x = tg.tensor(make_x(np.float64), device="cuda")
    values = [0, bad, 1]
    y = x[key(idx_tensor(values, "cuda"))]                    # no host read: nothing raised yet
    with pytest.raises(IndexRangeError, match=rf"getitem: index {bad} is out of bounds for axis "
                                              rf"{axis} with size {SHAPE[axis]}") as e:
        y.numpy()
    assert isinstance(e.value, IndexError)
    good = x[key(idx_tensor([0, 1], "cuda"))].numpy()          # reported once, then cleared
    np.testing.assert_array_equal(good, make_x(np.float64)[key(np.array([0, 1]))])


def test_cpu_raises_at_the_call_with_the_same_kind_of_message():
    x = tg.tensor(make_x(np.float64))
    with pytest.raises(IndexError, match=r"getitem: index 5 is out of bounds for axis 0 with "
                                         r"size 5 \(tensor of shape \(5, 6, 4\)\)"):
        x[idx_tensor([0, 5], "cpu")]


def test_host_keys_keep_the_message_of_numpy_on_cuda():
    x = tg.tensor(make_x(np.float64), device="cuda")
    i = idx_tensor([0, 9], "cuda")
    with pytest.raises(IndexError, match=r"getitem: index 9 is out of bounds for axis 0 with "
                                         r"size 5 \(tensor of shape \(5, 6, 4\)\)"):
        x[i, i]                                                 # two index tensors: the host's

# ---------------------------------------------------------------- captured and replayed


def _capture(fn):
    cap = rt.Capture()
    cap.begin()
    try:
        out = fn()
    finally:
        cap.end()
    return cap, out


def test_indexing_and_its_backward_replay_with_new_index_values():
    """Captured once, replayed after writing new values into the index tensor: no map of
    offsets or index values was baked in on the host."""
    x_np = make_x(np.float64)
    x = tg.tensor(x_np, device="cuda", requires_grad=True)
    idx = idx_tensor([2, -1, 2], "cuda")
    w = tg.tensor(rng(4).standard_normal((5, 3, 4)), device="cuda")

    def step():
        x.grad = None
        y = x[:, idx]
        (y * w).sum().backward()
        return y, x.grad

    step()                                                      # warm up: shape tables made
    before = rt.counts()
    cap, (y, grad) = _capture(step)
    assert rt.counts()["kernels"] > before["kernels"]
    for values in ([2, -1, 2], [0, 0, 3], [5, 1, -6]):
        idx.copy_(idx_tensor(values, "cuda"))
        cap.replay()
        key = (slice(None), np.array(values))
        np.testing.assert_array_equal(y.numpy(), x_np[key])
        want = np.zeros(SHAPE)
        np.add.at(want, key, w.numpy())
        np.testing.assert_array_equal(grad.numpy(), want)


def test_gather_is_one_launch_and_its_backward_one_launch_and_one_fill():
    x = tg.tensor(make_x(np.float32), device="cuda")
    idx = idx_tensor([3, 0, 3], "cuda")
    x[idx]                                                      # shape tables made
    before = rt.counts()
    y = L.index(x._data, (idx._data,))
    mid = rt.counts()
    L.index_bwd(y, (idx._data,), SHAPE)
    after = rt.counts()
    assert (mid["kernels"] - before["kernels"], mid["copies"] - before["copies"]) == (1, 0)
    assert (after["kernels"] - mid["kernels"], after["copies"] - mid["copies"]) == (1, 1)


@pytest.mark.parametrize("what, make_key", [
    ("indexing with a boolean mask", lambda x: x > 0),
    ("indexing with index tensors other than one int64 tensor",
     lambda x: (idx_tensor([0, 1], "cuda"), idx_tensor([1, 2], "cuda"))),
    ("indexing with index tensors other than one int64 tensor",
     lambda x: (idx_tensor([0, 1], "cuda"), slice(None), 2)),       # ints apart: NumPy's order
])
def test_keys_that_need_the_host_are_refused_while_capturing(what, make_key):
    x = tg.tensor(make_x(np.float64), device="cuda")
    key = make_key(x)
    want = x[key].numpy()                                       # outside a capture: as before
    host_key = tuple(k.numpy() if isinstance(k, tg.Tensor) else k
                     for k in (key if isinstance(key, tuple) else (key,)))
    np.testing.assert_array_equal(want, make_x(np.float64)[host_key])
    with pytest.raises(CaptureError, match=f"{what}.* is not allowed while capturing"):
        _capture(lambda: x[key])
