"""The losses against PyTorch (float64): values and input gradients of mse_loss, l1_loss,
nll_loss, cross_entropy's weight / ignore_index / label_smoothing forms, binary_cross_entropy and
binary_cross_entropy_with_logits, for every reduction; the modules; PyTorch's edge cases (all
targets ignored, probabilities at 0 and 1) and argument errors; a few cases on every device, and
the fused cross_entropy with ignore_index there."""
import numpy as np
import pytest

import tilegrad as tg
import tilegrad.nn.functional as F
from helpers import torch
from tilegrad.testing import assert_close, compare_with_torch, rng

TF = torch.nn.functional if torch is not None else None
REDUCTIONS = ("mean", "sum", "none")


def const(a, lib):
    """A fixed (non-differentiated) argument for both libraries: weights, targets."""
    return None if a is None else (tg.tensor(a) if lib is tg else torch.tensor(a))


R = rng(11)
T7 = R.integers(0, 5, 7)                          # 7 targets of 5 classes
T7_IGNORED = np.where(R.random(7) < 0.4, -100, T7)
T7_IGNORED[0] = 2                                 # at least one kept
W5 = R.random(5) + 0.5
T_3D = R.integers(0, 5, (3, 2, 3))                # for (3, 5, 2, 3) inputs


def _elementwise_cases():
    for r in REDUCTIONS:
        yield pytest.param(lambda x, t, r=r: F.mse_loss(x, t, reduction=r),
                           lambda x, t, r=r: TF.mse_loss(x, t, reduction=r),
                           [R.standard_normal((3, 7)), R.standard_normal((3, 7))], id=f"mse-{r}")
        yield pytest.param(lambda x, t, r=r: F.l1_loss(x, t, reduction=r),
                           lambda x, t, r=r: TF.l1_loss(x, t, reduction=r),
                           [R.standard_normal((5,)), R.standard_normal((5,))], id=f"l1-{r}")
        p, y = 0.05 + 0.9 * R.random((3, 5)), R.random((3, 5))
        yield pytest.param(lambda x, t, r=r: F.binary_cross_entropy(x, t, reduction=r),
                           lambda x, t, r=r: TF.binary_cross_entropy(x, t, reduction=r),
                           [p, y], id=f"bce-{r}")
        yield pytest.param(
            lambda x, t, r=r: F.binary_cross_entropy_with_logits(x, t, reduction=r),
            lambda x, t, r=r: TF.binary_cross_entropy_with_logits(x, t, reduction=r),
            [3 * R.standard_normal((7, 3)), R.random((7, 3))], id=f"bce-logits-{r}")


def _class_cases():
    for r in REDUCTIONS:
        for name, w, t in (("", None, T7), ("-weight", W5, T7), ("-ignore", None, T7_IGNORED),
                           ("-weight-ignore", W5, T7_IGNORED)):
            yield pytest.param(
                lambda x, r=r, w=w, t=t: F.nll_loss(x, const(t, tg), const(w, tg), reduction=r),
                lambda x, r=r, w=w, t=t: TF.nll_loss(x, const(t, torch), const(w, torch),
                                                     reduction=r),
                [R.standard_normal((7, 5))], id=f"nll{name}-{r}")
            for ls in (0.0, 0.3):
                if w is None and not ls and t is T7:
                    continue                     # the fused path: test_functional covers it
                yield pytest.param(
                    lambda x, r=r, w=w, t=t, ls=ls: F.cross_entropy(
                        x, const(t, tg), const(w, tg), reduction=r, label_smoothing=ls),
                    lambda x, r=r, w=w, t=t, ls=ls: TF.cross_entropy(
                        x, const(t, torch), const(w, torch), reduction=r, label_smoothing=ls),
                    [R.standard_normal((7, 5))], id=f"ce{name}-ls{ls}-{r}")


