"""One training step of each reference model, scaled down, on device "cuda" against device "cpu".

The models and the step are tests/model_steps.py's: small odd sizes, the same float64 weights on
both devices, one step of the real recipe on the same batch; the loss, every gradient and every
updated parameter must agree. Under NUMBA_ENABLE_CUDASIM=1 "cuda" runs in Numba's simulator; on
a GPU, for real.
"""
import numpy as np
import pytest

import tilegrad as tg
from tilegrad.testing import assert_close
from model_steps import train

if not tg.device("cuda").available:
    pytest.skip(f"device cuda: {tg.device('cuda').reason}", allow_module_level=True)

RTOL = 1e-9


@pytest.mark.parametrize("kind", ["mlp", "cnn", "lm"])
def test_one_training_step_on_cuda_matches_cpu(kind):
    cpu = train(kind, "cpu")
    cuda = train(kind, "cuda")
    state = train(kind, "cpu", steps=0)[2]
    assert_close(cuda[0], cpu[0], rtol=RTOL, what=f"{kind} loss")
    for name in cpu[1]:
        assert np.abs(cpu[1][name]).max() > 0, f"{kind}: {name} got no gradient"
        assert_close(cuda[1][name], cpu[1][name], rtol=RTOL, atol=1e-12, what=f"{kind} grad {name}")
        assert_close(cuda[2][name], cpu[2][name], rtol=RTOL, atol=1e-12, what=f"{kind} {name}")
        assert not np.array_equal(cpu[2][name], state[name]), f"{kind}: {name} did not move"
