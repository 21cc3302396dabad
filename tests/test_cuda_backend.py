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


def test_matmul_and_the_conv_passes_run_the_version_tilegrad_kernels_has_chosen(monkeypatch):
    from tilegrad import kernels

    def stand_in(family, version):
        return lambda *args: (family, version, args)

    names = ("matmul", "conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weight")
    families = {f: ({v: stand_in(f, v) for v in ("v1", "v2")}, "v2") for f in names}
    monkeypatch.setattr(kernels, "_registry", {"families": families, "reason": None})
    monkeypatch.setattr(kernels, "_chosen", {"_env": True})
    kernels.use("matmul", "v1")
    assert backend.matmul("a", "b") == ("matmul", "v1", ("a", "b", False, False, None, False))
    kernels.use("conv2d_bwd_data", "v1")
    assert backend.conv2d_fwd("x", "w", None, (1, 1), (0, 0)) == \
        ("conv2d_fwd", "v2", ("x", "w", None, (1, 1), (0, 0)))
    assert backend.conv2d_bwd_data("g", "w", (1, 2, 3, 4), (2, 2), (1, 1)) == \
        ("conv2d_bwd_data", "v1", ("g", "w", (1, 2, 3, 4), (2, 2), (1, 1)))
    assert backend.conv2d_bwd_weight("g", "x", (5, 2, 3, 3), (1, 1), (1, 1)) == \
        ("conv2d_bwd_weight", "v2", ("g", "x", (5, 2, 3, 3), (1, 1), (1, 1)))
