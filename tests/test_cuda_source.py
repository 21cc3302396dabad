"""The CUDA backend's arithmetic runs in this repository's kernels: CuPy may provide memory,
streams and copies, never math. This reads the backend's sources and fails on any other use."""
import ast
import pathlib

CUDA_DIR = pathlib.Path(__file__).resolve().parents[1] / "src" / "tilegrad" / "backends" / "cuda"
# What CuPy may be asked for: allocation, host<->device and device<->device copies, streams.
ALLOWED = {"empty", "zeros", "asarray", "asnumpy", "array", "cuda", "ndarray", "dtype"}


def _cupy_uses(tree):
    """(line, attribute) for every attribute taken from a name bound to cupy."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name for a in node.names
                      if a.name.split(".")[0] in ("cupy", "cupyx")}
        if (isinstance(node, ast.ImportFrom)
                and (node.module or "").split(".")[0] in ("cupy", "cupyx")):
            yield node.lineno, f"from {node.module} import ..."
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in names):
            yield node.lineno, node.attr


def test_backend_sources_use_cupy_for_memory_and_copies_only():
    files = sorted(CUDA_DIR.glob("*.py"))
    assert files, f"no sources in {CUDA_DIR}"
    bad = [f"{f.name}:{line}: cupy.{attr}" for f in files
           for line, attr in _cupy_uses(ast.parse(f.read_text())) if attr not in ALLOWED]
    assert not bad, "CuPy math in the CUDA backend:\n" + "\n".join(bad)


def test_the_check_catches_cupy_math():
    tree = ast.parse("import cupy as xp\ny = xp.matmul(a, b)\nz = xp.empty(3)\n"
                     "from cupyx.scipy import ndimage\n")
    found = [attr for _, attr in _cupy_uses(tree) if attr not in ALLOWED]
    assert "matmul" in found and "empty" not in found and any("cupyx" in f for f in found)

