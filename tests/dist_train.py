"""``tilegrad train`` as one rank of an MPI job (or alone), keeping every rank's final parameters.

    mpiexec -n P python tests/dist_train.py OUT.npz [--fail-rank R] -- train mlp --epochs 1 ...

The training is ``tilegrad.cli.main`` itself; this script only joins the job first (so that the
trainer leaves the group up when it returns), keeps the task the trainer made, and after the run
gathers each rank's parameters into OUT.npz on rank 0 as ``"<rank>/<name>"``. ``--fail-rank R``
makes rank R's second training step raise, to see the job end.
"""
import sys

import numpy as np

import tilegrad.distributed as dist
from tilegrad.cli import main, trainer


def _failing(task, rank):
    real, steps = task.loss, []

    def loss(inputs):
        steps.append(None)
        if len(steps) == 2:
            raise RuntimeError(f"a failure planted on rank {rank} at its second step")
        return real(inputs)
    task.loss = loss


def run(argv):
    split = argv.index("--")
    opts, train_args = argv[:split], argv[split + 1:]
    out = opts[0]
    fail_rank = int(opts[opts.index("--fail-rank") + 1]) if "--fail-rank" in opts else None
    dist.init_process_group("mpi")
    made, real = [], trainer.make_task

    def make_task(*args, **kwargs):
        task = real(*args, **kwargs)
        if dist.get_rank() == fail_rank:
            _failing(task, fail_rank)
        made.append(task)
        return task
    trainer.make_task = make_task
    code = main(train_args)
    if code != 0:
        return code
    mine = {k: np.asarray(v) for k, v in made[0].model.state_dict().items()}
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    if dist.get_rank() == 0:
        np.savez(out, **{f"{r}/{k}": v for r, params in enumerate(everyone)
                         for k, v in params.items()})
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
