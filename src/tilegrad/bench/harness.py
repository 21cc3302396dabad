"""Measuring one thing honestly: validate first, warm up, repeat, report the median and spread.

On the CPU each repeat is timed with ``time.perf_counter``, and each side starts after a pause
(``settle``): the thread pools of the libraries compared (tilegrad's OpenMP, PyTorch's, NumPy's
OpenBLAS) keep their worker threads spinning for a while after a call, and a side timed right
after another library ran would find a core taken (measured here: tilegrad's 1024^3 GEMM at 240
GFLOP/s right after NumPy's, 445 GFLOP/s 50 ms later). On a GPU the region is timed with
CUDA events (a ``Timer`` made by ``cuda_timer``) and the L2 cache is cleared before each repeat by
writing a buffer larger than it, so that no repeat starts with its inputs cached.
"""
import math
import statistics
import time

import numpy as np


class ValidationError(AssertionError):
    """A result disagrees with its reference, or holds a NaN or infinity: it is not timed."""


def validate(name, got, ref, rtol=1e-4, atol=1e-5):
    """Check ``got`` against ``ref`` (arrays, or sequences of arrays) elementwise:
    ``|got - ref| <= atol + rtol*|ref|``, no NaN or infinity in ``got``, and the same shapes."""
    gots = got if isinstance(got, (list, tuple)) else [got]
    refs = ref if isinstance(ref, (list, tuple)) else [ref]
    if len(gots) != len(refs):
        raise ValidationError(f"{name}: {len(gots)} outputs, the reference has {len(refs)}")
    for k, (g, r) in enumerate(zip(gots, refs)):
        g, r = np.asarray(g, dtype=np.float64), np.asarray(r, dtype=np.float64)
        if g.shape != r.shape:
            raise ValidationError(
                f"{name}: output {k} has shape {g.shape}, the reference {r.shape}")
        if not np.isfinite(g).all():
            raise ValidationError(f"{name}: output {k} holds NaN or infinity")
        bad = ~(np.abs(g - r) <= atol + rtol * np.abs(r))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValidationError(f"{name}: output {k}: {int(bad.sum())} of {bad.size} elements "
                                  f"differ; first at {idx}: {g[idx]!r} against {r[idx]!r}")


class Timing:
    """Seconds per call: the median of the repeats, with the 10th and 90th percentiles."""

    def __init__(self, seconds):
        self.samples = sorted(seconds)
        self.median = statistics.median(self.samples)
        self.p10 = self.samples[int(0.1 * (len(self.samples) - 1))]
        self.p90 = self.samples[math.ceil(0.9 * (len(self.samples) - 1))]

    def as_dict(self):
        return {"median_s": self.median, "p10_s": self.p10, "p90_s": self.p90,
                "repeats": len(self.samples)}


def on_gpu(device, torch):
    """Whether ``device`` is a real GPU that PyTorch sees too (not Numba's simulator): then timing
    uses CUDA events and PyTorch runs on the GPU."""
    return device.name == "cuda" and torch is not None and torch.cuda.is_available()


def settle(seconds=0.1):
    """Wait for other thread pools' spinning workers to go to sleep before timing on the CPU."""
    time.sleep(seconds)


def cpu_timer(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(fn, warmup=2, repeats=10, timer=cpu_timer, min_seconds=0.0):
    """Call ``fn`` ``warmup`` times, then time ``repeats`` calls (more, up to 10x, while their total
    is under ``min_seconds``, so that very short calls get enough samples)."""
    for _ in range(warmup):
        fn()
    seconds = [timer(fn) for _ in range(repeats)]
    while sum(seconds) < min_seconds and len(seconds) < 10 * repeats:
        seconds.append(timer(fn))
    return Timing(seconds)


def cuda_timer(torch, l2_bytes=256 << 20):
    """A timer for GPU work issued through PyTorch's current stream: CUDA events around the call,
    the L2 cleared before it by overwriting a buffer of ``l2_bytes``."""
    flush = torch.empty(l2_bytes // 4, dtype=torch.float32, device="cuda")

    def timer(fn):
        flush.fill_(1.0)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0

    return timer


def measured_peaks(torch=None, device="cpu", n=2048, copy_mb=256, repeats=5):
    """The machine's peak as measured here: GFLOP/s of a large float32 matmul (PyTorch's where it
    is installed, else NumPy's) and GB/s of a large copy (bytes read plus bytes written). On
    "cuda", on the GPU through PyTorch: TF32 off, 4096^3, and a 1 GiB device-to-device copy."""
    if device == "cuda" and torch is not None and torch.cuda.is_available():
        return _gpu_peaks(torch, repeats)
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    if torch is not None:
        ta = torch.from_numpy(a)
        mm = measure(lambda: torch.mm(ta, ta), warmup=1, repeats=repeats)
        mm_by = f"torch {torch.__version__} mm"
    else:
        mm = measure(lambda: a @ a, warmup=1, repeats=repeats)
        mm_by = "numpy matmul"
    src = np.ones(copy_mb << 18, dtype=np.float32)
    dst = np.empty_like(src)
    cp = measure(lambda: np.copyto(dst, src), warmup=1, repeats=repeats)
    return {"gflops": 2 * n ** 3 / mm.median / 1e9, "gflops_by": f"{mm_by} {n}x{n}x{n} float32",
            "gbps": 2 * src.nbytes / cp.median / 1e9, "gbps_by": f"numpy copy of {copy_mb} MiB"}


def _gpu_peaks(torch, repeats, n=4096, copy_mb=1024):
    if torch is None or not torch.cuda.is_available():
        raise RuntimeError("bench: the GPU's peaks are measured through PyTorch with CUDA, "
                           "which is not available here")
    timer = cuda_timer(torch)
    torch.backends.cuda.matmul.allow_tf32 = False
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(n, n, device="cuda", generator=g)
    b = torch.randn(n, n, device="cuda", generator=g)
    mm = measure(lambda: torch.mm(a, b), warmup=2, repeats=repeats, timer=timer)
    src = torch.randn(copy_mb << 18, device="cuda", generator=g)
    dst = torch.empty_like(src)
    cp = measure(lambda: dst.copy_(src), warmup=2, repeats=repeats, timer=timer)
    return {"gflops": 2 * n ** 3 / mm.median / 1e9,
            "gflops_by": f"torch {torch.__version__} mm {n}x{n}x{n} float32, TF32 off, on the GPU",
            "gbps": 2 * src.numel() * 4 / cp.median / 1e9,
            "gbps_by": f"torch device-to-device copy of {copy_mb} MiB"}