OTHER_CASES = [
    pytest.param(lambda x: F.nll_loss(x, tg.tensor(T_3D), tg.tensor(W5), ignore_index=1),
                 lambda x: TF.nll_loss(x, torch.tensor(T_3D), torch.tensor(W5), ignore_index=1),
                 [R.standard_normal((3, 5, 2, 3))], id="nll-4d-weight-ignore1"),
    pytest.param(lambda x: F.nll_loss(x, tg.tensor(3)), lambda x: TF.nll_loss(x, torch.tensor(3)),
                 [R.standard_normal(5)], id="nll-unbatched"),
    pytest.param(lambda x: F.cross_entropy(x, tg.tensor(T_3D), label_smoothing=0.2,
                                           reduction="none"),
                 lambda x: TF.cross_entropy(x, torch.tensor(T_3D), label_smoothing=0.2,
                                            reduction="none"),
                 [R.standard_normal((3, 5, 2, 3))], id="ce-4d-ls"),
    *[pytest.param(lambda x, t, r=r: F.cross_entropy(x, t, tg.tensor(W5), reduction=r,
                                                     label_smoothing=0.1),
                   lambda x, t, r=r: TF.cross_entropy(x, t, torch.tensor(W5), reduction=r,
                                                      label_smoothing=0.1),
                   [R.standard_normal((3, 5)), R.dirichlet(np.ones(5), 3)],
                   id=f"ce-probabilities-weight-ls-{r}") for r in REDUCTIONS],
    pytest.param(lambda x, t: F.binary_cross_entropy(x, t, tg.tensor(W5)),
                 lambda x, t: TF.binary_cross_entropy(x, t, torch.tensor(W5)),
                 [0.1 + 0.8 * R.random((3, 5)), R.random((3, 5))], id="bce-weight"),
    pytest.param(lambda x, t: F.binary_cross_entropy_with_logits(
                     x, t, tg.tensor(W5[:3, None]), pos_weight=tg.tensor(W5)),
                 lambda x, t: TF.binary_cross_entropy_with_logits(
                     x, t, torch.tensor(W5[:3, None]), pos_weight=torch.tensor(W5)),
                 [R.standard_normal((3, 5)), R.random((3, 5))], id="bce-logits-weights"),
    pytest.param(lambda x, t: F.mse_loss(x, t, reduction="sum"),
                 lambda x, t: TF.mse_loss(x, t, reduction="sum"),
                 [R.standard_normal((1, 3, 1, 7)), R.standard_normal((1, 3, 1, 7))],
                 id="mse-4d-target-grad"),
]
CASES = [*_elementwise_cases(), *_class_cases(), *OTHER_CASES]


@pytest.mark.parametrize("tg_fn, torch_fn, arrays", CASES)
def test_matches_torch(tg_fn, torch_fn, arrays):
    compare_with_torch(tg_fn, torch_fn, *arrays)


DEVICE_CASES = [c for c in CASES if c.id in ("mse-mean", "bce-logits-sum", "nll-weight-ignore-mean",
                                             "ce-ignore-ls0.3-none", "bce-none", "l1-sum",
                                             "ce-ignore-ls0.0-mean", "ce-ignore-ls0.0-sum",
                                             "ce-ignore-ls0.0-none")]


@pytest.mark.parametrize("tg_fn, torch_fn, arrays", DEVICE_CASES)
def test_on_device_matches_torch(device, tg_fn, torch_fn, arrays):
    tg.set_default_device(device)        # inputs, targets and weights there (the fixture resets)
    compare_with_torch(tg_fn, torch_fn, *arrays)


