"""tilegrad.bench.kernels: every case sets up and validates at the tiny sizes (tilegrad's side and
PyTorch's against the float64 NumPy reference); the full list has every group, unique names, lazy
setup and the FLOP and byte counts of bench.formulas (spot-checked by hand)."""
import tracemalloc

import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.bench import harness, kernels

TINY = kernels.cases("tiny")


@pytest.mark.parametrize("case", TINY, ids=[c.name for c in TINY])
def test_tiny_case_validates(case):
    p = case.setup(tg.device("cpu"), torch)
    ref = p.reference()
    harness.validate(case.name, p.to_numpy(p.tilegrad()), ref, p.rtol, p.atol)
    if torch is not None:
        harness.validate(case.name + " (torch)", p.to_numpy(p.torch()), ref, p.rtol, p.atol)
    else:
        assert p.torch is None


def test_tilegrad_side_is_repeatable():
    """A case called twice gives the same answer (gradients are cleared, not accumulated)."""
    case = next(c for c in TINY if c.name.startswith("lstm sequence"))
    p = case.setup(tg.device("cpu"), None)
    first = p.to_numpy(p.tilegrad())
    harness.validate(case.name, p.to_numpy(p.tilegrad()), first, 0, 0)


@pytest.mark.parametrize("sizes", ["full", "small", "tiny"])
def test_every_group_present_and_names_unique(sizes):
    cs = kernels.cases(sizes)
    assert {c.group for c in cs} == set(kernels.GROUPS)
    names = [c.name for c in cs]
    assert len(names) == len(set(names))
    for c in cs:
        assert c.bound in ("compute", "memory")
        assert c.flops >= 0 and c.bytes > 0


def test_full_list_is_lazy():
    """Listing the full-size cases allocates nothing big: inputs are made in setup only."""
    tracemalloc.start()
    try:
        cs = kernels.cases("full")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cs) > 30
    assert peak < (1 << 20)


def test_sizes():
    full, small = kernels.cases("full"), kernels.cases("small")
    squares = lambda cs: [c.shape for c in cs if "(square)" in c.name]   # noqa: E731
    assert squares(full) == ["1024x1024x1024", "2048x2048x2048", "4096x4096x4096"]
    assert squares(small) == ["1024x1024x1024"]
    rest = lambda cs: [c.name for c in cs if "(square)" not in c.name]   # noqa: E731
    assert rest(full) == rest(small)
    with pytest.raises(ValueError, match="sizes"):
        kernels.cases("huge")


def _one(cs, start):
    found = [c for c in cs if c.name.startswith(start)]
    assert len(found) == 1, (start, [c.name for c in found])
    return found[0]


def test_full_flops_and_bytes_by_hand():
    cs = kernels.cases("full")
    c = _one(cs, "matmul 64x784 @ 128x784^T")
    assert (c.flops, c.bytes) == (2 * 64 * 128 * 784, (64 * 784 + 784 * 128 + 64 * 128) * 4)
    assert _one(cs, "matmul 700x256 @ 10000x256^T").flops == 3_584_000_000
    assert _one(cs, "matmul 4096x4096 @ 4096x4096").flops == 2 * 4096 ** 3
    # conv1: 64 images x 64 filters x 28x28 outputs x 9 taps of 1 channel, x2
    assert _one(cs, "conv2d fwd 64x1x28x28").flops == 57_802_752
    assert _one(cs, "conv2d bwd-weight 64x128x7x7").flops == 2 * 64 * 256 * 49 * 128 * 9
    # LSTM step: two GEMMs 20x1024x(128+256), plus 10 FLOPs per hidden unit
    assert _one(cs, "lstm step B=20").flops == 15_728_640 + 51_200
    assert _one(cs, "lstm sequence T=35").flops == 3 * 35 * (15_728_640 + 51_200)
    assert _one(cs, "cross_entropy fwd 700x10000").flops == 28_000_000
    assert _one(cs, "cross_entropy bwd 700x10000").flops == 49_000_000
    # pooling 64x64x28x28 -> 14x14: read the input, write the output and its int64 argmax
    assert _one(cs, "max_pool2d fwd 64x64x28x28").bytes == 12_845_056 + 802_816 * 12
    assert _one(cs, "max_pool2d fwd 64x256x7x7").bytes == 64 * 256 * (49 * 4 + 9 * 12)
    c = _one(cs, "relu bwd 64x128x14x14")
    assert (c.flops, c.bytes) == (1_605_632, 3 * 1_605_632 * 4)
    # Adam over the LM: 10000x128 + 1024x128 + 1024x256 + 2x1024 + 10000x256 + 10000 values
    c = _one(cs, "adam step")
    assert "4245264 values" in c.name
    assert (c.flops, c.bytes) == (12 * 4_245_264, 7 * 4_245_264 * 4)


def test_matmul_ladder_cases_run_each_cuda_version():
    """With ``ladder`` each CUDA matmul version gets a case on the largest square, and the case
    runs that version (checked through the simulator where no GPU is here)."""
    from tilegrad import kernels as registry
    cs = kernels.cases("tiny", ladder=True)
    ladder = [c for c in cs if ", matmul " in c.name]
    declared = registry.versions()["matmul"][0]
    assert {"v1", "v4", "v5", "v6", "auto"} <= set(declared)
    assert [c.name.rsplit(" ", 1)[-1] for c in ladder] == [f"{v})" for v in declared]
    assert len({c.name for c in cs}) == len(cs)
    cuda = tg.device("cuda")
    if not cuda.available:
        pytest.skip(f"device cuda: {cuda.reason}")
    for case in ladder:
        p = case.setup(cuda, None)
        harness.validate(case.name, p.to_numpy(p.tilegrad()), p.reference(), p.rtol, p.atol)
