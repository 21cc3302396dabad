import pytest

from tilegrad import kernels


def test_use_switches_and_rejects_unknown_names(monkeypatch):
    monkeypatch.setattr(kernels, "_chosen", {})
    assert kernels.current("matmul") == "v4"
    kernels.use("matmul", "v2")
    assert kernels.current("matmul") == "v2"
    assert kernels.versions()["matmul"] == (("v1", "v2", "v3", "v4"), "v2")
    with pytest.raises(ValueError, match="matmul has versions v1, v2, v3, v4, not 'v9'"):
        kernels.use("matmul", "v9")
    with pytest.raises(ValueError, match="unknown kernel family 'conv'"):
        kernels.use("conv", "v1")


def test_environment_variable_chooses_a_version(monkeypatch):
    monkeypatch.setattr(kernels, "_chosen", {})
    monkeypatch.setenv("TILEGRAD_KERNELS", "matmul=v1")
    assert kernels.current("matmul") == "v1"
