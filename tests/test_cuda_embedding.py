"""The CUDA embedding gather and atomic scatter-add in Numba's simulator, against the NumPy backend
in float64 (and float32 with a float32 tolerance): 1-D and 2-D index arrays with repeated indices,
odd V and D (never multiples of the simulator's 8 threads). Out-of-range indices: reported by the
forward kernel, raised at the next sync, never read or written out of bounds."""
import os

import numpy as np
import pytest

from tilegrad.testing import assert_close, guarded, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as ref            # noqa: E402
from tilegrad.backends.cuda import embedding as emb   # noqa: E402
from tilegrad.backends.cuda import runtime as rt      # noqa: E402
from tilegrad.errors import ArgumentError, IndexRangeError   # noqa: E402

TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}

# (V, D, idx): repeated indices in every case but the first; idx of 1, 2 and 3 dimensions.
CASES = [
    (1, 1, np.array([0])),
    (3, 7, np.array([2, 0, 2, 2, 1])),
    (7, 3, np.array([[6, 1, 6], [0, 6, 3]])),
    (5, 13, np.array([[4, 4], [4, 0], [2, 4], [1, 4]])),
    (11, 5, np.array([[[3, 10, 3]], [[9, 3, 0]]])),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("v,d,idx", CASES, ids=lambda c: str(getattr(c, "shape", c)))
def test_embedding_against_numpy(v, d, idx, dtype):
    r = rng(v * 100 + d)
    idx = idx.astype(np.int64)
    weight = r.standard_normal((v, d)).astype(dtype)
    grad_out = r.standard_normal(idx.shape + (d,)).astype(dtype)
    out = emb.embedding_fwd(weight, idx)
    assert out.shape == idx.shape + (d,) and out.dtype == dtype
    assert_close(out, ref.embedding_fwd(weight.astype(np.float64), idx), what="gather",
                 **TOL[np.float64])      # a copy: exact in either dtype
    grad_w = emb.embedding_bwd(grad_out, idx, v)
    assert grad_w.shape == (v, d) and grad_w.dtype == dtype
    assert_close(grad_w, ref.embedding_bwd(grad_out.astype(np.float64), idx, v), what="scatter-add",
                 **TOL[dtype])


def test_repeated_index_accumulates_and_unused_rows_stay_zero():
    idx = np.array([[2, 2, 2], [2, 0, 2]], dtype=np.int64)
    grad_out = rng(1).standard_normal((2, 3, 5))
    grad_w = emb.embedding_bwd(grad_out, idx, 4)
    flat = grad_out.reshape(-1, 5)
    assert_close(grad_w[2], flat[[0, 1, 2, 3, 5]].sum(axis=0), rtol=1e-12, atol=1e-12)
    assert_close(grad_w[0], flat[4], rtol=1e-12, atol=1e-12)
    assert (grad_w[[1, 3]] == 0).all()


def test_non_contiguous_grad_and_out_of_range_index():
    """Bad indices (3 and -1 into 3 rows): no read or write out of bounds (the guarded weight and
    indices raise on any), NaN rows in the forward, nothing added in the backward, and the error
    at the next sync, not at the call."""
    weight = rng(2).standard_normal((3, 5))
    idx = np.array([1, 3, 0, -1], dtype=np.int64)
    out = emb.embedding_fwd(guarded(weight), guarded(idx))
    with pytest.raises(IndexRangeError, match=r"embedding: index (3|-1) is out of range for a "
                                              r"weight of 3 rows"):
        rt.synchronize()
    assert_close(out[[0, 2]], weight[[1, 0]], rtol=0, atol=0)
    assert np.isnan(out[[1, 3]]).all()
    grad_out = rng(3).standard_normal((5, 4)).T          # (4, 5), not C-contiguous
    grad_w = emb.embedding_bwd(grad_out, guarded(idx), 3)
    rt.synchronize()                                     # the backward reports nothing
    assert_close(grad_w[1], grad_out[0], rtol=0, atol=0)
    assert_close(grad_w[0], grad_out[2], rtol=0, atol=0)
    assert (grad_w[2] == 0).all()


@pytest.mark.parametrize("bad", [7, 40, -1, -8])
def test_bad_index_is_raised_once_then_cleared(bad):
    v, d = 7, 3
    weight = rng(4).standard_normal((v, d))
    idx = np.array([[2, bad, 6]], dtype=np.int64)
    out = emb.embedding_fwd(guarded(weight), idx)        # no error at the call
    assert np.isnan(out[0, 1]).all() and not np.isnan(out[0, [0, 2]]).any()
    with pytest.raises(IndexRangeError, match=f"embedding: index {bad} is out of range for a "
                                              f"weight of {v} rows"):
        rt.to_numpy(out)                                 # any copy to the host syncs
    assert not rt.error_flag().any()                     # cleared once raised
    good = np.array([0, 6, 6, 1], dtype=np.int64)
    assert_close(emb.embedding_fwd(weight, good), weight[good], rtol=0, atol=0)
    rt.synchronize()                                     # nothing left to raise


def test_bad_index_into_a_weight_of_no_columns_is_an_argument_error():
    # The output has no elements, but the indices are still checked (PyTorch's RuntimeError).
    out = emb.embedding_fwd(np.empty((4, 0)), np.array([0, 4, 3], dtype=np.int64))
    assert out.shape == (3, 0)
    with pytest.raises(ArgumentError, match="embedding: index 4 is out of range for a weight "
                                            "of 4 rows"):
        rt.synchronize()
    assert emb.embedding_fwd(np.empty((4, 0)), np.array([3, 0], dtype=np.int64)).shape == (2, 0)
    rt.synchronize()


def test_launches_per_call():
    weight, idx = rng(5).standard_normal((6, 5)), np.array([[1, 5], [0, 1]], dtype=np.int64)
    before = rt.counts()
    out = emb.embedding_fwd(weight, idx)
    mid = rt.counts()
    emb.embedding_bwd(out, idx, 6)
    after = rt.counts()
    assert mid["kernels"] - before["kernels"] == 1
    assert after["kernels"] - mid["kernels"] == 1 and after["copies"] - mid["copies"] == 1
