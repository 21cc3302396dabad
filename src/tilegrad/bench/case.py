"""What a benchmark case is: the op, its size, its cost formulas, and how to run both sides."""
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Prepared:
    """One case, set up on a device with its inputs allocated.

    ``tilegrad()`` runs tilegrad's side once and returns its output (a backend array or a tuple
    of them; for a training step, the loss as a float). ``torch()`` runs PyTorch's side once
    (None where PyTorch is not installed), returning its output as a torch tensor or tuple.
    ``reference()`` returns the expected output as float64 NumPy array(s), computed by the NumPy
    backend in float64 (or, for a training step, by PyTorch). ``to_numpy(out)`` turns either
    side's output into NumPy array(s) for validation. ``launches()``, where given, runs tilegrad's
    side once more and returns the device operations it issued (``{"kernels", "copies",
    "graphs"}``: kernel launches, copies and fills, graph replays).
    """
    tilegrad: Callable
    torch: Optional[Callable]
    reference: Callable
    to_numpy: Callable
    rtol: float = 1e-4
    atol: float = 1e-5
    sync: Callable = field(default=lambda: None)
    launches: Optional[Callable] = None


@dataclass
class Case:
    """``group`` (matmul, conv2d, ...), a readable ``name`` and ``shape``, FLOPs and bytes from
    ``bench.formulas``, ``bound`` ('compute' or 'memory': which measured peak the fraction uses),
    and ``setup(device, torch)`` -> Prepared, ``device`` a tilegrad Device and ``torch`` the
    torch module or None."""
    group: str
    name: str
    shape: str
    flops: int
    bytes: int
    bound: str
    setup: Callable
