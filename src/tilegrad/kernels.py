"""Which version of each kernel family the CUDA backend runs.

``tilegrad.kernels.use("matmul", "v2")`` switches training and benchmarks to that version, so a
student can swap a kernel mid-course and see the effect; ``TILEGRAD_KERNELS="matmul=v2"`` (a
comma-separated list of ``family=version``) does the same from the environment. ``versions()``
lists every family's versions and the one in use.

Each family declares its versions once, in its own module of ``tilegrad.backends.cuda``::

    VERSIONS = {"v1": matmul_v1, "v2": matmul_v2}
    KERNEL_FAMILIES = {"matmul": (VERSIONS, "v2")}

maps a family name to (a dict from version name to launcher, the default version's name); one
module may declare several families (one per convolution pass, say). The registry is built from
those declarations the first time a family is asked about, by importing the family modules that
the compile check lists (``ptx.FAMILIES``); importing this module imports none of them (nor
Numba). Adding a version is one edit, in the family's own file.

A module that declares no ``KERNEL_FAMILIES`` but has ``VERSIONS``, a dict of launchers, is read
as family <module name> whose default is its last version (how matmul.py declared its ladder
before ``KERNEL_FAMILIES``).

Without numba-cuda no family module can be imported: ``versions()`` then lists only "cpu" and
``unavailable_reason()`` says why.

One more family is not a CUDA kernel: "cpu", device "cpu"'s backend, "cpp" (the C++ extension,
where it is built) or "numpy" (``tilegrad.backends.cpu``); ``use("cpu", "numpy")`` switches it.
"""
import importlib
import os

_PACKAGE = "tilegrad.backends.cuda"
_registry = {}     # "families": {family: (versions dict, default)}, "reason": None or why empty
_chosen = {}       # family -> the version chosen by use() or $TILEGRAD_KERNELS; "_env": read


def declarations(module):
    """``{family: (versions dict, default)}`` that ``module`` declares; {} if none."""
    declared = getattr(module, "KERNEL_FAMILIES", None)
    if declared is not None:
        return dict(declared)
    versions = getattr(module, "VERSIONS", None)
    if isinstance(versions, dict) and versions and all(callable(v) for v in versions.values()):
        return {module.__name__.rsplit(".", 1)[-1]: (versions, list(versions)[-1])}
    return {}


def collect(modules):
    """The registry ``{family: (versions dict, default)}`` declared by ``modules``; a family
    declared twice, or a default that is not one of its versions, raises ``ValueError``."""
    families, where = {}, {}
    for module in modules:
        for family, (versions, default) in declarations(module).items():
            if family in families:
                raise ValueError(f"kernel family {family!r} is declared by both "
                                 f"{where[family]} and {module.__name__}")
            if default not in versions:
                raise ValueError(f"{module.__name__}: kernel family {family!r} has default "
                                 f"{default!r}, not one of its versions {', '.join(versions)}")
            families[family], where[family] = (dict(versions), default), module.__name__
    return families


def _load():
    """Import the family modules and read their declarations: (families, reason if empty)."""
    try:
        importlib.import_module(f"{_PACKAGE}.runtime")    # numba-cuda, which every family needs
    except ImportError as e:
        return {}, f"the CUDA kernel modules cannot be imported: {e}"
    from tilegrad.backends.cuda import ptx   # imports neither Numba nor any family
    modules, _missing = ptx.load_modules()
    return collect(module for _, module in modules), None


def _families():
    if "families" not in _registry:
        _registry["families"], _registry["reason"] = _load()
    return _registry["families"]


def unavailable_reason():
    """Why no kernel family is known (numba-cuda cannot be imported), or None."""
    _families()
    return _registry["reason"]


def _declared(family):
    """(versions dict, default) of ``family``; ValueError naming the known families if unknown."""
    families = _families()
    if family not in families:
        known = ", ".join(families) or f"none ({unavailable_reason() or 'no module declares one'})"
        raise ValueError(f"unknown kernel family {family!r}; known: {known}")
    return families[family]


def _check(family, version):
    versions, _ = _declared(family)
    if version not in versions:
        raise ValueError(f"{family} has versions {', '.join(versions)}, not {version!r}")


def _from_environment():
    """The versions named in $TILEGRAD_KERNELS, read once, before any other choice is made."""
    spec = os.environ.get("TILEGRAD_KERNELS", "")
    chosen = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        family, _, version = (s.strip() for s in item.partition("="))
        if family == "cpu":
            try:
                _cpu().use(version)
            except (ValueError, RuntimeError) as e:
                raise ValueError(f"TILEGRAD_KERNELS={spec!r}: {e}") from None
            continue
        try:
            _check(family, version)
        except ValueError as e:
            raise ValueError(f"TILEGRAD_KERNELS={spec!r}: {e}") from None
        chosen[family] = version
    return chosen


def _choices():
    if "_env" not in _chosen:
        _chosen.update(_from_environment(), _env=True)
    return _chosen


def _cpu():
    from tilegrad.backends import cpu
    return cpu


def use(family, version):
    """Run ``version`` of kernel ``family`` from now on."""
    if family == "cpu":
        try:
            _cpu().use(version)
        except (ValueError, RuntimeError) as e:
            raise type(e)(f"kernels.use: {e}") from None
        return
    try:
        _check(family, version)
    except ValueError as e:
        raise ValueError(f"kernels.use: {e}") from None
    _choices()[family] = version


def current(family):
    """The version of ``family`` in use."""
    if family == "cpu":
        return _cpu().current()
    version = _choices().get(family)
    return version if version is not None else _declared(family)[1]


def launcher(family):
    """The launcher of the version of ``family`` in use."""
    return _declared(family)[0][current(family)]


def declared(family):
    """Whether a family module declares ``family``."""
    return family in _families()


def versions():
    """``{family: (all versions, the one in use)}``: "cpu", then the CUDA families (none without
    numba-cuda)."""
    cuda = {f: (tuple(v), current(f)) for f, (v, _) in _families().items()}
    return {"cpu": (_cpu().CHOICES, _cpu().current()), **cuda}
