"""The package as a package: the license matches the metadata, one version everywhere,
``tilegrad --version``, the type annotations (py.typed, and every annotation resolves), what the
source distribution carries (MANIFEST.in, checked without building it), and the note when the
curves are skipped for want of matplotlib. These tests also run from an unpacked sdist
(``make sdist-check``)."""
import importlib
import importlib.metadata
import importlib.resources
import inspect
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tilegrad as tg
from tilegrad.cli import main, report

ROOT = Path(__file__).resolve().parent.parent


def pyproject():
    tomllib = pytest.importorskip("tomllib")    # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def installed_metadata():
    try:
        return importlib.metadata.metadata("tilegrad")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("tilegrad is not installed (running from a checkout with PYTHONPATH=src)")


# ---------------------------------------------------------------- license and version
def test_license_file_is_the_mit_license_that_the_metadata_declares():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 The tilegrad developers" in text
    assert "Permission is hereby granted, free of charge" in text
    project = pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    meta = installed_metadata()
    # License-Expression since setuptools 77 (PEP 639); an install made before has License.
    assert (meta.get("License-Expression") or meta.get("License")) == "MIT"


def test_the_version_is_said_once_and_everything_reports_it(capsys):
    setuptools_config = pyproject()
    assert "version" not in setuptools_config["project"]
    assert "version" in setuptools_config["project"]["dynamic"]
    assert setuptools_config["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "tilegrad.__version__"}
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"tilegrad {tg.__version__}\n"
    assert tuple(int(n) for n in tg.__version__.split(".")) >= (0, 1, 0)


def test_the_installed_distribution_has_the_packages_version():
    assert installed_metadata()["Version"] == tg.__version__, \
        "the installed metadata is older than the source: reinstall (pip install -e .)"


# ---------------------------------------------------------------- type annotations
def test_py_typed_is_in_the_package_and_in_its_package_data():
    assert importlib.resources.files("tilegrad").joinpath("py.typed").is_file()
    assert "py.typed" in pyproject()["tool"]["setuptools"]["package-data"]["tilegrad"]


ANNOTATED = ["tilegrad.tensor", "tilegrad.creation", "tilegrad.autograd",
             "tilegrad.serialization", "tilegrad.dtypes", "tilegrad.random", "tilegrad.nn.module",
             "tilegrad.nn.layers", "tilegrad.nn.rnn", "tilegrad.nn.functional", "tilegrad.nn.init",
             "tilegrad.nn.utils", "tilegrad.optim.optimizer", "tilegrad.optim.sgd",
             "tilegrad.optim.adam", "tilegrad.optim.lr_scheduler", "tilegrad.optim.adamw",
             "tilegrad.optim.rmsprop", "tilegrad.optim.adadelta", "tilegrad.utils.data.dataset",
             "tilegrad.utils.data.sampler", "tilegrad.utils.data.dataloader",
             "tilegrad.nn.container", "tilegrad.hooks", "tilegrad.grad_fn",
             "tilegrad.nn.activation", "tilegrad.nn.loss", "tilegrad.nn.recurrent",
             "tilegrad.nn.tensor_ops", "tilegrad.tensor_ops", "tilegrad.interop",
             "tilegrad.nn.normalization", "tilegrad.sampling"]


def public_callables(module):
    """(name, function) for the module's own public functions, and the public methods,
    properties and dunder methods its public classes define themselves."""
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj) and not issubclass(obj, tuple):    # not the namedtuples
            for attr, member in vars(obj).items():
                if attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__")):
                    continue
                member = getattr(member, "fget", member)                   # a property
                member = getattr(member, "__func__", member)               # a class/staticmethod
                if inspect.isfunction(member):
                    yield f"{name}.{attr}", member


@pytest.mark.parametrize("module_name", ANNOTATED)
def test_the_public_api_is_annotated_and_every_annotation_resolves(module_name):
    """Every public function and method has a return annotation, every parameter one (but
    ``self`` and ``cls``), and ``typing.get_type_hints`` resolves them all: no misspelt or
    missing name. ``Tensor`` is given for the modules that import it only for type checkers."""
    module = importlib.import_module(module_name)
    checked, missing = 0, []
    for name, fn in public_callables(module):
        hints = typing.get_type_hints(fn, localns={"Tensor": tg.Tensor})
        params = [p for p in list(inspect.signature(fn).parameters)[1 if "." in name else 0:]]
        missing += [f"{name}({p})" for p in params if p not in hints]
        if "return" not in hints:
            missing.append(f"{name} -> ?")
        checked += 1
    assert checked > 0
    assert missing == [], f"{module_name}: not annotated: {missing}"


