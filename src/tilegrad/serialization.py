"""``save`` and ``load``: state dicts of models and optimizers (nested dicts, lists and tuples of
arrays, tensors, numbers and strings) in one file, written atomically and checked when read.

The file is a NumPy ``.npz`` archive (no pickle, members stored uncompressed): ``__meta__`` is a
uint8 array holding UTF-8 JSON ``{"format", "version", "structure", "sha256"}``, where
``structure`` is itself a JSON string describing the object and ``sha256`` is a digest over that
string and every array's dtype, shape and bytes; the arrays are ``a0``, ``a1``, ... Each node of
the structure is an object with exactly one key: ``{"tensor": k}`` or ``{"array": k}`` (index of
member ``ak``), ``{"value": None/bool/int/float/str}``, ``{"dict": [[key, node], ...]}`` with str
or int keys, ``{"list": [node, ...]}`` or ``{"tuple": [node, ...]}``. See docs/saving.md.

``save`` resolves symlinks and writes a temporary file next to the real target, flushes it to
disk, then renames it over the target: a crash leaves the old file intact. ``load`` checks the
whole file (archive, header, digest, structure) before it builds anything, and reports every
malformed file as a ValueError naming it.

A path ending in ``.safetensors`` is written, and a safetensors file is read, by
``_safetensors.py`` instead (flat state dicts shared with PyTorch), with the same atomic write.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import secrets
import socket
import stat
import time
import zipfile
from typing import Any, BinaryIO

import numpy as np

from . import _safetensors, dtypes
from .backends import get_device
from .creation import tensor
from .tensor import Tensor

FORMAT = "tilegrad-checkpoint"
VERSION = 1
MAX_DEPTH = 100            # nesting levels; far below Python's recursion limit in save and load
ARRAY_KINDS = "biuf"       # bool, signed and unsigned int, float: what save stores
STALE_AFTER_S = 24 * 3600  # a temporary file untouched this long is abandoned, whoever wrote it

# Temporary files: ".tilegrad-save.<host>.<pid>.<16 hex digits>.tmp" in the target's folder.
# Host and pid say whether the writer is still running, so concurrent saves leave each other be.
_HOST = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())[:64] or "_"
_TEMP_RE = re.compile(r"\.tilegrad-save\.(?P<host>[A-Za-z0-9_-]{1,64})\.(?P<pid>[0-9]{1,10})"
                      r"\.[0-9a-f]{16}\.tmp")


# ---------------------------------------------------------------- the structure

def _encode(obj, arrays, where, depth=0):
    if depth > MAX_DEPTH:
        raise ValueError(f"save: {where} is nested more than {MAX_DEPTH} levels deep "
                         "(does it contain itself?)")
    if isinstance(obj, Tensor):
        arrays.append(obj.numpy())
        return {"tensor": len(arrays) - 1}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in ARRAY_KINDS:
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
            items.append([k, _encode(v, arrays, f"{where}[{k!r}]", depth + 1)])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [_encode(v, arrays, f"{where}[{k}]", depth + 1) for k, v in enumerate(obj)]}
    hint = ""
    if hasattr(obj, "state_dict"):    # a Module or an optimizer: torch.save(model, f)
        hint = (": save its state_dict() instead (a tilegrad file holds no code; "
                "pickle.dump keeps a whole module)")
    raise TypeError(f"save: cannot store a {type(obj).__name__} at {where}{hint}")


class _Malformed(ValueError):
    """Why a file is not a checkpoint; ``load`` adds the file's name."""


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _check_node(node, arrays, used, where, depth=0):
    """Raise _Malformed unless ``node`` is exactly what ``_encode`` makes (see the docstring)."""
    if depth > MAX_DEPTH:
        raise _Malformed(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(node, dict) or len(node) != 1:
        raise _Malformed(f"{where} is not a node (an object with one key): {node!r:.60}")
    [(kind, value)] = node.items()
    if kind in ("tensor", "array"):
        if not _is_int(value) or not 0 <= value < len(arrays):
            raise _Malformed(f"{where} refers to array {value!r:.20}; there are {len(arrays)}")
        if value in used:
            raise _Malformed(f"{where} refers to array a{value} a second time")
        used.add(value)
        if kind == "tensor" and arrays[value].dtype not in dtypes.SUPPORTED:
            raise _Malformed(f"{where} is a tensor of dtype {arrays[value].dtype}, "
                             "which tensors do not have")
    elif kind == "value":
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise _Malformed(f"{where} is a value of type {type(value).__name__}")
    elif kind == "dict":
        if not isinstance(value, list):
            raise _Malformed(f"{where} is a dict whose items are not a list")
        keys = set()
        for item in value:
            if not isinstance(item, list) or len(item) != 2:
                raise _Malformed(f"{where} has a dict item that is not a [key, node] pair")
            k, v = item
            if not (_is_int(k) or isinstance(k, str)):
                raise _Malformed(f"{where} has a dict key of type {type(k).__name__}")
            if k in keys:
                raise _Malformed(f"{where} has the key {k!r} twice")
            keys.add(k)
            _check_node(v, arrays, used, f"{where}[{k!r}]", depth + 1)
    elif kind in ("list", "tuple"):
        if not isinstance(value, list):
            raise _Malformed(f"{where} is a {kind} whose elements are not a list")
        for k, v in enumerate(value):
            _check_node(v, arrays, used, f"{where}[{k}]", depth + 1)
    else:
        raise _Malformed(f"{where} is a node of unknown kind {kind!r:.30}")


def _decode(node, arrays, device=None):
    """The object of a structure that ``_check_node`` accepted, its tensors on ``device`` (None:
    the default device)."""
    [(kind, value)] = node.items()
    if kind == "tensor":
        return tensor(arrays[value], device=device)
    if kind == "array":
        return arrays[value]
    if kind == "value":
        return value
    if kind == "dict":
        return {k: _decode(v, arrays, device) for k, v in value}
    items = [_decode(v, arrays, device) for v in value]
    return items if kind == "list" else tuple(items)


def _digest(structure, arrays):
    h = hashlib.sha256(structure.encode())
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- files on disk

_FILE_KINDS = [(stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISSOCK, "a socket")]


def _not_regular(st):
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(st.st_mode):
        return None
    return next((what for test, what in _FILE_KINDS if test(st.st_mode)), "not a regular file")


def _save_error(e, path):
    """``e``, an OSError while saving, as the same class naming ``path`` (never the temp file)."""
    err = type(e)(f"save: cannot write {path}: {e.strerror or e}")
    err.errno = e.errno
    return err


def _writer_gone(host, pid):
    """True when ``pid`` on ``host`` is known not to run: only this host's processes are seen."""
    if host != _HOST or os.name != "posix":   # os.kill(pid, 0) would kill on Windows
        return False
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)                       # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):          # PermissionError: it runs, as another user
        return False
    return False


