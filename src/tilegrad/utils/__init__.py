"""Utilities under PyTorch's names: ``tilegrad.utils.data`` is ``torch.utils.data``."""
from . import data

__all__ = ["data"]
