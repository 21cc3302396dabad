"""CUDA graphs, streams and synchronisation, under PyTorch's names (``torch.cuda``).

A training step issues a few hundred kernel launches, each costing the host microseconds; on a
large GPU the small reference models spend more time launching than computing. A CUDA graph
records the step's launches once and replays them with one launch::

    g = tilegrad.cuda.CUDAGraph()
    s = tilegrad.cuda.Stream()
    s.wait_stream(tilegrad.cuda.current_stream())
    with tilegrad.cuda.stream(s):          # warm up: compile the kernels, make the optimizer state
        for _ in range(3):
            step(static_x, static_y)
    tilegrad.cuda.current_stream().wait_stream(s)
    with tilegrad.cuda.graph(g):           # capture: records the step, runs nothing
        static_loss = step(static_x, static_y)
    for x, y in batches:
        static_x.copy_(x)                  # new data goes into the captured inputs
        static_y.copy_(y)
        g.replay()                         # the whole step, one launch
        print(static_loss.item())

As in PyTorch, capturing runs nothing: the captured work first runs at the first ``replay()``,
and every replay reads and writes the same tensors (the inputs, parameters, optimizer state and
outputs that existed or were made during the capture). Host work cannot be captured: a copy to
or from the host, ``synchronize()`` or reading a device value while capturing raises
``tilegrad.errors.CaptureError`` naming the operation. Errors that kernels detect (an index out
of range) are raised at the next synchronisation after the replay, as in eager mode.

On a GPU the capture is CuPy stream capture on a dedicated stream, allocating from a memory pool
private to the graph (so that no address baked into it is handed to another tensor while it
lives). Under ``NUMBA_ENABLE_CUDASIM=1`` the same API records each launch, copy and fill (the
compiled kernel with its bound arguments, device arrays by reference) and replay runs them
again in order, without running any Python code of the model: a step that depends on anything
computed on the host gives a different result when replayed, which is how the tests prove that a
step is capturable. docs/cuda-graphs.md tells the rules.
"""
import contextlib

__all__ = ["CUDAGraph", "graph", "Stream", "stream", "current_stream", "synchronize",
           "is_available", "is_current_stream_capturing"]


def _runtime():
    """The CUDA backend's runtime (memory, streams, capture); DeviceUnavailableError without one."""
    from .backends import device
    device("cuda").backend            # an unavailable device raises here, saying why
    from .backends.cuda import runtime
    return runtime


def is_available():
    """True if device "cuda" can run (a GPU with CuPy and numba-cuda, or the simulator)."""
    from .backends import device
    return device("cuda").available


def synchronize():
    """Wait for all work queued on the device; then raise any error a kernel reported."""
    _runtime().synchronize()


def is_current_stream_capturing():
    """True while a CUDA graph is being captured."""
    return _runtime().capturing()


class Stream:
    """A CUDA stream (a CuPy stream on a GPU; in the simulator every stream is the one default
    stream and the methods only keep the API)."""

    def __init__(self, _cupy_stream=None):
        rt = _runtime()
        if rt.SIMULATOR:
            self._stream = None
        else:                                                   # pragma: no cover - needs a GPU
            self._stream = _cupy_stream or rt.xp.cuda.Stream(non_blocking=True)

    def wait_stream(self, other):
        """Make future work on this stream wait for the work queued on ``other`` so far."""
        if self._stream is not None and other._stream is not None:   # pragma: no cover
            self._stream.wait_event(other._stream.record())

    def synchronize(self):
        """Wait for the work queued on this stream."""
        rt = _runtime()
        rt.forbid_in_capture("Stream.synchronize")
        if self._stream is not None:                            # pragma: no cover - GPU
            self._stream.synchronize()
        rt.check_errors()

    def __eq__(self, other):
        return isinstance(other, Stream) and (
            self._stream is other._stream or (self._stream is not None and other._stream is not None
                                              and self._stream.ptr == other._stream.ptr))

    def __hash__(self):
        return hash(None if self._stream is None else self._stream.ptr)

    def __repr__(self):
        return "<tilegrad.cuda.Stream simulated>" if self._stream is None else \
            f"<tilegrad.cuda.Stream ptr={self._stream.ptr:#x}>"   # pragma: no cover


