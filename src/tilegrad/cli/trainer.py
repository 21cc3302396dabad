"""The training loop behind ``tilegrad train``: progress, metrics, curves, checkpoints, resume.

A checkpoint is written atomically after every epoch (``checkpoint-epoch<N>.tg``: model,
optimizer, epoch, step, RNG state, the run's settings). ``--resume`` restores all of it and
continues with the next epoch; batches are shuffled by ``(seed, epoch)``, so on the CPU a resumed
run ends with exactly the parameters of an uninterrupted one.

Everything that can be checked is checked before the run folder is touched (flags, data, the
checkpoint, whether the folder holds another run); then the folder is locked for the whole run.
A diverging run stops naming the epoch and step, and no checkpoint with a NaN or infinite
parameter or evaluation loss is ever written. docs/training-runs.md tells the rules.

Started by ``mpiexec -n P``, the run is data-parallel over P processes (cli/parallel.py): every
rank trains a DistributedDataParallel replica on its share of each global batch, and rank 0
alone reads the checkpoint it resumes from (the others receive it), takes the folder's lock,
logs, plots, prints and writes checkpoints. docs/distributed.md tells the rules.
"""
import contextlib
import math
import os
import time

import tilegrad as tg
from tilegrad.nn.parallel import DistributedDataParallel

from . import parallel
from .report import MetricsLog, Progress, plot_curves, read_metrics
from .rundir import (METRICS, CURVES, RunLock, TrainingError, checkpoint_path, checkpoints,
                     find_checkpoint, holds_run, nonfinite, remove, run_files)
from .steps import NonFinite, StepRunner
from .tasks import RECIPES, make_task

__all__ = ["train", "TrainingError", "find_checkpoint", "checkpoint_path", "make_optimizer"]

# Settings a resumed run takes from its checkpoint (the run's identity).
RESUMED_SETTINGS = ("task", "dataset", "data_dir", "limit", "eval_limit", "batch_size", "lr",
                    "optimizer", "momentum", "seed", "bptt", "clip", "dtype")
# Flags that may be given anew on resume; any other one must match the checkpoint. The data
# folder may move (it must hold the same data); main.RESUME_HELP says the same for -h.
MAY_CHANGE = ("epochs", "device", "out", "data_dir", "log_every", "quiet", "overwrite")
DEFAULTS = dict(seed=0, log_every=10, dtype="float32")
# What a checkpoint written by this trainer holds, and of which type.
CHECKPOINT_KEYS = dict(model=dict, optimizer=dict, epoch=int, step=int, rng=dict, settings=dict)


def make_optimizer(name, params, lr, momentum):
    if name == "sgd":
        return tg.optim.SGD(params, lr=lr, momentum=momentum)
    if name == "adam":
        return tg.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


def train(args, quiet=False):
    """Run (or resume) one training run; returns a summary dict of the last epoch, or None for
    ``--epochs 0`` (a check of the settings and data that writes nothing). In a job of several
    processes every rank calls it; an error leaves the job for the caller to end."""
    job = parallel.join(args.device)
    dtype = tg.get_default_dtype()
    try:
        summary = _train(args, quiet, job)
    finally:
        tg.set_default_dtype(dtype)
    job.leave()
    return summary


def _train(args, quiet, job):
    resume_path, resume = _settle(args, job)
    device = tg.device(args.device)
    device.backend   # an unavailable device stops here, with its reason
    tg.set_default_dtype(getattr(tg, args.dtype))
    tg.manual_seed(args.seed)
    task = make_task(args.task, args, device, job)   # empty or too small data stops here
    if task.num_batches < 1:                    # (tasks check it; a stand-in task may not)
        raise TrainingError(f"{args.task}: the training split gives no batch to train on")
    model = task.model
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum)
    start_epoch, step = 1, 0
    if resume is not None:
        try:
            model.load_state_dict(resume["model"])
            opt.load_state_dict(resume["optimizer"])
            tg.set_rng_state(resume["rng"])
        except (KeyError, TypeError, ValueError) as e:
            raise TrainingError(f"--resume: {resume_path} does not fit this run: {e}") from None
        start_epoch, step = resume["epoch"] + 1, resume["step"]
    if args.epochs < start_epoch:
        if resume is not None:
            raise TrainingError(f"nothing to do: {resume_path} already has {start_epoch - 1} "
                                f"epochs and --epochs is {args.epochs}; nothing was changed")
        if job.main:
            print(f"{args.task}: --epochs 0: settings and data checked ({task.data_name}); "
                  f"nothing was trained or written", flush=True)
        return None
    if job.parallel:    # rank 0's weights everywhere; gradients averaged in backward
        task.net = DistributedDataParallel(task.model)
    out = args.out
    if job.main:
        _plan_folder(args, out, resume_path, start_epoch)   # refuse before creating anything
    with RunLock(out) if job.main else contextlib.nullcontext():
        log = _NoLog()
        if job.main:
            # Again under the lock: another run may have written here since the first look.
            stale = _plan_folder(args, out, resume_path, start_epoch)
            history = _history(resume_path, start_epoch) if resume is not None else []
            remove(out, stale)
            log = MetricsLog(os.path.join(out, METRICS), history)
        summary = _run_epochs(task, opt, args, out, log, start_epoch, step, resume_path,
                              quiet or not job.main, job)
    summary.update(data=task.data_name, device=str(device), out=out)
    return summary


