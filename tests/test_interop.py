"""Tensors to and from NumPy, PyTorch and DLPack: what shares memory (checked with
np.shares_memory and torch's data_ptr) and what copies, the values either way, and the errors.
The CuPy and torch CUDA paths need a real GPU: those tests skip here, saying so."""
import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.testing import rng


def real_gpu():
    """True where device "cuda" is a GPU (not Numba's simulator, not unavailable)."""
    if not tg.device("cuda").available:
        return False
    from tilegrad.backends.cuda import runtime
    return not runtime.SIMULATOR


needs_gpu = pytest.mark.skipif(not real_gpu(), reason="CUDA DLPack (CuPy, torch CUDA) needs a "
                               "real GPU; device 'cuda' is simulated or unavailable here")
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the other side here")
simulated = pytest.mark.skipif(not tg.device("cuda").available or real_gpu(),
                               reason="checks the simulator's refusal")


def values(*shape, seed=0, dtype=np.float64):
    return rng(seed).standard_normal(shape).astype(dtype)


def address(t):
    return t._data.ctypes.data


# ---------------------------------------------------------------- NumPy's __array__
def test_asarray_of_a_cpu_tensor_is_its_storage():
    t = tg.tensor(values(3, 7))
    a = np.asarray(t)
    assert np.shares_memory(a, t._data)
    a[0, 0] = 42.0
    assert t[0, 0].item() == 42.0
    assert not np.shares_memory(np.array(t), t._data)                 # np.array copies
    assert not np.shares_memory(np.asarray(t, dtype=np.float32), t._data)
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="copy=False"):
        np.asarray(t, dtype=np.float32, copy=False)
    assert np.shares_memory(np.asarray(t, copy=False), t._data)


def test_asarray_of_a_tensor_that_requires_grad_gives_its_values(device):
    t = tg.tensor(values(3, 5, seed=1), device=device, requires_grad=True)
    assert np.array_equal(np.asarray(t * 2), values(3, 5, seed=1) * 2)


def test_asarray_of_a_cuda_tensor_is_a_host_copy():
    if not tg.device("cuda").available:
        pytest.skip("device 'cuda' is unavailable here")
    t = tg.tensor(values(3, 5, seed=2), device="cuda")
    a = np.asarray(t)
    assert isinstance(a, np.ndarray) and np.array_equal(a, values(3, 5, seed=2))
    a[0, 0] = 42.0
    assert t[0, 0].item() != 42.0
    with pytest.raises(ValueError, match="copy=False"):
        np.asarray(t, copy=False)


def test_numpy_operands_still_defer_to_the_tensor():
    t = tg.tensor(values(3, seed=3))
    out = np.ones(3) + t
    assert isinstance(out, tg.Tensor) and np.array_equal(out.numpy(), 1 + values(3, seed=3))


# ---------------------------------------------------------------- to PyTorch
@needs_torch
def test_torch_from_dlpack_and_as_tensor_share_a_cpu_tensor():
    t = tg.tensor(values(3, 7, seed=4))
    for p in (torch.from_dlpack(t), torch.as_tensor(t)):
        assert p.data_ptr() == address(t) and p.dtype == torch.float64
        p[0, 0] = 7.0
        assert t[0, 0].item() == 7.0
    copied = torch.tensor(t)
    assert copied.data_ptr() != address(t)
    assert np.array_equal(copied.numpy(), t.numpy())


@needs_torch
@pytest.mark.parametrize("dtype", [tg.float32, tg.int64, tg.int32, tg.uint8, tg.bool_])
def test_torch_conversions_keep_the_dtype(dtype):
    t = tg.tensor(values(5, seed=5) * 3).to(dtype=dtype)
    for p in (torch.tensor(t), torch.as_tensor(t), torch.from_dlpack(t)):
        assert p.numpy().dtype == dtype and np.array_equal(p.numpy(), t.numpy())


@needs_torch
def test_torch_conversions_of_a_tensor_that_requires_grad_give_its_values():
    t = tg.tensor(values(3, seed=6), requires_grad=True)
    y = t * 3
    for p in (torch.tensor(y), torch.as_tensor(y), torch.from_dlpack(y)):
        assert not p.requires_grad and np.array_equal(p.numpy(), values(3, seed=6) * 3)
    for p in (torch.tensor(t), torch.from_dlpack(t)):
        assert np.array_equal(p.numpy(), values(3, seed=6))


@simulated
def test_cuda_dlpack_in_the_simulator_is_a_clear_error():
    t = tg.ones(3, device="cuda")
    for export in (t.__dlpack__, t.__dlpack_device__, lambda: np.from_dlpack(t)):
        with pytest.raises(BufferError, match="simulator"):
            export()
    assert not hasattr(t, "__cuda_array_interface__")


