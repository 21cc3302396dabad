"""tilegrad.save and tilegrad.load: exact round trips, atomic writes through symlinks with the
umask's modes and cleanup of abandoned temporary files, and clear errors (a ValueError naming
the file) on files that are not whole checkpoints, including crafted ones with a valid digest."""
import errno
import hashlib
import io
import json
import math
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tilegrad as tg
from tilegrad import nn, serialization


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


# ================================================================ safe saving
# Each test below names the case it covers. Unless a comment says otherwise, it fails on the
# save/load before this change (which renamed a temporary file over whatever was at the path,
# created files 0600, left the temporary file of a killed save forever, named the temporary file
# in its errors, and raised AttributeError, IndexError, KeyError, TypeError, RecursionError,
# MemoryError or zlib.error, or loaded silently, on crafted files whose digest is valid).

MAX_DEPTH = 100   # nesting levels save writes and load reads, as docs/saving.md states


def _host():
    """The host part of a temporary file's name, as docs/saving.md describes it."""
    return re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())[:64] or "_"


def _temp_name(host, pid, token="0123456789abcdef"):
    return f".tilegrad-save.{host}.{pid}.{token}.tmp"


def _dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    saved = []
    yield lambda mask: saved.append(os.umask(mask))
    if saved:
        os.umask(saved[0])


def test_save_writes_through_a_symlink(tmp_path):
    """Symlink at the path: the link stays, its target gets the new contents."""
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "real" / "ck.tg"
    tg.save({"v": 1}, target)
    link = tmp_path / "links" / "latest.tg"
    os.symlink(os.path.join("..", "real", "ck.tg"), link)     # relative, into another folder
    tg.save({"v": np.arange(4)}, link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "real", "ck.tg")
    assert_same({"v": np.arange(4)}, tg.load(target))
    assert os.listdir(tmp_path / "links") == ["latest.tg"]
    assert os.listdir(tmp_path / "real") == ["ck.tg"]


def test_save_through_a_dangling_symlink_creates_its_target(tmp_path):
    """Dangling symlink: like open(path, 'w'), the target is created and the link kept."""
    link = tmp_path / "ck.tg"
    os.symlink("made.tg", link)
    tg.save({"v": 2}, link)
    assert link.is_symlink() and (tmp_path / "made.tg").is_file()
    assert tg.load(tmp_path / "made.tg") == {"v": 2}


def _make_special(kind, path):
    if kind == "directory":
        os.mkdir(path)
        (path / "inside.txt").write_text("keep me")
    elif kind == "FIFO":
        os.mkfifo(path)
    elif kind == "socket":
        if len(os.fsencode(path)) >= 100:
            pytest.skip("path too long for a Unix socket")
        s = socket.socket(socket.AF_UNIX)
        s.bind(os.fspath(path))
        s.close()
    else:   # a character device like /dev/full (major 1, minor 7), made here: root only
        try:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 7))
        except (PermissionError, AttributeError) as e:
            pytest.skip(f"cannot make a device node here: {e}")


@pytest.mark.parametrize("kind, words", [("directory", "a directory"),
                                         ("FIFO", "a FIFO (named pipe)"), ("socket", "a socket"),
                                         ("chardev", "a character device")])
@pytest.mark.parametrize("via_link", [False, True], ids=["direct", "via-symlink"])
def test_save_refuses_what_is_not_a_regular_file(tmp_path, kind, words, via_link):
    """Device node / directory / FIFO / socket at the path (or behind a symlink): a clear
    ValueError naming the path and what it is, and nothing changes there (no temp file left)."""
    special = tmp_path / "special"
    _make_special(kind, special)
    path = tmp_path / "ck.tg" if via_link else special
    if via_link:
        os.symlink(special, path)
    before = os.lstat(special)
    listing = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match=re.escape(f"save: cannot write {path}") + ".*"
                       + re.escape(f"is {words}, not a regular file")) as e:
        tg.save({"v": 1}, path)
    if via_link:
        assert f"a link to {special}" in str(e.value)
    after = os.lstat(special)
    assert (after.st_mode, after.st_ino, after.st_rdev) == \
        (before.st_mode, before.st_ino, before.st_rdev)
    assert sorted(os.listdir(tmp_path)) == listing
    if kind == "directory":
        assert os.listdir(special) == ["inside.txt"]


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664),
                                        (0o077, 0o600)])
