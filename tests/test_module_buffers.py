"""Module buffers: registered state that is not a parameter, compared with torch.nn's."""
import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.testing import assert_close


def _build(self, lib):
    self.lin = lib.nn.Linear(3, 2)
    self.register_buffer("running", lib.ones(2))
    self.register_buffer("steps", lib.tensor(0))
    self.register_buffer("scratch", lib.zeros(2), persistent=False)
    self.register_buffer("absent", None)


class Counter(tg.nn.Module):
    def __init__(self, lib):
        super().__init__()
        _build(self, lib)


def _torch_counter():
    class TorchCounter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            _build(self, torch)
    return TorchCounter()


@pytest.mark.skipif(torch is None, reason="needs PyTorch")
def test_state_dict_keys_and_order_match_torch():
    ours, theirs = Counter(tg), _torch_counter()
    outer_ours = tg.nn.Sequential(ours, Counter(tg))
    outer_theirs = torch.nn.Sequential(theirs, _torch_counter())
    assert list(outer_ours.state_dict()) == list(outer_theirs.state_dict())
    assert [n for n, _ in outer_ours.named_buffers()] == [
        n for n, _ in outer_theirs.named_buffers()]
    sd = {k: v.numpy() * 1 + 2 for k, v in outer_theirs.state_dict().items()}
    outer_ours.load_state_dict(sd)
    for k, v in outer_ours.state_dict().items():
        assert_close(v, sd[k].astype(v.dtype))


def test_to_moves_buffers_and_casts_only_floating_ones(device):
    m = Counter(tg).to(device).to(tg.float64)
    assert m.running.device.name == device and m.running.dtype == tg.float64
    assert m.steps.dtype == tg.int64 and m.steps.device.name == device
    assert m.scratch.dtype == tg.float64


def test_assigning_a_buffer_keeps_it_registered():
    m = Counter(tg)
    m.running = tg.full((2,), 5.0)
    assert_close(m.state_dict()["running"], np.full(2, 5.0, np.float32))
    with pytest.raises(TypeError, match="buffer 'running'"):
        m.running = np.zeros(2)
    del m.running
    assert "running" not in m.state_dict()


@pytest.mark.parametrize("name", ["lin", "", "a.b"])
def test_register_buffer_refuses_bad_names(name):
    m = Counter(tg)
    with pytest.raises(KeyError, match="register_buffer"):
        m.register_buffer(name, tg.zeros(1))
    with pytest.raises(TypeError, match="register_buffer"):
        m.register_buffer("fresh", np.zeros(1))
