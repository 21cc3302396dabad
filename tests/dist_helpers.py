"""Running a script as an MPI job from a test: ``mpiexec -n P python script ...`` with the
mpiexec beside this interpreter (MPICH's wheel puts it there), under a timeout, so that a job
that hangs fails the test instead of the suite."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tilegrad.distributed import launcher

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def mpiexec():
    """The mpiexec to start jobs with; skips the test when mpi4py or the launcher is missing."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install tilegrad[dist])")
    found = launcher.mpiexec()
    if found is None:
        pytest.skip("no mpiexec beside the interpreter or on PATH")
    return found


def job_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), str(TESTS),
                                                      env.get("PYTHONPATH")) if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_job(n, *argv, timeout=120, env=None):
    """Run ``python *argv`` as ``n`` ranks (``n`` None: one process, no launcher). Returns the
    CompletedProcess (text output) and the seconds it took."""
    cmd = [sys.executable, *map(str, argv)]
    if n is not None:
        cmd = [mpiexec(), "-n", str(n), *cmd]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=env or job_env())
    return proc, time.monotonic() - start


def check(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc
