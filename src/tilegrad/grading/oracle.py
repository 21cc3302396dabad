"""The oracle stage: a family's CUDA primitives against the NumPy backend, version by version.

The cases (``cases.py``) run in a process of their own, because the choice between Numba's
simulator and a GPU is made when Numba is imported: ``NUMBA_ENABLE_CUDASIM=1`` there when this
machine has no GPU, 0 when it has one. That process is this module:

    python -m tilegrad.grading.oracle FAMILY [--version V ...] [--quick]

prints one JSON line per case (``{"version", "primitive", "label", "ok", "error", "seconds"}``);
``run_stage`` starts it and turns the lines into the table's rows, one per (version, primitive).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np

from . import families
from .result import Row

MAX_SHOWN = 3          # failing cases named in a row's details


# ---------------------------------------------------------------- in the worker process

def check_case(case, backend):
    """None if ``case`` passes on ``backend``, else why: the first mismatch (assert_close's
    message, naming the output) or the exception the primitive raised."""
    from tilegrad.testing import assert_close, tolerances
    try:
        results = case.run(backend)
    except Exception as e:      # a launcher's assertion, an index out of range, a typing error
        return f"raised {type(e).__name__}: {' '.join(str(e).split())[:400]}"
    rtol, atol = tolerances(case.dtype)
    atol = float(f"{atol * max(1.0, np.sqrt(case.k)):.3g}")
    for what, got, want in results:
        if got is None or want is None:
            if (got is None) != (want is None):
                return f"{what}: {'none' if got is None else 'an array'} returned, the " \
                       f"reference {'none' if want is None else 'an array'}"
            continue
        try:
            assert_close(got, want, rtol=rtol, atol=atol, what=what)
        except AssertionError as e:
            return str(e)
    return None


def run_cases(family, versions, quick, emit):
    """Run ``family``'s cases for each version (kernels.use on each of its registry names),
    calling ``emit(dict)`` once per case."""
    from tilegrad import kernels
    from tilegrad.backends.cuda import backend

    from . import cases
    todo = cases.for_family(family, quick)
    for version in versions:
        for name in family.registry:
            if version is not None:
                kernels.use(name, version)
        for case in todo:
            start = time.perf_counter()
            error = check_case(case, backend)
            emit({"version": version, "primitive": case.primitive, "dtype": case.dtype,
                  "label": case.label(),
                  "ok": error is None, "error": error or "",
                  "seconds": round(time.perf_counter() - start, 3)})


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tilegrad.grading.oracle")
    p.add_argument("family")
    p.add_argument("--version", action="append", help="repeatable; none: the single version")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    family = families.resolve(args.family)

    def emit(record):
        print(json.dumps(record), flush=True)

    run_cases(family, args.version or [None], args.quick, emit)
    return 0


# ---------------------------------------------------------------- in the grader

def package_root():
    """The folder holding the ``tilegrad`` package in use, for the worker's PYTHONPATH (so that
    it grades the same copy of the sources)."""
    import tilegrad
    return os.path.dirname(os.path.dirname(os.path.abspath(tilegrad.__file__)))


def worker_env(simulator):
    """This environment, with the simulator switched as asked and this tilegrad first on the
    path."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1" if simulator else "0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root(), env.get("PYTHONPATH")]))
    return env


def run_worker(module, args, simulator, on_line=None, timeout=None):
    """Run ``python -m module args`` with the simulator on or off: (return code, parsed JSON
    lines, stderr's tail)."""
    records = []
    # stderr to a file: a pipe nobody reads while stdout is read could fill and stall the worker.
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], env=worker_env(simulator),
                                stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            for line in proc.stdout:
                if line.startswith("{"):
                    records.append(json.loads(line))
                    if on_line:
                        on_line(records[-1])
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        return proc.returncode, records, err.read().strip()[-2000:]


def run_stage(family, versions, quick, gpu, progress=None):
    """The oracle rows of ``family``: one per (version, primitive), failing with the cases that
    fail; one failing row if the worker itself fails."""
    from . import cases
    if not cases.has_cases(family):
        return [Row("oracle", family.name, None, "-", "fail",
                    f"no oracle cases for {family.name}: add them to tilegrad/grading/cases.py")]
    args = [family.name, "--quick"] if quick else [family.name]
    for v in versions:
        if v is not None:
            args += ["--version", v]
    start = time.perf_counter()
    rc, records, err = run_worker("tilegrad.grading.oracle", args, simulator=not gpu,
                                  on_line=progress)
    where = "on the GPU" if gpu else "in Numba's CUDA simulator"
    rows = _rows(family, records, where)
    if rc != 0 or not records:
        rows.append(Row("oracle", family.name, None, "-", "fail",
                        f"the case runner exited with {rc} {where}",
                        err.splitlines()[-8:], time.perf_counter() - start))
    return rows


def _rows(family, records, where):
    groups = defaultdict(list)
    for r in records:
        groups[(r["version"], r["primitive"])].append(r)
    rows = []
    for (version, primitive), recs in groups.items():
        bad = [r for r in recs if not r["ok"]]
        dtypes = ", ".join(dict.fromkeys(r["dtype"] for r in recs))
        seconds = sum(r["seconds"] for r in recs)
        tag = f"{family.name} {version or '-'}"
        if bad:
            detail = f"{len(bad)} of {len(recs)} cases fail ({dtypes}) {where}"
            lines = [f"{tag} {r['label']}: {r['error']}" for r in bad[:MAX_SHOWN]]
            if len(bad) > MAX_SHOWN:
                lines.append(f"... and {len(bad) - MAX_SHOWN} more")
            rows.append(Row("oracle", family.name, version, primitive, "fail", detail, lines,
                            seconds))
        else:
            rows.append(Row("oracle", family.name, version, primitive, "pass",
                            f"{len(recs)} cases ({dtypes})", [], seconds))
    return rows


if __name__ == "__main__":
    sys.exit(main())
