"""The ``tilegrad`` command line (``python -m tilegrad`` works too)."""
from .main import main

__all__ = ["main"]
