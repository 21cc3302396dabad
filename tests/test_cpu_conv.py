"""The C++ convolution kernels (csrc/conv.cpp) against the NumPy backend run in float64: forward,
backward-data and backward-weight on Hypothesis-chosen shapes, strides and paddings (the grouped
small-image tiles, the row tiles of a large image and the 1x1 shortcut among them), the CNN's
layers at a small batch, one and two threads, and bad input at the bindings."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tilegrad.testing import odd_sizes
from cpu_helpers import bad_input, cases, check, cpp, ext, rand, spec

DTYPES = [np.float32, np.float64]
ODD = odd_sizes((1, 3, 5, 7, 9))


@st.composite
def geometries(draw):
    """(x shape, w shape, stride, padding), the kernel fitting the padded input."""
    n, c, f, h, w = (draw(ODD) for _ in range(5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = min(kh, h + 2 * ph), min(kw, w + 2 * pw)
    return (n, c, h, w), (f, c, kh, kw), (sh, sw), (ph, pw)


def _out_shape(xs, ws, stride, padding):
    return (xs[0], ws[0], (xs[2] + 2 * padding[0] - ws[2]) // stride[0] + 1,
            (xs[3] + 2 * padding[1] - ws[3]) // stride[1] + 1)


def _all_three(xs, ws, stride, padding, dtype, seed=0, bias=True):
    """Each kernel through the cpp backend against the spec in float64 on the same inputs."""
    rng = np.random.default_rng(seed)
    x, w = rand(rng, xs, dtype), rand(rng, ws, dtype)
    b = rand(rng, (ws[0],), dtype) if bias else None
    g = rand(rng, _out_shape(xs, ws, stride, padding), dtype)

    def f64(a):
        return None if a is None else a.astype(np.float64)

    # Sums of C*KH*KW (forward, backward-data) or N*Ho*Wo (backward-weight) products.
    scale = 1 + np.sqrt(max(np.prod(ws[1:]), np.prod(g.shape[::2]))) / 4
    check(cpp.conv2d_fwd(x, w, b, stride, padding),
          spec.conv2d_fwd(f64(x), f64(w), f64(b), stride, padding), dtype, "conv2d_fwd", scale)
    check(cpp.conv2d_bwd_data(g, w, xs, stride, padding),
          spec.conv2d_bwd_data(f64(g), f64(w), xs, stride, padding), dtype, "conv2d_bwd_data",
          scale)
    check(cpp.conv2d_bwd_weight(g, x, ws, stride, padding),
          spec.conv2d_bwd_weight(f64(g), f64(x), ws, stride, padding), dtype,
          "conv2d_bwd_weight", scale)


@cases(80)
@given(geom=geometries(), dtype=st.sampled_from(DTYPES), bias=st.booleans())
def test_against_numpy(geom, dtype, bias):
    _all_three(*geom, dtype, bias=bias)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,stride,padding", [
    ((3, 5, 13, 7), (4, 5, 1, 1), (1, 1), (0, 0)),     # 1x1: no im2col, grouped then direct
    ((2, 3, 7, 9), (2, 3, 3, 3), (1, 1), (5, 4)),       # padding larger than the kernel
    ((2, 64, 45, 45), (3, 64, 3, 3), (1, 1), (1, 1)),   # one image is over the workspace: row tiles
    ((1, 512, 47, 47), (2, 512, 1, 1), (1, 1), (0, 0)),  # row tiles of a 1x1 convolution
    ((1, 3, 9, 9), (2, 3, 3, 3), (2, 2), (1, 1)),       # batch 1: the GEMMs run the threads
])
def test_fixed_shapes(xs, ws, stride, padding, dtype):
    _all_three(xs, ws, stride, padding, dtype)


@pytest.mark.parametrize("xs,ws", [
    ((2, 1, 28, 28), (64, 1, 3, 3)),        # the CNN's layers (batch 64 there)
    ((2, 64, 14, 14), (128, 64, 3, 3)),
    ((2, 128, 7, 7), (256, 128, 3, 3)),
], ids=["conv1", "conv2", "conv3"])
def test_cnn_layers(xs, ws):
    _all_three(xs, ws, (1, 1), (1, 1), np.float32)


@pytest.mark.parametrize("xs,ws,stride,padding", [
    ((0, 3, 5, 5), (2, 3, 3, 3), (1, 1), (1, 1)),       # empty batch
    ((2, 0, 5, 5), (2, 0, 3, 3), (1, 1), (1, 1)),       # no channels
    ((2, 3, 0, 4), (2, 3, 3, 3), (1, 1), (2, 1)),       # empty images, only padding
])
def test_empty(xs, ws, stride, padding):
    x, w, b = np.ones(xs), np.ones(ws), np.full(ws[0], 0.5)
    g = np.ones(_out_shape(xs, ws, stride, padding))
    np.testing.assert_array_equal(cpp.conv2d_fwd(x, w, b, stride, padding),
                                  spec.conv2d_fwd(x, w, b, stride, padding))
    np.testing.assert_array_equal(cpp.conv2d_bwd_data(g, w, xs, stride, padding),
                                  spec.conv2d_bwd_data(g, w, xs, stride, padding))
    np.testing.assert_array_equal(cpp.conv2d_bwd_weight(g, x, ws, stride, padding),
                                  spec.conv2d_bwd_weight(g, x, ws, stride, padding))


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_and_determinism(dtype):
    """Two runs give the same bits; one thread and two agree within rounding."""
    rng = np.random.default_rng(3)
    x, w = rand(rng, (6, 5, 9, 7), dtype), rand(rng, (4, 5, 3, 3), dtype)
    g = rand(rng, (6, 4, 9, 7), dtype)
    args = ((1, 1), (1, 1))
    before = ext.get_num_threads()
    try:
        results = {}
        for threads in (1, 2):
            ext.set_num_threads(threads)
            runs = [(cpp.conv2d_fwd(x, w, None, *args), cpp.conv2d_bwd_data(g, w, x.shape, *args),
                     cpp.conv2d_bwd_weight(g, x, w.shape, *args)) for _ in range(2)]
            for a, b in zip(*runs):
                np.testing.assert_array_equal(a, b)
            results[threads] = runs[0]
        for a, b in zip(results[1], results[2]):
            check(a, b[...].astype(np.float64), dtype, "1 vs 2 threads", 10)
    finally:
        ext.set_num_threads(before)


def test_non_float_and_views_go_through_the_wrapper():
    x = np.arange(2 * 3 * 5 * 5).reshape(2, 3, 5, 5)
    w = np.ones((2, 3, 3, 3), dtype=np.int64)
    np.testing.assert_array_equal(cpp.conv2d_fwd(x, w, None, (1, 1), (1, 1)),
                                  spec.conv2d_fwd(x, w, None, (1, 1), (1, 1)))
    xf = np.random.default_rng(0).uniform(-1, 1, (2, 5, 3, 5)).transpose(0, 2, 1, 3)  # a view
    wf = np.ones((2, 3, 3, 3), dtype=np.float32)                                    # mixed dtypes
    check(cpp.conv2d_fwd(xf, wf, None, (1, 1), (1, 1)),
          spec.conv2d_fwd(xf, wf.astype(np.float64), None, (1, 1), (1, 1)), np.float64)


def _good():
    rng = np.random.default_rng(0)
    return rand(rng, (2, 3, 5, 5), np.float32), rand(rng, (4, 3, 3, 3), np.float32), \
        rand(rng, (4,), np.float32), rand(rng, (2, 4, 5, 5), np.float32)


def test_bad_input_fwd():
    x, w, b, _ = _good()
    op, fn, ok = "conv2d_fwd", ext.conv2d_fwd, ((1, 1), (1, 1))
    bad_input(fn, x.astype(np.int32), w, b, *ok, op=op, match="float32 or float64")
    bad_input(fn, x.astype(np.float64), w, b, *ok, op=op, match="dtype")
    bad_input(fn, x, w, b.astype(np.float64), *ok, op=op)
    bad_input(fn, x.transpose(0, 1, 3, 2), w, b, *ok, op=op, match="C-contiguous")
    bad_input(fn, x[0], w, b, *ok, op=op, match="dimensions")
    bad_input(fn, x, w[:, :2].copy(), b, *ok, op=op, match="channels")
    bad_input(fn, x, w, b[:3].copy(), *ok, op=op, match="bias")
    bad_input(fn, x.tolist(), w, b, *ok, op=op, match="NumPy array")
    bad_input(fn, x, w, b, (0, 1), (1, 1), op=op, match="stride")
    bad_input(fn, x, w, b, (1, -2), (1, 1), op=op, match="stride")
    bad_input(fn, x, w, b, (1, 1), (1, -1), op=op, match="padding")
    bad_input(fn, x, w, b, (1, 1, 1), (1, 1), op=op, match="stride")
    bad_input(fn, x, w, b, (1, 1.0), (1, 1), op=op, match="int")
    bad_input(fn, x, w, b, 1, (1, 1), op=op, match="stride")
    bad_input(fn, x, np.ones((4, 3, 8, 3), np.float32), b, (1, 1), (1, 1), op=op, match="larger")
    bad_input(fn, x, np.ones((4, 3, 3, 0), np.float32), b, (1, 1), (1, 1), op=op, match="kernel")


def test_bad_input_bwd():
    x, w, _, g = _good()
    ok = ((1, 1), (1, 1))
    for op, fn, other, shape in [("conv2d_bwd_data", ext.conv2d_bwd_data, w, x.shape),
                                 ("conv2d_bwd_weight", ext.conv2d_bwd_weight, x, w.shape)]:
        bad_input(fn, g.astype(np.int64), other, shape, *ok, op=op, match="float32 or float64")
        bad_input(fn, g, other.astype(np.float64), shape, *ok, op=op, match="dtype")
        bad_input(fn, g[:, :, ::2], other, shape, *ok, op=op, match="C-contiguous")
        bad_input(fn, g[0], other, shape, *ok, op=op, match="dimensions")
        bad_input(fn, g[:, :3].copy(), other, shape, *ok, op=op, match="grad_out")
        bad_input(fn, g, other, shape, (2, 2), (1, 1), op=op, match="grad_out")
        bad_input(fn, g, other, shape[:3], *ok, op=op)
        bad_input(fn, g, other, (-2,) + shape[1:], *ok, op=op)
        bad_input(fn, g, other, shape, (0, 1), (1, 1), op=op, match="stride")
        bad_input(fn, g, other, shape, (1, 1), (-1, 0), op=op, match="padding")
    bad_input(ext.conv2d_bwd_data, g, w, (2, 2, 5, 5), *ok, op="conv2d_bwd_data", match="channels")
    bad_input(ext.conv2d_bwd_weight, g, x, (4, 2, 3, 3), *ok, op="conv2d_bwd_weight",
              match="channels")
    bad_input(ext.conv2d_bwd_data, g, w, (2, 3, 1, 1), (1, 1), (0, 0), op="conv2d_bwd_data",
              match="larger")
