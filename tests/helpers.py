"""What the tests share beyond ``tilegrad.testing`` (the oracles, shipped in the package):
PyTorch where it is importable (the parity reference; ``None`` otherwise, and then the parity
tests skip, which conftest.py turns into an error on CI), whether this is CI, and a spy on a
kernel family's launchers."""
import os

try:
    import torch
except ImportError:   # parity tests skip; on CI that is an error (conftest)
    torch = None


def on_ci():
    return bool(os.environ.get("CI"))


def spy_on_versions(monkeypatch, versions, ops):
    """Wrap the launchers ``ops`` of every version in ``versions`` (a family's ``VERSIONS``: name
    -> an object holding the launchers) so that each call appends (version, op) to the list
    returned; ``monkeypatch`` undoes it."""
    ran = []

    def spy(version, op, launcher):
        def call(*args):
            ran.append((version, op))
            return launcher(*args)
        return call

    for version, launchers in versions.items():
        for op in ops:
            monkeypatch.setattr(launchers, op, spy(version, op, getattr(launchers, op)))
    return ran
