"""Dropout drawn on the device from a counter-based generator (Philox4x32-10) whose state lives in
device memory: the draws against a pure-Python Philox checked on Random123's known answers, the
statistics of the mask, the same masks on cpu and cuda from one seed, the offset advanced on the
device (so a captured CUDA graph draws new masks at each replay, the same as eager calls), the
gradient, and the generator state in get_rng_state/set_rng_state and checkpoints."""
import math
import os

import numpy as np
import pytest

import tilegrad as tg
import tilegrad.nn.functional as F
from tilegrad.testing import assert_close, gradcheck, rng
from tilegrad import random as tg_random
from tilegrad.backends import numpy as spec
from tilegrad.errors import DtypeError

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
needs_cuda = pytest.mark.skipif(not SIM or not tg.device("cuda").available,
                                reason="cuda runs here only in Numba's simulator")

# ---------------------------------------------------------------- an independent Philox


def philox(counter, key):
    """Philox4x32-10 on Python ints (Random123's reference, written out): four 32-bit words."""
    c, (k0, k1), mask = list(counter), key, 0xFFFFFFFF
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & mask, (k1 + 0xBB67AE85) & mask
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & mask, (p0 >> 32) ^ c[3] ^ k1, p0 & mask]
    return c


def expected_mask(seed, offset, n, p):
    """Element i kept iff word (offset+i) % 4 of Philox at counter (offset+i) // 4, key seed,
    is >= ceil(p * 2**32)."""
    threshold, out = math.ceil(p * 2.0 ** 32), []
    for i in range(offset, offset + n):
        ctr = i // 4
        words = philox([ctr & 0xFFFFFFFF, ctr >> 32, 0, 0], [seed & 0xFFFFFFFF, seed >> 32])
        out.append(words[i % 4] >= threshold)
    return np.array(out)


