"""The training loop behind ``tilegrad train``: progress, metrics, curves, checkpoints, resume.

A checkpoint is written atomically after every epoch (``checkpoint-epoch<N>.tg``: model,
optimizer, epoch, step, RNG state, the run's settings). ``--resume`` restores all of it and
continues with the next epoch; batches are shuffled by ``(seed, epoch)``, so on the CPU a resumed
run ends with exactly the parameters of an uninterrupted one. A NaN or infinite loss stops the
run before the update, naming the step; the checkpoints already written stay as they are.
"""
import glob
import math
import os
import re
import time

import tilegrad as tg
from tilegrad.nn.utils import clip_grad_norm_

from .report import MetricsLog, Progress, plot_curves, read_metrics
from .tasks import make_task

# Settings a resumed run takes from its checkpoint (the run's identity); epochs, device and out
# may change on resume.
RESUMED_SETTINGS = ("task", "dataset", "data_dir", "limit", "eval_limit", "batch_size", "lr",
                    "optimizer", "momentum", "seed", "bptt", "clip")


class TrainingError(ValueError):
    """A run that cannot go on: diverged, or asked to resume from something unusable."""


def make_optimizer(name, params, lr, momentum):
    if name == "sgd":
        return tg.optim.SGD(params, lr=lr, momentum=momentum)
    if name == "adam":
        return tg.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


def find_checkpoint(path):
    """``path`` itself if it is a file, else the checkpoint of the latest epoch in that folder."""
    if os.path.isfile(path):
        return path
    found = glob.glob(os.path.join(path, "checkpoint-epoch*.tg"))
    if not found:
        raise TrainingError(f"--resume: no checkpoint-epoch*.tg in {path}")
    return max(found, key=lambda p: int(re.search(r"epoch(\d+)\.tg$", p).group(1)))


def checkpoint_path(out, epoch):
    return os.path.join(out, f"checkpoint-epoch{epoch}.tg")


def train(args, quiet=False):
    """Run (or resume) one training run; returns a summary dict of the last epoch."""
    resume = None
    if args.resume:
        resume_path = find_checkpoint(args.resume)
        resume = tg.load(resume_path)
        if resume["settings"]["task"] != args.task:
            raise TrainingError(f"--resume: {resume_path} is a checkpoint of "
                                f"'{resume['settings']['task']}', not '{args.task}'")
        for k in RESUMED_SETTINGS:
            if k in resume["settings"]:
                setattr(args, k, resume["settings"][k])
        if args.out is None:
            args.out = os.path.dirname(os.path.abspath(resume_path))
    device = tg.device(args.device)
    device.backend   # an unavailable device stops here, with its reason
    tg.manual_seed(args.seed)
    task = make_task(args.task, args, device)
    model = task.model
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum)
    out = args.out or os.path.join("runs", args.task)
    os.makedirs(out, exist_ok=True)
    start_epoch, step, last_checkpoint = 1, 0, None
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        tg.set_rng_state(resume["rng"])
        start_epoch, step, last_checkpoint = resume["epoch"] + 1, resume["step"], resume_path
    metrics_path = os.path.join(out, "metrics.jsonl")
    log = MetricsLog(metrics_path, keep_through_epoch=start_epoch - 1 if resume else None)
    settings = {k: getattr(args, k) for k in RESUMED_SETTINGS}
    summary = None
    for epoch in range(start_epoch, args.epochs + 1):
        step, train_loss, rate = _train_epoch(task, opt, args, epoch, step, log, quiet,
                                              last_checkpoint)
        result = task.evaluate()
        summary = dict(epoch=epoch, step=step, train_loss=train_loss, samples_per_s=rate,
                       **result)
        log.write(kind="epoch", **summary)
        last_checkpoint = checkpoint_path(out, epoch)
        tg.save(dict(model=model.state_dict(), optimizer=opt.state_dict(), epoch=epoch, step=step,
                     rng=tg.get_rng_state(), settings=settings, **task.checkpoint_extra()),
                last_checkpoint)
        plot_curves(read_metrics(metrics_path), os.path.join(out, "curves.png"), task.metric,
                    args.task.upper())
        print(_epoch_line(args.task, summary, last_checkpoint), flush=True)
    if summary is None:
        raise TrainingError(f"nothing to do: the checkpoint already has {start_epoch - 1} epochs "
                            f"and --epochs is {args.epochs}")
    summary.update(data=task.data_name, device=str(device), out=out)
    return summary


def _train_epoch(task, opt, args, epoch, step, log, quiet, last_checkpoint):
    bar = Progress(task.num_batches, f"{args.task} epoch {epoch}/{args.epochs}", enabled=not quiet)
    params = list(task.model.parameters())
    running, seen, start = None, 0, time.perf_counter()
    try:
        for loss_fn, n in task.train_batches(epoch):
            loss = loss_fn()
            value = loss.item()
            if not math.isfinite(value):
                kept = last_checkpoint or "none (no epoch had finished)"
                raise TrainingError(f"{args.task}: the loss is {value} at epoch {epoch}, step "
                                    f"{step + 1}; stopped before updating. Last good checkpoint: "
                                    f"{kept}")
            opt.zero_grad()
            loss.backward()
            if getattr(args, "clip", None):
                clip_grad_norm_(params, args.clip)
            opt.step()
            step += 1
            seen += n
            running = value if running is None else 0.95 * running + 0.05 * value
            rate = seen / (time.perf_counter() - start)
            bar.update(loss=f"{running:.4f}", samples_s=f"{rate:.0f}")
            if step % args.log_every == 0:
                log.write(kind="step", epoch=epoch, step=step, loss=running, samples_per_s=rate)
    finally:
        bar.close()
    return step, running, seen / (time.perf_counter() - start)


def _epoch_line(task, s, checkpoint):
    metric = (f"test accuracy {s['test_acc']:.4f}" if "test_acc" in s else
              f"validation perplexity {s['val_ppl']:.1f} (unigram {s['unigram_ppl']:.1f})")
    return (f"{task} epoch {s['epoch']}: train loss {s['train_loss']:.4f}, {metric}, "
            f"{s['samples_per_s']:.0f} samples/s; saved {checkpoint}")
