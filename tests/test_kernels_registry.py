"""tilegrad.kernels: the registry of kernel versions, built from what each family module declares.

Most tests build the registry from stand-in family modules, so they hold whatever versions the
real families have; the last ones read the real declarations, and check that the registry loads
lazily and without numba-cuda.
"""
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tilegrad import kernels

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _module(name, **attrs):
    mod = types.ModuleType(f"tilegrad.backends.cuda.{name}")
    mod.__dict__.update(attrs)
    return mod


def _launcher(tag):
    def launch(*args):
        return tag, args
    return launch


GEMM = _module("gemm", KERNEL_FAMILIES={
    "gemm": ({"v1": _launcher("gemm v1"), "v2": _launcher("gemm v2"), "v3": _launcher("gemm v3")},
             "v2")})
STENCIL = _module("stencil", KERNEL_FAMILIES={
    "stencil_fwd": ({"v1": _launcher("fwd v1"), "v2": _launcher("fwd v2")}, "v2"),
    "stencil_bwd": ({"v1": _launcher("bwd v1")}, "v1")})


@pytest.fixture
def registry(monkeypatch):
    """The registry as the stand-in modules GEMM and STENCIL declare it, nothing chosen yet."""
    monkeypatch.delenv("TILEGRAD_KERNELS", raising=False)
    monkeypatch.setattr(kernels, "_registry",
                        {"families": kernels.collect([GEMM, STENCIL]), "reason": None})
    monkeypatch.setattr(kernels, "_chosen", {})


def _cuda_families(versions):
    """versions() less "cpu", device "cpu"'s backend choice, which every registry lists first."""
    assert list(versions)[0] == "cpu" and versions["cpu"][0] == ("cpp", "numpy")
    return {f: v for f, v in versions.items() if f != "cpu"}


def test_versions_come_from_the_declarations(registry):
    assert _cuda_families(kernels.versions()) == {"gemm": (("v1", "v2", "v3"), "v2"),
                                  "stencil_fwd": (("v1", "v2"), "v2"),
                                  "stencil_bwd": (("v1",), "v1")}
    assert kernels.declared("stencil_fwd") and not kernels.declared("stencil")
    assert kernels.unavailable_reason() is None


def test_use_switches_the_launcher(registry):
    assert kernels.current("gemm") == "v2"
    assert kernels.launcher("gemm")(1, 2) == ("gemm v2", (1, 2))
    kernels.use("gemm", "v1")
    assert kernels.current("gemm") == "v1"
    assert kernels.launcher("gemm")() == ("gemm v1", ())
    assert kernels.versions()["gemm"] == (("v1", "v2", "v3"), "v1")
    assert kernels.current("stencil_fwd") == "v2"      # other families keep their default


def test_unknown_names_raise_naming_the_family_and_its_versions(registry):
    with pytest.raises(ValueError, match="kernels.use: gemm has versions v1, v2, v3, not 'v9'"):
        kernels.use("gemm", "v9")
    with pytest.raises(ValueError, match="unknown kernel family 'conv'; known: gemm, stencil_fwd, "
                                         "stencil_bwd"):
        kernels.use("conv", "v1")
    with pytest.raises(ValueError, match="unknown kernel family 'conv'"):
        kernels.current("conv")
    assert kernels.current("gemm") == "v2"              # a refused choice changes nothing


def test_environment_variable_chooses_versions(registry, monkeypatch):
    monkeypatch.setenv("TILEGRAD_KERNELS", " gemm = v3 , stencil_fwd=v1,")
    assert kernels.current("gemm") == "v3"
    assert kernels.current("stencil_fwd") == "v1"
    assert kernels.current("stencil_bwd") == "v1"


