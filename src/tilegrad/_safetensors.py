"""``.safetensors`` files in ``tilegrad.save`` and ``tilegrad.load``: state dicts that PyTorch
(``safetensors.torch``) and other frameworks read and write, without pickle.

A safetensors file is an 8-byte little-endian header length ``n``, then ``n`` bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}``,
then the tensors' bytes, little-endian and in C order, ``begin``/``end`` counted from the end of
the header. It holds one flat mapping of names to arrays, so ``save`` refuses anything else
(nested dicts, optimizer state, numbers) instead of flattening it in some way only tilegrad
understands: such objects belong in a tilegrad archive.

The ``safetensors`` package (its NumPy API) writes and parses the files; it is imported here,
on the first save or load of such a file, so that ``import tilegrad`` stays light. ``read``
checks the header itself first (every entry, and that the tensors exactly cover the data), so
that every malformed file is a ValueError naming it and saying what is wrong.
"""
from __future__ import annotations

import collections
import json
import math
import struct
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

from . import dtypes
from .creation import tensor
from .tensor import Tensor

SUFFIX = ".safetensors"
MAX_HEADER = 100_000_000   # bytes of JSON; the safetensors package refuses larger headers too

# The file format's dtypes that NumPy has, and their itemsize in bytes.
NUMPY_DTYPES = {"BOOL": np.dtype(np.bool_), "U8": np.dtype(np.uint8), "I8": np.dtype(np.int8),
                "U16": np.dtype(np.uint16), "I16": np.dtype(np.int16),
                "U32": np.dtype(np.uint32), "I32": np.dtype(np.int32),
                "U64": np.dtype(np.uint64), "I64": np.dtype(np.int64),
                "F16": np.dtype(np.float16), "F32": np.dtype(np.float32),
                "F64": np.dtype(np.float64)}
# Those it does not have (or tilegrad does not, for complex64), named as PyTorch names them.
OTHER_DTYPES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
                "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
                "F8_E8M0": "float8_e8m0fnu", "F4": "float4_e2m1fn_x2", "C64": "complex64"}

_USE_ARCHIVE = ("save it to a tilegrad archive instead (a path not ending in .safetensors, "
                "e.g. 'checkpoint.tg')")


def wanted(path: str) -> bool:
    """True when ``save`` should write ``path`` as a safetensors file (by its suffix)."""
    return path.lower().endswith(SUFFIX)


def detect(head: bytes, path: str) -> bool:
    """True when ``load`` should read the file as safetensors: by its content (the JSON header
    opens right after the 8-byte length), or by its suffix, unless it is a zip archive."""
    if head[:4] == b"PK\x03\x04":
        return False
    return wanted(path) or head[8:9] == b"{"


# ---------------------------------------------------------------- writing

def _array(value: Any, where: str) -> np.ndarray:
    """The contiguous little-endian host array to store for one state-dict entry."""
    if isinstance(value, Tensor):
        value = value.numpy()          # on "cuda", a copy to the host
    elif not isinstance(value, np.ndarray):
        kind = ("a dict (nested state)" if isinstance(value, Mapping)
                else f"of type {type(value).__name__}")
        raise TypeError(f"save: {where} is {kind}; a .safetensors file holds only tensors "
                        f"and arrays under string names (a state_dict): {_USE_ARCHIVE}")
    if value.dtype.kind not in "biuf" or value.dtype.itemsize > 8:
        raise TypeError(f"save: {where} is an array of dtype {value.dtype}; a .safetensors file "
                        f"holds bool, int, uint and float (16, 32, 64 bits): {_USE_ARCHIVE}")
    # asarray, not ascontiguousarray, which would make a 0-d array 1-d
    return np.asarray(value, dtype=value.dtype.newbyteorder("<"), order="C")