T_3D_IGNORED = np.where(R.random((3, 2, 3)) < 0.4, -100, T_3D)
FUSED_IGNORE = [                                  # (input shape, target, ignore_index)
    pytest.param((3, 5, 2, 3), T_3D_IGNORED, -100, id="4d-some-ignored"),
    pytest.param((7, 5), T7, 1, id="a-class-ignored"),
    pytest.param((7, 5), np.full(7, -100), -100, id="all-ignored"),
    pytest.param((5,), np.array(-100), -100, id="unbatched-ignored"),
    pytest.param((0, 5), np.zeros(0, np.int64), -100, id="no-rows"),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape, target, ignore_index", FUSED_IGNORE)
def test_fused_ignore_index_on_device_matches_torch(device, shape, target, ignore_index,
                                                    reduction):
    """The fused kernel (weight None, no smoothing) with ignored targets, values and gradients
    as PyTorch's on every device: loss 0 and gradient 0 for an ignored target, 'mean' over the
    others, NaN when none is left (or there are no rows)."""
    x = rng(sum(shape)).standard_normal(shape)
    ours_x = tg.tensor(x, device=device, requires_grad=True)
    theirs_x = torch.tensor(x, requires_grad=True)
    ours = F.cross_entropy(ours_x, tg.tensor(target, device=device), ignore_index=ignore_index,
                           reduction=reduction)
    theirs = TF.cross_entropy(theirs_x, torch.tensor(target), ignore_index=ignore_index,
                              reduction=reduction)
    assert_close(ours, theirs, rtol=1e-8, atol=1e-12, equal_nan=True, what="loss")
    w = rng(7).standard_normal(tuple(theirs.shape))
    (ours * tg.tensor(w, device=device)).sum().backward()
    (theirs * torch.tensor(w)).sum().backward()
    assert_close(ours_x.grad, theirs_x.grad, rtol=1e-8, atol=1e-12, what="grad")


def test_fused_ignore_index_reads_no_target_on_the_host(device):
    """On "cuda" the targets stay on the device: forward and backward copy nothing to the host
    (a -100 among them is skipped by the kernel, not reported as out of range)."""
    if device != "cuda":
        pytest.skip("host reads are counted on the cuda runtime")
    from tilegrad.backends.cuda import runtime as rt
    x = tg.tensor(R.standard_normal((7, 5)), device=device, requires_grad=True)
    t = tg.tensor(T7_IGNORED, device=device)
    before = rt.counts()
    F.cross_entropy(x, t).backward()
    assert rt.counts()["copies"] == before["copies"]
    want = TF.cross_entropy(torch.tensor(x.numpy()), torch.tensor(T7_IGNORED))
    assert_close(F.cross_entropy(x, t), want)


def test_all_targets_ignored_gives_nan_as_torch():
    x = tg.randn(3, 5, dtype=tg.float64, requires_grad=True)
    t = tg.tensor([-100, -100, -100])
    for loss in (F.nll_loss(x, t), F.cross_entropy(x, t), F.cross_entropy(x, t, tg.tensor(W5))):
        assert np.isnan(loss.item())
    assert F.nll_loss(x, t, reduction="sum").item() == 0
    with np.errstate(invalid="ignore"):
        F.cross_entropy(x, t, label_smoothing=0.1).backward()
    assert x.grad is not None


def test_bce_at_zero_and_one_is_finite_as_torch():
    """PyTorch clamps each log at -100: probabilities of exactly 0 and 1 give finite losses."""
    p, y = np.array([0.0, 1.0, 0.0, 1.0, 0.5]), np.array([0.0, 1.0, 1.0, 0.0, 0.25])
    ours = F.binary_cross_entropy(tg.tensor(p, requires_grad=True), tg.tensor(y), reduction="none")
    assert_close(ours, TF.binary_cross_entropy(torch.tensor(p), torch.tensor(y), reduction="none"))
    ours.sum().backward()                        # no NaN from log's gradient at 0


def test_modules_match_functions():
    x, y = tg.tensor(R.standard_normal((3, 5))), tg.tensor(R.standard_normal((3, 5)))
    t, w = tg.tensor(T7_IGNORED[:3]), tg.tensor(W5)
    logp = F.log_softmax(x, 1)
    pairs = [
        (tg.nn.MSELoss(reduction="sum")(x, y), F.mse_loss(x, y, reduction="sum")),
        (tg.nn.L1Loss()(x, y), F.l1_loss(x, y)),
        (tg.nn.NLLLoss(w, ignore_index=-100)(logp, t), F.nll_loss(logp, t, w)),
        (tg.nn.BCELoss()(x.sigmoid(), y.sigmoid()), F.binary_cross_entropy(x.sigmoid(),
                                                                           y.sigmoid())),
        (tg.nn.BCEWithLogitsLoss(pos_weight=w)(x, y.sigmoid()),
         F.binary_cross_entropy_with_logits(x, y.sigmoid(), pos_weight=w)),
        (tg.nn.CrossEntropyLoss(w, label_smoothing=0.2, reduction="none")(x, t),
         F.cross_entropy(x, t, w, reduction="none", label_smoothing=0.2)),
    ]
    for k, (a, b) in enumerate(pairs):
        assert_close(a, b, rtol=0, atol=0, what=f"module {k}")
    th = torch.nn.CrossEntropyLoss(torch.tensor(W5), ignore_index=1, label_smoothing=0.2)
    ours = tg.nn.CrossEntropyLoss(tg.tensor(W5), ignore_index=1, label_smoothing=0.2)
    t = tg.tensor(T7[:3])
    assert_close(ours(x, t), th(torch.tensor(x.numpy()), torch.tensor(t.numpy())))


def test_default_cross_entropy_keeps_the_fused_kernel(monkeypatch):
    from tilegrad.ops import nn as N
    calls = []
    apply = N.CrossEntropy.apply
    monkeypatch.setattr(N.CrossEntropy, "apply", lambda *a: calls.append(1) or apply(*a))
    x = tg.randn(3, 5)
    F.cross_entropy(x, tg.tensor([1, 2, 3]))
    F.cross_entropy(x, tg.tensor([1, -100, 3]))      # an ignored target: fused too
    F.cross_entropy(x, tg.tensor([1, 2, 3]), ignore_index=2)
    assert calls == [1, 1, 1]
    F.cross_entropy(x, tg.tensor([1, 2, 3]), label_smoothing=0.1)    # composed
    F.cross_entropy(x, tg.tensor([1, 2, 3]), tg.tensor(W5, dtype=x.dtype))
    assert calls == [1, 1, 1]


def test_deprecated_size_average_and_reduce_map_as_torch():
    x, y = tg.randn(3, 4), tg.randn(3, 4)
    with pytest.warns(UserWarning):
        assert F.mse_loss(x, y, size_average=False).shape == ()
    with pytest.warns(UserWarning):
        assert F.mse_loss(x, y, reduce=False).shape == (3, 4)
    with pytest.warns(UserWarning):
        assert_close(F.l1_loss(x, y, size_average=False), F.l1_loss(x, y, reduction="sum"))


@pytest.mark.parametrize("call, error", [
    (lambda: F.mse_loss(tg.randn(3), tg.randn(3), reduction="avg"), ValueError),
    (lambda: F.mse_loss(tg.randn(3), tg.randn(4)), RuntimeError),
    (lambda: F.mse_loss(tg.randn(3), tg.randn(3, dtype=tg.float64)), TypeError),
    (lambda: F.nll_loss(tg.randn(3, 5), tg.tensor([0, 5, 1])), IndexError),
    (lambda: F.nll_loss(tg.randn(3, 5), tg.tensor([0, -1, 1])), IndexError),
    (lambda: F.nll_loss(tg.randn(3, 5), tg.tensor([0, 1]), ), ValueError),
    (lambda: F.nll_loss(tg.randn(3, 5), tg.tensor([0.0, 1.0, 1.0])), TypeError),
    (lambda: F.nll_loss(tg.randn(3, 5), tg.tensor([0, 1, 1]), tg.randn(4)), RuntimeError),
    (lambda: F.cross_entropy(tg.randn(3, 5), tg.tensor([0, 1, 1]), label_smoothing=1.5),
     RuntimeError),
    (lambda: F.cross_entropy(tg.randn(3, 5), tg.randn(3, 5), ignore_index=0), RuntimeError),
    (lambda: F.binary_cross_entropy(tg.randn(3) + 2, tg.rand(3)), RuntimeError),
    (lambda: F.binary_cross_entropy(tg.rand(3), tg.rand(3, 1)), ValueError),
    (lambda: tg.nn.NLLLoss(reduction="avg"), ValueError),
    (lambda: tg.nn.CrossEntropyLoss(weight=[1.0, 2.0]), TypeError),
])
def test_bad_arguments_raise(call, error):
    with pytest.raises(error):
        call()


@pytest.mark.parametrize("bad", [5, -1])
def test_nll_target_out_of_range_on_device_raises(device, bad):
    """On "cuda" at the next synchronisation (the kernel's range check), not a read of another
    row: a target of C or -1 would otherwise land in the next or the previous row."""
    x = tg.randn(3, 5, device=device)
    with pytest.raises(IndexError):
        F.nll_loss(x, tg.tensor([1, bad, 0], device=device)).item()


@pytest.mark.skipif(torch is None, reason="needs PyTorch")
def test_loss_weights_are_buffers_as_torch():
    w = np.array([0.5, 2.0, 1.0])
    pairs = [(tg.nn.CrossEntropyLoss(tg.tensor(w)), torch.nn.CrossEntropyLoss(torch.tensor(w))),
             (tg.nn.NLLLoss(tg.tensor(w)), torch.nn.NLLLoss(torch.tensor(w))),
             (tg.nn.BCEWithLogitsLoss(pos_weight=tg.tensor(w)),
              torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(w))),
             (tg.nn.NLLLoss(), torch.nn.NLLLoss())]
    for ours, theirs in pairs:
        assert list(ours.state_dict()) == list(theirs.state_dict())
        assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    moved = tg.nn.CrossEntropyLoss(tg.tensor(w, dtype=tg.float32)).to(tg.float64)
    assert moved.weight.dtype == tg.float64
