"""Progress bars, the JSON-lines metrics log, PNG curves and the summary table."""
import json
import os
import sys
import tempfile
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
    ...}`` after each evaluation. It starts from ``history`` (a resumed run's records up to its
    checkpoint; nothing for a new run), written atomically by ``write_metrics``."""

    def __init__(self, path, history=()):
        self.path = path
        write_metrics(path, history)

    def write(self, **record):
        # One short append per record: a kill can tear at most the last line, which
        # read_metrics then drops.
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def write_metrics(path, records):
    """Replace ``path`` by ``records`` atomically: a temporary file in the same folder, flushed to
    disk, then renamed over it. A kill at any moment leaves the old log or the new one whole, never
    an empty or half-written one (which an in-place rewrite would)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".metrics-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_metrics(path):
    """The records of a metrics log. The last line may be torn (a run killed while appending to
    it): it is dropped with a warning. Any other line that is not a JSON record is an error that
    names the file and the line, as the log cannot be trusted past it."""
    with open(path, errors="replace") as f:
        lines = [(no, line) for no, line in enumerate(f, 1) if line.strip()]
    records = []
    for k, (no, line) in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "kind" not in record or "epoch" not in record:
                raise ValueError("not a metrics record")
        except ValueError as e:
            if k == len(lines) - 1:
                print(f"warning: {path}: dropped its last line ({no}), which is cut short or "
                      f"unreadable ({e})", file=sys.stderr, flush=True)
                break
            raise ValueError(f"{path}, line {no}: not a metrics record ({e}); fix or remove "
                             f"that line, or start the run again with --overwrite") from None
        records.append(record)
    return records


_SKIPPED_CURVES = set()   # the curves files already said to be skipped: one line per run


def plot_curves(records, path, metric, title):
    """Training loss against step, and the evaluation metric against step, side by side.
    Without matplotlib (an optional dependency) nothing is written, and the first skip of each
    ``path`` says so and how to get the curves."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if path not in _SKIPPED_CURVES:
            _SKIPPED_CURVES.add(path)
            print(f"note: {path} skipped: matplotlib is not installed (pip install "
                  f"'tilegrad[cli]' for the curves)", file=sys.stderr, flush=True)
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
