"""Which kernel families ``tilegrad check`` grades, their versions, and each version's kernels.

A family as the user names it (``conv2d``, ``softmax-cross-entropy``) is a ``Family``: the kernel
file under ``tilegrad.backends.cuda`` that holds its kernels and ``PTX_SIGNATURES``, and the
names it has in the kernel registry (``tilegrad.kernels``): one, or for ``conv2d`` its three
passes. A family the registry declares has versions, each graded on its own; a family it does
not declare (no version ladder yet) is graded as its single implementation, version ``None``.
A family that a kernel file declares in the registry but that is not listed here is graded too,
under its registry name (it has no oracle cases until ``cases.py`` gets some).

Which kernels belong to a version: the ``PTX_SIGNATURES`` rows whose name contains
``kernel<N>`` (not followed by another digit) for version ``vN``; a module's ``VERSION_KERNELS =
{version: (name fragments, ...)}`` says it for versions named otherwise ("auto") or launching
more than their own kernels. When a kernel file declares several registry families (conv2d's
passes), a family's rows are those named ``<family>_...``. Nothing here imports Numba.
"""
import re
from dataclasses import dataclass


class UnknownFamilyError(ValueError):
    """A family or version that ``tilegrad check`` does not know."""


@dataclass(frozen=True)
class Family:
    name: str           # as typed: matmul, conv2d, softmax_cross_entropy
    module: str         # the kernel file under tilegrad.backends.cuda
    registry: tuple     # its names in tilegrad.kernels (the passes of conv2d)


CONV_PASSES = ("conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weight")
CATALOG = {f.name: f for f in [
    Family("matmul", "matmul", ("matmul",)),
    Family("conv2d", "conv", CONV_PASSES),
    *(Family(p, "conv", (p,)) for p in CONV_PASSES),
    Family("softmax_cross_entropy", "softmax", ("softmax_cross_entropy",)),
    Family("reduce", "reduce", ("reduce",)),
    Family("elementwise", "elementwise", ("elementwise",)),
    Family("pool", "pool", ("pool",)),
    Family("lstm", "lstm", ("lstm",)),
    Family("embedding", "embedding", ("embedding",)),
    Family("optim", "optim", ("optim",)),
]}


def normalize(name):
    """``softmax-cross-entropy`` -> ``softmax_cross_entropy``."""
    return name.strip().lower().replace("-", "_")


def registry_versions():
    """``{registry family: (versions...)}`` from ``tilegrad.kernels`` ({} without numba-cuda)."""
    from tilegrad import kernels
    return {f: tuple(v) for f, (v, _) in kernels.versions().items() if f != "cpu"}


def known(registry=None):
    """Every family ``check`` accepts: the catalog and any other registry family."""
    registry = registry_versions() if registry is None else registry
    extra = [f for f in registry if not any(f in fam.registry for fam in CATALOG.values())]
    return list(CATALOG) + extra


def resolve(name, registry=None):
    """The ``Family`` named ``name`` ('-' or '_'); UnknownFamilyError listing the known ones."""
    registry = registry_versions() if registry is None else registry
    key = normalize(name)
    if key in CATALOG:
        return CATALOG[key]
    if key in registry:
        return Family(key, _declaring_module(key), (key,))
    raise UnknownFamilyError(f"tilegrad check: unknown family {name!r}; known: "
                             f"{', '.join(known(registry))}")


def _declaring_module(family):
    """The kernel file that declares registry family ``family`` (imports the kernel files)."""
    from tilegrad import kernels
    from tilegrad.backends.cuda import ptx
    modules, _ = ptx.load_modules()
    for name, module in modules:
        if family in kernels.declarations(module):
            return name
    raise UnknownFamilyError(f"tilegrad check: no kernel file declares family {family!r}")


def versions(family, registry=None):
    """The versions graded for ``family``: its registry versions (for conv2d, those all three
    passes have), or ``[None]`` when the registry has no ladder for it."""
    registry = registry_versions() if registry is None else registry
    ladders = [registry[r] for r in family.registry if r in registry]
    if not ladders:
        return [None]
    return [v for v in ladders[0] if all(v in ladder for ladder in ladders)]


def select_versions(family, version=None, registry=None):
    """``[version]`` checked against the family's versions, or all of them when None;
    UnknownFamilyError naming the versions there are."""
    have = versions(family, registry)
    if version is None:
        return have
    if have == [None]:
        raise UnknownFamilyError(f"tilegrad check: {family.name} has no versions (one "
                                 f"implementation, graded without --version), not {version!r}")
    if version not in have:
        raise UnknownFamilyError(f"tilegrad check: {family.name} has versions {', '.join(have)}, "
                                 f"not {version!r}")
    return [version]


# ---------------------------------------------------------------- a version's kernels

def fragments(version, version_kernels=None):
    """The name fragments of ``version``'s kernels: the module's VERSION_KERNELS entry, else
    ``kernel<N>`` for ``vN``; () for a version named otherwise with no entry."""
    if version_kernels and version in version_kernels:
        return tuple(version_kernels[version])
    m = re.fullmatch(r"v(\d+)", version or "")
    return (f"kernel{m.group(1)}",) if m else ()


def belongs(name, frags):
    """Whether kernel ``name`` contains one of ``frags``, not followed by a digit (kernel1 is not
    kernel12)."""
    return any(re.search(re.escape(f) + r"(?!\d)", name) for f in frags)


def family_rows(names, registry_family, declared):
    """The kernel names (of one module's PTX_SIGNATURES) of ``registry_family``: all of them
    when the module declares at most one family, else those named ``<family>_...``."""
    if len(declared) <= 1:
        return list(names)
    return [n for n in names if n.startswith(registry_family + "_")]


def version_rows(names, family, version, declared=(), version_kernels=None):
    """The kernel names that ``version`` of ``family`` compiles, in order, without repeats (one
    name may be listed for several dtypes). Version None: every kernel of the family."""
    mine = list(dict.fromkeys(n for r in family.registry
                              for n in family_rows(names, r, declared)))
    if version is None:
        return mine
    frags = fragments(version, version_kernels)
    return [n for n in mine if belongs(n, frags)]
