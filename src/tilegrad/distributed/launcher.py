"""What the process launcher says about this process, read from its environment.

MPI itself knows the job's size and this process's rank once it is initialised; the launcher's
environment is read only to catch a job that MPI does not see as one: ``mpiexec`` from one MPI
starting processes whose mpi4py was built against another (or ``torchrun``, which starts no MPI
job at all) gives N processes that each believe they are "rank 0 of 1" and would each train the
whole model alone. ``init_process_group`` compares the two and refuses such a job at once.
"""
import os

# (variable holding the job's size, variable holding this process's rank, the launcher's name)
LAUNCHERS = (
    ("PMI_SIZE", "PMI_RANK", "MPICH's mpiexec (Hydra)"),
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "Open MPI's mpirun"),
    ("WORLD_SIZE", "RANK", "torchrun (or WORLD_SIZE set by hand)"),
)


def _int(name):
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


def launched():
    """``(world size, rank, launcher name)`` from the first launcher whose variables are set, or
    None when the process was started on its own."""
    for size_var, rank_var, name in LAUNCHERS:
        size = _int(size_var)
        if size is not None:
            return size, _int(rank_var), f"{name} ({size_var}={size})"
    return None


def mismatch_message(mpi_size):
    """The explanation for a launcher that started several processes which MPI sees as separate
    jobs of ``mpi_size`` process(es); None when the two agree."""
    found = launched()
    if found is None or found[0] == mpi_size:
        return None
    size, rank, who = found
    return (f"init_process_group: {who} started this process as rank {rank} of {size}, but MPI "
            f"sees a job of {mpi_size}: the launcher does not belong to the MPI that mpi4py "
            f"uses, so each process would train alone. Start the job with the mpiexec of the "
            f"MPI that mpi4py was built for (with `pip install tilegrad[dist]`, the one in the "
            f"environment's bin folder: {mpiexec() or 'none found'})")


def threads_per_rank(ranks_here):
    """The cores this process may run on, shared out among the ``ranks_here`` processes of the
    job on this machine: at least one each."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // ranks_here)


def mpiexec():
    """The launcher to start jobs with: the ``mpiexec`` beside this Python (a virtual
    environment's, where MPICH's wheel puts it), else the one on PATH; None if there is none."""
    import shutil
    import sys
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else shutil.which("mpiexec")
