"""The CUDA log-softmax and fused cross-entropy kernels in Numba's simulator, every version of the
ladder (v1 a thread per row, v2 the shared-memory tree, v3 warp shuffles through warp.py's
stand-in), against the NumPy backend in float64 (and float32 with a float32 tolerance), on odd
shapes (never block multiples), with large-magnitude logits to show the max-subtraction keeps them
stable and NaN/inf logits as the specification has them; the reductions 'sum' and 'mean' in the
primitives (2 launches forward, 1 backward, 2 for 'mean'); ``ignore_index`` (none, some, all rows
ignored; 'mean' over the rows kept, counted on the device); bad targets reported by the forward
kernel and raised at the next sync, never read out of bounds; ``kernels.use`` switching the
version that F.cross_entropy and F.log_softmax run through autograd."""
import os

import numpy as np
import pytest

from helpers import spy_on_versions
from tilegrad.testing import assert_close, guarded, rng

if not os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA kernels run here in Numba's simulator: set NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)
pytest.importorskip("numba", reason="numba-cuda is not installed")

import tilegrad as tg                                # noqa: E402
import tilegrad.nn.functional as F                  # noqa: E402
from tilegrad import kernels                        # noqa: E402
from tilegrad.backends import numpy as ref          # noqa: E402
from tilegrad.backends.cuda import runtime as rt    # noqa: E402
from tilegrad.backends.cuda import softmax as sm    # noqa: E402
from tilegrad.errors import IndexRangeError         # noqa: E402

CS = [1, 3, 7, 33]          # 33 > 4 * the simulator's block of 8: each thread holds several
NS = [1, 3, 7]              # 7 rows > the simulator's 4 blocks: the row loop wraps
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}
VERSIONS = list(sm.VERSIONS)


@pytest.fixture(params=VERSIONS)
def version(request):
    """One version's launchers (``sm.VERSIONS[...]``)."""
    return sm.VERSIONS[request.param]


def _logits(shape, seed, scale=1.0):
    return rng(seed).standard_normal(shape) * scale


def _target(n, c, seed):
    return rng(seed).integers(0, c, n).astype(np.int64)


# Large logits: exp(500 * 3) overflows float64 unless the row max is subtracted first, and the
# simulator (Python's math.exp) raises OverflowError on it rather than returning inf. The float32
# test uses x*50, past float32's exp range (exp(89) overflows).
CASES = [(n, c, 1.0) for n in NS for c in CS] + [(1, 1, 500.0), (7, 13, 500.0), (3, 33, 500.0)]


@pytest.mark.parametrize("n,c,scale", CASES, ids=str)
def test_cross_entropy_against_numpy_float64(version, n, c, scale):
    x = _logits((n, c), seed=10 * n + c, scale=scale)
    t = _target(n, c, seed=n + c)
    g = rng(n * c).standard_normal(n)
    loss = version.cross_entropy_fwd(x, t)
    dx = version.cross_entropy_bwd(x, t, g)
    assert loss.dtype == np.float64 and dx.dtype == np.float64
    assert np.isfinite(loss).all() and np.isfinite(dx).all()
    assert_close(loss, ref.cross_entropy_fwd(x, t), what="loss", **TOL[np.float64])
    assert_close(dx, ref.cross_entropy_bwd(x, t, g), what="dlogits", **TOL[np.float64])


@pytest.mark.parametrize("scale", [1.0, 500.0])
@pytest.mark.parametrize("shape", [(1,), (3,), (1, 13), (7, 3), (3, 33), (2, 3, 13), (2, 1, 3, 5)],
                         ids=str)
def test_log_softmax_against_numpy_float64(version, shape, scale):
    seed = sum(shape)
    x = _logits(shape, seed, scale)
    y = version.log_softmax_fwd(x)
    assert y.shape == shape and np.isfinite(y).all()
    y_ref = ref.log_softmax_fwd(x)
    assert_close(y, y_ref, what="log_softmax", **TOL[np.float64])
    g = rng(seed + 1).standard_normal(shape)
    assert_close(version.log_softmax_bwd(g, y_ref), ref.log_softmax_bwd(g, y_ref), what="grad",
                 **TOL[np.float64])


