"""bench.train: the reference models' training steps against PyTorch, and the step profiler."""
import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.testing import assert_close
from tilegrad import models
from tilegrad.bench import formulas, train
from tilegrad.bench.case import Case, Prepared

TINY = {c.name: c for c in train.cases("tiny")}
CPU = tg.device("cpu")


def test_one_case_per_model_at_each_size():
    for sizes in ("full", "small", "tiny"):
        cs = train.cases(sizes)
        assert [c.name for c in cs] == ["mlp", "cnn", "lm"]
        for c in cs:
            assert isinstance(c, Case) and c.group == "train" and c.bound == "compute"
            assert c.flops > 0 and c.bytes > 0
    full = {c.name: c for c in train.cases("full")}
    assert full["cnn"].shape.startswith("N=64 1x28x28") and "momentum 0.9" in full["cnn"].shape
    assert full["lm"].shape.startswith("V=10000 B=20 T=35")
    for name, c in TINY.items():
        assert c.flops < full[name].flops
    with pytest.raises(ValueError, match="sizes must be one of"):
        train.cases("huge")


def test_flops_are_three_times_the_forward_gemms():
    mlp = {c.name: c for c in train.cases("full")}["mlp"]
    fwd = formulas.matmul(64, 128, 784)[0] + formulas.matmul(64, 10, 128)[0]
    assert mlp.flops == 3 * fwd
    params = 784 * 128 + 128 + 128 * 10 + 10
    assert mlp.bytes == params * 4 * 3                     # SGD: read p and g, write p
    n_lm = sum(p.numel() for p in models.LSTMLanguageModel(50).parameters())
    assert TINY["lm"].bytes == n_lm * 4 * 7                # Adam: read p, g, m, v; write p, m, v
    n_cnn = sum(p.numel() for p in models.CNN().parameters())
    assert TINY["cnn"].bytes == n_cnn * 4 * 5              # momentum: the buffer read and written


@pytest.mark.parametrize("name", list(TINY))
def test_first_step_loss_matches_pytorch(name):
    if torch is None:
        pytest.skip("PyTorch is not installed")
    p = TINY[name].setup(CPU, torch)
    assert isinstance(p, Prepared) and p.torch is not None
    ref = p.reference()
    assert isinstance(ref, np.ndarray) and ref.shape == () and ref.dtype == np.float64
    got = p.to_numpy(p.tilegrad())
    assert got.shape == () and got.dtype == np.float64
    assert_close(got, ref, rtol=p.rtol, atol=p.atol, what=f"{name} first-step loss")


@pytest.mark.parametrize("name", list(TINY))
def test_later_steps_follow_pytorch_and_reference_stays_the_first_loss(name):
    """Steps 2 and 3 see the optimizer's updates, so they check backward, clipping and the step;
    reference() asked after the steps is still the first one's loss."""
    if torch is None:
        pytest.skip("PyTorch is not installed")
    p = TINY[name].setup(CPU, torch)
    ours = [p.tilegrad() for _ in range(3)]
    theirs = [p.torch() for _ in range(3)]
    assert ours[2] < ours[0]                            # it trains
    assert_close(ours, theirs, rtol=1e-4, atol=1e-5, what=f"{name} losses of steps 1-3")
    assert_close(p.reference(), theirs[0], rtol=1e-12, atol=0, what="reference")


def test_setup_is_repeatable_and_keeps_the_callers_rng():
    state = tg.get_rng_state()
    a = TINY["mlp"].setup(CPU, None).tilegrad()
    b = TINY["mlp"].setup(CPU, None).tilegrad()
    assert a == b
    assert tg.get_rng_state() == state


def test_without_torch_the_reference_is_tilegrad_in_float64():
    p = TINY["lm"].setup(CPU, None)
    assert p.torch is None
    assert_close(p.to_numpy(p.tilegrad()), p.reference(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("name,expected", [
    ("mlp", {"matmul", "sgd_step_multi", "cross_entropy_fwd", "cross_entropy_bwd"}),
    ("cnn", {"matmul", "conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weight", "max_pool2d_fwd",
             "max_pool2d_bwd", "sgd_step_multi"}),
    ("lm", {"matmul", "lstm_seq_fwd", "lstm_seq_bwd", "lstm_bias_bwd", "cross_entropy_fwd",
            "embedding_fwd", "embedding_bwd", "adam_step_multi", "norm_multi", "clip_scale_multi"}),
])
def test_profile_step_sees_the_primitives(name, expected):
    prof = train.profile_step(TINY[name], CPU, steps=2)
    assert expected <= set(prof), sorted(expected - set(prof))
    assert all(v >= 0 for k, v in prof.items() if k != "_python")
    primitives = sum(v for k, v in prof.items() if not k.startswith("_"))
    assert 0 < primitives <= prof["_total"]
    assert prof["_python"] == pytest.approx(prof["_total"] - primitives)
    # cross_entropy_fwd calls log_softmax_fwd through the module: counted in the outer one only
    assert "log_softmax_fwd" not in prof


def test_profile_step_takes_a_prepared_case():
    p = TINY["mlp"].setup(CPU, None)
    prof = train.profile_step(p, "cpu", steps=1, warmup=0)
    assert "matmul" in prof and "unary:relu" in prof


def _backend_functions(backend):
    return {n: v for n, v in vars(backend).items() if callable(v) and not n.startswith("_")}


def test_profile_step_restores_the_backend_even_when_the_step_raises(monkeypatch):
    backend = CPU.backend
    before = _backend_functions(backend)
    train.profile_step(TINY["mlp"], CPU, steps=1)
    after = _backend_functions(backend)
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)

    def broken(*args, **kwargs):
        raise RuntimeError("broken sgd_step_multi")

    monkeypatch.setattr(backend, "sgd_step_multi", broken)   # what SGD.step calls
    before = _backend_functions(backend)
    p = TINY["mlp"].setup(CPU, None)
    with pytest.raises(RuntimeError, match="broken sgd_step_multi"):
        train.profile_step(p, CPU, steps=1, warmup=0)
    after = _backend_functions(backend)
    assert all(after[k] is before[k] for k in before)
    assert backend.sgd_step_multi is broken
