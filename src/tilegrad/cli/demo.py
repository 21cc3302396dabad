"""``tilegrad demo``: the three reference models trained briefly on the default data, a summary
table and a report folder with the curves. Sized to finish within 5 minutes on 2 CPU cores."""
import argparse
import json
import os
import time

from .report import format_table
from .tasks import RECIPES
from .trainer import train

# Short runs of the reference recipes: how much data each sees, and on how much it is evaluated.
DEMO = {
    "mlp": dict(epochs=2),
    "cnn": dict(epochs=1, limit=19200, eval_limit=2000),
    "lm": dict(epochs=1, limit=200_000),
}


def demo_args(task, out, device, data_dir):
    settings = dict(RECIPES[task], task=task, device=device, data_dir=data_dir, dataset=None,
                    limit=None, eval_limit=None, seed=0, out=os.path.join(out, task),
                    resume=None, log_every=5, bptt=RECIPES[task].get("bptt"),
                    clip=RECIPES[task].get("clip"),
                    # The demo's runs are its own: each demo replaces the previous one's (a run
                    # folder that holds a run is otherwise refused).
                    overwrite=True)
    settings.update(DEMO[task])
    return argparse.Namespace(**settings)


def demo(out="report", device="cpu", data_dir=None):
    rows = []
    for task in ("mlp", "cnn", "lm"):
        start = time.perf_counter()
        # The LM's corpus is not where the images are: --data-dir only serves the image models.
        s = train(demo_args(task, out, device, data_dir if task != "lm" else None))
        result = (f"test accuracy {s['test_acc']:.1%}" if task != "lm" else
                  f"val perplexity {s['val_ppl']:.0f} (unigram {s['unigram_ppl']:.0f})")
        rows.append(dict(model=task.upper(), data=s["data"], steps=s["step"],
                         loss=f"{s['train_loss']:.3f}", result=result,
                         rate=f"{s['samples_per_s']:.0f}", device=s["device"],
                         seconds=f"{time.perf_counter() - start:.0f}",
                         curves=os.path.join(task, "curves.png")))
    table = format_table(rows, [("model", "model"), ("data", "data"), ("steps", "steps"),
                                ("loss", "final train loss"), ("result", "test acc. / val ppl"),
                                ("rate", "samples/s"), ("device", "device"),
                                ("seconds", "seconds"), ("curves", "curves")])
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("# tilegrad demo\n\n" + table + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("\n" + table + f"\n\nReport: {os.path.abspath(out)}/summary.md and the curves beside it.")
    return rows
