"""What the tests of the PyTorch scripts in examples/ share: swapping a script's import lines for
tilegrad's, listing the lines two versions differ in, and running a version in a subprocess.

Each script marks its PyTorch imports with a ``# imports`` comment line right above them; the
tests swap exactly those lines and check that nothing else differs, so that the tilegrad
version is the PyTorch script with only its imports changed."""
import difflib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def swap_imports(text, torch_imports, tilegrad_imports):
    """``text`` with the lines ``torch_imports`` that follow ``# imports`` replaced by
    ``tilegrad_imports``; asserts that the script has those lines there."""
    lines = text.splitlines()
    start = lines.index("# imports") + 1
    assert lines[start:start + len(torch_imports)] == torch_imports
    lines[start:start + len(torch_imports)] = tilegrad_imports
    return "\n".join(lines) + "\n"


def changed_lines(before, after):
    """The removed ("-...") and added ("+...") lines between two texts, sorted."""
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return sorted(line for line in diff
                  if line[:1] in "+-" and not line.startswith(("+++", "---")))


def import_changes(torch_imports, tilegrad_imports):
    """What ``changed_lines`` gives when only the imports were swapped."""
    return sorted([f"-{s}" for s in torch_imports] + [f"+{s}" for s in tilegrad_imports])


def run_script(path, args, cwd):
    """Run ``path`` with ``args`` in ``cwd`` (tilegrad importable from src/) and return its
    stdout; the script must exit with 0. One thread: the machines running the tests are small
    and shared, and a tiny model gains nothing from more."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH"))
                                        if p)
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, str(path), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
