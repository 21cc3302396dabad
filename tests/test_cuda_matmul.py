"""The CUDA matmul ladder in Numba's simulator: every version, transposition, epilogue and
batch broadcast against the NumPy backend in float64, on odd shapes (never tile multiples)."""
import os

import numpy as np
import pytest

from helpers import assert_close, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as ref          # noqa: E402
from tilegrad.backends.cuda import matmul as mm     # noqa: E402

SHAPES = [(1, 1, 1), (3, 7, 5), (7, 3, 33), (9, 11, 2)]   # (M, N, K)


def _operands(m, n, k, trans_a, trans_b, dtype, seed=0, batch_a=(), batch_b=()):
    r = rng(seed)
    a = r.standard_normal(batch_a + ((k, m) if trans_a else (m, k))).astype(dtype)
    b = r.standard_normal(batch_b + ((n, k) if trans_b else (k, n))).astype(dtype)
    return a, b


@pytest.mark.parametrize("version", list(mm.VERSIONS))
@pytest.mark.parametrize("m,n,k", SHAPES, ids=str)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_versions_against_numpy_float64(version, m, n, k, trans_a, trans_b):
    a, b = _operands(m, n, k, trans_a, trans_b, np.float64, seed=m + n + k)
    got = mm.VERSIONS[version](a, b, trans_a, trans_b)
    assert_close(got, ref.matmul(a, b, trans_a, trans_b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("version", list(mm.VERSIONS))
def test_fused_bias_relu_and_float32(version):
    a, b = _operands(7, 5, 9, False, True, np.float32, seed=3)
    bias = rng(4).standard_normal(5).astype(np.float32)
    got = mm.VERSIONS[version](a, b, False, True, bias, True)
    assert got.dtype == np.float32
    want = ref.matmul(a.astype(np.float64), b.astype(np.float64), False, True, bias.astype(np.float64), True)
    assert (want == 0).any() and (want > 0).any()          # the ReLU did something
    assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("version", list(mm.VERSIONS))
def test_batched_and_broadcast_batches(version):
    a, b = _operands(3, 5, 7, False, False, np.float64, seed=5, batch_a=(2, 1), batch_b=(3,))
    got = mm.VERSIONS[version](a, b)
    assert got.shape == (2, 3, 3, 5)
    assert_close(got, ref.matmul(a, b), rtol=1e-12, atol=1e-12)
