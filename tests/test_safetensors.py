""".safetensors files in tilegrad.save and tilegrad.load: the three reference models move both
ways between PyTorch (safetensors.torch) and tilegrad with equal float64 outputs, round trips are
bit-exact on "cpu" and "cuda", only flat state dicts are written (atomically, an old file kept on
refusal), and every malformed file, bfloat16 ones included, is a ValueError naming it."""
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors
from safetensors.numpy import save as np_save

import tilegrad as tg
from tilegrad.bench.train import _torch_model as torch_model
from helpers import torch
from tilegrad import dtypes, models, nn
from tilegrad.testing import assert_close, rng

if torch is not None:
    import safetensors.torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
needs_cuda = pytest.mark.skipif(not tg.device("cuda").available,
                                reason=f"device cuda unavailable: {tg.device('cuda').reason}")
VOCAB, T, B = 37, 5, 3


def header(path):
    """The JSON header of the safetensors file ``path``, in its order."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n])


# ---------------------------------------------------------------- PyTorch twins

def _torch_twin(name):
    """A float64 PyTorch model with the reference model's architecture and state-dict names:
    the twin the training benchmark compares with."""
    return torch_model(torch, name, {"vocab": VOCAB}).double()


OURS = {"mlp": models.MLP, "cnn": models.CNN, "lm": lambda: models.LSTMLanguageModel(VOCAB)}


def _input(name, seed):
    r = rng(seed)
    if name == "lm":
        return r.integers(0, VOCAB, (T, B))
    return r.standard_normal((3, 1, 28, 28))


def _outputs(name, ours, theirs, seed):
    x = _input(name, seed)
    out = ours(tg.tensor(x))
    out = out[0] if name == "lm" else out
    with torch.no_grad():
        ref = theirs(torch.tensor(x)).numpy()
    return out.numpy(), ref


def _same_weights(ours, theirs):
    sd = theirs.state_dict()
    for k, v in ours.state_dict().items():
        assert v.dtype == np.float64 and v.tobytes() == sd[k].numpy().tobytes(), k


@needs_torch
@pytest.mark.parametrize("name", list(OURS))
def test_torch_file_loads_into_tilegrad(tmp_path, name):
    torch.manual_seed(3)
    theirs = _torch_twin(name)
    path = tmp_path / f"{name}.safetensors"
    safetensors.torch.save_file(theirs.state_dict(), path)
    tg.manual_seed(5)
    ours = OURS[name]().double()
    loaded = tg.load(path)
    assert list(loaded) == list(header(path))        # the file's order
    assert all(isinstance(v, tg.Tensor) and v.device.name == "cpu" for v in loaded.values())
    ours.load_state_dict(loaded)
    _same_weights(ours, theirs)
    out, ref = _outputs(name, ours, theirs, seed=7)
    assert_close(out, ref, rtol=1e-10, atol=1e-12)


@needs_torch
@pytest.mark.parametrize("name", list(OURS))
def test_tilegrad_file_loads_into_torch(tmp_path, name):
    tg.manual_seed(11)
    ours = OURS[name]().double()
    path = tmp_path / f"{name}.safetensors"
    tg.save(ours.state_dict(), path)
    theirs = _torch_twin(name)
    theirs.load_state_dict(safetensors.torch.load_file(path))
    _same_weights(ours, theirs)
    out, ref = _outputs(name, ours, theirs, seed=13)
    assert_close(out, ref, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- round trips

def _mixed(r):
    """Every dtype the file format shares with NumPy; odd, empty and 0-d shapes."""
    return {"w": r.standard_normal((7, 3)), "b": r.standard_normal(13).astype(np.float32),
            "half": r.standard_normal((3, 1)).astype(np.float16),
            "steps": r.integers(-9, 9, (1, 7)), "i32": r.integers(-9, 9, 3).astype(np.int32),
            "i8": r.integers(-9, 9, 7).astype(np.int8), "u64": r.integers(0, 9, 3, np.uint64),
            "mask": r.random((3, 7)) > 0.5, "u8": r.integers(0, 255, 13, np.uint8),
            "empty": np.ones((0, 3)), "scalar": np.array(r.standard_normal())}


def _bits(v):
    return v.numpy() if isinstance(v, tg.Tensor) else v


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_round_trip_is_bit_exact(tmp_path, device):
    arrays = _mixed(rng(1))
    held = tg.device(device).backend.DTYPES if device == "cuda" else dtypes.SUPPORTED
    obj = {k: tg.tensor(a, device=device) if a.dtype in held else a for k, a in arrays.items()}
    path = tmp_path / "all.safetensors"
    tg.save(obj, path, metadata={"epoch": "3", "from": "tilegrad"})
    loaded = tg.load(path)
    assert sorted(loaded) == sorted(arrays)
    for k, a in arrays.items():
        v = loaded[k]
        # Tensor dtypes come back as tensors on "cpu"; float16, int8, uint64 as NumPy arrays.
        assert isinstance(v, tg.Tensor if a.dtype in dtypes.SUPPORTED else np.ndarray), k
        assert _bits(v).dtype == a.dtype and _bits(v).shape == a.shape, k
        assert _bits(v).tobytes() == a.tobytes(), k
    with safetensors.safe_open(path, "np") as f:
        assert f.metadata() == {"epoch": "3", "from": "tilegrad"}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_model_round_trip_on_a_device(tmp_path, device):
    tg.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5, 7)).to(device)
    path = tmp_path / "m.safetensors"
    tg.save(dict(model.named_parameters()), path)       # tensors on the device
    fresh = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5, 7)).to(device)
    fresh.load_state_dict(tg.load(path))
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert a.tobytes() == b.tobytes(), k
    x = tg.randn(3, 3, 3, 3, device=device)
    assert fresh(x).numpy().tobytes() == model(x).numpy().tobytes()


def test_non_contiguous_and_big_endian_arrays(tmp_path):
    a = rng(4).standard_normal((7, 13))
    obj = {"t": a.T, "s": a[::3, 1::2], "be": a.astype(">f8")}
    tg.save(obj, tmp_path / "v.safetensors")
    loaded = tg.load(tmp_path / "v.safetensors")
    for k, v in obj.items():
        assert loaded[k].numpy().tobytes() == np.ascontiguousarray(v, "<f8").tobytes(), k


@needs_torch
def test_detected_by_content_whatever_the_name(tmp_path):
    src = {"a": torch.randn(3, 7, dtype=torch.float64), "b": torch.arange(5)}
    path = tmp_path / "weights.bin"
    safetensors.torch.save_file(src, path)
    loaded = tg.load(path)
    assert list(loaded) == list(header(path))
    for k, v in src.items():
        assert loaded[k].numpy().tobytes() == v.numpy().tobytes(), k


def test_archive_unchanged_with_other_names(tmp_path):
    model = nn.Linear(3, 7)
    ck = {"model": model.state_dict(), "optimizer": tg.optim.SGD(model.parameters(), lr=0.1)
          .state_dict(), "epoch": 2}
    for name in ("ck.tg", "ck.safetensors.tg"):
        tg.save(ck, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:4] == b"PK\x03\x04"
        assert tg.load(tmp_path / name)["epoch"] == 2
    # An archive renamed to .safetensors is still read as an archive (by its content).
    os.replace(tmp_path / "ck.tg", tmp_path / "renamed.safetensors")
    assert tg.load(tmp_path / "renamed.safetensors")["optimizer"]["param_groups"][0]["lr"] == 0.1


# ---------------------------------------------------------------- what save refuses

@pytest.mark.parametrize("obj, says", [
    ({"model": {"w": np.ones(3)}}, r"obj\['model'\] is a dict .*tilegrad archive"),
    ({0: {"momentum_buffer": np.ones(3)}}, r"names must be strings, got the key 0"),
    ({"w": np.ones(3), "epoch": 3}, r"obj\['epoch'\] is of type int.*tilegrad archive"),
    ({"names": np.array(["a", "b"], dtype=object)}, r"array of dtype object"),
    ({"z": np.ones(3, np.complex128)}, r"array of dtype complex128"),
    ([np.ones(3)], r"flat dict of name -> tensor .*got a list"),
])
def test_refused_objects_write_nothing_and_keep_the_old_file(tmp_path, obj, says):
    path = tmp_path / "ck.safetensors"
    tg.save({"w": np.arange(3.0)}, path)
    old = path.read_bytes()
    with pytest.raises(TypeError, match=says):
        tg.save(obj, path)
    with pytest.raises(TypeError, match=says):
        tg.save(obj, tmp_path / "new.safetensors")
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["ck.safetensors"]


def test_optimizer_state_is_refused(tmp_path):
    model = nn.Linear(3, 7)
    opt = tg.optim.Adam(model.parameters())
    model(tg.randn(2, 3)).sum().backward()
    opt.step()
    with pytest.raises(TypeError, match="tilegrad archive"):
        tg.save(opt.state_dict(), tmp_path / "opt.safetensors")
    assert os.listdir(tmp_path) == []


def test_metadata_checks(tmp_path):
    with pytest.raises(TypeError, match="metadata must map str to str"):
        tg.save({"w": np.ones(3)}, tmp_path / "a.safetensors", metadata={"epoch": 3})
    with pytest.raises(ValueError, match="'__metadata__' is reserved"):
        tg.save({"__metadata__": np.ones(3)}, tmp_path / "a.safetensors")
    with pytest.raises(ValueError, match="metadata is stored only in .safetensors files"):
        tg.save({"w": np.ones(3)}, tmp_path / "a.tg", metadata={"a": "b"})
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_old_file_and_symlinks_are_followed(tmp_path, monkeypatch):
    real = tmp_path / "real.safetensors"
    link = tmp_path / "link.safetensors"
    link.symlink_to(real.name)
    tg.save({"w": np.arange(3.0)}, link)
    assert link.is_symlink() and list(header(real)) == ["w"]
    old = real.read_bytes()

    def boom(*args):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match=re.escape(f"save: cannot write {link}")):
        tg.save({"w": np.ones(5)}, link)
    monkeypatch.undo()
    assert real.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["link.safetensors", "real.safetensors"]


# ---------------------------------------------------------------- what load refuses

def _good(tmp_path):
    path = tmp_path / "ck.safetensors"
    tg.save({"w": rng(6).standard_normal((7, 3)), "b": np.arange(3, dtype=np.int32)}, path)
    return path


def _unreadable(path, says=""):
    return re.escape(f"load: {path} is not a readable safetensors file: ") + ".*" + says


@pytest.mark.parametrize("keep", [0, 5, 8, 9, 40, 0.5, -1, -24])
@pytest.mark.parametrize("name", ["ck.safetensors", "ck.bin"])
def test_truncated_file(tmp_path, keep, name):
    raw = _good(tmp_path).read_bytes()
    path = tmp_path / name
    path.write_bytes(raw[:int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)])
    # A file cut before its JSON opens cannot be told from other files by content.
    says = "not a readable " + ("tilegrad checkpoint" if name == "ck.bin" and
                                path.stat().st_size < 9 else "safetensors file")
    with pytest.raises(ValueError, match=re.escape(f"load: {path} is {says}")):
        tg.load(path)


def _craft(path, head, data=b""):
    text = head if isinstance(head, str) else json.dumps(head)
    path.write_bytes(struct.pack("<Q", len(text.encode())) + text.encode() + data)
    return path


F = {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}


@pytest.mark.parametrize("head, data, says", [
    ('{"a": ', b"", "JSONDecodeError"),
    ('{"a": 1} trailing', b"", "JSONDecodeError"),
    ('{"a": {}, "a": {}}', b"", "the header has the name 'a' twice"),
    ({"a": {"dtype": "F64", "shape": [2]}}, b"", "entry 'a' is not"),
    ({"a": dict(F, dtype="Q9")}, bytes(16), "unknown dtype 'Q9'"),
    ({"a": dict(F, shape=[-2])}, bytes(16), "has the shape"),
    ({"a": dict(F, shape=[2.0])}, bytes(16), "has the shape"),
    ({"a": dict(F, data_offsets=[0, 8])}, bytes(8), "8 bytes do not make a F64 tensor"),
    ({"a": dict(F, data_offsets=[16, 0])}, bytes(16), "has the data_offsets"),
    ({"a": F, "b": F}, bytes(32), "tensor 'b' starts at byte 0 of the data, expected 16"),
    ({"a": dict(F, data_offsets=[8, 24])}, bytes(24), "starts at byte 8"),
    ({"a": F}, bytes(20), "its tensors cover 16 bytes of data, the file holds 20"),
    ({"a": F, "__metadata__": {"epoch": 3}}, bytes(16), "__metadata__ is not a map"),
    ('[1, 2]', b"", "its header is not a JSON object"),
], ids=lambda v: None if isinstance(v, (str, dict)) else "")
def test_wrong_header(tmp_path, head, data, says):
    path = _craft(tmp_path / "bad.safetensors", head, data)
    with pytest.raises(ValueError, match=_unreadable(path, re.escape(says))):
        tg.load(path)


def test_crafted_header_length_beyond_the_file(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 2**63) + b'{"a": 1}')
    with pytest.raises(ValueError, match=_unreadable(path, "its header length")):
        tg.load(path)


def test_header_not_utf8(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(struct.pack("<Q", 3) + b"{\xff}")
    with pytest.raises(ValueError, match=_unreadable(path, "UnicodeDecodeError")):
        tg.load(path)


def test_crafted_file_the_package_reads_is_accepted(tmp_path):
    # The checks accept what the package writes, padded header and zero-size tensors included.
    r = rng(8)
    arrays = {"e": np.ones((0, 7)), "x": r.standard_normal((3, 1))}
    path = tmp_path / "ok.bin"
    path.write_bytes(np_save(arrays))
    loaded = tg.load(path)
    for k, a in arrays.items():
        assert loaded[k].numpy().tobytes() == a.tobytes() and loaded[k].shape == a.shape


@needs_torch
def test_bfloat16_file_is_refused_clearly(tmp_path):
    path = tmp_path / "bf16.safetensors"
    safetensors.torch.save_file({"w": torch.randn(3, 7, dtype=torch.bfloat16)}, path)
    with pytest.raises(ValueError, match=_unreadable(path, "tensor 'w' is bfloat16 .*NumPy")):
        tg.load(path)


# ---------------------------------------------------------------- import cost

def test_import_tilegrad_does_not_import_safetensors(tmp_path):
    script = ("import sys, tilegrad as tg, numpy as np\n"
              f"tg.save({{'w': np.ones(3)}}, {str(tmp_path / 'a.tg')!r})\n"
              "assert 'safetensors' not in sys.modules, 'imported by import or an archive'\n"
              f"tg.save({{'w': np.ones(3)}}, {str(tmp_path / 'a.safetensors')!r})\n"
              "assert 'safetensors' in sys.modules\n")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
