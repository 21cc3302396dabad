"""The cpp backend of device "cpu": every primitive of the NumPy specification, from the C++
extension ``tilegrad._cpu`` where one of the family modules here provides it, else from the
NumPy backend itself.

Each family module (``gemm``, ``conv``, ``pool``, ``elementwise``, ``reduce``, ``softmax``,
``embedding``, ``lstm``, ``optim``, ``norm``) lists the primitives it serves in ``PRIMITIVES`` and
defines them with the specification's names and parameters: a few lines that send float32 and
float64 arrays (made C-contiguous) to the extension and anything else to the NumPy backend.
"""
import inspect

from tilegrad.backends import numpy as spec
from tilegrad.backends.cpu import (conv, elementwise, embedding, gemm, lstm, optim, pool, reduce,
                                   softmax)
from tilegrad.backends.cpu import norm

name = "cpp"

FAMILIES = (gemm, conv, pool, elementwise, reduce, softmax, embedding, lstm, optim, norm)


def _specified():
    return [n for n, f in vars(spec).items()
            if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == spec.__name__]


NATIVE = {}      # primitive -> the family module that serves it from the extension
for _family in FAMILIES:
    for _name in _family.PRIMITIVES:
        NATIVE[_name] = _family.__name__.rsplit(".", 1)[-1]
        globals()[_name] = getattr(_family, _name)

FALLBACK = tuple(n for n in _specified() if n not in NATIVE)   # served by the NumPy backend
for _name in FALLBACK:
    globals()[_name] = getattr(spec, _name)
