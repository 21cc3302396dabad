"""tilegrad.save and tilegrad.load: exact round trips, atomic writes, and clear errors on files
that are not whole checkpoints."""
import io
import json
import math
import os
import re
import zipfile

import numpy as np
import pytest

import tilegrad as tg
from tilegrad import nn


def assert_same(a, b, where="obj"):
    """``b`` is ``a`` restored: same types and structure, arrays bit-equal with their dtype."""
    if isinstance(a, tg.Tensor):
        assert isinstance(b, tg.Tensor), f"{where}: {type(b).__name__} is not a Tensor"
        assert b.dtype == a.dtype and b.shape == a.shape, f"{where}: {b.dtype}{b.shape}"
        assert b.numpy().tobytes() == a.numpy().tobytes(), f"{where}: values differ"
    elif isinstance(a, np.ndarray):
        assert type(b) is np.ndarray, f"{where}: {type(b).__name__} is not an ndarray"
        assert b.dtype == a.dtype and b.shape == a.shape, f"{where}: {b.dtype}{b.shape}"
        assert np.ascontiguousarray(b).tobytes() == np.ascontiguousarray(a).tobytes(), \
            f"{where}: values differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(b) == list(a), f"{where}: keys {list(b)} != {list(a)}"
        for k in a:
            assert type(k) is type(next(kb for kb in b if kb == k)), f"{where}: key {k!r} type"
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a) and len(b) == len(a), f"{where}: {type(b).__name__} {b!r}"
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{k}]")
    elif isinstance(a, float):
        assert type(b) is float and np.float64(b).tobytes() == np.float64(a).tobytes(), \
            f"{where}: {b!r} != {a!r}"
    else:
        assert type(b) is type(a) and b == a, f"{where}: {b!r} != {a!r}"


def trained(make_opt, steps=2, seed=0):
    """A small model and optimizer after ``steps`` updates on random data."""
    tg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    opt = make_opt(model.parameters())
    r = np.random.default_rng(seed)
    for _ in range(steps):
        x = tg.tensor(r.standard_normal((4, 5)).astype(np.float32))
        y = tg.tensor(r.integers(0, 3, 4))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt


OPTIMIZERS = {
    "SGD": lambda ps: tg.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True),
    "Adam": lambda ps: tg.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99)),
}


# ---------------------------------------------------------------- round trips

def test_round_trip_model_state_dict(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 6, 7),
                          nn.Embedding(9, 2))
    sd = model.state_dict()
    tg.save(sd, tmp_path / "model.tg")
    loaded = tg.load(tmp_path / "model.tg")
    assert_same(dict(sd), loaded)
    fresh = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 6, 7),
                          nn.Embedding(9, 2))
    fresh.load_state_dict(loaded)
    assert_same(dict(sd), dict(fresh.state_dict()))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_round_trip_optimizer_state_dict_resumes_exactly(tmp_path, name):
    model, opt = trained(OPTIMIZERS[name])
    osd = opt.state_dict()
    tg.save({"model": model.state_dict(), "optimizer": osd, "epoch": 2}, str(tmp_path / "ck.tg"))
    ck = tg.load(str(tmp_path / "ck.tg"))
    assert_same(osd, ck["optimizer"], "optimizer")
    assert isinstance(ck["optimizer"]["param_groups"][0]["params"], list)
    assert all(type(k) is int for k in ck["optimizer"]["state"])
    if name == "Adam":
        assert ck["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.99)

    # A fresh model and optimizer restored from the file take the same next step, bit for bit.
    model2, opt2 = trained(OPTIMIZERS[name], steps=0, seed=1)
    model2.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["optimizer"])
    x = tg.randn(4, 5)
    y = tg.tensor([2, 0, 1, 2])
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        o.step()
    assert_same(dict(model.state_dict()), dict(model2.state_dict()))


def test_round_trip_every_kind_of_value(tmp_path):
    r = np.random.default_rng(5)
    obj = {
        "state": {0: {"step": 3, "buf": r.standard_normal((2, 3)).astype(np.float32)},
                  7: {"buf": r.standard_normal(5)}},
        "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 7], "name": None}],
        "floats": [0.1, -0.0, 1e-310, float("inf"), float("-inf"), float("nan"), 1.0],
        "ints": (0, -1, 2 ** 62, 2 ** 70),
        "flags": [True, False],
        "text": "naïve \"quoted\" 'x' \n\u2713",
        "arrays": [r.standard_normal((3, 1, 4)).astype(np.float64),
                   r.integers(-2 ** 40, 2 ** 40, (5,), dtype=np.int64),
                   r.integers(0, 255, (2, 3), dtype=np.uint8),
                   r.integers(-9, 9, (4,), dtype=np.int32),
                   r.standard_normal((4, 3)).astype(np.float32).T,     # not contiguous
                   np.zeros((0, 3), dtype=np.float32), np.array(2.5), r.random(3) > 0.5,
                   np.array([np.nan, -0.0, np.inf], dtype=np.float32)],
        "tensors": (tg.randn(3, 2), tg.randn(5, dtype=tg.float64), tg.arange(4),
                    tg.tensor(1.5, requires_grad=True)),
        "empty": [{}, [], ()],
        3: "int key", "3": "str key",
        "numpy scalars": [np.float64(0.25), np.int64(7)],
    }
    tg.save(obj, tmp_path / "all.tg")
    loaded = tg.load(tmp_path / "all.tg")
    expected = dict(obj, **{"numpy scalars": [0.25, 7]})   # NumPy scalars come back as Python's
    assert_same(expected, loaded)
    assert loaded[3] == "int key" and loaded["3"] == "str key"
    assert not loaded["tensors"][3].requires_grad


