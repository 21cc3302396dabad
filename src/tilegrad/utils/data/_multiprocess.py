"""The worker processes of a DataLoader with ``num_workers > 0``, and its iterator over them.

The main process runs the sampler and hands each batch's indices to the workers in turn
(round-robin), keeping ``prefetch_factor`` batches per worker in flight. Results come back on one
queue in whatever order the workers finish; the iterator keeps the early ones until their turn,
so batches come out in the sampler's order. With the default
collate function the workers collate into NumPy arrays, made tensors here, so that a batch
crosses processes as NumPy arrays.

Errors: an exception in a worker is raised again here with the worker's traceback; a worker that
dies (killed, segfault) is an error naming its pid, found within ``_POLL_S`` seconds; ``timeout``
bounds the wait for one batch. Workers stop when the iterator is exhausted or dropped (or, for
persistent workers, with the DataLoader); a worker whose main process disappears exits by itself.
"""
from __future__ import annotations

import itertools
import pickle
import queue
from typing import Any

from ._collate import to_tensors
from ._worker import RESET, ExceptionWrapper, IterableEnd, worker_loop

_POLL_S = 5.0        # how often a waiting main process checks that its workers are alive
_JOIN_S = 5.0        # how long a stopping worker gets before it is terminated


class WorkerPool:
    """``num_workers`` started worker processes, each with its index queue, and the shared
    result queue."""

    def __init__(self, loader: Any, make_fetcher: Any, base_seed: int) -> None:
        import multiprocessing
        ctx = loader.multiprocessing_context
        if ctx is None or isinstance(ctx, str):
            ctx = multiprocessing.get_context(ctx)
        self.result_queue = ctx.Queue()
        self.index_queues, self.workers = [], []
        for i in range(loader.num_workers):
            index_queue = ctx.Queue()
            w = ctx.Process(target=worker_loop, daemon=True,
                            args=(loader.dataset, make_fetcher, index_queue, self.result_queue,
                                  base_seed, loader.worker_init_fn, i, loader.num_workers))
            w.start()
            self.index_queues.append(index_queue)
            self.workers.append(w)
        self.generation = 0      # which iterator the workers serve (persistent workers)
        self.closed = False

    def get(self, timeout: float) -> tuple[Any, Any]:
        """The next ``(task_id, batch)`` from any worker, waiting at most ``timeout`` seconds
        (0: forever), checking every few seconds that the workers are alive."""
        waited = 0.0
        while True:
            step = _POLL_S if not timeout else min(_POLL_S, timeout - waited)
            try:
                task_id, payload = self.result_queue.get(timeout=step)
                return task_id, pickle.loads(payload)
            except queue.Empty:
                waited += step
            dead = [str(w.pid) for w in self.workers if not w.is_alive()]
            if dead:
                self.shutdown()
                raise RuntimeError(f"DataLoader worker (pid(s) {', '.join(dead)}) exited "
                                   f"unexpectedly")
            if timeout and waited >= timeout:
                raise RuntimeError(f"DataLoader timed out after {timeout} seconds")

    def shutdown(self) -> None:
        """Ask every worker to stop, wait for it a little, end it otherwise."""
        if self.closed:
            return
        self.closed = True
        for q in self.index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for w in self.workers:
            w.join(_JOIN_S)
            if w.is_alive():
                w.terminate()
                w.join()
        for q in (*self.index_queues, self.result_queue):
            q.cancel_join_thread()
            q.close()

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:      # at interpreter exit the queues may be gone already
            pass


class MultiProcessIter:
    """One pass of a DataLoader over worker processes (see the module docstring)."""

    def __init__(self, loader: Any, pool: WorkerPool, persistent: bool) -> None:
        self.loader, self.pool, self.persistent = loader, pool, persistent
        self.convert = loader._workers_collate_numpy
        self.sampler_iter = iter(loader._index_sampler)
        pool.generation += 1
        if pool.generation > 1:          # a new epoch of persistent workers
            for q in pool.index_queues:
                q.put(RESET)
        self.generation = pool.generation
        self.cycle = itertools.cycle(range(len(pool.workers)))
        self.active = [True] * len(pool.workers)
        self.tasks = {}                 # task number -> [worker id], then [worker id, batch]
        self.sent = self.next_out = 0
        for _ in range(loader.prefetch_factor * len(pool.workers)):
            self._send()

    def _send(self) -> None:
        """Give the sampler's next batch of indices to the next worker still active."""
        if not any(self.active):
            return
        try:
            index = next(self.sampler_iter)
        except StopIteration:
            return
        worker = next(w for w in self.cycle if self.active[w])
        self.pool.index_queues[worker].put(((self.generation, self.sent), index))
        self.tasks[self.sent] = [worker]
        self.sent += 1

    def __iter__(self) -> MultiProcessIter:
        return self

    def __len__(self) -> int:
        return len(self.loader)

    def __next__(self) -> Any:
        while True:
            # Skip the turns of workers whose IterableDataset ran out: they bring nothing more.
            while self.next_out < self.sent and len(self.tasks[self.next_out]) == 1 \
                    and not self.active[self.tasks[self.next_out][0]]:
                del self.tasks[self.next_out]
                self.next_out += 1
            if self.next_out >= self.sent:
                self._finish()
                raise StopIteration
            entry = self.tasks[self.next_out]
            if len(entry) == 2:
                del self.tasks[self.next_out]
                self.next_out += 1
                return self._process(entry[1])
            (generation, task), data = self.pool.get(self.loader.timeout)
            if generation != self.generation:       # left over from an earlier epoch
                continue
            if isinstance(data, IterableEnd):
                self.active[data.worker_id] = False
                self._send()
            elif task in self.tasks:
                self.tasks[task].append(data)

    def _process(self, data: Any) -> Any:
        self._send()
        if isinstance(data, ExceptionWrapper):
            self._finish()
            data.reraise()
        return to_tensors(data) if self.convert else data

    def _finish(self) -> None:
        if not self.persistent:
            self.pool.shutdown()

    def __del__(self) -> None:
        try:
            self._finish()
        except Exception:      # at interpreter exit the queues may be gone already
            pass
