"""Running cases side by side: validate each side, then time it, then derive the rates.

A row holds both sides' timings (median, 10th and 90th percentiles), GFLOP/s or GB/s from the
case's formulas, the time ratio tilegrad / PyTorch (below 1 means tilegrad is faster), and the
fraction of the machine's measured peak that tilegrad reaches. A case that cannot be measured (no
PyTorch, an unavailable device, a failed validation) says why instead of giving numbers.
"""
import sys

from .harness import ValidationError, cpu_timer, cuda_timer, measure, on_gpu, settle, validate


def _rate(case, seconds):
    if case.bound == "memory" or not case.flops:
        return case.bytes / seconds / 1e9, "GB/s"
    return case.flops / seconds / 1e9, "GFLOP/s"


def _check(name, prep, out):
    validate(name, prep.to_numpy(out), prep.reference(), prep.rtol, prep.atol)


def _torch_tf32(torch, enabled):
    """TF32 off for the main PyTorch measurement on a GPU; back to PyTorch's defaults (matmul off,
    cuDNN on) for the second row."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = enabled


def run_case(case, device, torch, warmup, repeats, peaks, min_seconds=0.2):
    """Measure one case on ``device`` against PyTorch; returns a row dict."""
    row = dict(group=case.group, name=case.name, shape=case.shape, flops=case.flops,
               bytes=case.bytes, bound=case.bound, device=device.name)
    gpu = on_gpu(device, torch)
    timer = cuda_timer(torch) if gpu else cpu_timer
    prep = case.setup(device, torch)
    try:
        _check(f"{case.name} (tilegrad)", prep, prep.tilegrad())
    except ValidationError as e:
        row["skipped"] = f"tilegrad's result is wrong, not timed: {e}"
        return row
    if prep.launches is not None:
        row["launches"] = prep.launches()
    if not gpu:
        settle()
    t = measure(prep.tilegrad, warmup, repeats, timer, min_seconds)
    rate, unit = _rate(case, t.median)
    peak = peaks["gflops"] if unit == "GFLOP/s" else peaks["gbps"]
    row.update(tilegrad=t.as_dict(), unit=unit, tilegrad_rate=rate, peak_fraction=rate / peak)
    if prep.torch is None:
        row["torch_skipped"] = "PyTorch is not installed"
        return row
    if gpu:
        _torch_tf32(torch, False)
    _check(f"{case.name} (PyTorch)", prep, prep.torch())
    if not gpu:
        settle()
    tt = measure(prep.torch, warmup, repeats, timer, min_seconds)
    row.update(torch=tt.as_dict(), torch_rate=_rate(case, tt.median)[0],
               ratio=t.median / tt.median)
    if gpu and case.group in ("conv2d", "train"):   # where PyTorch's TF32 default differs
        _torch_tf32(torch, True)
        tf = measure(prep.torch, warmup, repeats, timer, min_seconds)
        row.update(torch_tf32=tf.as_dict(), ratio_tf32=t.median / tf.median)
        _torch_tf32(torch, False)
    return row


def run_all(cases, device, torch, warmup=2, repeats=10, peaks=None, progress=True):
    """Every case in turn, with a progress line each; returns the rows."""
    rows = []
    for k, case in enumerate(cases, 1):
        if progress:
            print(f"[{k}/{len(cases)}] {case.name} ...", end="", file=sys.stderr, flush=True)
        row = run_case(case, device, torch, warmup, repeats, peaks)
        rows.append(row)
        if progress:
            print(" " + _summary(row), file=sys.stderr, flush=True)
    return rows


def _summary(row):
    if "skipped" in row:
        return f"skipped: {row['skipped']}"
    s = f"{row['tilegrad']['median_s'] * 1e3:.3f} ms"
    if "torch" in row:
        s += f", PyTorch {row['torch']['median_s'] * 1e3:.3f} ms, ratio {row['ratio']:.2f}"
    return s