# ---------------------------------------------------------------- from other libraries
def test_from_dlpack_of_numpy_shares_memory():
    a = values(3, 5, seed=7)
    t = tg.from_dlpack(a)
    assert t.device.name == "cpu" and t.dtype == tg.float64 and np.shares_memory(a, t._data)
    a[1, 1] = -3.0
    assert t[1, 1].item() == -3.0
    back = tg.from_dlpack(t)
    assert back is not t and np.shares_memory(back._data, t._data)


@needs_torch
def test_from_dlpack_of_torch_shares_memory_and_copies_only_strided_tensors():
    p = torch.tensor(values(3, 5, seed=8))
    t = tg.from_dlpack(p)
    assert address(t) == p.data_ptr() and t.shape == (3, 5)
    p[0, 0] = 5.0
    assert t[0, 0].item() == 5.0
    strided = tg.from_dlpack(p.t())
    assert np.array_equal(strided.numpy(), p.t().numpy())
    strided.add_(1.0)     # its own C-contiguous copy: writable, p unchanged
    assert p[0, 1].item() == values(3, 5, seed=8)[0, 1]


@needs_torch
@pytest.mark.parametrize("dtype", ["float16", "int16", "complex64"])
def test_from_dlpack_refuses_dtypes_tilegrad_lacks(dtype):
    with pytest.raises(TypeError, match=f"{dtype}.*not supported"):
        tg.from_dlpack(torch.zeros(3, dtype=getattr(torch, dtype)))
    with pytest.raises(TypeError, match="not supported"):
        tg.tensor(torch.zeros(3, dtype=getattr(torch, dtype)))


def test_from_dlpack_of_something_else_is_a_type_error():
    with pytest.raises(TypeError, match="__dlpack__"):
        tg.from_dlpack([1.0, 2.0])


@needs_torch
def test_tensor_of_a_torch_tensor_copies_with_its_dtype(device):
    p = torch.tensor(values(3, 4, seed=9), requires_grad=True)
    t = tg.tensor(p, device=device)
    assert t.dtype == tg.float64 and t.device.name == device and not t.requires_grad
    assert np.array_equal(t.numpy(), p.detach().numpy())
    assert t.device.name != "cpu" or address(t) != p.data_ptr()
    assert tg.tensor(torch.arange(3)).dtype == tg.int64
    assert tg.tensor(torch.tensor([True])).dtype == tg.bool_
    assert tg.tensor(p, dtype=tg.float32, requires_grad=True).requires_grad


def test_tensor_of_a_tensor_stays_on_its_device_as_torch(device):
    t = tg.tensor(values(3, seed=10), device=device)
    copy = tg.tensor(t)
    assert copy.device.name == device and np.array_equal(copy.numpy(), t.numpy())
    assert device != "cpu" or not np.shares_memory(copy._data, t._data)
    assert tg.tensor(t, device="cpu").device.name == "cpu"


def test_as_tensor_shares_where_it_can(device):
    a = values(3, 5, seed=11)
    t = tg.as_tensor(a)
    assert np.shares_memory(a, t._data)
    assert tg.as_tensor(t) is t
    assert not np.shares_memory(tg.as_tensor(a, dtype=tg.float32)._data, a)
    assert tg.as_tensor([1.0, 2.0]).dtype == tg.float32
    moved = tg.as_tensor(a, device=device)
    assert moved.device.name == device and np.array_equal(moved.numpy(), a)
    if torch is not None:
        p = torch.tensor(a)
        assert address(tg.as_tensor(p)) == p.data_ptr()


# ---------------------------------------------------------------- a real GPU
@needs_gpu
def test_cupy_and_tilegrad_share_cuda_memory():   # pragma: no cover - needs a GPU
    import cupy
    t = tg.tensor(values(3, 5, seed=12), device="cuda")
    c = cupy.from_dlpack(t)
    assert c.data.ptr == t._data.data.ptr
    back = tg.from_dlpack(cupy.arange(6, dtype=cupy.float32))
    assert back.device.name == "cuda" and back.tolist() == list(range(6))
    assert t.__dlpack_device__()[0] == 2 and "data" in t.__cuda_array_interface__


@needs_gpu
@needs_torch
def test_torch_cuda_and_tilegrad_share_cuda_memory():   # pragma: no cover - needs a GPU
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch has no CUDA")
    p = torch.arange(6.0, device="cuda")
    t = tg.from_dlpack(p)
    assert t.device.name == "cuda" and t._data.data.ptr == p.data_ptr()
    q = torch.from_dlpack(t)
    assert q.device.type == "cuda" and q.data_ptr() == p.data_ptr()
