"""Where data sets live: one lookup order for every loader, and one error when nothing is found.

Lookup order (``find_data_dir``):

1. the explicit path (the CLI's ``--data-dir``): the folder itself or ``<path>/<name>``. When an
   explicit path is given it is the only place looked at: if it lacks the files, the error names it;
2. ``$TILEGRAD_DATA``: the folder itself or ``$TILEGRAD_DATA/<name>``;
3. the Debian package locations (for example ``/usr/share/datasets/fashion-mnist``).

A data set that is not found raises ``DataNotFoundError``, a ``FileNotFoundError`` whose message
says where it looked and what to do (which package to install, which flag or variable to set),
so that a command-line tool can print it as it is.

>>> find_data_dir("fashion-mnist", debian=("/usr/share/datasets/fashion-mnist",),
...               must_contain=("train-images-idx3-ubyte.gz",))       # doctest: +SKIP
PosixPath('/usr/share/datasets/fashion-mnist')
"""
import os
from pathlib import Path

ENV_VAR = "TILEGRAD_DATA"


class DataNotFoundError(FileNotFoundError):
    """A data set is not where tilegrad looked. The message says where it looked and what to do."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _alternatives(entry):
    """A ``must_contain`` entry is one glob pattern or a tuple of alternative patterns."""
    return (entry,) if isinstance(entry, (str, os.PathLike)) else tuple(entry)


def describe_entry(entry):
    """``("a", "a.gz")`` -> ``"a or a.gz"``: how a must_contain entry reads in a message."""
    return " or ".join(str(p) for p in _alternatives(entry))


def missing_files(folder, must_contain):
    """The ``must_contain`` entries that match no file in ``folder`` (all of them if no folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return list(must_contain)
    return [entry for entry in must_contain
            if not any(p.is_file() for alt in _alternatives(entry) for p in folder.glob(str(alt)))]


def _why_not(folder, must_contain):
    """``None`` if ``folder`` holds every entry, else a short reason for the error message."""
    folder = Path(folder)
    if not folder.exists():
        return "does not exist"
    if not folder.is_dir():
        return "is not a folder"
    missing = missing_files(folder, must_contain)
    if missing:
        return "lacks " + ", ".join(describe_entry(e) for e in missing)
    return None


def _candidates(base, name):
    return [Path(base), Path(base) / name] if name else [Path(base)]


def not_found_message(what, looked, advice):
    """One readable message: ``<what> not found.`` / ``Looked in: ...`` / ``advice``."""
    lines = [f"{what} not found."]
    if looked:
        lines.append("Looked in:")
        lines.extend(f"  {place}: {why}" for place, why in looked)
    lines.append(advice)
    return "\n".join(lines)


def default_advice(name, must_contain, install=None):
    """The message's last line: what to install, or where to point --data-dir/$TILEGRAD_DATA."""
    files = ", ".join(describe_entry(e) for e in must_contain) or "the data files"
    point = (f"pass --data-dir DIR (or set ${ENV_VAR}=DIR) where DIR or DIR/{name} "
             f"holds {files}")
    return f"{install}, or {point}." if install else f"To use it, {point}."


def find_data_dir(name, explicit=None, debian=(), must_contain=(), install=None):
    """The folder holding data set ``name``.

    Args:
        name: the data set's folder name (``"fashion-mnist"``, ``"cifar-10-batches-py"``); also
            looked for as a subfolder of the explicit path and of ``$TILEGRAD_DATA``.
        explicit: a folder the user named (``--data-dir``), or None. When given, it is the only
            place looked at.
        debian: folders where a Debian package installs the data set, tried last.
        must_contain: file names or glob patterns that must each match a file in the folder; an
            entry may be a tuple of alternatives (``("x-ubyte", "x-ubyte.gz")``).
        install: how to get the data, for the error message
            (``"Install it with `apt-get install dataset-fashion-mnist`"``).

    Returns:
        pathlib.Path of the first folder that holds every ``must_contain`` entry.

    Raises:
        DataNotFoundError: no such folder; the message lists each place looked at and why it was
            refused, then what to install or which flag/variable to set.
    """
    looked = []
    if explicit is not None:
        for folder in _candidates(Path(explicit).expanduser(), name):
            why = _why_not(folder, must_contain)
            if why is None:
                return folder
            looked.append((str(folder), why))
        raise DataNotFoundError(not_found_message(
            f"{name} in the folder given ({explicit})", looked,
            default_advice(name, must_contain, install)))
    env = os.environ.get(ENV_VAR)
    places = _candidates(Path(env).expanduser(), name) if env else []
    if not env:
        looked.append((f"${ENV_VAR}", "not set"))
    for folder in places + [Path(d) for d in debian]:
        why = _why_not(folder, must_contain)
        if why is None:
            return folder
        looked.append((str(folder), why))
    raise DataNotFoundError(not_found_message(name, looked,
                                              default_advice(name, must_contain, install)))
