"""Progress bars, the JSON-lines metrics log, PNG curves and the summary table."""
import json
import os
import sys
import time

try:
    from tqdm import tqdm
except ImportError:     # the progress bar is optional: a line every 10% instead
    tqdm = None


class Progress:
    """A tqdm bar with running loss and throughput, or plain lines where tqdm is missing."""

    def __init__(self, total, desc, enabled=True):
        self.total, self.desc, self.count, self.start = total, desc, 0, time.perf_counter()
        self.bar = tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True, mininterval=0.5,
                        disable=not enabled, file=sys.stderr) if tqdm is not None else None
        self.enabled, self.next_print = enabled, 0.1

    def update(self, **postfix):
        self.count += 1
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)
        elif self.enabled and self.count >= self.next_print * self.total:
            self.next_print += 0.1
            items = " ".join(f"{k}={v}" for k, v in postfix.items())
            print(f"{self.desc}: {self.count}/{self.total} {items}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class MetricsLog:
    """Append-only JSON lines: ``{"kind": "step", ...}`` every few steps and ``{"kind": "epoch",
    ...}`` after each evaluation. On resume, records after the checkpoint's epoch are dropped."""

    def __init__(self, path, keep_through_epoch=None):
        self.path = path
        kept = []
        if keep_through_epoch is not None and os.path.exists(path):
            kept = [r for r in read_metrics(path) if r["epoch"] <= keep_through_epoch]
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)

    def write(self, **record):
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(records, path, metric, title):
    """Training loss against step, and the evaluation metric against step, side by side."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    steps = [r for r in records if r["kind"] == "step"]
    evals = [r for r in records if r["kind"] == "epoch"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=1)
    a.set(xlabel="step", ylabel="training loss (running mean)", title=f"{title}: loss")
    label = {"test_acc": "test accuracy", "val_ppl": "validation perplexity"}[metric]
    b.plot([r["step"] for r in evals], [r[metric] for r in evals], "o-")
    if metric == "val_ppl" and evals and "unigram_ppl" in evals[-1]:
        b.axhline(evals[-1]["unigram_ppl"], color="gray", ls="--", label="unigram baseline")
        b.legend()
    b.set(xlabel="step", ylabel=label, title=f"{title}: {label}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_table(rows, columns):
    """A Markdown table of ``rows`` (dicts) with ``columns`` (key, header) pairs."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(str(r.get(k, "")) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule] + body)