def test_saving_twice_overwrites(tmp_path):
    path = tmp_path / "ck.tg"
    tg.save({"v": np.arange(3)}, path)
    tg.save({"v": np.arange(5.0)}, path)
    assert_same({"v": np.arange(5.0)}, tg.load(path))
    assert os.listdir(tmp_path) == ["ck.tg"]


# ---------------------------------------------------------------- atomic writes

def _boom(*args, **kwargs):
    raise OSError("disk full (simulated)")


def _half_then_boom(f, **arrays):
    f.write(b"PK\x03\x04 half a file")
    raise OSError("disk full (simulated)")


@pytest.mark.parametrize("target, fn", [(np, _boom), (np, _half_then_boom), (os, _boom)],
                         ids=["savez", "savez-midway", "os.replace"])
def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch, target, fn):
    path = tmp_path / "ck.tg"
    old = {"w": np.random.default_rng(2).standard_normal((3, 4)), "step": 1}
    tg.save(old, path)
    old_bytes = path.read_bytes()
    monkeypatch.setattr(target, "savez" if target is np else "replace", fn)
    with pytest.raises(OSError, match="simulated"):
        tg.save({"w": np.ones((9, 9)), "step": 2}, path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["ck.tg"], "a temporary file was left behind"
    assert_same(old, tg.load(path))


def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupt)
    with pytest.raises(KeyboardInterrupt):
        tg.save({"w": np.ones(3)}, tmp_path / "new.tg")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- damaged files

def _checkpoint(tmp_path):
    path = tmp_path / "ck.tg"
    arr = np.random.default_rng(4).standard_normal((6, 5))
    tg.save({"w": arr, "b": tg.randn(5), "step": 3}, path)
    return path, arr


def _not_readable(path):
    return re.escape(f"load: {path}") + ".*(not a readable tilegrad checkpoint|corrupt)"


@pytest.mark.parametrize("keep", [0, 3, 30, 0.5, -1, -22])
def test_truncated_file(tmp_path, keep):
    path, _ = _checkpoint(tmp_path)
    raw = path.read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw) if keep else 0
    path.write_bytes(raw[:n])
    with pytest.raises(ValueError, match=_not_readable(path)):
        tg.load(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.tg"
    path.write_bytes(np.random.default_rng(8).bytes(777))
    with pytest.raises(ValueError, match=_not_readable(path)):
        tg.load(path)


def test_other_numpy_files(tmp_path):
    npy = tmp_path / "plain.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(ValueError, match=re.escape(f"load: {npy}") + ".*not a readable"):
        tg.load(npy)
    npz = tmp_path / "plain.npz"
    np.savez(npz, a=np.ones(3))
    with pytest.raises(ValueError, match=re.escape(f"load: {npz}") + ".*__meta__"):
        tg.load(npz)


def test_flipped_byte_inside_an_array(tmp_path):
    path, arr = _checkpoint(tmp_path)
    raw = bytearray(path.read_bytes())
    at = raw.find(arr.tobytes())
    assert at > 0
    raw[at + 17] ^= 0x08
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=_not_readable(path)):
        tg.load(path)


def _rewrite_member(path, name, new_bytes):
    """Replace one member of the archive, with a valid CRC: only the digest can notice."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[name] = new_bytes
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


@pytest.mark.parametrize("change", ["value", "dtype"])
def test_tampered_array_fails_the_digest(tmp_path, change):
    path, arr = _checkpoint(tmp_path)
    changed = arr.copy()
    if change == "value":
        changed[2, 3] = np.nextafter(changed[2, 3], np.inf)   # one bit of one element
    else:
        changed = changed.view(np.int64)                       # same bytes, another dtype
    buf = io.BytesIO()
    np.save(buf, changed)
    _rewrite_member(path, "a0.npy", buf.getvalue())
    with pytest.raises(ValueError, match=re.escape(f"load: {path}") + ".*digest"):
        tg.load(path)


def test_tampered_structure_fails_the_digest(tmp_path):
    path, _ = _checkpoint(tmp_path)
    with zipfile.ZipFile(path) as z:
        meta = np.load(io.BytesIO(z.read("__meta__.npy"))).tobytes().decode()
    meta = json.loads(meta)
    assert '{"value": 3}' in meta["structure"]
    meta["structure"] = meta["structure"].replace('{"value": 3}', '{"value": 4}')
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
    _rewrite_member(path, "__meta__.npy", buf.getvalue())
    with pytest.raises(ValueError, match=re.escape(f"load: {path}") + ".*digest"):
        tg.load(path)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        tg.load(tmp_path / "nope.tg")
    with pytest.raises(FileNotFoundError):
        tg.load(str(tmp_path / "no" / "such" / "dir.tg"))


# ---------------------------------------------------------------- what cannot be saved

@pytest.mark.parametrize("obj, what", [
    (lambda x: x, "function"),
    ({"w": np.array([1, "a", None], dtype=object)}, "object"),
    ({"state": {0: {"fn": print}}}, "builtin_function_or_method"),
    ({"z": np.ones(3, dtype=np.complex64)}, "complex64"),
    ({"s": {1, 2}}, "set"),
    ({(1, 2): 3}, "keys"),
    ([1, 2.0, object()], "object"),
])
def test_unsupported_object(tmp_path, obj, what):
    path = tmp_path / "bad.tg"
    with pytest.raises(TypeError, match=r"save.*" + re.escape(what)):
        tg.save(obj, path)
    assert os.listdir(tmp_path) == []


def test_unsupported_object_keeps_the_old_file(tmp_path):
    path = tmp_path / "ck.tg"
    tg.save({"step": 1}, path)
    old = path.read_bytes()
    with pytest.raises(TypeError, match=re.escape("obj['state'][0]['fn']")):
        tg.save({"state": {0: {"fn": math.sqrt}}}, path)
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["ck.tg"]