@pytest.mark.parametrize("c", [3, 33])
def test_float32(version, c):
    n = 7
    x = _logits((n, c), seed=c, scale=50.0)
    t = _target(n, c, seed=c + 1)
    g = rng(c + 2).standard_normal(n)
    x32, g32 = x.astype(np.float32), g.astype(np.float32)
    x64, g64 = x32.astype(np.float64), g32.astype(np.float64)
    tol = TOL[np.float32]
    outs = [version.log_softmax_fwd(x32), version.cross_entropy_fwd(x32, t),
            version.cross_entropy_bwd(x32, t, g32),
            version.log_softmax_bwd(np.broadcast_to(g32[:, None], (n, c)).copy(),
                               ref.log_softmax_fwd(x32))]
    assert all(o.dtype == np.float32 for o in outs)
    y_ref = ref.log_softmax_fwd(x64)
    assert_close(outs[0], y_ref, what="log_softmax", **tol)
    assert_close(outs[1], ref.cross_entropy_fwd(x64, t), what="loss", **tol)
    assert_close(outs[2], ref.cross_entropy_bwd(x64, t, g64), what="dlogits", **tol)
    g2 = np.broadcast_to(g64[:, None], (n, c))
    assert_close(outs[3], ref.log_softmax_bwd(g2, ref.log_softmax_fwd(x32).astype(np.float64)),
                 what="log_softmax grad", **tol)


def test_non_contiguous_inputs(version):
    """A transposed input and a broadcast (stride-0) grad_loss, as CrossEntropy.backward passes
    for reduction='mean', are copied to contiguous storage first."""
    x = _logits((5, 7), seed=3).T                    # (7, 5), not C-contiguous
    t = _target(7, 5, seed=4)
    g = np.broadcast_to(np.array([0.37]), (7,))
    assert_close(version.log_softmax_fwd(x), ref.log_softmax_fwd(x), **TOL[np.float64])
    assert_close(version.cross_entropy_bwd(x, t, g), ref.cross_entropy_bwd(x, t, g),
                 **TOL[np.float64])


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("n,c", [(1, 3), (7, 13), (37, 5)], ids=str)   # 37 rows > 4 * 8 threads
def test_reduced_cross_entropy_against_numpy_float64(version, n, c, reduction):
    x = _logits((n, c), seed=3 * n + c, scale=20.0)
    t = _target(n, c, seed=n * c)
    g = rng(n + 2 * c).standard_normal(())                 # the reduced loss's gradient
    loss = version.cross_entropy_fwd(x, t, reduction)
    assert loss.shape == () and loss.dtype == np.float64
    assert_close(loss, ref.cross_entropy_fwd(x, t, reduction), what="loss", **TOL[np.float64])
    per_row = ref.cross_entropy_fwd(x, t)                  # and the spec against its own 'none'
    want = per_row.sum() / (n if reduction == "mean" else 1)
    assert_close(ref.cross_entropy_fwd(x, t, reduction), want, **TOL[np.float64])
    for grad in (g, g.reshape(1)):                         # a 0-d or one-element gradient
        dx = version.cross_entropy_bwd(x, t, grad, reduction)
        assert_close(dx, ref.cross_entropy_bwd(x, t, grad, reduction), what="dlogits",
                     **TOL[np.float64])
        g_rows = np.full(n, g / (n if reduction == "mean" else 1))
        assert_close(dx, ref.cross_entropy_bwd(x, t, g_rows), what="dlogits per row",
                     **TOL[np.float64])


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_reduced_cross_entropy_float32(version, reduction):
    n, c = 11, 33
    x32 = _logits((n, c), seed=1, scale=50.0).astype(np.float32)
    t = _target(n, c, seed=2)
    g32 = np.float32(rng(3).standard_normal()).reshape(())
    loss = version.cross_entropy_fwd(x32, t, reduction)
    dx = version.cross_entropy_bwd(x32, t, g32, reduction)
    assert loss.dtype == np.float32 and dx.dtype == np.float32
    x64, g64 = x32.astype(np.float64), g32.astype(np.float64)
    assert_close(loss, ref.cross_entropy_fwd(x64, t, reduction), what="loss", **TOL[np.float32])
    assert_close(dx, ref.cross_entropy_bwd(x64, t, g64, reduction), what="dlogits",
                 **TOL[np.float32])


def _ignoring(n, c, ignore_index, which, seed):
    """Targets with none, some (at least one kept) or all of them ``ignore_index``."""
    t = _target(n, c, seed)
    if which == "some":
        t[rng(seed + 1).random(n) < 0.4] = ignore_index
        t[0] = (ignore_index + 1) % c
    elif which == "all":
        t[:] = ignore_index
    return t


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("n,c,ignore_index,which", [
    (1, 3, -100, "all"), (7, 13, -100, "none"), (7, 13, -100, "some"), (37, 5, 2, "some"),
    (37, 5, 2, "all")], ids=str)
