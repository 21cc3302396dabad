"""The hand-written GEMM against the BLAS that NumPy calls, on the same machine in the same run.

Device "cpu"'s ``matmul`` (the C++ extension's GEMM where it is built) against ``numpy.matmul``
(OpenBLAS in NumPy's wheels) and ``torch.mm`` at square sizes, float32 and float64, each
validated against NumPy in float64 before it is timed. The figure that matters is the last
column: tilegrad's GFLOP/s as a share of NumPy's.
"""
import numpy as np

import tilegrad as tg

from .harness import measure, settle, validate

SIZES = {"full": (1024, 2048), "small": (1024,), "tiny": (64,)}


def compare(sizes="full", torch=None, repeats=10, warmup=2):
    """Rows ``{n, dtype, tilegrad_gflops, numpy_gflops, torch_gflops, share_of_numpy}``."""
    be = tg.device("cpu").backend
    rows = []
    for n in SIZES[sizes]:
        for dtype in (np.float32, np.float64):
            rng = np.random.default_rng(n)
            a = rng.standard_normal((n, n)).astype(dtype)
            b = rng.standard_normal((n, n)).astype(dtype)
            ref = a.astype(np.float64) @ b.astype(np.float64)
            tol = 1e-4 if dtype == np.float32 else 1e-10
            validate(f"matmul {n} {np.dtype(dtype).name}", be.matmul(a, b), ref, rtol=tol,
                     atol=tol * np.sqrt(n))
            flops = 2 * n ** 3
            settle()             # NumPy's BLAS threads spin for a while after computing ref
            ours = measure(lambda a=a, b=b: be.matmul(a, b), warmup, repeats).median
            settle()
            blas = measure(lambda a=a, b=b: np.matmul(a, b), warmup, repeats).median
            row = {"n": n, "dtype": np.dtype(dtype).name, "tilegrad_gflops": flops / ours / 1e9,
                   "numpy_gflops": flops / blas / 1e9, "share_of_numpy": blas / ours}
            if torch is not None:
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                settle()
                seconds = measure(lambda ta=ta, tb=tb: torch.mm(ta, tb), warmup, repeats).median
                row["torch_gflops"] = flops / seconds / 1e9
            rows.append(row)
    return rows


def markdown(rows, backend, threads):
    lines = [f"GEMM against NumPy's BLAS (device cpu, backend {backend}, {threads} threads; "
             "share = tilegrad's GFLOP/s / NumPy's):", "",
             "| n x n x n | dtype | tilegrad GFLOP/s | NumPy GFLOP/s | PyTorch GFLOP/s "
             "| share of NumPy |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        th = f"{r['torch_gflops']:.1f}" if "torch_gflops" in r else ""
        lines.append(f"| {r['n']} | {r['dtype']} | {r['tilegrad_gflops']:.1f} | "
                     f"{r['numpy_gflops']:.1f} | {th} | {100 * r['share_of_numpy']:.0f}% |")
    return "\n".join(lines) + "\n"
