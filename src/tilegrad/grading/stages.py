"""``run``: a check of one family, stage by stage, into a ``Result``.

The stages, in order: ``oracle`` (correctness against the NumPy backend), ``ptx`` (compiled for
sm_90 and sm_80 by Numba and ptxas: registers, shared memory, spills), ``sass`` (the sm_90
instruction mix, informational) and ``bench`` (against PyTorch, on a GPU only). Each runs in a
process of its own (see ``oracle``, ``compiled``, ``benchmark``); this process decides only what
to run and where.
"""
import time

from . import benchmark, compiled, families, oracle
from .device import gpu_count
from .result import Result

STAGES = ("oracle", "ptx", "sass", "bench")


def parse_stages(text):
    """``"oracle,ptx"`` -> ["oracle", "ptx"], in the stages' order; ValueError if unknown."""
    asked = [s.strip() for s in text.split(",") if s.strip()] if isinstance(text, str) \
        else list(text)
    unknown = [s for s in asked if s not in STAGES]
    if unknown or not asked:
        raise families.UnknownFamilyError(
            f"tilegrad check: unknown stage(s) {', '.join(unknown) or '(none given)'}; the "
            f"stages are {', '.join(STAGES)}")
    return [s for s in STAGES if s in asked]


def run(family, version=None, quick=False, stages=STAGES, progress=None):
    """Check ``version`` of ``family`` (every version when None) and return the ``Result``.

    ``family`` as typed ("conv2d", "softmax-cross-entropy"); ``quick``: fewer oracle cases and
    sm_90 only; ``stages``: a subset of STAGES (or "oracle,ptx"); ``progress(text)``, if given,
    hears what is being done. An unknown family, version or stage raises
    ``families.UnknownFamilyError`` (a ValueError) naming the known ones.
    """
    start = time.perf_counter()
    stages = parse_stages(stages)
    fam = families.resolve(family)
    versions = families.select_versions(fam, version)
    gpu = gpu_count() > 0
    say = progress or (lambda text: None)
    result = Result(fam.name, [v or "-" for v in versions], quick, stages,
                    "GPU" if gpu else "no GPU: Numba's CUDA simulator")
    if "oracle" in stages:
        say(f"oracle: {fam.name} {', '.join(result.versions)} "
            f"{'on the GPU' if gpu else 'in the simulator'} ...")
        _timed(result, "oracle", oracle.run_stage, fam, versions, quick, gpu, _dots(say))
    if "ptx" in stages or "sass" in stages:
        say("compiling with Numba and ptxas ...")
        _timed(result, "ptx+sass" if "sass" in stages and "ptx" in stages else
               ("ptx" if "ptx" in stages else "sass"), compiled.run_stage, fam, versions, quick,
               stages)
    if "bench" in stages:
        _timed(result, "bench", benchmark.run_stage, fam, versions, quick, gpu)
    result.seconds = time.perf_counter() - start
    return result


def _timed(result, stage, fn, *args):
    """Add the rows of ``fn(*args)`` to ``result`` and note how long they took."""
    start = time.perf_counter()
    result.rows += fn(*args)
    result.stage_seconds[stage] = time.perf_counter() - start


def _dots(say):
    """A per-case callback telling each new version once."""
    seen = set()

    def on_case(record):
        if record["version"] not in seen:
            seen.add(record["version"])
            say(f"  {record['version'] or '-'} ...")
    return on_case
