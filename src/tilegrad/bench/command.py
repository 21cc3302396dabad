"""``tilegrad bench``: run the kernel and/or training-step cases and write the results."""
import os
import sys

import tilegrad as tg

from . import report
from .harness import measured_peaks
from .run import run_all


def _torch(use_torch):
    if not use_torch:
        return None, "PyTorch left out (--no-torch)"
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed: tilegrad rows only, no ratios"
    return torch, None


def bench(what="all", device="cpu", sizes="full", repeats=10, warmup=2, out="bench/results",
          results_md=None, use_torch=True):
    """Run the cases of ``what`` ('kernels', 'train' or 'all') on ``device``; returns the
    document."""
    from . import blas, kernels, train
    torch, torch_note = _torch(use_torch)
    skipped = [torch_note] if torch_note else []
    dev = tg.device(device)
    if not dev.available:
        raise tg.DeviceUnavailableError(f"bench: device '{device}' is unavailable: {dev.reason}")
    if dev.name == "cpu" and torch is not None:    # both sides on the same number of threads
        torch.set_num_threads(tg.get_num_threads())
    ladder = dev.name == "cuda"
    cases = (kernels.cases(sizes, ladder) if what in ("kernels", "all") else []) + \
            (train.cases(sizes, graph=ladder) if what in ("train", "all") else [])
    print("measuring the machine's peak ...", file=sys.stderr, flush=True)
    peaks = measured_peaks(torch, dev.name)
    rows = run_all(cases, dev, torch, warmup, repeats, peaks)
    profiles = {}
    for case in (c for c in cases if c.group == "train" and not c.name.endswith("(graph)")):
        print(f"profiling {case.name} ...", file=sys.stderr, flush=True)
        profiles[case.name] = train.profile_step(case, dev)
    doc = report.document(report.metadata(torch, device), peaks, rows, profiles, skipped)
    if dev.name == "cpu" and what in ("kernels", "all"):
        print("GEMM against NumPy's BLAS ...", file=sys.stderr, flush=True)
        doc["blas"] = blas.compare(sizes, torch, repeats, warmup)
    folder = os.path.join(out, device)
    os.makedirs(folder, exist_ok=True)
    report.write_json(doc, os.path.join(folder, "results.json"))
    table = report.markdown(doc)
    with open(os.path.join(folder, "results.md"), "w") as f:
        f.write(table)
    report.chart(doc, os.path.join(folder, "ratios.png"))
    if results_md:
        body = table + f"\nChart: `{os.path.join(folder, 'ratios.png')}`.\n"
        report.update_results_md(results_md, device, body)
    print("\n" + table, flush=True)
    return doc
