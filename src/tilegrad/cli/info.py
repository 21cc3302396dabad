"""``tilegrad info``: backends, devices and why any is unavailable, kernel versions, data,
package versions."""
import platform

import numpy as np

import tilegrad as tg
from tilegrad import data, kernels


def _version(module):
    try:
        return __import__(module).__version__
    except Exception as e:   # noqa: BLE001  (any import failure is just "not installed")
        return f"not installed ({type(e).__name__})"


def _kernel_lines():
    """One line per kernel family: its versions, the one in use starred."""
    try:
        families = kernels.versions()
    except ValueError as e:          # a bad $TILEGRAD_KERNELS
        return [f"  {e}"]
    if not families:
        return [f"  none: {kernels.unavailable_reason() or 'no module declares a family'}"]
    width = max(len(f) for f in families)
    return [f"  {f:{width}s} " + " ".join(f"*{v}" if v == used else v for v in versions)
            for f, (versions, used) in families.items()]


def _auto_lines():
    """The table matmul's "auto" reads, as data: tiles, kernel, when; and its constants."""
    if "matmul" not in (kernels.versions() if kernels.unavailable_reason() is None else {}):
        return []
    from tilegrad.backends.cuda import matmul
    lines = ["", "matmul auto (first rule that holds; tilegrad.backends.cuda.matmul.AUTO_RULES):"]
    for tiles, kernel, when in matmul.AUTO_RULES:
        t = matmul.TILES[tiles]
        lines.append(f"  {kernel} {t['bm']}x{t['bn']} tiles, BK {t['bk']}: {when}")
    lines.append(f"  a wave = multiprocessors x blocks per SM {matmul.RESIDENT}; split-K slices "
                 f"keep >= {matmul.SPLIT_MIN_TILES} K-tiles, at most {matmul.SPLIT_MAX} slices")
    return lines


def _distributed_lines():
    """mpi4py and the mpiexec to start jobs with (found without starting MPI), and NCCL."""
    from tilegrad.distributed import _nccl, launcher
    try:
        import mpi4py
        lines = [f"  mpi    mpi4py {mpi4py.__version__}; start jobs with "
                 f"{launcher.mpiexec() or 'an mpiexec (none found)'}"]
    except ImportError:
        lines = ["  mpi    unavailable: mpi4py is not installed (pip install 'tilegrad[dist]')"]
    ok, why = _nccl.available()
    return lines + [f"  nccl   {'available' if ok else 'unavailable: ' + why}"]


def info():
    lines = [f"tilegrad {tg.__version__}, Python {platform.python_version()}, "
             f"NumPy {np.__version__}", "", "devices:"]
    for d in tg.devices():
        state = (f"available, backend {d.backend.name}" if d.available
                 else f"unavailable: {d.reason}")
        lines.append(f"  {d.name:5s} {state}")
    from tilegrad.backends.cuda import _numba_compat     # imports nothing but NumPy
    lines += ["", "numba-cuda workarounds (backends/cuda/_numba_compat.py):"]
    lines += _numba_compat.describe()
    from tilegrad.backends import cpu
    lines += ["", "cpu backend:"] + cpu.describe()
    lines += ["", "kernels (tilegrad.kernels.use, or TILEGRAD_KERNELS=family=version,...):"]
    lines += _kernel_lines()
    try:
        lines += _auto_lines()
    except ValueError:               # a bad $TILEGRAD_KERNELS: already said above
        pass
    lines += ["", "optional packages:"]
    for m in ("tqdm", "matplotlib", "torch", "numba", "cupy", "mpi4py"):
        lines.append(f"  {m:10s} {_version(m)}")
    lines += ["", "distributed (docs/distributed.md):"] + _distributed_lines()
    lines += ["", "data:"]
    for label, find in (("Fashion-MNIST", lambda: data.find_mnist_dir(None, "fashion-mnist")),
                        ("word corpus", lambda: data.find_corpus(None)[0])):
        try:
            lines.append(f"  {label:13s} {find()}")
        except data.DataNotFoundError as e:
            lines.append(f"  {label:13s} not found: {e}")
    return "\n".join(lines)
