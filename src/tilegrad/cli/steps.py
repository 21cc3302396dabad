"""One training step of ``tilegrad train``: eager, or on "cuda" captured once as a CUDA graph
and replayed for every batch of the same shapes.

A step is: the task's loss on the batch, ``zero_grad``, ``backward``, gradient clipping (the LM),
``optimizer.step()``, and the task's ``after_step`` (the LM's state carried to the next window).

Eager, the loss is read before the update (and the gradient norm before the step), so a NaN
stops the run before it reaches the parameters. Captured, the whole step is one graph: its
first batch runs eagerly (it compiles the kernels and makes the optimizer's state), the second
is captured into a graph over tensors that stay in place (the batch's inputs, the parameters,
the optimizer state, the loss), and every later batch of the same shapes is copied into those
inputs and replayed with one launch. A batch of other shapes (the last, shorter one of an
epoch) runs eagerly. The loss and norm are read after the replay, so a NaN is caught one update
later; the run still stops with its last good checkpoint untouched. A step that cannot be
captured (it reads a device value on the host, say) runs eagerly, and the trainer says why once.

In a run of several processes every step is eager (the gradient allreduce is host work that a
graph cannot hold). Each rank's mean loss is scaled by its share of the global batch
(``size * n / n_global``, 1 for even shares) before backward, so that the averaged gradient is
the global batch's; a rank whose share of a short last batch is empty backpropagates zero
through every parameter, so that it still takes part in the allreduce. The loss checked and
returned is the global batch's mean loss, all-reduced, so every rank takes the same decision on
a NaN.
"""
import math
import sys

import tilegrad as tg
from tilegrad.errors import CaptureError
from tilegrad.nn.utils import clip_grad_norm_

from .parallel import Job


class NonFinite(Exception):
    """A non-finite loss or gradient norm: ``what``, ``value`` and whether the update was done."""

    def __init__(self, what, value, updated):
        super().__init__(what)
        self.what, self.value, self.updated = what, value, updated


class StepRunner:
    """Runs the steps of one training run (``run(arrays)`` per batch; returns the loss)."""

    def __init__(self, task, opt, clip, device, use_graph=True, log=None, job=None):
        self.task, self.opt, self.clip, self.device = task, opt, clip, device
        self.job = job or Job()
        self.params = list(task.model.parameters())
        self.use_graph = bool(use_graph) and device.name == "cuda" and not self.job.parallel
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.graph = self.static = self.outputs = self.key = None
        self.eager_steps = self.replays = 0
        self.why_eager = None

    # ------------------------------------------------------------ eager
    def _tensors(self, arrays):
        return tuple(tg.tensor(a, device=self.device) for a in arrays)

    def _shared_loss(self, arrays, n, n_global):
        """This rank's loss, scaled by its share of the global batch, and the global batch's
        mean loss (all-reduced)."""
        size = self.job.size
        if n == 0:      # an empty share: zero gradients, but every parameter's hook fires
            loss = sum(p.sum() for p in self.params) * 0.0
        else:
            loss = self.task.loss(self._tensors(arrays))
            if n * size != n_global:
                loss = loss * (n * size / n_global)
        return loss, float(self.job.sum([loss.item()])[0]) / size

    def eager(self, arrays, n=None, n_global=None):
        """One step, reading the loss and the norm before the update."""
        self.eager_steps += 1
        if self.job.parallel:
            loss, value = self._shared_loss(arrays, n, n_global)
        else:
            loss = self.task.loss(self._tensors(arrays))
            value = loss.item()
        if not math.isfinite(value):
            raise NonFinite("the loss", value, updated=False)
        self.opt.zero_grad()
        loss.backward()
        if self.clip:
            norm = float(clip_grad_norm_(self.params, self.clip))
            if not math.isfinite(norm):
                raise NonFinite("the gradient norm", norm, updated=False)
        self.opt.step()
        self.task.after_step()
        return value

    # ------------------------------------------------------------ captured
    def _whole_step(self, inputs):
        loss = self.task.loss(inputs)
        self.opt.zero_grad()
        loss.backward()
        norm = clip_grad_norm_(self.params, self.clip) if self.clip else None
        self.opt.step()
        self.task.after_step()
        return loss, norm

    def _capture(self, arrays):
        """Capture the step over static inputs holding ``arrays``; False if it cannot be."""
        static = self._tensors(arrays)
        graph = tg.cuda.CUDAGraph()
        try:
            with tg.cuda.graph(graph):
                outputs = self._whole_step(static)
        except CaptureError as e:
            self.why_eager = str(e)
            self.log(f"the training step cannot be captured as a CUDA graph ({e}); it runs "
                     f"eagerly")
            return False
        self.graph, self.static, self.outputs = graph, static, outputs
        self.key = _key(arrays)
        return True

    def run(self, arrays, n=None, n_global=None):
        """One training step on the host arrays ``arrays`` (this rank's ``n`` of the global
        batch's ``n_global`` samples); returns the loss as a float."""
        if not self.use_graph or self.why_eager is not None or self.eager_steps == 0:
            return self.eager(arrays, n, n_global)
        if self.graph is None:
            if not self._capture(arrays):
                return self.eager(arrays)
        elif _key(arrays) != self.key:
            return self.eager(arrays)
        else:
            with tg.no_grad():
                for s, a in zip(self.static, arrays):
                    s.copy_(tg.tensor(a, device=self.device))
        self.graph.replay()
        self.replays += 1
        loss, norm = self.outputs
        value = loss.item()
        if not math.isfinite(value):
            raise NonFinite("the loss", value, updated=True)
        if norm is not None and not math.isfinite(float(norm)):
            raise NonFinite("the gradient norm", float(norm), updated=True)
        return value


def _key(arrays):
    return tuple((a.shape, a.dtype.str) for a in arrays)
