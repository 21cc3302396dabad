"""A training run's folder: its files, its lock, and which checkpoints it holds.

A run folder holds ``metrics.jsonl``, ``curves.png``, ``checkpoint-epoch<N>.tg`` and ``run.lock``.
Only names of exactly these patterns are the run's: anything else in the folder (a renamed
backup, notes, another tool's output) is never read as a checkpoint and never removed.

The lock is ``fcntl.flock`` on ``run.lock``, taken without waiting and held for the whole run.
The kernel drops it when the process ends, however it ends (even ``kill -9``), so a crashed run
never leaves a stale lock behind. The file itself stays: removing it while another process may
be opening it would let two runs lock two different files of the same name.
"""
import os
import re

import numpy as np

try:
    import fcntl
except ImportError:       # not POSIX: runs are not locked there (see docs/training-runs.md)
    fcntl = None

METRICS = "metrics.jsonl"
CURVES = "curves.png"
LOCK = "run.lock"
CHECKPOINT = re.compile(r"checkpoint-epoch([1-9][0-9]*)\.tg")   # epochs count from 1
METRICS_TMP = re.compile(r"\.metrics-[A-Za-z0-9_]+\.tmp")        # a rewrite cut short by a kill


class TrainingError(ValueError):
    """A run that cannot start or go on: diverged, refused, or asked to resume from something
    unusable. A ValueError, so that the command prints it as one line."""


def checkpoint_path(out, epoch):
    return os.path.join(out, f"checkpoint-epoch{epoch}.tg")


def checkpoints(folder):
    """``{epoch: path}`` of the files in ``folder`` named exactly ``checkpoint-epoch<N>.tg``."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return {}
    found = {}
    for name in names:
        m = CHECKPOINT.fullmatch(name)
        if m:
            found[int(m.group(1))] = os.path.join(folder, name)
    return found


def find_checkpoint(path):
    """``path`` itself if it is a file, else the checkpoint of the latest epoch in that folder."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise TrainingError(f"{path} is neither a checkpoint nor a run folder")
    found = checkpoints(path)
    if not found:
        raise TrainingError(f"no checkpoint-epoch<N>.tg in {path} (a run stopped before its "
                            f"first epoch ended has none)")
    return found[max(found)]


def run_files(folder):
    """The names in ``folder`` that belong to a run (what ``--overwrite`` removes)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n in (METRICS, CURVES) or CHECKPOINT.fullmatch(n)
                  or METRICS_TMP.fullmatch(n))


def holds_run(folder):
    """Whether ``folder`` already has a run in it: a metrics log or a checkpoint."""
    return os.path.exists(os.path.join(folder, METRICS)) or bool(checkpoints(folder))


def remove(folder, names):
    for name in names:
        try:
            os.unlink(os.path.join(folder, name))
        except FileNotFoundError:
            pass


class RunLock:
    """The run folder's lock, held from ``acquire`` until ``release`` (or the process's end)."""

    def __init__(self, folder):
        self.folder, self.path, self.fd = folder, os.path.join(folder, LOCK), None

    def acquire(self):
        os.makedirs(self.folder, exist_ok=True)
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:   # held by another process: say which, as it wrote into the file
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise TrainingError(f"{self.folder} is in use by another run (process {holder}, "
                                f"holding {self.path}); wait for it to end or choose another "
                                f"--out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            os.close(self.fd)       # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def nonfinite(obj, where=""):
    """The path of the first NaN or infinite number in nested dicts, lists and arrays, or None."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    elif isinstance(obj, (float, np.ndarray, np.generic)) or hasattr(obj, "numpy"):
        a = np.asarray(obj.numpy() if hasattr(obj, "numpy") else obj)    # a Tensor: its values
        return where if a.dtype.kind in "fc" and not np.isfinite(a).all() else None
    else:
        return None
    for k, v in items:
        bad = nonfinite(v, f"{where}.{k}" if where else str(k))
        if bad is not None:
            return bad
    return None
