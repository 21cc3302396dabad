"""A training run across processes: joining the MPI job, and who does what in it.

``tilegrad train`` started by ``mpiexec -n P`` (the launcher's environment says so) joins the
job as one of P ranks: backend "nccl" for ``--device cuda`` where NCCL and a GPU are usable,
else "mpi". Each rank builds the same model and the same global order of samples, takes its
share of every global batch (``--batch-size`` is the global batch; the LM takes a share of the
batch's columns) and trains a ``DistributedDataParallel`` replica. What the ranks must agree on
is decided from all-reduced numbers (the loss, the evaluation sums); what touches the run folder
(the lock, the metrics, the curves, the checkpoints, the console) is rank 0's alone.

The CPU's cores are shared: unless ``OMP_NUM_THREADS`` says otherwise, each rank's C++ kernels
use the machine's cores divided by the ranks on it.
"""
import os

import numpy as np

import tilegrad as tg
from tilegrad import distributed as dist
from tilegrad.distributed import launcher
from tilegrad.utils.data.distributed import share_range

from .rundir import TrainingError


class Job:
    """The processes of one run: ``rank`` of ``size`` (0 of 1 for a run on its own)."""

    def __init__(self, rank=0, size=1, owned=False):
        self.rank, self.size, self.owned = rank, size, owned

    @property
    def main(self):
        """Whether this rank writes the run's files and prints."""
        return self.rank == 0

    @property
    def parallel(self):
        return self.size > 1

    def sum(self, values):
        """The sums over ranks of a few float numbers (the numbers themselves on one rank)."""
        if not self.parallel:
            return np.asarray(values, dtype=np.float64)
        return dist.allreduce_floats(values)

    def share(self, n):
        """This rank's contiguous share (a range) of ``n`` items."""
        return share_range(n, self.size, self.rank)

    def from_main(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.parallel:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def leave(self):
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()


def join(device_name):
    """The Job this process belongs to; a TrainingError when it cannot join it."""
    launched = launcher.launched()
    if not dist.is_initialized() and (launched is None or launched[0] <= 1):
        return Job()
    owned = False
    if not dist.is_initialized():
        if not dist.is_mpi_available():
            raise TrainingError(f"{launched[2]} started this run as one of {launched[0]} "
                                f"processes, but mpi4py is not installed: pip install "
                                f"'tilegrad[dist]' (mpi4py and MPICH)")
        backend = "nccl" if device_name == "cuda" and dist.is_nccl_available() else "mpi"
        try:
            dist.init_process_group(backend)
        except RuntimeError as e:
            raise TrainingError(str(e)) from None
        owned = True
    job = Job(dist.get_rank(), dist.get_world_size(), owned)
    if job.parallel and "OMP_NUM_THREADS" not in os.environ:
        tg.set_num_threads(launcher.threads_per_rank(dist.get_local_world_size()))
    return job


def in_job():
    """Whether this process is one rank of several."""
    return dist.is_initialized() and dist.get_world_size() > 1


def end_job(command, error):
    """Report ``error`` from inside a job of several ranks; returns the exit code. An error every
    rank raised alike (``collective``: a diverged run) is printed by rank 0, and every rank
    exits 1. Any other ends the whole job at once (``MPI_Abort``), since the other ranks would
    wait for this one in their next collective forever."""
    import sys
    import traceback
    rank, size = dist.get_rank(), dist.get_world_size()
    if getattr(error, "collective", False):
        if rank == 0:
            print(f"tilegrad {command}: {error}", file=sys.stderr, flush=True)
        return 1
    expected = isinstance(error, (ValueError, OSError, tg.DeviceUnavailableError))
    if not expected or os.environ.get("TILEGRAD_DEBUG"):
        traceback.print_exception(type(error), error, error.__traceback__)
    print(f"tilegrad {command}: rank {rank} of {size}: {error or type(error).__name__}; ending "
          f"the job", file=sys.stderr, flush=True)
    dist.abort(1)
    return 1     # not reached: MPI_Abort ends the process
