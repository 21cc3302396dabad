"""``save`` and ``load``: state dicts of models and optimizers (nested dicts, lists and tuples of
arrays, tensors, numbers and strings) in one file, written atomically and checked when read.

The file is a NumPy ``.npz`` archive (no pickle): ``__meta__`` holds a JSON description of the
structure, a format version and a SHA-256 digest over the structure and every array's dtype,
shape and bytes; the arrays are ``a0``, ``a1``, ... It is written to a temporary file in the same
directory, flushed to disk, then renamed over ``path``, so a crash leaves the old file intact.
"""
import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

from .creation import tensor
from .tensor import Tensor

FORMAT = "tilegrad-checkpoint"
VERSION = 1


def _encode(obj, arrays, where):
    if isinstance(obj, Tensor):
        arrays.append(obj.numpy())
        return {"tensor": len(arrays) - 1}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"save: cannot store an array of dtype {obj.dtype} at {where}")
        arrays.append(obj)
        return {"array": len(arrays) - 1}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"save: dict keys must be str or int, got {k!r} at {where}")
            items.append([k, _encode(v, arrays, f"{where}[{k!r}]")])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [_encode(v, arrays, f"{where}[{k}]") for k, v in enumerate(obj)]}
    raise TypeError(f"save: cannot store a {type(obj).__name__} at {where}")


def _decode(node, arrays):
    if "tensor" in node:
        return tensor(arrays[node["tensor"]])
    if "array" in node:
        return arrays[node["array"]]
    if "value" in node:
        return node["value"]
    if "dict" in node:
        return {k: _decode(v, arrays) for k, v in node["dict"]}
    if "list" in node:
        return [_decode(v, arrays) for v in node["list"]]
    return tuple(_decode(v, arrays) for v in node["tuple"])


def _digest(structure, arrays):
    h = hashlib.sha256(structure.encode())
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def save(obj, path):
    """Write ``obj`` to ``path`` atomically: the old file stays whole until the new one is."""
    arrays = []
    structure = json.dumps(_encode(obj, arrays, "obj"))
    meta = json.dumps({"format": FORMAT, "version": VERSION, "structure": structure,
                       "sha256": _digest(structure, arrays)})
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".tg", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.frombuffer(meta.encode(), dtype=np.uint8),
                     **{f"a{k}": a for k, a in enumerate(arrays)})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path):
    """Read what ``save`` wrote; a file that is not a whole tilegrad checkpoint is a ValueError."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:   # np.load would take a .npy or pickle for something else
            if f.read(4) != b"PK\x03\x04":
                raise ValueError("it is not a NumPy .npz (zip) archive")
        with np.load(path, allow_pickle=False) as z:
            if "__meta__" not in z.files:
                raise ValueError("no __meta__ entry")
            meta = json.loads(z["__meta__"].tobytes().decode())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}")
            if meta.get("version") != VERSION:
                raise ValueError(f"version {meta.get('version')} (this tilegrad reads {VERSION})")
            arrays = [z[f"a{k}"] for k in range(len(z.files) - 1)]
            structure, digest = meta["structure"], meta["sha256"]
    except FileNotFoundError:
        raise
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as e:
        raise ValueError(f"load: {path} is not a readable tilegrad checkpoint: {e}") from None
    if _digest(structure, arrays) != digest:
        raise ValueError(f"load: {path} is corrupt: its SHA-256 digest does not match its contents")
    return _decode(json.loads(structure), arrays)
