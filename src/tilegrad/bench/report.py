"""Machine metadata, the JSON document, the Markdown table and the chart of ratios."""
import datetime
import json
import os
import platform
import re
import subprocess

import numpy as np

SCHEMA = "tilegrad-bench/1"
ROW_KEYS = {"group", "name", "shape", "flops", "bytes", "bound", "device"}
TIMING_KEYS = {"median_s", "p10_s", "p90_s", "repeats"}


def _version(name):
    try:
        return __import__(name).__version__
    except Exception:   # noqa: BLE001  (not installed, or broken: either way, no version)
        return None


def _dist_version(dist):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:   # noqa: BLE001
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+uncommitted" if dirty else "")) or None


def _numpy_blas():
    try:
        return np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:   # noqa: BLE001  (older NumPy: no dict mode)
        return None


def metadata(torch=None, device="cpu"):
    """What the numbers were measured on, and with which software."""
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device, "cpu": _cpu_model(), "cpu_cores": os.cpu_count(),
        "platform": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "numpy_blas": _numpy_blas(), "numba": _version("numba"),
        "numba_cuda": _dist_version("numba-cuda"), "cupy": _version("cupy"),
        "torch": None if torch is None else torch.__version__,
        "git_commit": _git_commit(), "gpu": None, "gpu_driver": None, "cuda": None,
    }
    if device == "cpu":
        from tilegrad.backends import cpu
        ext, _ = cpu.extension()
        meta["cpu_backend"] = cpu.current() + (f", {ext.simd()}" if cpu.current() == "cpp" else "")
        meta["tilegrad_threads"] = cpu.get_num_threads()
    if torch is not None:
        meta["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            meta["gpu"] = torch.cuda.get_device_name(0)
            meta["cuda"] = torch.version.cuda
            try:
                meta["gpu_driver"] = subprocess.run(
                    ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                    capture_output=True, text=True, timeout=10).stdout.strip() or None
            except (OSError, subprocess.SubprocessError):
                pass
    return meta


def document(meta, peaks, rows, profiles, skipped):
    return {"schema": SCHEMA, "meta": meta, "peaks": peaks, "rows": rows,
            "profiles": profiles, "skipped": skipped}


def check_document(doc):
    """Raise ValueError unless ``doc`` has the layout ``document`` writes (the JSON schema)."""
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"bench JSON: schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    for key in ("meta", "peaks", "rows", "profiles", "skipped"):
        if key not in doc:
            raise ValueError(f"bench JSON: no '{key}'")
    for key in ("date", "cpu", "cpu_cores", "python", "numpy", "torch", "git_commit", "gpu"):
        if key not in doc["meta"]:
            raise ValueError(f"bench JSON: meta has no '{key}'")
    if not {"gflops", "gbps"} <= set(doc["peaks"]):
        raise ValueError("bench JSON: peaks need 'gflops' and 'gbps'")
    for k, row in enumerate(doc["rows"]):
        missing = ROW_KEYS - set(row)
        if missing:
            raise ValueError(f"bench JSON: row {k} lacks {sorted(missing)}")
        if "skipped" in row:
            continue
        for side in ("tilegrad",) + (("torch",) if "torch" in row else ()):
            if set(row[side]) != TIMING_KEYS:
                raise ValueError(f"bench JSON: row {k} '{side}' has keys {sorted(row[side])}")
        if not {"unit", "tilegrad_rate", "peak_fraction"} <= set(row):
            raise ValueError(f"bench JSON: row {k} lacks its rate")
        if "torch" in row and "ratio" not in row:
            raise ValueError(f"bench JSON: row {k} has a PyTorch timing but no ratio")
    return doc


def write_json(doc, path):
    check_document(doc)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


def _ms(t):
    return f"{t['median_s'] * 1e3:.3f} ({t['p10_s'] * 1e3:.3f}-{t['p90_s'] * 1e3:.3f})"


def _launches(n):
    """A training step's device operations per step, as the table shows them."""
    if n.get("graphs"):
        extra = n["kernels"] + n["copies"]
        return f"{n['graphs']} graph launch{'es' if n['graphs'] > 1 else ''}/step" + \
            (f" + {extra} other" if extra else "")
    return f"{n['kernels']} kernels + {n['copies']} copies/fills per step"


def markdown(doc):
    """The run as Markdown: metadata, peaks, one table of rows, where each training step's time
    goes."""
    m, p = doc["meta"], doc["peaks"]
    lines = [f"Measured {m['date']} on {m['cpu']} ({m['cpu_cores']} cores)"
             + (f", GPU {m['gpu']} (driver {m['gpu_driver']}, CUDA {m['cuda']})"
                if m["gpu"] else "")
             + f"; device `{m['device']}`"
             + (f" (backend {m['cpu_backend']}, {m['tilegrad_threads']} threads)"
                if m.get("cpu_backend") else "")
             + f"; Python {m['python']}, NumPy {m['numpy']}"
             + (f" ({m['numpy_blas']})" if m.get("numpy_blas") else "")
             + f", PyTorch {m['torch'] or 'not installed'}"
             + (f" ({m['torch_threads']} threads)" if m.get("torch_threads") else "")
             + f", commit {m['git_commit']}.", "",
             f"Measured peak: {p['gflops']:.1f} GFLOP/s ({p['gflops_by']}), "
             f"{p['gbps']:.1f} GB/s ({p['gbps_by']}).", "",
             "Times in ms: median (10th-90th percentile). Ratio = tilegrad time / PyTorch time "
             "(below 1: tilegrad faster). % of peak: tilegrad's rate over the measured peak; "
             "memory-bound rows whose data fit in the caches can pass 100% of the large copy's "
             "bandwidth.", "",
             "| group | case | shape | tilegrad ms | PyTorch ms | tilegrad rate | PyTorch rate "
             "| ratio | % of peak |", "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['group']} | {r['name']} | {r['shape']} | skipped: {r['skipped']} "
                         f"| | | | | |")
            continue
        th = _ms(r["torch"]) if "torch" in r else r.get("torch_skipped", "")
        th_rate = f"{r['torch_rate']:.1f} {r['unit']}" if "torch" in r else ""
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        if "ratio_tf32" in r:
            ratio += f" (TF32: {r['ratio_tf32']:.2f})"
        name = r["name"] + (f" [{_launches(r['launches'])}]" if "launches" in r else "")
        lines.append(f"| {r['group']} | {name} | {r['shape']} | {_ms(r['tilegrad'])} | {th} "
                     f"| {r['tilegrad_rate']:.1f} {r['unit']} | {th_rate} | {ratio} "
                     f"| {100 * r['peak_fraction']:.1f}% |")
    for name, prof in doc["profiles"].items():
        total = prof["_total"]
        lines += ["", f"Where tilegrad's {name} training step spends its {total * 1e3:.1f} ms "
                      f"(backend primitives; 'framework' is the Python around them):", "",
                  "| primitive | ms per step | share |", "|---|---|---|"]
        items = sorted(((k, v) for k, v in prof.items() if not k.startswith("_")),
                       key=lambda kv: -kv[1])
        for k, v in items[:8] + [("framework", prof["_python"])]:
            lines.append(f"| {k} | {v * 1e3:.2f} | {100 * v / total:.0f}% |")
    if doc.get("blas"):
        from .blas import markdown as blas_markdown
        lines += ["", blas_markdown(doc["blas"], m.get("cpu_backend"), m.get("tilegrad_threads"))]
    if doc["skipped"]:
        lines += ["", "Not measured: " + "; ".join(doc["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def update_results_md(path, device, body):
    """Replace this device's section of ``path`` (``## <device>``), keeping the others."""
    text = open(path).read() if os.path.exists(path) else \
        "# Benchmark results\n\nWritten by `make bench` (`tilegrad bench all`).\n"
    section = f"## {device}\n\n{body}"
    pattern = re.compile(rf"^## {re.escape(device)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else \
        text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "\n")


def chart(doc, path):
    """Horizontal bars of the time ratio tilegrad / PyTorch per row (log scale, 1 marked)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in doc["rows"] if "ratio" in r]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r["ratio"] for r in rows],
            color=["tab:green" if r["ratio"] <= 1 else "tab:red" for r in rows])
    ax.set_yticks(range(len(rows)), [r["name"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xlabel("time ratio tilegrad / PyTorch (log scale; below 1: tilegrad faster)")
    ax.set_title(f"tilegrad against PyTorch on {doc['meta']['device']} ({doc['meta']['cpu']})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
