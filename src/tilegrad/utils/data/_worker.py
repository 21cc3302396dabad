"""What runs inside a DataLoader worker process, and what it sends back.

A worker gets ``(task_id, indices)`` messages on its own index queue, fetches and collates that
batch, and puts ``(task_id, payload)`` on the result queue shared by all workers; ``None`` tells
it to stop, ``RESET`` (persistent workers, next epoch) to restart its fetcher. The payload is the
batch pickled here, in the worker: a batch that cannot be pickled then becomes an error the main
process raises, rather than a failure inside the queue's feeder thread that would leave the
main process waiting. An exception in the worker travels as an ``ExceptionWrapper`` holding its
traceback text, and is raised again in the main process.

Seeding follows PyTorch: worker ``i`` of an iteration with base seed ``b`` seeds Python's
``random`` and tilegrad's global generators with ``b + i``, and NumPy's legacy global generator
with a value derived from ``(b, i)``; ``get_worker_info()`` tells the code running in a worker
which worker it is (None in the main process).
"""
from __future__ import annotations

import os
import pickle
import queue
import random
import sys
import traceback
from typing import Any

import numpy as np

RESET = "reset"
_POLL_S = 5.0        # how often an idle worker checks that the main process is still there
_info = [None]


class WorkerInfo:
    """Which worker this is: ``id``, ``num_workers``, ``seed`` and its copy of ``dataset``."""

    def __init__(self, id: int, num_workers: int, seed: int, dataset: Any) -> None:
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self) -> str:
        return (f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed}, "
                f"dataset={type(self.dataset).__name__})")


def get_worker_info() -> WorkerInfo | None:
    """In a DataLoader worker process, its ``WorkerInfo``; in the main process, None."""
    return _info[0]


class ExceptionWrapper:
    """An exception caught in a worker, as its type and traceback text (both picklable)."""

    def __init__(self, where: str) -> None:
        exc_type, exc, tb = sys.exc_info()
        self.exc_type, self.where = exc_type, where
        self.text = "".join(traceback.format_exception(exc_type, exc, tb))

    def reraise(self) -> None:
        """Raise the exception again, its message holding the worker's traceback."""
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.text}"
        if self.exc_type is KeyError:     # KeyError's str() is its repr: keep the lines
            msg = _KeyErrorMessage(msg)
        try:
            exception = self.exc_type(msg)
        except Exception:        # a type whose constructor wants other arguments
            raise RuntimeError(msg) from None
        raise exception


class _KeyErrorMessage(str):
    def __repr__(self) -> str:
        return str(self)


class IterableEnd:
    """A worker's IterableDataset copy is exhausted."""

    def __init__(self, worker_id: int) -> None:
        self.worker_id = worker_id


def _seed(base_seed, worker_id):
    from ... import manual_seed
    from ...backends.cpu import set_num_threads
    seed = base_seed + worker_id
    random.seed(seed)
    manual_seed(seed)
    np.random.seed(np.random.SeedSequence([base_seed, worker_id]).generate_state(4))
    set_num_threads(1)     # as torch: a forked worker must not share the parent's thread pool
    return seed


def _payload(data, worker_id):
    try:
        return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return pickle.dumps(ExceptionWrapper(f"pickling a batch in DataLoader worker process "
                                             f"{worker_id} (a collate_fn returning tensors needs "
                                             f"picklable tensors)"))


def worker_loop(dataset: Any, make_fetcher: Any, index_queue: Any, result_queue: Any,
                base_seed: int, init_fn: Any, worker_id: int, num_workers: int) -> None:
    """The body of worker ``worker_id``: seed, call ``init_fn``, then serve index messages."""
    where = f"in DataLoader worker process {worker_id}"
    fetcher = init_error = None
    try:
        _info[0] = WorkerInfo(worker_id, num_workers, _seed(base_seed, worker_id), dataset)
        if init_fn is not None:
            init_fn(worker_id)
        fetcher = make_fetcher()
    except Exception:
        init_error = ExceptionWrapper(where)
    parent = os.getppid()
    while True:
        try:
            msg = index_queue.get(timeout=_POLL_S)
        except queue.Empty:
            if os.getppid() != parent:       # the main process died without telling us
                break
            continue
        if msg is None:
            break
        if msg == RESET:
            if init_error is None:
                fetcher = make_fetcher()
            continue
        task_id, index = msg
        if init_error is not None:
            data = init_error
        else:
            try:
                data = fetcher.fetch(index)
            except StopIteration:
                data = IterableEnd(worker_id)
            except Exception:
                data = ExceptionWrapper(where)
        result_queue.put((task_id, _payload(data, worker_id)))
    # The main process reads no more results: do not wait at exit for the queue to drain.
    result_queue.cancel_join_thread()
    result_queue.close()