@pytest.mark.parametrize("spec,message", [
    ("gemm=v7", "TILEGRAD_KERNELS='gemm=v7': gemm has versions v1, v2, v3, not 'v7'"),
    ("gemm", "TILEGRAD_KERNELS='gemm': gemm has versions v1, v2, v3, not ''"),
    ("matmull=v1", "TILEGRAD_KERNELS='matmull=v1': unknown kernel family 'matmull'"),
])
def test_a_bad_environment_variable_says_what_is_wrong(registry, monkeypatch, spec, message):
    monkeypatch.setenv("TILEGRAD_KERNELS", spec)
    with pytest.raises(ValueError) as info:
        kernels.current("gemm")
    assert str(info.value).startswith(message), str(info.value)


def test_a_module_with_only_versions_of_launchers_is_a_family_defaulting_to_its_last():
    ladder = _module("ladder", VERSIONS={"v1": _launcher(1), "v2": _launcher(2)})
    per_pass = _module("passes", VERSIONS={"v1": {"fwd": _launcher(1)}})   # not launchers
    assert kernels.declarations(ladder) == {"ladder": (ladder.VERSIONS, "v2")}
    assert kernels.declarations(per_pass) == {}
    assert kernels.declarations(_module("helpers")) == {}
    both = _module("both", VERSIONS={"v1": _launcher(1)},
                   KERNEL_FAMILIES={"both": ({"v1": _launcher(1)}, "v1")})
    assert list(kernels.declarations(both)) == ["both"]   # KERNEL_FAMILIES wins


def test_declaration_errors_are_refused():
    with pytest.raises(ValueError, match="'gemm' is declared by both .*gemm and .*again"):
        kernels.collect([GEMM, _module("again", KERNEL_FAMILIES=GEMM.KERNEL_FAMILIES)])
    bad = _module("bad", KERNEL_FAMILIES={"bad": ({"v1": _launcher(1)}, "v2")})
    with pytest.raises(ValueError, match="'bad' has default 'v2', not one of its versions v1"):
        kernels.collect([bad])


def test_info_lists_each_family_with_the_version_in_use(registry):
    from tilegrad.cli.info import info
    kernels.use("gemm", "v3")
    out = info()
    assert "  gemm        v1 v2 *v3" in out and "  stencil_bwd *v1" in out


# ---------------------------------------------------------------- the real family modules

def test_every_declared_family_is_registered_with_its_versions(monkeypatch):
    pytest.importorskip("numba", reason="numba-cuda is not installed")
    from tilegrad.backends.cuda import ptx
    monkeypatch.delenv("TILEGRAD_KERNELS", raising=False)
    monkeypatch.setattr(kernels, "_chosen", {})
    modules, _ = ptx.load_modules()
    declared = {}
    for _, module in modules:
        declared.update(kernels.declarations(module))
    assert "matmul" in declared
    assert _cuda_families(kernels.versions()) == {f: (tuple(v), default)
                                                  for f, (v, default) in declared.items()}


def _python(code, **env):
    env = {**os.environ, "PYTHONPATH": SRC, **env}
    env.pop("TILEGRAD_KERNELS", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")
def test_the_registry_imports_the_kernel_modules_only_when_asked():
    out = _python("import sys, tilegrad as tg\n"
                  "from tilegrad import kernels\n"
                  "print('numba' in sys.modules)\n"
                  "kernels.versions()\n"
                  "print('numba' in sys.modules)\n")
    assert out.split() == ["False", "True"]


def test_without_numba_there_are_no_families_and_a_reason():
    out = _python("import sys\n"
                  "sys.modules['numba'] = None   # import numba raises ImportError\n"
                  "from tilegrad import kernels\n"
                  "print({f: v for f, v in kernels.versions().items() if f != 'cpu'})\n"
                  "print(kernels.unavailable_reason())\n"
                  "try:\n"
                  "    kernels.use('matmul', 'v1')\n"
                  "except ValueError as e:\n"
                  "    print(e)\n")
    versions, reason, error = out.splitlines()
    assert versions == "{}"
    assert reason.startswith("the CUDA kernel modules cannot be imported") and "numba" in reason
    assert error.startswith("kernels.use: unknown kernel family 'matmul'; known: none (")
