"""The bench stage: a short benchmark of a family against PyTorch, on a GPU only.

Timings in Numba's simulator (one Python thread per CUDA thread) say nothing about a kernel's
speed, so without a GPU the stage is skipped, never run. On a GPU with PyTorch it runs, per
version, the cases of ``tilegrad.bench.kernels`` at the reference models' shapes that exercise
the family (``BENCH_CASES``), through the bench harness (validate first, warm up, time with CUDA
events): in a process of its own, with the simulator off,

    python -m tilegrad.grading.benchmark FAMILY [--version V ...] [--quick]

which prints a JSON line per (version, case).
"""
import argparse
import importlib.util
import json
import sys

from . import families
from .oracle import run_worker
from .result import Row

# family -> (bench group, a text every case name there must contain, or "")
BENCH_CASES = {"matmul": ("matmul", ""), "conv2d": ("conv2d", ""),
               "conv2d_fwd": ("conv2d", "conv2d fwd"),
               "conv2d_bwd_data": ("conv2d", "conv2d bwd-data"),
               "conv2d_bwd_weight": ("conv2d", "conv2d bwd-weight"),
               "softmax_cross_entropy": ("cross_entropy", ""), "pool": ("max_pool2d", ""),
               "elementwise": ("relu", ""), "optim": ("adam", ""), "lstm": ("lstm", "")}
NO_GPU = "no GPU: simulator timings say nothing about speed"
QUICK_CASES = 2


def cases(family, quick):
    from tilegrad.bench import kernels
    group, text = BENCH_CASES[family.name]
    found = [c for c in kernels.cases("small") if c.group == group and text in c.name]
    return found[:QUICK_CASES] if quick else found


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tilegrad.grading.benchmark")
    p.add_argument("family")
    p.add_argument("--version", action="append")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    import torch

    import tilegrad as tg
    from tilegrad import kernels
    from tilegrad.bench.harness import measured_peaks
    from tilegrad.bench.run import run_case
    family = families.resolve(args.family)
    device = tg.device("cuda")
    peaks = measured_peaks(torch, "cuda", repeats=3)
    for version in args.version or [None]:
        for name in family.registry:
            if version is not None:
                kernels.use(name, version)
        for case in cases(family, args.quick):
            row = run_case(case, device, torch, warmup=2, repeats=5 if args.quick else 10,
                           peaks=peaks)
            print(json.dumps({"version": version, "case": case.name, "row": row}), flush=True)
    return 0


def run_stage(family, versions, quick, gpu):
    """The bench rows: skipped without a GPU, PyTorch or a case; else one per (version, case)."""
    if not gpu:
        return [Row("bench", family.name, None, "-", "skip", NO_GPU)]
    if importlib.util.find_spec("torch") is None:
        return [Row("bench", family.name, None, "-", "skip", "PyTorch is not installed")]
    if family.name not in BENCH_CASES:
        return [Row("bench", family.name, None, "-", "skip",
                    f"tilegrad.bench has no case for {family.name}")]
    args = [family.name] + [a for v in versions if v is not None for a in ("--version", v)]
    rc, records, err = run_worker("tilegrad.grading.benchmark",
                                  args + (["--quick"] if quick else []), simulator=False)
    rows = [_row(family, r["version"], r["case"], r["row"]) for r in records]
    if rc != 0:
        rows.append(Row("bench", family.name, None, "-", "fail",
                        f"the benchmark exited with {rc}", err.splitlines()[-8:]))
    return rows


def _row(family, version, name, r):
    if "skipped" in r:      # the result was wrong: not timed
        return Row("bench", family.name, version, name, "fail", r["skipped"])
    ms = r["tilegrad"]["median_s"] * 1e3
    text = f"{ms:.3f} ms, {r['tilegrad_rate']:.0f} {r['unit']}"
    if "torch" in r:
        text += f"; PyTorch {r['torch']['median_s'] * 1e3:.3f} ms, ratio {r['ratio']:.2f}"
    return Row("bench", family.name, version, name, "info", text)


if __name__ == "__main__":
    sys.exit(main())