def test_new_file_mode_follows_the_umask(tmp_path, umask, mask, mode):
    """New file: mode 0o666 & ~umask, as open(path, 'w') gives (was always 0600; the 0o077
    case passed before too)."""
    umask(mask)
    tg.save({"v": 1}, tmp_path / "ck.tg")
    with open(tmp_path / "plain", "w"):
        pass
    assert stat.S_IMODE(os.stat(tmp_path / "ck.tg").st_mode) == mode
    assert stat.S_IMODE(os.stat(tmp_path / "plain").st_mode) == mode


@pytest.mark.parametrize("via_link", [False, True], ids=["direct", "via-symlink"])
def test_overwritten_file_keeps_its_mode(tmp_path, umask, via_link):
    """Existing regular file: its permission bits are kept whatever the umask (was 0600)."""
    umask(0o077)
    target = tmp_path / "ck.tg"
    tg.save({"v": 1}, target)
    os.chmod(target, 0o654)
    path = tmp_path / "link.tg" if via_link else target
    if via_link:
        os.symlink(target, path)
    tg.save({"v": 2}, path)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o654
    assert tg.load(target) == {"v": 2}


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write any file")
def test_read_only_file_is_not_replaced(tmp_path):
    """Read-only existing file: PermissionError naming it, as open(path, 'w') would give; the
    rename used to replace it regardless."""
    path = tmp_path / "ck.tg"
    tg.save({"v": 1}, path)
    os.chmod(path, 0o444)
    with pytest.raises(PermissionError, match=re.escape(f"save: cannot write {path}")):
        tg.save({"v": 2}, path)
    assert tg.load(path) == {"v": 1} and os.listdir(tmp_path) == ["ck.tg"]


def test_killed_save_leaves_a_temp_file_that_the_next_save_removes(tmp_path):
    """A save killed midway (SIGKILL, nothing can clean up) leaves its temporary file; the
    next save into that folder removes it, since its writer is gone."""
    path = tmp_path / "ck.tg"
    script = ("import os, signal, sys, numpy as np, tilegrad as tg\n"
              "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
              "tg.save({'w': np.ones(1000)}, sys.argv[1])\n")
    p = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()
    left = os.listdir(tmp_path)
    assert len(left) == 1 and left[0] != "ck.tg", left
    tg.save({"v": 1}, path)
    assert os.listdir(tmp_path) == ["ck.tg"]