def _remove_stale_temps(folder):
    """Remove temporary files that earlier saves left behind in ``folder`` (killed, power cut).

    Only names of our own pattern, and only when the writer is gone or the file has not been
    written for STALE_AFTER_S: a save in progress elsewhere keeps its file. Best effort.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return
    now = time.time()
    for name in names:
        m = _TEMP_RE.fullmatch(name)
        if not m:
            continue
        full = os.path.join(folder, name)
        try:
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode) and (now - st.st_mtime > STALE_AFTER_S
                                            or _writer_gone(m["host"], int(m["pid"]))):
                os.unlink(full)
        except OSError:          # already gone (another save cleaned it), or not ours to remove
            pass


def _create_temp(folder, mode):
    """A new temporary file in ``folder``: (fd, name). ``mode`` goes through the umask, as in
    open(); mkstemp would make it 0600 whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = os.path.join(folder, f".tilegrad-save.{_HOST}.{os.getpid()}."
                                    f"{secrets.token_hex(8)}.tmp")
        try:
            return os.open(name, flags, mode), name
        except FileExistsError:
            continue
    raise FileExistsError(f"could not find a free temporary file name in {folder}")


def _fsync_folder(folder):
    """Make the rename itself durable; not every system can open a folder, so best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _target(path):
    """The file ``save`` writes for ``path`` (symlinks followed) and the mode it keeps (None for
    a new file); raises, changing nothing, when the target cannot be written."""
    target = os.path.realpath(path)
    shown = f"{path} (a link to {target})" if os.path.islink(path) else path
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise NotADirectoryError(f"save: cannot write {shown}: {folder} is not a folder")
        raise FileNotFoundError(f"save: cannot write {shown}: folder {folder} does not exist")
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target, None
    except OSError as e:
        raise _save_error(e, shown) from None
    what = _not_regular(st)
    if what:
        raise ValueError(f"save: cannot write {shown}: it is {what}, not a regular file")
    if not os.access(target, os.W_OK):   # a rename would replace it anyway; open() would not
        raise PermissionError(f"save: cannot write {shown}: permission denied (read-only file)")
    return target, stat.S_IMODE(st.st_mode) & 0o777


def _write_atomically(path, write):
    """Write the file ``path`` with ``write(f)`` (``f`` a binary file) through a temporary file
    renamed over the target, as ``save`` promises."""
    target, old_mode = _target(path)
    folder = os.path.dirname(target)
    _remove_stale_temps(folder)
    tmp = None
    try:
        fd, tmp = _create_temp(folder, 0o666 if old_mode is None else old_mode)
        with os.fdopen(fd, "wb") as f:
            if old_mode is not None:
                os.fchmod(f.fileno(), old_mode)   # exactly the old bits, whatever the umask
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as e:
        raise _save_error(e, path) from None      # the temp file's name would only confuse
    finally:                                      # any failure, KeyboardInterrupt included
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    _fsync_folder(folder)


def save(obj: Any, path: str | os.PathLike[str] | BinaryIO, *,
         metadata: dict[str, str] | None = None) -> None:
    """Write ``obj`` to ``path`` atomically: the old file stays whole until the new one is.

    ``path`` may also be a file object open for binary writing (``torch.save(obj, f)``): the
    file is written into it as it is, without the atomic rename (it is the caller's file); its
    ``name``, if it has one, chooses the format as a path's would.

    A path ending in ``.safetensors`` gets a safetensors file, which holds a flat dict of
    name -> tensor or array (a state_dict) and optional ``metadata`` (str -> str), readable by
    PyTorch's ``safetensors.torch.load_file``; any other path a tilegrad archive, which holds
    nested state (optimizers, epochs, ...).

    A symlink is written through (its target is replaced); a path that exists but is not a
    writable regular file (directory, device, FIFO, socket, read-only file) is refused. A new
    file gets the mode open() would give it (0o666 less the umask); an existing file keeps its
    permission bits. Abandoned temporary files of earlier saves are removed (docs/saving.md).
    """
    if hasattr(path, "write"):
        name = str(getattr(path, "name", "") or "<file object>")
        buffer = io.BytesIO()     # the whole file first: nothing is written if encoding fails
        _writer(obj, name, metadata)(buffer)
        path.write(buffer.getvalue())
        return
    path = os.fsdecode(os.fspath(path))
    _write_atomically(path, _writer(obj, path, metadata))


def _writer(obj, name, metadata):
    """A function that writes ``obj`` into a binary file, in the format ``name`` asks for. The
    object is encoded (and checked) here, before any file is touched."""
    if _safetensors.wanted(name):
        data = _safetensors.encode(obj, metadata)
        return lambda f: f.write(data)
    if metadata is not None:
        raise ValueError(f"save: metadata is stored only in .safetensors files, not in {name}")
    arrays = []
    structure = json.dumps(_encode(obj, arrays, "obj"))
    meta = json.dumps({"format": FORMAT, "version": VERSION, "structure": structure,
                       "sha256": _digest(structure, arrays)})
    return lambda f: np.savez(f, __meta__=np.frombuffer(meta.encode(), dtype=np.uint8),
                              **{f"a{k}": a for k, a in enumerate(arrays)})


# ---------------------------------------------------------------- reading

_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}


def _read_member(z, info, archive_size):
    """The array in member ``info``, after checking its header against its size: a crafted
    header cannot make NumPy allocate more than the file holds."""
    name = info.filename
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        raise _Malformed(f"member {name} is compressed or encrypted (save stores it plainly)")
    if info.file_size != info.compress_size or info.file_size > archive_size:
        raise _Malformed(f"member {name} claims {info.file_size} bytes")
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in _NPY_HEADERS:
            raise _Malformed(f"member {name} is a .npy file of version {version}")
        shape, _, dtype = _NPY_HEADERS[version](f)
        header_size = f.tell()
    if dtype.kind not in ARRAY_KINDS or dtype.hasobject:
        raise _Malformed(f"member {name} has dtype {dtype} (only bool, int, uint and float)")
    if any(n < 0 for n in shape) or \
            math.prod(shape) * dtype.itemsize != info.file_size - header_size:
        raise _Malformed(f"member {name}: its {info.file_size - header_size} bytes of data do "
                         f"not make an array of shape {shape} and dtype {dtype}")
    with z.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _read_archive(f):
    """The ``__meta__`` text and the arrays a0, a1, ... of the open file ``f``."""
    if f.read(4) != b"PK\x03\x04":     # np.load would take a .npy or a pickle for something else
        raise _Malformed("it is not a NumPy .npz (zip) archive")
    size = f.seek(0, os.SEEK_END)    # a file on disk or a BytesIO alike
    f.seek(0)
    with zipfile.ZipFile(f) as z:
        infos = {i.filename: i for i in z.infolist()}
        if len(infos) != len(z.infolist()):
            raise _Malformed("two archive members have the same name")
        if "__meta__.npy" not in infos:
            raise _Malformed("no __meta__ entry")
        expected = {"__meta__.npy"} | {f"a{k}.npy" for k in range(len(infos) - 1)}
        if set(infos) != expected:
            odd = sorted(set(infos) - expected)[:3]
            raise _Malformed(f"unexpected archive members {odd} (save writes __meta__, a0, ...)")
        meta = _read_member(z, infos["__meta__.npy"], size)
        if meta.dtype != np.uint8 or meta.ndim != 1:
            raise _Malformed(f"__meta__ is {meta.dtype}{meta.shape}, not uint8 text")
        arrays = [_read_member(z, infos[f"a{k}.npy"], size) for k in range(len(infos) - 1)]
    return meta.tobytes().decode("utf-8"), arrays


def _check_meta(text):
    """The structure string and digest of the ``__meta__`` JSON text."""
    meta = json.loads(text)
    if not isinstance(meta, dict):
        raise _Malformed(f"__meta__ is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise _Malformed(f"format {meta.get('format')!r:.60}")
    version = meta.get("version")
    if not _is_int(version) or version != VERSION:
        raise _Malformed(f"version {version!r:.30} (this tilegrad reads {VERSION})")
    structure, digest = meta.get("structure"), meta.get("sha256")
    if not isinstance(structure, str) or not isinstance(digest, str):
        raise _Malformed("__meta__ lacks the structure or sha256 string")
    return structure, digest


class _DigestMismatch(_Malformed):
    """The contents do not match the digest: damaged or edited after save."""


def _read_checked(f):
    """The checked structure and the arrays of the open file ``f``; _Malformed if anything is
    off. Nothing is built here: _decode runs only on what passed every check."""
    text, arrays = _read_archive(f)
    structure, digest = _check_meta(text)
    if _digest(structure, arrays) != digest:
        raise _DigestMismatch("its SHA-256 digest does not match its contents")
    root = json.loads(structure)
    used = set()
    _check_node(root, arrays, used, "obj")
    if len(used) != len(arrays):
        raise _Malformed(f"array a{min(set(range(len(arrays))) - used)} is not used")
    return root, arrays


# What reading a damaged archive can raise besides _Malformed. UnicodeDecodeError and
# JSONDecodeError are ValueErrors; RecursionError (a RuntimeError) comes from JSON nested too
# deeply; RuntimeError and NotImplementedError from zip features that save never uses.
_READ_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError,
                NotImplementedError)


def load(path: str | os.PathLike[str] | BinaryIO, map_location: Any = None,
         weights_only: bool | None = None) -> Any:
    """Read what ``save`` wrote; a file that is not a whole tilegrad checkpoint is a ValueError.

    ``path`` may be a file object open for binary reading. ``map_location`` (a device name or
    Device) puts every tensor there; by default an archive's tensors go to the default device
    and a safetensors file's to "cpu". ``weights_only`` is accepted for PyTorch's signature and
    changes nothing: tilegrad's files hold only tensors, arrays, numbers and strings, and
    reading them never runs pickle.

    A safetensors file (known by its content, or its suffix) comes back as an OrderedDict of
    name -> tensor on "cpu", in the file's order, for ``Module.load_state_dict``.

    Nothing is built before the whole file is checked. A missing file is a FileNotFoundError and
    a file that cannot be opened keeps open()'s OSError; a path that is not a regular file
    (directory, FIFO, ...) is a ValueError.
    """
    device = _map_location(map_location)
    if hasattr(path, "read"):
        data = path.read()
        if not isinstance(data, bytes):
            raise TypeError("load: the file object must be open for binary reading ('rb')")
        return _load_from(io.BytesIO(data), str(getattr(path, "name", "") or "<file object>"),
                          device)
    path = os.fsdecode(os.fspath(path))
    what = _not_regular(os.stat(path))   # FileNotFoundError as open() would; a FIFO would block
    if what:
        raise ValueError(f"load: {path} is {what}, not a regular file")
    with open(path, "rb") as f:
        return _load_from(f, path, device)


def _map_location(map_location):
    if map_location is None:
        return None
    if not isinstance(map_location, str) and not hasattr(map_location, "backend"):
        raise TypeError(f"load: map_location must be a device name or a Device, got "
                        f"{type(map_location).__name__}")
    dev = get_device(map_location)
    dev.backend   # raises if the device is unavailable, before the file is read
    return dev


def _load_from(f, path, device):
    """The object in the open, seekable binary file ``f`` (named ``path`` in errors)."""
    if _safetensors.detect(f.read(9), path):
        f.seek(0)
        state = _safetensors.read(f, path)
        if device is not None:
            for k, v in state.items():
                if isinstance(v, Tensor):
                    state[k] = v.to(device)
        return state
    f.seek(0)
    try:
        root, arrays = _read_checked(f)
    except _DigestMismatch as e:
        raise ValueError(f"load: {path} is corrupt: {e}") from None
    except _Malformed as e:
        raise ValueError(f"load: {path} is not a readable tilegrad checkpoint: {e}") from None
    except _READ_ERRORS as e:
        raise ValueError(f"load: {path} is not a readable tilegrad checkpoint: "
                         f"{type(e).__name__}: {e}") from None
    return _decode(root, arrays, device)
