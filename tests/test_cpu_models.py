"""The three reference models' training steps on device "cpu": the cpp backend (the C++
extension, with the NumPy backend for what it lacks) against the NumPy backend alone, in float64.

tests/model_steps.py's scaled-down models take two steps of their real recipes (so momentum and
Adam's second step run); the losses, the gradients and the updated parameters must agree. One
more MLP is wide enough that its GEMMs cross the extension's cache blocks.
"""
import numpy as np
import pytest

from cpu_helpers import ext  # noqa: F401  (skips the module where the extension is not built)
from tilegrad.testing import assert_close, rng
from model_steps import MODELS, train
from tilegrad import kernels, models

RTOL = 1e-10


def _wide_mlp():
    x = rng(8).standard_normal((37, 1, 19, 17))
    y = rng(9).integers(0, 11, 37)
    return models.MLP(in_features=19 * 17, hidden=301, num_classes=11), x, y


def _with(backend, kind, make):
    before = kernels.current("cpu")
    kernels.use("cpu", backend)
    try:
        return train(kind, "cpu", steps=2, make=make)
    finally:
        kernels.use("cpu", before)


@pytest.mark.parametrize("kind,make", [(k, m) for k, m in MODELS.items()] + [("mlp", _wide_mlp)],
                         ids=list(MODELS) + ["mlp-wide"])
def test_two_training_steps_with_the_extension_match_the_numpy_backend(kind, make):
    ref = _with("numpy", kind, make)
    got = _with("cpp", kind, make)
    assert_close(got[0], ref[0], rtol=RTOL, what=f"{kind} losses")
    for name in ref[1]:
        assert np.abs(ref[1][name]).max() > 0, f"{kind}: {name} got no gradient"
        assert_close(got[1][name], ref[1][name], rtol=RTOL, atol=1e-12, what=f"{kind} grad {name}")
        assert_close(got[2][name], ref[2][name], rtol=RTOL, atol=1e-12, what=f"{kind} {name}")
