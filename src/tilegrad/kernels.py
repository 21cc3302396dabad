"""Which version of each kernel family the CUDA backend runs.

``tilegrad.kernels.use("matmul", "v2")`` switches training and benchmarks to that version, so a
student can swap a kernel mid-course and see the effect; ``TILEGRAD_KERNELS="matmul=v2"`` does
the same from the environment. ``versions()`` lists every family's versions and the one in use.
"""
import os

# family -> (versions, default). A family's versions are the keys of its module's VERSIONS.
_FAMILIES = {"matmul": (("v1", "v2", "v3", "v4"), "v4")}
_chosen = {}


def _from_environment():
    """The versions named in $TILEGRAD_KERNELS, read once, before any other choice is made."""
    spec = os.environ.get("TILEGRAD_KERNELS", "")
    chosen = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        family, _, version = item.partition("=")
        _check(family.strip(), version.strip())
        chosen[family.strip()] = version.strip()
    return chosen


def _check(family, version):
    if family not in _FAMILIES:
        raise ValueError(f"kernels.use: unknown kernel family {family!r}; known: "
                         f"{', '.join(_FAMILIES)}")
    if version not in _FAMILIES[family][0]:
        raise ValueError(f"kernels.use: {family} has versions {', '.join(_FAMILIES[family][0])}, "
                         f"not {version!r}")


def _choices():
    if "_env" not in _chosen:
        _chosen.update(_from_environment(), _env=True)
    return _chosen


def use(family, version):
    """Run ``version`` of kernel ``family`` from now on."""
    _check(family, version)
    _choices()[family] = version


def current(family):
    """The version of ``family`` in use."""
    return _choices().get(family, _FAMILIES[family][1])


def versions():
    """{family: (all versions, the one in use)}."""
    return {f: (v, current(f)) for f, (v, _) in _FAMILIES.items()}