# Random123's known-answer vectors for philox4x32-10 (counter, key, result).
KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
    ([0xffffffff] * 4, [0xffffffff] * 2, [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
    ([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0],
     [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]),
]


@pytest.mark.parametrize("counter, key, want", KAT)
def test_philox_known_answers(counter, key, want):
    assert philox(counter, key) == want
    if counter[2] == counter[3] == 0:       # the backends' counters have words 2 and 3 zero
        ctr = np.array([counter[0] | counter[1] << 32], np.uint64)
        got = spec._philox4x32(ctr, key[0] | key[1] << 32)
        assert [int(w[0]) for w in got] == want


def backend_of(device):
    return tg.device(device).backend


def state_array(device, seed, offset):
    return backend_of(device).from_numpy(np.array([seed, offset, 0], np.uint64))


@pytest.mark.parametrize("n, offset, p", [(1, 0, 0.5), (7, 4, 0.3), (37, 8, 0.7),
                                          (130, 2 ** 32 * 4 - 8, 0.25)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_primitive_draws_philox_and_advances_the_offset(device, n, offset, p, dtype):
    """Each backend's dropout_fwd against the pure-Python Philox (odd sizes, an offset whose
    counters cross 2**32, several blocks racing to advance the offset in the simulator)."""
    be = backend_of(device)
    seed = int(rng(n).integers(0, 2 ** 63)) * 2 + 1           # both key words used
    x = rng(n + 1).standard_normal((n,)).astype(dtype) + 0.5
    state = state_array(device, seed, offset)
    y, mask = be.dropout_fwd(be.from_numpy(x), p, state)
    y, mask = be.to_numpy(y), be.to_numpy(mask)
    want = expected_mask(seed, offset, n, p)
    assert mask.dtype == np.bool_ and (mask == want).all(), f"first difference at " \
        f"{np.argmax(mask != want)}"
    scale = dtype(1 / (1 - p))
    np.testing.assert_array_equal(y, np.where(want, x * scale, x * dtype(0)))
    assert y.dtype == dtype
    s = be.to_numpy(state)
    assert [int(v) for v in s] == [seed, offset + 4 * math.ceil(n / 4), 0]


def test_primitive_of_an_empty_array_draws_nothing(device):
    be = backend_of(device)
    state = state_array(device, 5, 12)
    y, mask = be.dropout_fwd(be.zeros((0, 3), np.float32), 0.5, state)
    assert be.to_numpy(y).shape == be.to_numpy(mask).shape == (0, 3)
    assert [int(v) for v in be.to_numpy(state)] == [5, 12, 0]


def test_backward_primitive(device):
    be = backend_of(device)
    g = rng(3).standard_normal((5, 7))
    m = rng(4).random((5, 7)) < 0.6
    out = be.to_numpy(be.dropout_bwd(be.from_numpy(g), be.from_numpy(m), 0.4))
    np.testing.assert_array_equal(out, g * np.where(m, 1 / 0.6, 0.0))

# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
def test_mask_statistics(p):
    """The kept fraction, per word position of a counter, and of neighbouring pairs (which come
    from one counter or two), each within 6 standard deviations of the binomial's mean."""
    n = 400_000
    tg.manual_seed(11)
    mask = F.dropout(tg.ones(n, dtype=tg.float64), p).numpy() != 0
    q = 1 - p

    def close(frac, mean, count):
        assert abs(frac - mean) <= 6 * math.sqrt(mean * (1 - mean) / count), (frac, mean)

    close(mask.mean(), q, n)
    for w in range(4):
        close(mask[w::4].mean(), q, n // 4)
    close((mask[:-1] & mask[1:]).mean(), q * q, n - 1)         # independence of neighbours
    close((mask[:-4] & mask[4:]).mean(), q * q, n - 4)         # and of one word, next counter

# ---------------------------------------------------------------- cpu and cuda agree


@needs_cuda
@pytest.mark.parametrize("dtype", [tg.float32, tg.float64])
def test_cpu_and_cuda_draw_the_same_masks_from_one_seed(dtype):
    shapes = [(3, 5), (1,), (2, 3, 7), (41,)]                   # odd sizes: offsets round up
    xs = [rng(k).standard_normal(s) for k, s in enumerate(shapes)]
    results = {}
    for device in ("cpu", "cuda"):
        tg.manual_seed(123)
        results[device] = [F.dropout(tg.tensor(x, dtype=dtype, device=device), 0.35).numpy()
                           for x in xs]
    for a, b in zip(results["cpu"], results["cuda"]):
        np.testing.assert_array_equal(a, b)                    # the same bits
    assert any((a == 0).any() and (a != 0).any() for a in results["cpu"])

# ---------------------------------------------------------------- the offset lives on the device


def test_two_calls_draw_different_masks_and_the_offset_advances(device):
    tg.manual_seed(7)
    x = tg.tensor(rng(1).standard_normal((9, 13)) + 3, device=device)
    a, b = F.dropout(x, 0.5).numpy() != 0, F.dropout(x, 0.5).numpy() != 0
    assert (a != b).any()
    seed, offset, done = backend_of(device).to_numpy(tg_random.device_state(x.device))
    assert int(offset) == 2 * 120 and int(done) == 0           # 117 draws rounded up to 120


def _capture(fn):
    from tilegrad.backends.cuda import runtime as rt
    cap = rt.Capture()
    cap.begin()
    try:
        out = fn()
    finally:
        cap.end()
    return cap, out


@needs_cuda
def test_a_captured_dropout_draws_new_masks_at_each_replay_as_eager_calls_do():
    from tilegrad.backends.cuda import runtime as rt
    x = tg.tensor(rng(2).standard_normal((6, 11)) + 3, device="cuda", requires_grad=True)
    w = tg.tensor(rng(3).standard_normal((6, 11)), device="cuda")
    tg.manual_seed(99)
    eager = []
    for _ in range(3):
        x.grad = None
        y = F.dropout(x, 0.4)
        (y * w).sum().backward()
        eager.append((y.numpy(), x.grad.numpy()))

    tg.manual_seed(99)        # the state exists (made above): reseeded in place, no upload below
    before = rt.counts()

    def step():
        x.grad = None
        y = F.dropout(x, 0.4)
        (y * w).sum().backward()
        return y, x.grad

    cap, (y, grad) = _capture(step)
    assert rt.counts()["kernels"] > before["kernels"] and len(cap) > 0
    for want_y, want_grad in eager:
        cap.replay()
        np.testing.assert_array_equal(y.numpy(), want_y)
        np.testing.assert_array_equal(grad.numpy(), want_grad)


@needs_cuda
def test_a_captured_training_step_with_dropout_equals_eager_steps_and_cpu():
    """A small MLP with dropout: steps replayed from one capture end with the losses and
    parameters of eager steps on cuda, bit for bit, and of the same steps on cpu (the same
    masks from the same seed)."""
    def train(device, capture, steps=4):
        tg.manual_seed(21)
        model = tg.nn.Sequential(tg.nn.Linear(5, 8), tg.nn.ReLU(), tg.nn.Dropout(0.4),
                                 tg.nn.Linear(8, 3)).to(device, tg.float64)
        opt = tg.optim.SGD(model.parameters(), lr=0.5)
        x = tg.tensor(rng(12).standard_normal((6, 5)), device=device)
        y = tg.tensor(np.array([0, 2, 1, 2, 0, 1]), device=device)

        def step():
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        losses = [step().item()]                                # warm-up, eagerly
        if capture:
            g = tg.cuda.CUDAGraph()
            with tg.cuda.graph(g):
                loss = step()
            for _ in range(steps - 1):
                g.replay()
                losses.append(loss.item())
        else:
            losses += [step().item() for _ in range(steps - 1)]
        return losses, [p.numpy() for p in model.parameters()]

    replayed, eager, cpu = train("cuda", True), train("cuda", False), train("cpu", False)
    assert replayed[0] == eager[0] and len(set(replayed[0])) == len(replayed[0])
    for a, b, c in zip(replayed[1], eager[1], cpu[1]):
        np.testing.assert_array_equal(a, b)
        assert_close(a, c, rtol=1e-10, atol=1e-12)
    assert_close(replayed[0], cpu[0], rtol=1e-10, atol=1e-12)


@needs_cuda
def test_dropout_is_one_launch_each_way_and_no_copy():
    from tilegrad.backends.cuda import runtime as rt
    be = backend_of("cuda")
    x = tg.tensor(rng(4).standard_normal((5, 9)), device="cuda")
    state = tg_random.device_state(x.device)
    before = rt.counts()
    y, mask = be.dropout_fwd(x._data, 0.3, state)
    mid = rt.counts()
    be.dropout_bwd(y, mask, 0.3)
    after = rt.counts()
    assert (mid["kernels"] - before["kernels"], after["kernels"] - mid["kernels"]) == (1, 1)
    assert after["copies"] == before["copies"]


@needs_cuda
def test_the_first_draw_on_a_device_is_not_capturable(monkeypatch):
    from tilegrad.errors import CaptureError
    monkeypatch.setattr(tg_random, "_states", {})
    x = tg.tensor(rng(5).standard_normal(7), device="cuda")
    with pytest.raises(CaptureError, match="from_numpy"):
        _capture(lambda: F.dropout(x, 0.5))

# ---------------------------------------------------------------- gradients and semantics


@pytest.mark.parametrize("p", [0.2, 0.6])
def test_gradient_is_the_mask_scaled(device, p):
    x_np = rng(6).standard_normal((17, 9)) + 4              # none zero, so the mask shows in y
    x = tg.tensor(x_np, device=device, requires_grad=True)
    y = F.dropout(x, p)
    kept = y.numpy() != 0
    w = rng(7).standard_normal(x.shape)
    (y * tg.tensor(w, device=device)).sum().backward()
    assert_close(y.numpy(), np.where(kept, x_np / (1 - p), 0), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(x.grad.numpy(), w * np.where(kept, 1 / (1 - p), 0.0))


def test_gradient_against_central_differences():
    def fn(t):
        tg.manual_seed(3)                                    # the same mask at every call
        return F.dropout(t, 0.45)
    gradcheck(fn, rng(8).standard_normal((4, 5)))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")   # inf * 0
@pytest.mark.parametrize("dtype", [tg.float32, tg.float64])
def test_semantics_of_pytorch(device, dtype):
    x = tg.tensor(rng(9).standard_normal((4, 6)), dtype=dtype, device=device)
    assert F.dropout(x, 0.0) is x and F.dropout(x, 0.5, training=False) is x
    z = F.dropout(x, 1.0)
    assert z.dtype == dtype and (z.numpy() == 0).all()
    bad = tg.tensor(np.array([np.inf, -np.inf, np.nan] * 20), dtype=dtype, device=device)
    y = F.dropout(bad, 0.5).numpy()                          # a dropped inf is NaN: x * mask
    for sign in (1, -1):
        got = y[(1 - sign) // 2::3]
        assert (np.isnan(got) | (got == sign * np.inf)).all() and set(np.isnan(got)) == {0, 1}
    assert np.isnan(y[2::3]).all()
    ints = tg.tensor(np.arange(6), device=device)
    assert F.dropout(ints, 0.5, training=False) is ints
    with pytest.raises(DtypeError, match="dropout"):
        F.dropout(ints, 0.5)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout"):
            F.dropout(x, p)

# ---------------------------------------------------------------- the generator state


@pytest.mark.parametrize("devices", [("cpu",), ("cpu", "cuda")])
def test_rng_state_round_trip_through_a_checkpoint(tmp_path, devices):
    if "cuda" in devices and not (SIM and tg.device("cuda").available):
        pytest.skip("cuda runs here only in Numba's simulator")
    xs = {d: tg.tensor(rng(10).standard_normal((3, 7)) + 2, device=d) for d in devices}
    tg.manual_seed(4)
    for d in devices:
        F.dropout(xs[d], 0.5)                                  # offsets away from 0
    tg.save({"rng": tg.get_rng_state()}, tmp_path / "s.tg")
    want = {d: F.dropout(xs[d], 0.5).numpy() for d in devices}
    want_randn = tg.randn(5).numpy()
    tg.manual_seed(1234)                                        # elsewhere
    for d in devices:
        F.dropout(xs[d], 0.5)
    tg.set_rng_state(tg.load(tmp_path / "s.tg")["rng"])
    for d in devices:
        np.testing.assert_array_equal(F.dropout(xs[d], 0.5).numpy(), want[d])
    np.testing.assert_array_equal(tg.randn(5).numpy(), want_randn)


def test_a_state_saved_before_the_counter_generator_still_loads():
    tg.manual_seed(5)
    old = tg.get_rng_state()["numpy"]                          # what get_rng_state returned then
    want = tg.randn(4).numpy()
    tg.set_rng_state(old)
    np.testing.assert_array_equal(tg.randn(4).numpy(), want)


def test_reseeding_writes_the_state_in_place_and_seeds_every_device_alike(device):
    x = tg.tensor(rng(11).standard_normal(10) + 2, device=device)
    tg.manual_seed(8)
    a = F.dropout(x, 0.5).numpy()
    state = tg_random.device_state(x.device)
    tg.manual_seed(8)
    assert tg_random.device_state(x.device) is state          # a graph holding it sees reseeds
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), a)
    seed = tg.get_rng_state()["counter"]["devices"][x.device.name][0]
    assert seed == tg_random._derive_seed(8)


def test_bad_states_are_refused_and_change_nothing():
    tg.manual_seed(6)
    good = tg.get_rng_state()
    for bad in ({**good, "counter": {"seed": -1, "devices": {}}},
                {**good, "counter": {"seed": 3, "devices": {"cpu": [3, 5]}}},
                {**good, "counter": {"seed": 3, "devices": {"cpu": [2 ** 64, 0]}}}):
        with pytest.raises(ValueError, match="set_rng_state"):
            tg.set_rng_state(bad)
    assert tg.get_rng_state() == good
