"""The tables and the chart of ``tilegrad bench scaling`` (``scaling.py``), from its JSON
document: what was MEASURED (allreduce times and the fit; 1 rank against RANKS ranks) kept apart
from what is PREDICTED (efficiency up to 1024 ranks)."""
from . import scaling_model as sm


def _bytes(n):
    for unit, size in (("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} B"


def _ms(seconds):
    return f"{seconds * 1e3:.4g}"


def _machine(doc):
    m = doc["meta"]
    return (f"Machine: {m['cpu']}, {m['cpu_cores']} cores ({m['platform']}); {m['mpi']}; "
            f"{m['ranks']} ranks of {m['threads_per_rank']} thread(s) each (the one-rank "
            f"baseline too). "
            f"`tilegrad bench scaling --sizes {m['sizes']}`, {m['date']}, commit "
            f"{m['git_commit']}.\n")


def _allreduce(doc):
    ar = doc["allreduce"]
    p, alpha, beta = ar["ranks"], ar["alpha_s"], ar["beta_Bps"]
    lines = [f"### MEASURED: MPI Allreduce (sum, float32), {p} ranks on this machine\n",
             "Median of the repeats (a barrier before each, the slowest rank's time), and the "
             "ring model fitted to them.\n",
             "| message | measured (us) | ring fit (us) | residual |", "|---|---|---|---|"]
    for r in ar["rows"]:
        fit = sm.ring_allreduce_time(r["bytes"], p, alpha, beta)
        lines.append(f"| {_bytes(r['bytes'])} | {r['seconds'] * 1e6:.4g} | {fit * 1e6:.4g} | "
                     f"{(fit - r['seconds']) / r['seconds']:+.0%} |")
    lines.append(f"\nFit, t(S) = 2(p-1) alpha + 2(p-1)/p S / beta by least squares on the "
                 f"relative error: **alpha = {alpha * 1e6:.3g} us, beta = {beta / 1e9:.3g} "
                 f"GB/s**; worst relative residual {ar['worst_relative_residual']:.0%}.\n")
    return lines


def _steps(doc):
    ms, p = doc["measured_steps"], doc["allreduce"]["ranks"]
    head = f"### MEASURED: training steps, 1 rank against {p} ranks (DistributedDataParallel)\n"
    if "unavailable" in ms:
        return [head, f"Not measured: {ms['unavailable']}\n"]
    ar = doc["allreduce"]
    lines = [head, f"Median step times (ms; the slowest rank's). Weak: each of the {p} ranks "
             f"keeps the recipe's batch (ideal ratio 1). Strong: the same global batch split "
             f"{p} ways (ideal ratio 1/{p}). The prediction uses the measured alpha and beta.\n",
             f"| model | 1 rank | {p} ranks, weak | ratio | predicted, no overlap / overlap | "
             f"{p} ranks, strong | ratio |", "|---|---|---|---|---|---|---|"]
    for kind, m in doc["models"].items():
        weak, strong = ms["models"][kind]["weak"], ms["models"][kind]["strong"]
        pred = sm.predict_step(m["step_s"], m["buckets"], p, ar["alpha_s"], ar["beta_Bps"])
        lines.append(
            f"| {kind} | {_ms(m['step_s'])} (batch {m['batch']}) | {_ms(weak['seconds'])} "
            f"(batch {weak['batch']} each) | {weak['seconds'] / m['step_s']:.2f} | "
            f"{_ms(pred['step'])} / {_ms(pred['step_overlap'])} | {_ms(strong['seconds'])} "
            f"(batch {strong['batch']} each) | {strong['seconds'] / m['step_s']:.2f} |")
    return lines + [""] + _torch_steps(doc)


def _torch_steps(doc):
    """The same steps timed in PyTorch in the same run, where they were."""
    ms, p = doc["measured_steps"], doc["allreduce"]["ranks"]
    kinds = [k for k, m in doc["models"].items()
             if "torch_step_s" in m and "torch_seconds" in ms["models"][k]["weak"]]
    if not kinds:
        return []
    lines = [f"PyTorch {doc['meta'].get('torch')} in the same run: the same models, initial "
             f"weights, batches, recipes and threads, with its DistributedDataParallel on gloo "
             f"(ms; the slowest rank's). The last columns are tilegrad's time over PyTorch's.\n",
             f"| model | PyTorch 1 rank | {p} ranks, weak | ratio | {p} ranks, strong | ratio | "
             f"tilegrad / PyTorch: 1 rank, weak, strong |", "|---|---|---|---|---|---|---|"]
    for kind in kinds:
        m, st = doc["models"][kind], ms["models"][kind]
        one, weak, strong = m["torch_step_s"], st["weak"]["torch_seconds"], \
            st["strong"]["torch_seconds"]
        lines.append(
            f"| {kind} | {_ms(one)} | {_ms(weak)} | {weak / one:.2f} | {_ms(strong)} | "
            f"{strong / one:.2f} | {m['step_s'] / one:.2f}, {st['weak']['seconds'] / weak:.2f}, "
            f"{st['strong']['seconds'] / strong:.2f} |")
    return lines + [""]


def _predicted(doc):
    net, a = doc["interconnect"], doc["assumptions"]
    lines = [f"### PREDICTED: weak scaling from alpha = {net['alpha_s'] * 1e6:.3g} us, "
             f"beta = {net['beta_Bps'] / 1e9:.3g} GB/s ({net['source']})\n"]
    if net["local"]:
        lines.append("These PREDICTIONS use this machine's numbers: shared memory between local "
                     "ranks, far below any network's latency. Give `--latency-us` and "
                     "`--bandwidth-gbs` to predict for another interconnect.\n")
    lines += [f"Model: each rank keeps the recipe's batch; T_c is the measured one-rank step; "
              f"gradients (float32) go in DDP's buckets (reverse parameter order, the first up "
              f"to 1 MiB, the others up to {a['bucket_cap_mb']:g} MB), each a ring allreduce. "
              f"With overlap, the backward pass is taken as {a['backward_share']:.3g} of T_c "
              f"(an assumption) and every bucket but the last is reduced during it. "
              f"Efficiency = T_c / step.\n",
              "| model | shape | parameters | gradients | buckets |", "|---|---|---|---|---|"]
    single = [k for k, m in doc["models"].items() if len(m["buckets"]) == 1]
    for kind, m in doc["models"].items():
        lines.append(f"| {kind} | {m['shape']} | {m['params']:,} | {_bytes(m['grad_bytes'])} | "
                     f"{', '.join(_bytes(b) for b in m['buckets'])} |")
    if single:
        lines.append(f"\nOne bucket for all gradients ({', '.join(single)}): it is ready only "
                     "when the backward pass ends, so overlap hides nothing there (the two step "
                     "times are equal).")
    lines += ["", "| model | p | T_c (ms) | allreduce (ms) | step (ms) | step, overlap (ms) | "
              "efficiency | efficiency, overlap |", "|---|---|---|---|---|---|---|---|"]
    for r in doc["predictions"]:
        lines.append(f"| {r['model']} | {r['p']} | {_ms(r['t_compute'])} | "
                     f"{_ms(r['allreduce'])} | {_ms(r['step'])} | {_ms(r['step_overlap'])} | "
                     f"{r['efficiency']:.3f} | {r['efficiency_overlap']:.3f} |")
    return lines


def markdown(doc: dict) -> str:
    """The document as Markdown: the machine, the MEASURED sections, the PREDICTED one."""
    return "\n".join([_machine(doc)] + _allreduce(doc) + _steps(doc) + _predicted(doc)) + "\n"


def plot(doc: dict, path: str):
    """Predicted efficiency against ranks (log2 axis), a colour per model, solid with overlap,
    dashed without; returns ``path``, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    net = doc["interconnect"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, kind in enumerate(doc["models"]):
        rows = [r for r in doc["predictions"] if r["model"] == kind]
        ps = [r["p"] for r in rows]
        ax.plot(ps, [r["efficiency_overlap"] for r in rows], "-o", color=f"C{i}", ms=3,
                label=f"{kind}, overlap")
        # wide and pale beneath the solid line: still visible where the two coincide
        ax.plot(ps, [r["efficiency"] for r in rows], "--", color=f"C{i}", lw=3, alpha=0.45,
                zorder=1, label=f"{kind}, no overlap")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("ranks p")
    ax.set_ylabel("efficiency T_c / step time")
    ax.set_title(f"PREDICTED weak scaling: alpha {net['alpha_s'] * 1e6:.3g} us, beta "
                 f"{net['beta_Bps'] / 1e9:.3g} GB/s\n({net['source']})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
