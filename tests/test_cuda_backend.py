"""The assembled CUDA backend module offers every primitive of the NumPy specification."""
import inspect
import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("the CUDA backend is imported here only under Numba's simulator",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

from tilegrad.backends import numpy as spec   # noqa: E402
from tilegrad.backends.cuda import backend    # noqa: E402


def _primitives(module):
    return {n for n, f in vars(module).items()
            if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == module.__name__}


def test_every_numpy_primitive_has_a_cuda_launcher_with_the_same_parameters():
    missing = sorted(_primitives(spec) - set(dir(backend)))
    assert not missing, f"no CUDA launcher for {missing}"
    for name in _primitives(spec):
        want = list(inspect.signature(getattr(spec, name)).parameters)
        got = list(inspect.signature(getattr(backend, name)).parameters)
        assert got == want, f"{name}: CUDA takes {got}, the specification {want}"