def test_ignore_index_against_numpy_float64(version, n, c, ignore_index, which, reduction):
    """Ignored rows (-100, or the class 2) give loss 0 and gradient 0; 'mean' divides by the
    rows kept, counted on the device (37 rows: several per thread of the one-block count), and
    is NaN when none is. Guarded arrays: nothing is read out of bounds, no error reported."""
    x = _logits((n, c), seed=n + c, scale=3.0)
    t = _ignoring(n, c, ignore_index, which, seed=n * c)
    g = rng(n).standard_normal(n if reduction == "none" else ())
    loss = version.cross_entropy_fwd(guarded(x), guarded(t), reduction, ignore_index)
    dx = version.cross_entropy_bwd(guarded(x), guarded(t), guarded(g), reduction, ignore_index)
    rt.synchronize()                                      # nothing reported
    want = ref.cross_entropy_fwd(x, t, reduction, ignore_index)
    if which == "all" and reduction == "mean":
        assert np.isnan(loss) and np.isnan(want)
    else:
        assert_close(loss, want, what="loss", **TOL[np.float64])
    assert_close(dx, ref.cross_entropy_bwd(x, t, g, reduction, ignore_index), what="dlogits",
                 **TOL[np.float64])
    assert not dx[t == ignore_index].any()


def test_ignore_index_float32(version):
    n, c = 11, 33
    x32 = _logits((n, c), seed=21, scale=50.0).astype(np.float32)
    t = _ignoring(n, c, -100, "some", seed=22)
    g32 = np.float32(rng(23).standard_normal()).reshape(())
    x64, g64 = x32.astype(np.float64), g32.astype(np.float64)
    for reduction in ("sum", "mean"):
        loss = version.cross_entropy_fwd(x32, t, reduction)      # the default, -100
        dx = version.cross_entropy_bwd(x32, t, g32, reduction)
        assert loss.dtype == np.float32 and dx.dtype == np.float32
        assert_close(loss, ref.cross_entropy_fwd(x64, t, reduction), what="loss",
                     **TOL[np.float32])
        assert_close(dx, ref.cross_entropy_bwd(x64, t, g64, reduction), what="dlogits",
                     **TOL[np.float32])


def test_ignore_index_excuses_only_its_value(version):
    """With ignore_index -1, the target -1 is skipped and -100 is out of range: NaN and an
    error at the next sync."""
    x = _logits((3, 5), seed=24)
    loss = version.cross_entropy_fwd(x, np.array([-1, -100, 2], dtype=np.int64), "none", -1)
    assert loss[0] == 0 and np.isnan(loss[1]) and np.isfinite(loss[2])
    with pytest.raises(IndexRangeError, match="target -100 is out of range for 5 classes"):
        rt.synchronize()


@pytest.mark.parametrize("reduction, fwd, bwd", [("none", 1, 1), ("sum", 2, 1), ("mean", 2, 2)])
def test_launches_per_call(version, reduction, fwd, bwd):
    x, t = _logits((5, 7), seed=6), _target(5, 7, seed=7)
    g = rng(8).standard_normal(5 if reduction == "none" else ())
    before = rt.counts()
    version.cross_entropy_fwd(x, t, reduction)
    mid = rt.counts()
    version.cross_entropy_bwd(x, t, g, reduction)
    after = rt.counts()
    assert mid["kernels"] - before["kernels"] == fwd
    assert after["kernels"] - mid["kernels"] == bwd          # 'mean': the count, then the rows
    assert mid["copies"] == before["copies"] and after["copies"] == mid["copies"]


def test_sum_of_no_rows_is_zero(version):
    x, t = np.empty((0, 4)), np.empty((0,), np.int64)
    assert version.cross_entropy_fwd(x, t, "sum") == 0
    assert version.cross_entropy_bwd(x, t, np.ones(()), "sum").shape == (0, 4)


def test_bad_target_gives_nan_and_an_error_at_the_next_sync(version):
    """Targets 5 and -1 for 5 classes: the guarded logits raise on any read out of bounds; the
    losses of those rows are NaN, the error comes at the next sync and is then cleared."""
    x = _logits((3, 5), seed=5)
    t = np.array([0, 5, -1], dtype=np.int64)
    loss = version.cross_entropy_fwd(guarded(x), guarded(t))
    assert np.isfinite(loss[0]) and np.isnan(loss[1:]).all()
    with pytest.raises(IndexRangeError, match=r"cross_entropy: target (5|-1) is out of range "
                                              r"for 5 classes"):
        rt.synchronize()
    assert not rt.error_flag().any()
    dx = version.cross_entropy_bwd(guarded(x), guarded(t), np.ones(3))
    rt.synchronize()                                        # the backward does not report
    assert np.isfinite(dx[0]).all() and np.isnan(dx[1:]).all()
    mean = version.cross_entropy_fwd(x, t, "mean")               # the reduction carries the NaN
    assert np.isnan(mean)
    with pytest.raises(IndexRangeError, match="target (5|-1) is out"):
        rt.to_numpy(mean)
    t_ok = np.array([4, 0, 2], dtype=np.int64)
    assert_close(version.cross_entropy_fwd(x, t_ok, "mean"), ref.cross_entropy_fwd(x, t_ok, "mean"),
                 **TOL[np.float64])
    rt.synchronize()                                        # nothing left to raise


