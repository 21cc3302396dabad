"""Device "cpu" and its backends: the cpp backend offers every primitive of the NumPy
specification with the same parameters; the choice between cpp and numpy (environment,
kernels.use); threads; what `tilegrad info` says; and an install where the extension cannot be
built."""
import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tilegrad as tg
from tilegrad import kernels
from tilegrad.backends import cpu as cpu_device
from tilegrad.backends import numpy as spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
ext, why = cpu_device.extension()
needs_ext = pytest.mark.skipif(ext is None, reason=f"the C++ extension is not built: {why}")


def _primitives(module):
    return {n for n, f in vars(module).items()
            if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == module.__name__}


def _python(code, **env):
    env = {**os.environ, "PYTHONPATH": SRC, **env}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=300)
    return proc


@needs_ext
def test_the_cpp_backend_offers_every_primitive_with_the_specifications_parameters():
    from tilegrad.backends.cpu import backend
    for name in sorted(_primitives(spec)):
        fn = getattr(backend, name, None)
        assert fn is not None, f"the cpp backend has no {name}"
        want = list(inspect.signature(getattr(spec, name)).parameters)
        got = list(inspect.signature(fn).parameters)
        assert got == want, f"{name}: cpp takes {got}, the specification {want}"
    assert set(backend.NATIVE) | set(backend.FALLBACK) == _primitives(spec)
    assert not set(backend.NATIVE) & set(backend.FALLBACK)
    for name, family in backend.NATIVE.items():     # a native primitive is the family's own
        assert getattr(backend, name).__module__ == f"tilegrad.backends.cpu.{family}", name


@needs_ext
def test_device_cpu_runs_the_cpp_backend_and_kernels_use_switches_it():
    dev = tg.device("cpu")
    assert dev.backend.name == "cpp" and kernels.current("cpu") == "cpp"
    x = tg.tensor([[1.0, -2.0], [3.0, 4.0]])
    try:
        kernels.use("cpu", "numpy")
        assert dev.backend is spec and kernels.versions()["cpu"] == (("cpp", "numpy"), "numpy")
        y = (x @ x).relu()        # tensors made under one backend work under the other
    finally:
        kernels.use("cpu", "cpp")
    np.testing.assert_allclose((x @ x).relu().numpy(), y.numpy())
    with pytest.raises(ValueError, match="kernels.use: cpu has backends cpp, numpy, not 'blas'"):
        kernels.use("cpu", "blas")
    assert dev.backend.name == "cpp"


def test_the_environment_chooses_the_cpu_backend():
    code = "import tilegrad as tg; print(tg.device('cpu').backend.name)"
    proc = _python(code, TILEGRAD_CPU_BACKEND="numpy")
    assert proc.returncode == 0 and proc.stdout.split() == ["numpy"], proc.stderr
    proc = _python(code, TILEGRAD_CPU_BACKEND="", TILEGRAD_KERNELS="cpu=numpy")
    assert proc.returncode == 0 and proc.stdout.split() == ["numpy"], proc.stderr
    proc = _python(code, TILEGRAD_CPU_BACKEND="fortran")
    assert proc.returncode != 0
    assert "TILEGRAD_CPU_BACKEND='fortran': cpu backend 'fortran'; expected one of cpp, numpy" \
        in proc.stderr


@needs_ext
def test_threads_follow_set_num_threads_and_omp_num_threads():
    before = tg.get_num_threads()
    try:
        tg.set_num_threads(1)
        assert tg.get_num_threads() == 1 == ext.get_num_threads()
    finally:
        tg.set_num_threads(before)
    for bad, error in ((0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="set_num_threads"):
            tg.set_num_threads(bad)
    assert tg.get_num_threads() == before
    if ext.openmp:
        proc = _python("import tilegrad as tg; print(tg.get_num_threads())", OMP_NUM_THREADS="3")
        assert proc.stdout.split() == ["3"], proc.stderr


@needs_ext
def test_simd_is_chosen_at_run_time_and_can_only_be_lowered():
    order = ["portable", "avx2", "avx512"]
    best = ext.simd_supported()
    assert best in order and ext.simd() in order
    with pytest.raises(ValueError, match="set_simd: expected 'avx512', 'avx2' or 'portable'"):
        ext.set_simd("sse9")
    if best != "avx512":
        with pytest.raises(ValueError, match=f"set_simd: this CPU supports at most {best}"):
            ext.set_simd("avx512")
    before = ext.simd()
    try:
        ext.set_simd("portable")
        assert ext.simd() == "portable"
    finally:
        ext.set_simd(before)


def test_tilegrad_info_lists_the_cpu_backend_and_its_split():
    from tilegrad.cli.info import info
    text = info()
    assert "cpu backend:" in text
    if ext is None:
        assert "cpp: unavailable:" in text
    else:
        from tilegrad.backends.cpu import backend
        assert f"vector width {ext.simd()}" in text
        assert "from the NumPy backend: " + ", ".join(backend.FALLBACK) in text


def test_a_missing_extension_leaves_the_numpy_backend_and_says_why(monkeypatch):
    # As an install without a compiler leaves it: no module, and the build's reason on record.
    reason = cpu_device._load_extension(os.path.join(ROOT, "no-such-extension.so"))
    assert reason[0] is None and "tilegrad._cpu" in reason[1]
    monkeypatch.setitem(cpu_device._state, "ext", (None, "the C++ extension was not built: why"))
    monkeypatch.delenv("TILEGRAD_CPU_BACKEND", raising=False)
    assert cpu_device.initial_backend() is spec
    with pytest.raises(RuntimeError, match="cpu backend 'cpp' is unavailable: the C"):
        cpu_device._backend("cpp")
    monkeypatch.setenv("TILEGRAD_CPU_BACKEND", "cpp")
    with pytest.warns(RuntimeWarning, match="using the NumPy backend"):
        assert cpu_device.initial_backend() is spec
    assert cpu_device.describe()[-1] == "  cpp: unavailable: the C++ extension was not built: why"


def test_a_failed_build_installs_without_the_extension_and_records_why(tmp_path):
    # The compiler fails (here: it is `false`); setup.py must still succeed and say why.
    env = {**os.environ, "CC": "false", "CXX": "false", "LDSHARED": "false"}
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib",
                           str(tmp_path / "lib"), "--build-temp", str(tmp_path / "tmp")],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    status = (tmp_path / "lib" / "tilegrad" / "_cpu_build.txt").read_text()
    assert status.startswith("not built:"), status
    assert "device 'cpu' will use the NumPy backend" in proc.stderr
    assert not list((tmp_path / "lib" / "tilegrad").glob("_cpu*.so"))


def test_sanitized_runs_load_the_sanitized_build():
    # `make sanitize` points TILEGRAD_CPU_EXTENSION at the sanitizer build and says it expects it.
    if os.environ.get("TILEGRAD_EXPECT_SANITIZED") != "1":
        pytest.skip("not a sanitizer run (make sanitize)")
    assert ext is not None and ext.sanitized
    assert os.path.samefile(ext.__file__, os.environ["TILEGRAD_CPU_EXTENSION"])