def test_stale_temp_files_are_removed_and_live_ones_kept(tmp_path):
    """Cleanup rule: a file of our temp pattern goes when its writer (this host) is gone or it
    is older than a day; a fresh one of a running process or another host stays (a concurrent
    save); files that merely look alike are never touched. (The kept ones passed before too.)"""
    day_old = time.time() - 25 * 3600
    names = {
        _temp_name(_host(), _dead_pid()): False,                       # writer gone: removed
        _temp_name(_host(), os.getpid(), "1" * 16): True,              # writing now: kept
        _temp_name("other-host", 1, "2" * 16): True,                   # cannot tell: kept
        _temp_name(_host(), os.getpid(), "3" * 16): False,             # day old: removed
        _temp_name("other-host", 1, "4" * 16): False,                  # day old: removed
        ".tmp-abcdefgh.tg": True, "notes.tmp": True, ".tilegrad-save.x.tmp": True,
        _temp_name(_host(), 1, "5" * 16) + ".bak": True,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    for name in (_temp_name(_host(), os.getpid(), "3" * 16), _temp_name("other-host", 1, "4" * 16),
                 ".tmp-abcdefgh.tg", "notes.tmp", ".tilegrad-save.x.tmp"):
        os.utime(tmp_path / name, (day_old, day_old))
    tg.save({"v": 1}, tmp_path / "ck.tg")
    expected = sorted([n for n, keep in names.items() if keep] + ["ck.tg"])
    assert sorted(os.listdir(tmp_path)) == expected


def test_temp_file_is_in_the_target_folder_and_follows_the_pattern(tmp_path, monkeypatch):
    """The temporary file lives next to the real target and matches the documented pattern,
    so the cleanup rule applies to it (the old name, .tmp-XXXX.tg, was never cleaned)."""
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    tg.save({"v": 1}, tmp_path / "ck.tg")
    [(src, dst)] = seen
    assert dst == os.path.realpath(tmp_path / "ck.tg")
    assert os.path.dirname(src) == os.path.dirname(dst)
    assert re.fullmatch(r"\.tilegrad-save\.[A-Za-z0-9_-]{1,64}\.%d\.[0-9a-f]{16}\.tmp"
                        % os.getpid(), os.path.basename(src)), src


@pytest.mark.parametrize("what", ["missing", "a-file"])
def test_save_into_a_missing_folder_names_the_target(tmp_path, what):
    """Missing folder (or a file where the folder should be): the error names the target
    path and the folder, never a temporary file."""
    if what == "missing":
        folder, exc, words = tmp_path / "no" / "such", FileNotFoundError, "does not exist"
    else:
        folder, exc, words = tmp_path / "file.txt", NotADirectoryError, "is not a folder"
        folder.write_text("x")
    path = folder / "ck.tg"
    with pytest.raises(exc, match=re.escape(f"save: cannot write {path}: ") + ".*"
                       + re.escape(f"{folder}") + ".*" + words) as e:
        tg.save({"v": 1}, path)
    assert ".tmp" not in str(e.value)


def test_os_error_midway_names_the_target_and_cleans_up(tmp_path, monkeypatch):
    """An OSError while writing (here fsync failing with EIO) keeps its class and errno but
    names the target path; the old file and the folder are unchanged."""
    path = tmp_path / "ck.tg"
    tg.save({"v": 1}, path)
    old = path.read_bytes()

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(OSError, match=re.escape(f"save: cannot write {path}: Input/output error")
                       ) as e:
        tg.save({"v": 2}, path)
    assert e.value.errno == errno.EIO and ".tmp" not in str(e.value)
    monkeypatch.undo()
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["ck.tg"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_any_exception_midway_removes_the_temp_file(tmp_path, monkeypatch, exc):
    """A save interrupted after the temp file is complete (fsync raising) leaves nothing
    behind and the old file whole. (Passed before too: the guard it keeps.)"""
    path = tmp_path / "ck.tg"
    tg.save({"v": 1}, path)
    old = path.read_bytes()

    def boom(fd):
        raise exc("simulated")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(exc):
        tg.save({"v": np.ones(100)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["ck.tg"]


def test_nesting_limit_is_the_same_for_save_and_load(tmp_path):
    """Deep nesting: save refuses what load would refuse (a list that contains itself raised
    RecursionError), and the deepest allowed object round-trips."""
    deepest = 1
    for _ in range(MAX_DEPTH):
        deepest = [deepest]
    tg.save(deepest, tmp_path / "deep.tg")
    assert tg.load(tmp_path / "deep.tg") == deepest
    with pytest.raises(ValueError, match=r"save: obj(\[0\])+ is nested more than"):
        tg.save([deepest], tmp_path / "deeper.tg")
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="save: .* nested more than"):
        tg.save({"loop": loop}, tmp_path / "loop.tg")
    assert os.listdir(tmp_path) == ["deep.tg"]


# ================================================================ crafted files

def _sha(structure, arrays):
    """The digest as the format defines it: SHA-256 over the structure text, then for every
    array its dtype string and shape, then its bytes in C order."""
    h = hashlib.sha256(structure.encode())
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _craft(path, structure, arrays=(), meta=None, meta_text=None, compressed=False):
    """Write a checkpoint by hand with a VALID digest (as an attacker would recompute it), so
    that only load's structural checks can tell it is malformed."""
    text = structure if isinstance(structure, str) else json.dumps(structure)
    m = {"format": serialization.FORMAT, "version": 1, "structure": text,
         "sha256": _sha(text, arrays)}
    m.update(meta or {})
    text = meta_text if meta_text is not None else json.dumps(m)
    members = {f"a{k}": a for k, a in enumerate(arrays)}
    with open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(
            f, __meta__=np.frombuffer(text.encode(), np.uint8), **members)
    return path


def test_craft_helper_makes_files_that_load(tmp_path):
    """The helper's digest is the real one: a well-formed crafted file loads. (Not a bug case:
    it shows the tests below reach the structural checks, not the digest check.)"""
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    s = {"dict": [["w", {"tensor": 0}], [3, {"tuple": [{"value": 1.5}, {"array": 1}]}]]}
    got = tg.load(_craft(tmp_path / "ok.tg", s, [w, np.arange(3)]))
    assert_same({"w": tg.tensor(w), 3: (1.5, np.arange(3))}, got)


def _nested(levels):
    return '{"list": [' * levels + '{"value": 1}' + "]}" * levels


F32 = [np.ones(2, np.float32)]
CRAFTED = {   # id: (structure, arrays, meta changes, what the message says)
    "node-not-object": ([1, 2], [], None, "not a node"),
    "node-two-keys": ({"value": 1, "list": []}, [], None, "not a node"),
    "node-empty": ({}, [], None, "not a node"),
    "node-unknown-kind": ({"set": []}, [], None, "unknown kind"),
    "index-out-of-range": ({"array": 1}, F32, None, "refers to array 1"),
    "index-negative": ({"array": -1}, F32, None, "refers to array -1"),
    "index-str": ({"array": "0"}, F32, None, "refers to array '0'"),
    "index-float": ({"tensor": 0.0}, F32, None, "refers to array 0.0"),
    "index-bool": ({"array": True}, F32, None, "refers to array True"),
    "index-list": ({"list": [{"array": [0]}]}, F32, None, r"obj\[0\] refers to array \[0\]"),
    "array-used-twice": ({"list": [{"array": 0}, {"tensor": 0}]}, F32, None, "second time"),
    "array-not-used": ({"value": 1}, F32, None, "a0 is not used"),
    "dict-items-object": ({"dict": {"a": {"value": 1}}}, [], None, "items are not a list"),
    "dict-item-single": ({"dict": [["a"]]}, [], None, "not a .key, node. pair"),
    "dict-item-triple": ({"dict": [["a", {"value": 1}, 3]]}, [], None, "pair"),
    "dict-item-number": ({"dict": [1]}, [], None, "pair"),
    "dict-key-float": ({"dict": [[1.5, {"value": 1}]]}, [], None, "key of type float"),
    "dict-key-null": ({"dict": [[None, {"value": 1}]]}, [], None, "key of type NoneType"),
    "dict-key-bool": ({"dict": [[True, {"value": 1}]]}, [], None, "key of type bool"),
    "dict-key-list": ({"dict": [[[1], {"value": 1}]]}, [], None, "key of type list"),
    "dict-key-twice": ({"dict": [["a", {"value": 1}], ["a", {"value": 2}]]}, [], None,
                       "key 'a' twice"),
    "value-list": ({"value": [1, 2]}, [], None, "value of type list"),
    "value-object": ({"value": {"a": 1}}, [], None, "value of type dict"),
    "list-of-number": ({"list": 3}, [], None, "not a list"),
    "tuple-of-str": ({"tuple": "ab"}, [], None, "not a list"),
    "nested-garbage": ({"dict": [["w", {"list": [{"value": 1}, {"dict": [["k", 7]]}]}]]}, [],
                       None, r"obj\['w'\]\[1\]\['k'\] is not a node"),
    "too-deep": (_nested(MAX_DEPTH + 1), [], None, "nested more than"),
    "json-recursion": (_nested(5000), [], None, "RecursionError"),
    "tensor-float16": ({"tensor": 0}, [np.ones(2, np.float16)], None, "tensor of dtype float16"),
    "tensor-big-endian": ({"tensor": 0}, [np.ones(2, ">f4")], None, "tensor of dtype >f4"),
    "meta-version-true": ({"value": 1}, [], {"version": True}, "version True"),
    # These two were already ValueErrors naming the file before; kept as guards.
    "meta-version-2": ({"value": 1}, [], {"version": 2}, "version 2"),
    "meta-format": ({"value": 1}, [], {"format": ["x"]}, r"format \['x'\]"),
    "meta-structure-object": ({"value": 1}, [], {"structure": {"value": 1}}, "structure"),
    "meta-no-sha256": ({"value": 1}, [], {"sha256": None}, "sha256"),   # was: KeyError text
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_structure_with_valid_digest(tmp_path, case):
    """Malformed structure or metadata behind a valid digest: a ValueError naming the file
    and saying what is wrong (was AttributeError, IndexError, KeyError, TypeError,
    RecursionError, a ValueError without the file, or a silent load)."""
    structure, arrays, meta, says = CRAFTED[case]
    path = _craft(tmp_path / f"{case}.tg", structure, arrays, meta)
    with pytest.raises(ValueError, match=_not_readable(path) + ".*" + says):
        tg.load(path)


@pytest.mark.parametrize("meta_text, says", [("[1, 2]", "JSON list"), ('"x"', "JSON str"),
                                             ("null", "JSON NoneType"), ("{", "JSONDecodeError")])
def test_crafted_meta_that_is_not_an_object(tmp_path, meta_text, says):
    """__meta__ holding JSON that is not an object (was AttributeError; the bad-JSON case was
    already a ValueError naming the file, only the reason now says what failed)."""
    path = _craft(tmp_path / "m.tg", "", meta_text=meta_text)
    with pytest.raises(ValueError, match=_not_readable(path) + ".*" + says):
        tg.load(path)


@pytest.mark.parametrize("array", [
    np.array(["ab", "c"]),                                    # unicode 'U': save refuses it
    np.array([b"ab"]),                                        # bytes 'S'
    np.zeros(2, dtype=[("x", "<f4"), ("y", "<i4")]),          # structured void 'V'
    np.ones(2, np.complex64),                                 # complex 'c'
    np.array(["2024-01-01"], dtype="datetime64[D]"),          # datetime 'M'
    np.array([5], dtype="timedelta64[s]"),                    # timedelta 'm'
    np.array([1, "a"], dtype=object),         # object 'O': a ValueError before, not saying why
], ids=lambda a: a.dtype.kind)
@pytest.mark.parametrize("node", ["array", "tensor"])
def test_crafted_array_of_a_dtype_save_refuses(tmp_path, array, node):
    """Arrays of dtype kinds other than b/i/u/f with a valid digest: a ValueError (the unicode
    array loaded although save refuses to write one)."""
    path = _craft(tmp_path / "d.tg", {"dict": [["x", {node: 0}]]}, [array])
    with pytest.raises(ValueError, match=_not_readable(path) + ".*dtype"):
        tg.load(path)


def _write_members(path, members, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compress) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_crafted_member_that_is_not_npy(tmp_path):
    """An archive member "a0" that is not a .npy file (np.load returned raw bytes, then
    AttributeError)."""
    path = tmp_path / "raw.tg"
    text = json.dumps({"format": serialization.FORMAT, "version": 1,
                       "structure": '{"array": 0}', "sha256": "0" * 64})
    _write_members(path, {"__meta__.npy": _npy(np.frombuffer(text.encode(), np.uint8)),
                          "a0": b"\x01\x02"})
    with pytest.raises(ValueError, match=_not_readable(path) + ".*unexpected archive members"):
        tg.load(path)


def test_crafted_extra_member(tmp_path):
    """A member besides __meta__, a0, a1, ... (was already a ValueError naming the file, from a
    KeyError about a1; now it names the odd member)."""
    path = _craft(tmp_path / "x.tg", {"array": 0}, F32)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("junk.npy", _npy(np.ones(1)))
    with pytest.raises(ValueError, match=_not_readable(path) + ".*junk.npy"):
        tg.load(path)


def test_crafted_header_claiming_a_huge_array(tmp_path):
    """A .npy header declaring 2**45 float64 elements over 8 bytes of data: refused before any
    allocation (was MemoryError)."""
    path = _craft(tmp_path / "h.tg", {"array": 0}, [np.ones(1)])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (2 ** 45,)})
    _rewrite_member(path, "a0.npy", header.getvalue() + np.ones(1).tobytes())
    with pytest.raises(ValueError, match=_not_readable(path) + ".*do not make an array"):
        tg.load(path)


def test_crafted_meta_that_is_not_uint8(tmp_path):
    """__meta__ stored as another dtype (was already a ValueError naming the file, from a JSON
    error; now it says what is wrong)."""
    path = _craft(tmp_path / "u.tg", {"value": 1})
    text = json.dumps({"format": serialization.FORMAT, "version": 1,
                       "structure": '{"value": 1}', "sha256": _sha('{"value": 1}', [])})
    _rewrite_member(path, "__meta__.npy", _npy(np.frombuffer(text.encode(), np.uint8)
                                               .astype(np.int32)))
    with pytest.raises(ValueError, match=_not_readable(path) + ".*__meta__ is int32"):
        tg.load(path)


@pytest.mark.parametrize("damage", [False, True], ids=["whole", "damaged"])
def test_compressed_archive(tmp_path, damage):
    """Compressed members, which save never writes: refused before decompressing (a damaged
    deflate stream raised zlib.error; a whole one loaded)."""
    path = _craft(tmp_path / "z.tg", {"array": 0}, [np.zeros(20000)], compressed=True)
    if damage:
        raw = bytearray(path.read_bytes())
        at = raw.index(b"a0.npy") + 40       # inside a0's deflate stream
        raw[at:at + 8] = b"\xff" * 8
        path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=_not_readable(path) + ".*compressed"):
        tg.load(path)


def test_load_refuses_a_directory(tmp_path):
    """A directory at the path: ValueError naming it and what it is (was already a ValueError
    naming the file, from IsADirectoryError; a FIFO would have blocked in open())."""
    with pytest.raises(ValueError, match=re.escape(f"load: {tmp_path} is a directory")):
        tg.load(tmp_path)


_leaf = st.none() | st.booleans() | st.integers(-2, 3) | st.floats(-1, 1) | st.text(max_size=2)
_garbage = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["tensor", "array", "value", "dict", "list", "tuple", "set"]),
        inner, max_size=2),
    max_leaves=12)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(structure=_garbage, n_arrays=st.integers(0, 2))