class _NoLog:
    """The metrics log of a rank other than 0: it writes nothing."""

    def write(self, **record):
        pass


def _settle(args, job):
    """Fill in the run's settings: from the checkpoint when resuming (after checking that no flag
    given contradicts it), then the task's recipe, then the defaults. Returns the checkpoint's
    path and contents, or (None, None). Rank 0 reads the checkpoint; the others receive it."""
    path = ckpt = None
    if args.resume:
        if job.main:
            path = find_checkpoint(args.resume)
            ckpt = tg.load(path)     # a file that is not a checkpoint: a ValueError naming it
            _check_checkpoint(ckpt, path)
        path, ckpt = job.from_main((path, ckpt))
        recorded = ckpt["settings"]
        if recorded["task"] != args.task:
            raise TrainingError(f"--resume: {path} is a checkpoint of '{recorded['task']}', not "
                                f"'{args.task}'")
        clashes = [f"--{k.replace('_', '-')} {getattr(args, k)} (the checkpoint has "
                   f"{recorded[k]})" for k in RESUMED_SETTINGS
                   if k not in MAY_CHANGE and k in recorded and getattr(args, k, None) is not None
                   and not _same(getattr(args, k), recorded[k])]
        if clashes:
            raise TrainingError(f"--resume: {path} was trained with other settings: "
                                f"{'; '.join(clashes)}. A resumed run keeps its settings; only "
                                f"{', '.join('--' + k.replace('_', '-') for k in MAY_CHANGE)} "
                                f"may change (or start a new run)")
        for k in RESUMED_SETTINGS:
            if k in recorded and (k not in MAY_CHANGE or getattr(args, k, None) is None):
                setattr(args, k, recorded[k])
    for k, v in dict(RECIPES[args.task], **DEFAULTS).items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if getattr(args, "out", None) is None:
        args.out = os.path.dirname(os.path.abspath(path)) if path else os.path.join("runs",
                                                                                    args.task)
    return path, ckpt


def _same(given, recorded):
    if isinstance(given, (int, float)) and isinstance(recorded, (int, float)):
        return float(given) == float(recorded)
    return given == recorded


def _check_checkpoint(ckpt, path):
    """A clear error, naming the file, for a .tg that is not a finite training checkpoint."""
    wrong = ["the whole file"] if not isinstance(ckpt, dict) else [
        k for k, kind in CHECKPOINT_KEYS.items()
        if not isinstance(ckpt.get(k), kind) or isinstance(ckpt.get(k), bool)]
    if not wrong and not isinstance(ckpt["settings"].get("task"), str):
        wrong = ["settings.task"]
    if not wrong and (ckpt["epoch"] < 1 or ckpt["step"] < 0):
        wrong = ["epoch", "step"]
    if wrong:
        raise TrainingError(f"--resume: {path} is not a checkpoint of tilegrad train "
                            f"({', '.join(wrong)} missing or of the wrong type); give a "
                            f"checkpoint-epoch<N>.tg or its run folder")
    bad = nonfinite({"model": ckpt["model"], "optimizer": ckpt["optimizer"]})
    if bad is not None:
        raise TrainingError(f"--resume: {path} holds NaN or infinite values ({bad}); resume from "
                            f"an earlier checkpoint")


def _plan_folder(args, out, resume_path, start_epoch):
    """The run files to remove from ``out`` before the run starts; a TrainingError when they
    belong to a run that is not to be replaced (no --overwrite). Only reads."""
    if resume_path is None:
        if not holds_run(out):
            return []
        stale = run_files(out)
        what = f"{out} already holds a run ({', '.join(stale)})"
        hint = f"continue it with --resume {out}, or replace it with --overwrite"
    elif _same_folder(os.path.dirname(os.path.abspath(resume_path)), out):
        stale = [os.path.basename(p) for e, p in sorted(checkpoints(out).items())
                 if e >= start_epoch]
        what = (f"{out} has checkpoints after epoch {start_epoch - 1} of {resume_path} "
                f"({', '.join(stale)})")
        hint = "resume from the latest, or pass --overwrite to drop them"
    else:
        if not holds_run(out):
            return []
        stale = run_files(out)
        what = f"--out {out} already holds another run ({', '.join(stale)})"
        hint = "choose another --out, or pass --overwrite to replace that run"
    if stale and not getattr(args, "overwrite", False):
        raise TrainingError(f"{what}: {hint}; nothing was changed")
    return stale