def test_annotations_say_what_the_api_takes_and_returns():
    hints = typing.get_type_hints(tg.Tensor.sum)
    assert hints["return"] is tg.Tensor and hints["keepdim"] is bool
    assert typing.get_type_hints(tg.Tensor.shape.fget)["return"] == tuple[int, ...]
    assert typing.get_type_hints(tg.Tensor.__float__)["return"] is float
    assert typing.get_type_hints(tg.nn.Module.parameters)["return"] == Iterator[tg.nn.Parameter]
    lstm = typing.get_type_hints(tg.nn.LSTM.forward)["return"]
    assert lstm == tuple[tg.Tensor, tuple[tg.Tensor, tg.Tensor]]
    assert typing.get_type_hints(tg.dtypes.get_default_dtype)["return"] is np.dtype
    # And the values are what they say they are.
    x = tg.randn(3, 7)
    assert isinstance(x.sum(0, keepdim=True), tg.Tensor) and isinstance(x.shape, tuple)
    assert isinstance(tg.get_default_dtype(), np.dtype)
    out, (h, c) = tg.nn.LSTM(7, 5)(tg.randn(1, 3, 7))
    assert all(isinstance(t, tg.Tensor) for t in (out, h, c))


# ---------------------------------------------------------------- the source distribution
def manifest_files(monkeypatch):
    """The files MANIFEST.in selects, by setuptools' own reading of it (run in the repository
    root, as sdist does); setuptools adds the package's modules, the extension's sources,
    pyproject.toml and setup.py itself."""
    egg_info = pytest.importorskip("setuptools.command.egg_info")
    monkeypatch.chdir(ROOT)
    files = egg_info.FileList()
    for line in (ROOT / "MANIFEST.in").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            files.process_template_line(line)
    return {Path(f).as_posix() for f in files.files}


def test_manifest_ships_what_the_tests_build_and_docs_need_and_nothing_built(monkeypatch):
    shipped = manifest_files(monkeypatch)
    needed = {"LICENSE", "README.md", "Makefile", ".ci/run", "bench/RESULTS.md",
              "src/tilegrad/py.typed"}
    for pattern in ("tests/*.py", "csrc/*.cpp", "csrc/*.h", "docs/*.md", "bench/*.py"):
        found = {p.relative_to(ROOT).as_posix() for p in ROOT.glob(pattern)}
        assert found, pattern
        needed |= found
    assert {"tests/conftest.py", "tests/helpers.py", "tests/test_packaging.py"} <= needed
    assert sorted(needed - shipped) == []
    built = [f for f in shipped if f.endswith((".so", ".pyc", "_cpu_build.txt"))
             or "__pycache__" in f or f.startswith(("build/", "bench/results/", ".venv/"))]
    assert built == []


# ---------------------------------------------------------------- optional dependencies
def test_curves_skipped_without_matplotlib_say_so_once_per_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)    # import matplotlib: ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    records = [{"kind": "step", "step": 3, "loss": 1.7},
               {"kind": "epoch", "step": 3, "test_acc": 0.4}]
    path = str(tmp_path / "curves.png")
    for _ in range(2):    # two epochs of one run
        assert report.plot_curves(records, path, "test_acc", "MLP") is None
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert path in lines[0] and "matplotlib is not installed" in lines[0]
    assert "pip install 'tilegrad[cli]'" in lines[0]
    assert not (tmp_path / "curves.png").exists()


def test_curves_are_written_with_matplotlib(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    records = [{"kind": "step", "step": 3, "loss": 1.7},
               {"kind": "epoch", "step": 3, "test_acc": 0.4}]
    path = tmp_path / "curves.png"
    assert report.plot_curves(records, str(path), "test_acc", "MLP") == str(path)
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert capsys.readouterr().err == ""