def test_garbage_structures_load_or_raise_value_error(tmp_path, structure, n_arrays):
    """Random JSON as the structure, behind a valid digest: load either succeeds with what
    save can store, or raises a ValueError naming the file; never another exception."""
    arrays = [np.full(2, k, np.float32) for k in range(n_arrays)]
    path = _craft(tmp_path / "g.tg", structure, arrays)
    try:
        got = tg.load(path)
    except ValueError as e:
        assert str(e).startswith(f"load: {path} "), e
        return
    tg.save(got, tmp_path / "again.tg")           # what loads is something save can write
    assert_same(got, tg.load(tmp_path / "again.tg"))


def test_file_objects_and_map_location(tmp_path, device):
    """torch.save(obj, f) and torch.load(f, map_location=...) with open files and BytesIO."""
    state = {"w": tg.randn(3, 7, dtype=tg.float64), "step": 4, "names": ["a", "b"]}
    buffer = io.BytesIO()
    tg.save(state, buffer)
    buffer.seek(0)
    back = tg.load(buffer, map_location=device, weights_only=True)
    assert back["w"].device.name == device and back["step"] == 4 and back["names"] == ["a", "b"]
    np.testing.assert_array_equal(back["w"].numpy(), state["w"].numpy())
    with open(tmp_path / "w.safetensors", "wb") as f:      # the name chooses the format
        tg.save({"w": state["w"]}, f)
    with open(tmp_path / "w.safetensors", "rb") as f:
        flat = tg.load(f, map_location=device)
    assert flat["w"].device.name == device
    np.testing.assert_array_equal(flat["w"].numpy(), state["w"].numpy())


def test_file_object_errors_write_nothing(tmp_path):
    buffer = io.BytesIO()
    with pytest.raises(TypeError, match="save its state_dict"):
        tg.save(tg.nn.Linear(2, 3), buffer)
    assert buffer.getvalue() == b""
    with pytest.raises(TypeError, match="map_location"):
        tg.load(io.BytesIO(b""), map_location=3)
    with pytest.raises(ValueError, match="<file object>"):
        tg.load(io.BytesIO(b"not a checkpoint"))
    with open(tmp_path / "t.txt", "w") as f:
        f.write("x")
    with open(tmp_path / "t.txt") as f, pytest.raises(TypeError, match="binary"):
        tg.load(f)