def current_stream():
    """The stream kernels are launched on now."""
    rt = _runtime()
    if rt.SIMULATOR:
        return Stream()
    return Stream(rt.xp.cuda.get_current_stream())              # pragma: no cover - needs a GPU


@contextlib.contextmanager
def stream(s):
    """Launch on stream ``s`` inside the ``with`` block (``None``: leave the stream as it is)."""
    if s is None or s._stream is None:
        yield
        return
    with s._stream:                                             # pragma: no cover - needs a GPU
        yield


class CUDAGraph:
    """Device work captured once and replayed, as ``torch.cuda.CUDAGraph``.

    Use it through ``tilegrad.cuda.graph(g)``, or call ``capture_begin()`` and ``capture_end()``
    around the work. ``replay()`` runs the captured work again (on the current stream);
    ``reset()`` drops it and the memory it holds.
    """

    def __init__(self):
        self._capture = None
        self._state = "empty"             # "empty", "capturing" or "captured"

    def capture_begin(self):
        if self._state != "empty":
            raise RuntimeError(f"CUDAGraph.capture_begin: this graph is {self._state}; call "
                               f"reset() before capturing again")
        rt = _runtime()
        if rt.capturing():
            raise RuntimeError("CUDAGraph.capture_begin: another graph is being captured")
        capture = rt.Capture()
        capture.begin()
        self._capture, self._state = capture, "capturing"

    def capture_end(self):
        if self._state != "capturing":
            raise RuntimeError(f"CUDAGraph.capture_end: this graph is {self._state}, not "
                               f"capturing")
        try:
            self._capture.end()
        except BaseException:
            self._capture, self._state = None, "empty"
            raise
        self._state = "captured"

    def _abort(self):
        """End a capture that failed, dropping what it recorded."""
        try:
            self._capture.end()
        finally:
            self._capture, self._state = None, "empty"

    def replay(self):
        """Run the captured work once more. Errors that its kernels report are raised at the next
        synchronisation (``synchronize()``, ``.item()``, ``.numpy()``...)."""
        if self._state != "captured":
            raise RuntimeError(f"CUDAGraph.replay: this graph is {self._state}; capture "
                               f"something first")
        self._capture.replay()

    def reset(self):
        """Drop the captured work and the memory it holds; the graph can capture again."""
        if self._state == "capturing":
            raise RuntimeError("CUDAGraph.reset: a capture is in progress")
        self._capture, self._state = None, "empty"

    def num_operations(self):
        """The launches, copies and fills recorded (simulator); None on a GPU or when empty."""
        return None if self._capture is None else len(self._capture)

    def __repr__(self):
        return f"<tilegrad.cuda.CUDAGraph {self._state}>"


class graph:
    """``with tilegrad.cuda.graph(g):`` captures the block's device work into the CUDAGraph ``g``,
    as ``torch.cuda.graph``. Work queued before is finished first. If the block raises, nothing
    is captured and ``g`` stays empty. ``pool`` and ``stream`` are accepted for PyTorch's
    signature; only their default (a private pool, a dedicated stream) is supported."""

    def __init__(self, cuda_graph, pool=None, stream=None, capture_error_mode="global"):
        if not isinstance(cuda_graph, CUDAGraph):
            raise TypeError(f"graph: expects a tilegrad.cuda.CUDAGraph, got "
                            f"{type(cuda_graph).__name__}")
        if pool is not None or stream is not None:
            raise NotImplementedError("graph: sharing a memory pool or choosing the capture "
                                      "stream is not supported; each graph has its own")
        self.cuda_graph = cuda_graph

    def __enter__(self):
        synchronize()
        self.cuda_graph.capture_begin()
        return self.cuda_graph

    def __exit__(self, kind, value, tb):
        if kind is not None:
            self.cuda_graph._abort()
            return False
        self.cuda_graph.capture_end()
        return False
