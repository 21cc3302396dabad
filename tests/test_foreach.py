"""Multi-tensor primitives (``fill_multi``, ``norm_multi``, ``clip_scale_multi``) on "cuda" against
the NumPy specification in float64, and ``nn.utils.clip_grad_norm_`` against torch on every device:
values, launches, no host read (it is captured in a CUDA graph and replayed), non-finite norms.

Shapes: odd sizes, smaller than a block and spanning several chunks (16 elements a block in the
simulator), an empty one, and more tensors than one launch takes (3 in the simulator)."""
import math

import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.testing import assert_close, rng
from tilegrad.backends import numpy as spec
from tilegrad.nn.utils import clip_grad_norm_

SHAPES = [(5,), (3, 7), (1,), (0,), (40,), (2, 2), (17,)]
DTYPES = [(np.float64, 1e-12), (np.float32, 1e-6)]

needs_cuda = pytest.mark.skipif(not tg.device("cuda").available,
                                reason=f"device cuda unavailable: {tg.device('cuda').reason}")


def _cuda():
    from tilegrad.backends.cuda import foreach
    from tilegrad.backends.cuda import runtime as rt
    return tg.device("cuda").backend, foreach, rt


def _arrays(seed, dtype, shapes=SHAPES, scale=1.0):
    r = rng(seed)
    return [(r.standard_normal(s) * scale).astype(dtype) for s in shapes]


def _launches(rt, fn):
    before = rt.counts()["kernels"]
    out = fn()
    return rt.counts()["kernels"] - before, out


# ---------------------------------------------------------------- the primitives on "cuda"
@needs_cuda
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
def test_norm_multi_against_numpy_float64(dtype, tol):
    be, foreach, rt = _cuda()
    host = _arrays(1, dtype)
    xs = [be.from_numpy(a) for a in host]
    launched, out = _launches(rt, lambda: foreach.norm_multi(xs))
    assert launched == math.ceil(len(SHAPES) / foreach.TENSORS) + 1
    want = spec.norm_multi([a.astype(np.float64) for a in host])
    got = be.to_numpy(out)
    assert got.shape == () and got.dtype == dtype
    assert_close(got, want, rtol=tol, what="norm")
    assert be.to_numpy(foreach.norm_multi(xs)).tobytes() == got.tobytes()    # deterministic


@needs_cuda
def test_norm_multi_of_mixed_dtypes_and_of_empty_arrays():
    be, foreach, _ = _cuda()
    host = _arrays(2, np.float32, SHAPES[:4]) + _arrays(3, np.float64, SHAPES[4:])
    got = be.to_numpy(foreach.norm_multi([be.from_numpy(a) for a in host]))
    assert got.dtype == np.float64
    assert_close(got, spec.norm_multi([a.astype(np.float64) for a in host]), rtol=1e-7)
    empty = [be.from_numpy(np.zeros((0, 3), np.float32)), be.from_numpy(np.zeros(0, np.float32))]
    assert be.to_numpy(foreach.norm_multi(empty)) == 0


@needs_cuda
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
def test_clip_scale_multi_against_numpy_float64(max_norm, dtype, tol):
    be, foreach, rt = _cuda()
    host = _arrays(4, dtype)
    xs = [be.from_numpy(a) for a in host]
    total = be.from_numpy(np.array(3.7, dtype))
    launched, _ = _launches(rt, lambda: foreach.clip_scale_multi(xs, total, max_norm))
    assert launched == math.ceil(len(SHAPES) / foreach.TENSORS)
    ref = [a.astype(np.float64) for a in host]
    spec.clip_scale_multi(ref, np.array(3.7), max_norm)
    for k, (x, want) in enumerate(zip(xs, ref)):
        assert_close(be.to_numpy(x), want, rtol=tol, atol=tol, what=f"array {k}")


@needs_cuda
def test_fill_multi_writes_every_array_in_place_in_one_launch_per_three():
    be, foreach, rt = _cuda()
    host = _arrays(5, np.float32) + _arrays(6, np.float64, [(3,), (9, 2)])
    xs = [be.from_numpy(a) for a in host]
    launched, _ = _launches(rt, lambda: foreach.fill_multi(xs, 2.5))
    assert launched == math.ceil(7 / foreach.TENSORS) + 1          # float32, then float64
    for k, x in enumerate(xs):
        got = be.to_numpy(x)
        assert got.dtype == host[k].dtype
        np.testing.assert_array_equal(got, np.full(host[k].shape, 2.5), err_msg=f"array {k}")


def test_the_specification_clips_as_torch_arithmetic():
    xs = _arrays(7, np.float32, [(4,), (3, 2)])
    total = spec.norm_multi(xs)
    assert total.dtype == np.float32
    ref = [x.copy() for x in xs]
    spec.clip_scale_multi(xs, total, 0.5)
    coef = np.float32(0.5) / (total + np.float32(1e-6))
    for x, r in zip(xs, ref):
        np.testing.assert_array_equal(x, r * coef)


# ---------------------------------------------------------------- clip_grad_norm_
def _grads_pair(device, seed, dtype=np.float64, shapes=SHAPES[:3] + SHAPES[4:], scale=1.0):
    """Parameters with equal gradients in tilegrad (on ``device``) and torch."""
    values = _arrays(seed, dtype, shapes, scale)
    grads = _arrays(seed + 100, dtype, shapes, scale)
    ours = [tg.tensor(v, requires_grad=True, device=device) for v in values]
    for p, g in zip(ours, grads):
        p.grad = tg.tensor(g, device=device)
    theirs = None
    if torch is not None:
        theirs = [torch.tensor(v, requires_grad=True) for v in values]
        for p, g in zip(theirs, grads):
            p.grad = torch.tensor(g)
    return ours, theirs