def encode(obj: Any, metadata: Mapping[str, str] | None) -> bytes:
    """The bytes of a safetensors file holding ``obj``, a flat mapping str -> Tensor/array, and
    ``metadata``; a TypeError or ValueError (before anything is written) for anything else."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"save: a .safetensors file holds a flat dict of name -> tensor (e.g. "
                        f"model.state_dict()), got a {type(obj).__name__}: {_USE_ARCHIVE}")
    arrays = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise TypeError(f"save: .safetensors names must be strings, got the key {k!r} "
                            f"({type(k).__name__}); optimizer state and other dicts with int "
                            f"keys: {_USE_ARCHIVE}")
        if k == "__metadata__":
            raise ValueError("save: the name '__metadata__' is reserved in a .safetensors file "
                             "(pass metadata=... instead)")
        arrays[k] = _array(v, f"obj[{k!r}]")
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError(f"save: metadata must map str to str, got {metadata!r:.80}")
        metadata = dict(metadata)
    from safetensors.numpy import save as st_save   # here: `import tilegrad` stays light
    return st_save(arrays, metadata=metadata)


# ---------------------------------------------------------------- reading

class Malformed(ValueError):
    """Why a file is not a readable safetensors file; ``read`` adds the file's name."""


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Malformed(f"the header has the name {next(k for k in keys if keys.count(k) > 1)!r}"
                        " twice")
    return dict(pairs)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_entry(name: str, entry: Any) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """(dtype, shape, begin, end) of one header entry, after checking it."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise Malformed(f"entry {name!r} is not {{dtype, shape, data_offsets}}: {entry!r:.80}")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if code in OTHER_DTYPES:
        raise Malformed(f"tensor {name!r} is {OTHER_DTYPES[code]} ({code}), which NumPy (and "
                        "tilegrad) cannot represent; convert it before saving, e.g. in PyTorch "
                        "save_file({k: v.float() for k, v in sd.items()}, path)")
    if code not in NUMPY_DTYPES:
        raise Malformed(f"tensor {name!r} has an unknown dtype {code!r:.30}")
    if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
        raise Malformed(f"tensor {name!r} has the shape {shape!r:.60}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))
            and 0 <= offsets[0] <= offsets[1]):
        raise Malformed(f"tensor {name!r} has the data_offsets {offsets!r:.60}")
    dtype = NUMPY_DTYPES[code]
    if offsets[1] - offsets[0] != math.prod(shape) * dtype.itemsize:
        raise Malformed(f"tensor {name!r}: {offsets[1] - offsets[0]} bytes do not make a "
                        f"{code} tensor of shape {tuple(shape)}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def _check_header(raw: bytes) -> tuple[list[str], dict[str, str]]:
    """The tensor names in header order and the metadata of the file's bytes ``raw``."""
    if len(raw) < 8:
        raise Malformed(f"it has {len(raw)} bytes, fewer than the 8 of the header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER or n > len(raw) - 8:
        raise Malformed(f"its header length {n} is larger than the {len(raw) - 8} bytes that "
                        "follow (a truncated file?)")
    text = raw[8:8 + n].decode("utf-8")
    if not text.startswith("{"):
        raise Malformed("its header is not a JSON object")
    header = json.loads(text, object_pairs_hook=_no_duplicates)
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise Malformed("its __metadata__ is not a map of str to str")
    spans = sorted((_check_entry(k, v)[2:] + (k,) for k, v in header.items()))
    end = 0        # the tensors must cover the data exactly, in some order, without overlap
    for begin, stop, name in spans:
        if begin != end:
            raise Malformed(f"tensor {name!r} starts at byte {begin} of the data, expected {end}"
                            " (tensors overlap or leave a gap)")
        end = stop
    if end != len(raw) - 8 - n:
        raise Malformed(f"its tensors cover {end} bytes of data, the file holds "
                        f"{len(raw) - 8 - n} (a truncated file?)")
    return list(header), metadata


def read(f: BinaryIO, path: str) -> collections.OrderedDict[str, Tensor | np.ndarray]:
    """The state dict in the open safetensors file ``f``: name -> Tensor on "cpu" in the header's
    order; an entry of a dtype tensors lack (float16, int8, ...) comes back as a NumPy array."""
    raw = f.read()
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load
    try:
        names, _ = _check_header(raw)
        arrays = st_load(raw)
    except (Malformed, UnicodeDecodeError, json.JSONDecodeError, RecursionError,
            SafetensorError, KeyError) as e:
        why = e if isinstance(e, Malformed) else f"{type(e).__name__}: {e}"
        raise ValueError(f"load: {path} is not a readable safetensors file: {why}") from None
    return collections.OrderedDict(
        (k, tensor(arrays[k]) if arrays[k].dtype in dtypes.SUPPORTED else arrays[k].copy())
        for k in names)
