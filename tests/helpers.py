"""What the tests share beyond ``tilegrad.testing`` (the oracles, shipped in the package):
PyTorch where it is importable (the parity reference; ``None`` otherwise, and then the parity
tests skip, which conftest.py turns into an error on CI), and whether this is CI."""
import os

try:
    import torch
except ImportError:   # parity tests skip; on CI that is an error (conftest)
    torch = None


def on_ci():
    return bool(os.environ.get("CI"))