@pytest.mark.parametrize("max_norm", [0.25, 3.0, 100.0])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)], ids=["f64", "f32"])
def test_clip_grad_norm_matches_torch(device, max_norm, dtype, tol):
    if torch is None:
        pytest.skip("PyTorch is not installed")
    ours, theirs = _grads_pair(device, 10, dtype)
    total = clip_grad_norm_(ours, max_norm)
    ref = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert isinstance(total, tg.Tensor) and total.shape == () and total.device.name == device
    assert total.dtype == dtype
    assert_close(total.numpy(), ref.numpy(), rtol=tol, what="norm")
    assert math.isfinite(total) and abs(float(total) - ref.item()) <= tol * ref.item()
    for k, (p, q) in enumerate(zip(ours, theirs)):
        assert_close(p.grad.numpy(), q.grad.numpy(), rtol=tol, atol=tol, what=f"gradient {k}")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")   # inf * 0
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_clip_grad_norm_of_a_non_finite_gradient_follows_torch(device, bad):
    if torch is None:
        pytest.skip("PyTorch is not installed")
    ours, theirs = _grads_pair(device, 11, shapes=[(3, 4), (5,)])
    g = ours[1].grad.numpy()
    g[2] = bad
    ours[1].grad = tg.tensor(g, device=device)
    theirs[1].grad = torch.tensor(g)
    total = clip_grad_norm_(ours, 1.0)
    ref = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    np.testing.assert_array_equal(total.numpy(), ref.numpy())
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12, equal_nan=True)
    assert not math.isfinite(float(total))


def test_clip_grad_norm_without_gradients_bumps_nothing_and_returns_zero(device):
    p = tg.tensor(rng(12).standard_normal(3), requires_grad=True, device=device)
    total = clip_grad_norm_([p], 1.0)
    assert isinstance(total, tg.Tensor) and total.shape == () and float(total) == 0.0
    assert total.dtype == tg.get_default_dtype()


def test_clip_grad_norm_takes_a_tensor_bumps_versions_and_checks_its_options(device):
    ours, _ = _grads_pair(device, 13, shapes=[(4, 3)], scale=10.0)
    grad = ours[0].grad
    before, version = grad.numpy(), grad._version
    clip_grad_norm_(ours[0], 1.0)
    assert ours[0].grad is grad and grad._version == version + 1          # in place
    assert np.linalg.norm(grad.numpy()) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="norm_type must be a number > 0"):
        clip_grad_norm_(ours, 1.0, norm_type=-1.0)
    grad.copy_(tg.tensor(np.full((4, 3), np.inf), device=device))
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    assert np.isinf(grad.numpy()).all()                                   # not scaled
    assert before.shape == (4, 3)


@needs_cuda
def test_clip_grad_norm_on_cuda_launches_three_kernels_and_reads_nothing(monkeypatch):
    _, foreach, rt = _cuda()
    shapes = SHAPES[:foreach.TENSORS]
    clip_grad_norm_(_grads_pair("cuda", 19, np.float32, shapes)[0], 0.5)   # uploads the tables
    ours, _ = _grads_pair("cuda", 14, np.float32, shapes)
    want = [p.grad.numpy().astype(np.float64) for p in ours]
    want_total = spec.norm_multi(want)
    spec.clip_scale_multi(want, want_total, 0.5)

    def refuse(*args, **kwargs):
        raise AssertionError("clip_grad_norm_ touched the host")
    for name in ("to_numpy", "from_numpy", "synchronize", "constant"):
        monkeypatch.setattr(rt, name, refuse)
    launched, total = _launches(rt, lambda: clip_grad_norm_(ours, 0.5))
    monkeypatch.undo()
    assert launched == 3
    assert_close(total.numpy(), want_total, rtol=1e-6, what="norm")
    for k, p in enumerate(ours):
        assert_close(p.grad.numpy(), want[k], rtol=1e-6, atol=1e-7, what=f"gradient {k}")


@needs_cuda
def test_clip_grad_norm_captured_in_a_graph_follows_new_gradients_at_each_replay():
    ours, _ = _grads_pair("cuda", 15, np.float32)
    graph = tg.cuda.CUDAGraph()
    with tg.cuda.graph(graph):
        total = clip_grad_norm_(ours, 1.0)
    for seed, scale in ((16, 0.01), (17, 5.0)):
        fresh = _arrays(seed, np.float32, [p.shape for p in ours], scale)
        for p, g in zip(ours, fresh):
            p.grad.copy_(tg.tensor(g, device="cuda"))
        graph.replay()
        eager = [tg.tensor(g) for g in fresh]
        cpu = [tg.tensor(v.numpy(), requires_grad=True) for v in ours]
        for p, g in zip(cpu, eager):
            p.grad = g
        want = clip_grad_norm_(cpu, 1.0)
        assert_close(total.numpy(), want.numpy(), rtol=1e-6, what=f"norm (scale {scale})")
        for k, (p, q) in enumerate(zip(ours, cpu)):
            assert_close(p.grad.numpy(), q.grad.numpy(), rtol=1e-6, atol=1e-8,
                         what=f"gradient {k} (scale {scale})")