def test_no_classes_every_target_is_out_of_range(version):
    loss = version.cross_entropy_fwd(np.empty((2, 0)), np.array([0, 0], dtype=np.int64), "sum")
    assert np.isnan(loss)
    with pytest.raises(IndexRangeError, match="target 0 is out of range for 0 classes"):
        rt.synchronize()


def _same_nonfinite(actual, expected, what):
    """NaN where the spec has NaN, the same infinities, the finite values close."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: NaNs")
    np.testing.assert_array_equal(np.isposinf(actual), np.isposinf(expected), err_msg=what)
    np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(expected), err_msg=what)
    finite = np.isfinite(expected)
    assert_close(actual[finite], expected[finite], what=what, **TOL[np.float64])


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")   # inf - inf, on purpose
def test_nan_and_inf_logits_as_the_specification(version):
    """A NaN poisons its row only; +inf makes its row NaN (inf - inf); -inf is a class of
    probability 0 (an infinite loss when it is the target). Rows of 33 (more than a block)."""
    x = _logits((5, 33), seed=11)
    x[0, 20] = np.nan
    x[1, 3] = np.inf
    x[2, 7] = x[3, 30] = -np.inf
    t = np.array([4, 3, 7, 1, 32], dtype=np.int64)
    g = rng(12).standard_normal(5)
    with np.errstate(invalid="ignore"):
        want = [ref.cross_entropy_fwd(x, t), ref.cross_entropy_bwd(x, t, g),
                ref.log_softmax_fwd(x)]
        got = [version.cross_entropy_fwd(x, t), version.cross_entropy_bwd(x, t, g),
               version.log_softmax_fwd(x)]
    for a, b, what in zip(got, want, ("loss", "dlogits", "log_softmax")):
        _same_nonfinite(a, b, what)
    assert np.isfinite(got[0][3:]).all() and np.isposinf(got[0][2])


def test_results_repeat_bit_for_bit(version):
    x = _logits((3, 33), seed=13, scale=3.0)
    t = _target(3, 33, seed=14)
    first = [version.cross_entropy_fwd(x, t, "sum"), version.log_softmax_fwd(x)]
    again = [version.cross_entropy_fwd(x, t, "sum"), version.log_softmax_fwd(x)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_v2_is_the_default_and_v1_v2_v3_are_registered(monkeypatch):
    monkeypatch.delenv("TILEGRAD_KERNELS", raising=False)
    monkeypatch.setattr(kernels, "_chosen", {})
    assert kernels.versions()[sm.FAMILY] == (("v1", "v2", "v3"), "v2")
    assert kernels.launcher(sm.FAMILY) is sm.VERSIONS["v2"]


@pytest.mark.parametrize("name", VERSIONS)
def test_kernels_use_switches_the_version_autograd_runs(name, monkeypatch):
    """F.cross_entropy ('mean') and F.log_softmax on device "cuda", forward and backward, run
    the launchers of the version chosen by kernels.use, and match the NumPy backend."""
    monkeypatch.setattr(kernels, "_chosen", {"_env": True})      # choices undone afterwards
    ran = spy_on_versions(monkeypatch, sm.VERSIONS, ("log_softmax_fwd", "log_softmax_bwd",
                                                     "cross_entropy_fwd", "cross_entropy_bwd"))
    kernels.use(sm.FAMILY, name)
    x, t = _logits((7, 33), seed=15, scale=4.0), _target(7, 33, seed=16)
    t[[2, 5]] = -100                                              # F's default ignore_index
    logits = tg.tensor(x, dtype=tg.float64, device="cuda", requires_grad=True)
    loss = F.cross_entropy(logits, tg.tensor(t, device="cuda"))
    loss.backward()
    assert_close(loss.numpy(), ref.cross_entropy_fwd(x, t, "mean"), what="loss",
                 **TOL[np.float64])
    assert_close(logits.grad.numpy(), ref.cross_entropy_bwd(x, t, np.ones(()), "mean"),
                 what="dlogits", **TOL[np.float64])
    w = rng(17).standard_normal(x.shape)
    inp = tg.tensor(x, dtype=tg.float64, device="cuda", requires_grad=True)
    (F.log_softmax(inp, dim=1) * tg.tensor(w, device="cuda")).sum().backward()
    assert_close(inp.grad.numpy(), ref.log_softmax_bwd(w, ref.log_softmax_fwd(x)),
                 what="log_softmax grad", **TOL[np.float64])
    assert set(ran) == {(name, op) for op in ("log_softmax_fwd", "log_softmax_bwd",
                                               "cross_entropy_fwd", "cross_entropy_bwd")}
