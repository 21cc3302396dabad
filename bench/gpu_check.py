"""``make gpu-check``: the CUDA backend on a real GPU, in one command of under five minutes.

1. The CUDA tests on the GPU: every primitive at the reference models' full sizes
   (tests/test_cuda_device.py), one training step of each reference model on "cuda" against
   "cpu", the device-parametrised functional, module and error tests on "cuda", and the CUDA
   graph tests (steps captured by CuPy stream capture and replayed, against eager steps; the
   trainer's captured run against its eager run), and tilegrad.distributed on one GPU (backend
   "nccl", and "mpi" through the host; skipped where mpi4py or NCCL is missing).
2. ``tilegrad bench all --device cuda`` against PyTorch on the same GPU: float32 with TF32 off,
   and PyTorch's TF32 default beside it where that differs (convolutions, training steps).
3. One table of the project's goals: matmul 4096^3 against PyTorch, the CNN's convolutions against
   cuDNN, softmax-cross-entropy, ReLU and max-pool against the copy bandwidth measured in the run.

It needs only what a CUDA machine has (CuPy, numba-cuda, PyTorch, pytest): no virtual
environment and no network; the package is imported from src/. Everything goes under ``--out``:
cuda/gpu_tests.log, cuda/gpu_bench.log, cuda/gpu_check.md, cuda/results.{json,md} and
cuda/ratios.png. The "cuda" and "cuda gpu-check" sections of bench/RESULTS.md are rewritten in
place when ``--out`` is the default (bench/results, as ``make gpu-check`` has it); with another
``--out``, in a copy of bench/RESULTS.md written there.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_cuda_device.py", "tests/test_cuda_training.py", "tests/test_errors.py",
         "tests/test_functional.py", "tests/test_module.py", "tests/test_cuda_graph.py",
         "tests/test_cli_graph.py", "tests/test_distributed_gpu.py"]


SIMULATE = {"on": False}


def _env():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1" if SIMULATE["on"] else "0",
               PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"),
                                         env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _run(cmd, log, timeout):
    """Run ``cmd`` with its output echoed and saved to ``log``; (return code, seconds, tail)."""
    start = time.time()
    lines = []
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            deadline = start + timeout
            for line in proc.stdout:
                f.write(line)
                lines.append(line.rstrip("\n"))
                print(line, end="", flush=True)
                if time.time() > deadline:
                    raise subprocess.TimeoutExpired(cmd, timeout)
            rc = proc.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "timeout"
            lines.append(f"stopped after {timeout} s")
            f.write(lines[-1] + "\n")
    return rc, time.time() - start, lines


def environment():
    """The GPU, driver and package versions, as this machine reports them."""
    from importlib.metadata import PackageNotFoundError, version
    info = {"python": platform.python_version()}
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        info["gpu"] = q.stdout.strip() or q.stderr.strip()
    except (OSError, subprocess.SubprocessError) as e:
        info["gpu"] = f"nvidia-smi failed: {e}"
    for dist in ("numpy", "numba", "numba-cuda", "cupy-cuda13x", "cupy-cuda12x", "torch",
                 "pytest"):
        try:
            info[dist] = version(dist)
        except PackageNotFoundError:
            pass
    try:
        import torch
        info["torch_cuda"] = torch.version.cuda
    except ImportError:
        pass
    return info


def goals(doc):
    """(goal, case, measured, target, met) rows from a bench document."""
    out = []
    peaks = doc["peaks"]
    for r in doc["rows"]:
        name = r["name"]
        if "skipped" in r:
            out.append(("-", name, f"not measured: {r['skipped']}", "", "no"))
            continue
        if r["group"] == "matmul" and name.startswith("matmul 4096x4096 @ 4096x4096") \
                and "torch" in r:
            speed = r["torch"]["median_s"] / r["tilegrad"]["median_s"]
            target = 0.5 if name.endswith("(square)") else None
            out.append(("matmul vs PyTorch, TF32 off", name, f"{speed:.0%} of PyTorch",
                        "50% (aim 80%)" if target else "(ladder)",
                        ("yes" if speed >= target else "no") if target else ""))
        elif r["group"] == "matmul" and "(MLP fc1 fwd)" in name and "torch" in r:
            times = r["tilegrad"]["median_s"] / r["torch"]["median_s"]
            out.append(("narrow GEMM vs PyTorch", name, f"{times:.2f}x PyTorch's time", "2x",
                        "yes" if times <= 2 else "no"))
        elif r["group"] == "conv2d" and "torch" in r and "(CNN" in name:
            speed = r["torch"]["median_s"] / r["tilegrad"]["median_s"]
            tf32 = (f", {r['torch_tf32']['median_s'] / r['tilegrad']['median_s']:.0%} of TF32"
                    if "torch_tf32" in r else "")
            out.append(("conv vs cuDNN fp32", name, f"{speed:.0%} of cuDNN{tf32}", "50%",
                        "yes" if speed >= 0.5 else "no"))
        elif r["group"] in ("cross_entropy", "relu", "max_pool2d"):
            frac = r["tilegrad_rate"] / peaks["gbps"]
            out.append(("memory-bound vs copy", name,
                        f"{r['tilegrad_rate']:.0f} GB/s = {frac:.0%} of copy", "70%",
                        "yes" if frac >= 0.7 else "no"))
    return out


def markdown(info, tests, bench_rc, doc):
    lines = ["Measured by `make gpu-check` (bench/gpu_check.py).", "",
             "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()), "",
             f"GPU tests: {tests}", ""]
    if doc is None:
        lines.append(f"The benchmark did not finish ({bench_rc}); see cuda/gpu_bench.log.")
        return "\n".join(lines) + "\n"
    p = doc["peaks"]
    lines += [f"Ceilings measured in the same run: {p['gflops']:.0f} GFLOP/s ({p['gflops_by']}), "
              f"{p['gbps']:.0f} GB/s ({p['gbps_by']}).", "",
              "| goal | case | measured | target | met |", "|---|---|---|---|---|"]
    lines += [f"| {g} | {c} | {m} | {t} | {y} |" for g, c, m, t, y in goals(doc)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--test-timeout", type=int, default=170)
    ap.add_argument("--bench-timeout", type=int, default=240)
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--sizes", default="full", help="bench sizes: full, small or tiny")
    ap.add_argument("--simulate", action="store_true",
                    help="a dry run of this script in Numba's simulator (use --sizes tiny)")
    args = ap.parse_args(argv)
    SIMULATE["on"] = args.simulate
    out = Path(args.out)
    logs = out / "cuda"           # beside the bench's own cuda/results.{json,md}
    logs.mkdir(parents=True, exist_ok=True)
    info = environment()
    print("gpu-check on:", json.dumps(info), flush=True)

    tests = "skipped (--skip-tests)"
    if not args.skip_tests:
        rc, secs, lines = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                "-o", "addopts=-ra", "-k", "cuda", *TESTS],
                               logs / "gpu_tests.log", args.test_timeout)
        summary = next((ln for ln in reversed(lines) if " in " in ln and
                        any(w in ln for w in ("passed", "failed", "error"))), "no summary")
        tests = f"{summary.strip('= ')} (exit {rc}, {secs:.0f} s)"

    results_md = ROOT / "bench" / "RESULTS.md"
    if out.resolve() != (ROOT / "bench" / "results").resolve():
        shutil.copyfile(results_md, out / "RESULTS.md")
        results_md = out / "RESULTS.md"
    cmd = [sys.executable, "-m", "tilegrad.cli", "bench", "all", "--device", "cuda", "--sizes",
           args.sizes, "--out", str(out), "--results-md", str(results_md)]
    bench_rc, secs, _ = _run(cmd, logs / "gpu_bench.log", args.bench_timeout)
    doc = None
    if bench_rc == 0:
        with open(out / "cuda" / "results.json") as f:
            doc = json.load(f)
    body = markdown(info, tests, bench_rc, doc)
    (logs / "gpu_check.md").write_text(body)
    sys.path.insert(0, str(ROOT / "src"))
    from tilegrad.bench.report import update_results_md
    update_results_md(str(results_md), "cuda gpu-check", body)
    print("\n" + body, flush=True)
    return 0 if bench_rc == 0 and "failed" not in tests and "exit 0" in tests else 1


if __name__ == "__main__":
    sys.exit(main())
