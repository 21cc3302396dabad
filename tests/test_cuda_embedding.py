"""The CUDA embedding gather and atomic scatter-add in Numba's simulator, against the NumPy backend
in float64 (and float32 with a float32 tolerance): 1-D and 2-D index arrays with repeated indices,
odd V and D (never multiples of the simulator's 8 threads)."""
import os

import numpy as np
import pytest

from helpers import assert_close, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as ref            # noqa: E402
from tilegrad.backends.cuda import embedding as emb   # noqa: E402

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
    weight = rng(2).standard_normal((3, 5))
    idx = np.array([1, 3, 0, -1], dtype=np.int64)        # 3 and -1 are out of range
    out = emb.embedding_fwd(weight, idx)
    assert_close(out[[0, 2]], weight[[1, 0]], rtol=0, atol=0)
    assert np.isnan(out[[1, 3]]).all()
    grad_out = rng(3).standard_normal((5, 4)).T          # (4, 5), not C-contiguous
    grad_w = emb.embedding_bwd(grad_out, idx, 3)
    assert_close(grad_w[1], grad_out[0], rtol=0, atol=0)
    assert_close(grad_w[0], grad_out[2], rtol=0, atol=0)
    assert (grad_w[2] == 0).all()