def _same_folder(a, b):
    return os.path.isdir(a) and os.path.isdir(b) and os.path.samefile(a, b)


def _history(resume_path, start_epoch):
    """The resumed run's metric records up to its checkpoint (later ones belong to epochs that
    will be trained again)."""
    path = os.path.join(os.path.dirname(os.path.abspath(resume_path)), METRICS)
    if not os.path.exists(path):
        return []
    return [r for r in read_metrics(path) if r["epoch"] < start_epoch]


def _run_epochs(task, opt, args, out, log, start_epoch, step, last_good, quiet, job):
    """The epochs from ``start_epoch`` to ``args.epochs``: train, check, evaluate, save.
    ``last_good`` is the latest checkpoint known to be finite (the resumed one, or None). Every
    check below gives the same answer on every rank (the parameters are the same everywhere,
    the losses all-reduced); only rank 0 writes."""
    model = task.model
    summary = None
    runner = StepRunner(task, opt, getattr(args, "clip", None), tg.device(args.device),
                        use_graph=getattr(args, "cuda_graph", True), job=job)
    for epoch in range(start_epoch, args.epochs + 1):
        step, train_loss, rate = _train_epoch(task, runner, args, epoch, step, log, quiet,
                                              last_good)
        # The parameters are read back once per epoch, here, rather than after every step (a
        # host sync per step on a GPU): a non-finite one never reaches a checkpoint.
        state = dict(model=model.state_dict(), optimizer=opt.state_dict())
        bad = nonfinite(state)
        if bad is not None:
            _diverged(args.task, f"{bad} is NaN or infinite after epoch {epoch} (step {step})",
                      "not saved", last_good)
        result = task.evaluate()
        loss_key = "test_loss" if "test_loss" in result else "val_loss"
        if not math.isfinite(result[loss_key]):
            _diverged(args.task, f"the {loss_key.replace('_', ' ')} is {result[loss_key]} after "
                      f"epoch {epoch} (step {step})", "not saved", last_good)
        summary = dict(epoch=epoch, step=step, train_loss=train_loss, samples_per_s=rate,
                       **result)
        log.write(kind="epoch", **summary)
        path = checkpoint_path(out, epoch)
        if job.main:
            tg.save(dict(state, epoch=epoch, step=step, rng=tg.get_rng_state(),
                         settings={k: getattr(args, k) for k in RESUMED_SETTINGS},
                         **task.checkpoint_extra()), path)
            plot_curves(read_metrics(log.path), os.path.join(out, CURVES), task.metric,
                        args.task.upper())
            print(_epoch_line(args.task, summary, path), flush=True)
        last_good = path
    return summary


def _diverged(task, what, done, last_good):
    """Stop the run. Every rank of a job comes here alike (what it checks is the same on every
    rank), so the error is ``collective``: rank 0 reports it and no rank aborts the others."""
    error = TrainingError(f"{task}: {what}; {done}. Last good checkpoint: "
                          f"{last_good or 'none (none was written)'}")
    error.collective = True
    raise error


def _train_epoch(task, runner, args, epoch, step, log, quiet, last_good):
    bar = Progress(task.num_batches, f"{args.task} epoch {epoch}/{args.epochs}", enabled=not quiet)
    running, seen, start = None, 0, time.perf_counter()
    try:
        for arrays, n, n_global in task.train_batches(epoch):
            try:
                value = runner.run(arrays, n, n_global)   # read anyway: checking it is free
            except NonFinite as e:
                done = ("this step's update was applied (the step is one CUDA graph); nothing "
                        "was saved" if e.updated else "stopped before updating")
                _diverged(args.task, f"{e.what} is {e.value} at epoch {epoch}, step {step + 1}",
                          done, last_good)
            step += 1
            seen += n_global
            running = value if running is None else 0.95 * running + 0.05 * value
            rate = seen / (time.perf_counter() - start)
            bar.update(loss=f"{running:.4f}", samples_s=f"{rate:.0f}")
            if step % args.log_every == 0:
                log.write(kind="step", epoch=epoch, step=step, loss=running, samples_per_s=rate)
    finally:
        bar.close()
    if running is None:
        raise TrainingError(f"{args.task}: epoch {epoch} had no batch to train on")
    return step, running, seen / (time.perf_counter() - start)


def _epoch_line(task, s, checkpoint):
    metric = (f"test accuracy {s['test_acc']:.4f}" if "test_acc" in s else
              f"validation perplexity {s['val_ppl']:.1f} (unigram {s['unigram_ppl']:.1f})")
    return (f"{task} epoch {s['epoch']}: train loss {s['train_loss']:.4f}, {metric}, "
            f"{s['samples_per_s']:.0f} samples/s; saved {checkpoint}")
