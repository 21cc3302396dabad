"""The collectives of tilegrad.distributed on every rank of an MPI job, for test_distributed.py.

    mpiexec -n P python tests/dist_collectives.py OUT_DIR

Rank r's inputs come from ``default_rng([7, r])``; each rank writes what it got back (and the
errors bad calls raised) to OUT_DIR/rank<r>.npz and .json, for the test to check against NumPy.
"""
import json
import sys
from pathlib import Path

import numpy as np

import tilegrad as tg
import tilegrad.distributed as dist
from tilegrad import nn


def inputs(rank):
    g = np.random.default_rng([7, rank])
    return dict(x=g.standard_normal((7, 3)), i=g.integers(-50, 50, (5,)),
                b=g.standard_normal((4,)), gather=g.standard_normal((2, 5)))


def error(call):
    try:
        call()
    except Exception as e:   # noqa: BLE001 - the test checks the type and message
        return [type(e).__name__, str(e)]
    return None


def collectives(dev, rank, size, out):
    x = inputs(rank)
    for op in ("SUM", "AVG", "MAX", "MIN", "PRODUCT"):
        t = tg.tensor(x["x"], device=dev)
        dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
        out[f"{dev}/{op}"] = t.numpy()
    t = tg.tensor(x["i"], device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    out[f"{dev}/int_max"] = t.numpy()
    p = nn.Parameter(tg.tensor(x["x"], device=dev))       # a leaf that requires grad
    before = p._version
    work = dist.all_reduce(p, async_op=True)
    out[f"{dev}/async"] = np.array([work.wait(), work.is_completed(), p._version > before])
    out[f"{dev}/async_sum"] = p.numpy()
    t = tg.tensor(x["b"], device=dev)
    dist.broadcast(t, src=size - 1)
    out[f"{dev}/broadcast"] = t.numpy()
    t = tg.tensor(x["b"][0], device=dev)     # 0-d
    dist.all_reduce(t)
    out[f"{dev}/scalar_sum"] = t.numpy()
    parts = [tg.zeros(2, 5, device=dev, dtype=tg.float64) for _ in range(size)]
    dist.all_gather(parts, tg.tensor(x["gather"], device=dev))
    out[f"{dev}/all_gather"] = np.stack([q.numpy() for q in parts])


def bad_calls(size):
    t = tg.tensor([1.0, 2.0])
    return {
        "not_a_tensor": error(lambda: dist.all_reduce(np.ones(3))),
        "avg_of_ints": error(lambda: dist.all_reduce(tg.tensor([1, 2]), op=dist.ReduceOp.AVG)),
        "op_string": error(lambda: dist.all_reduce(t, op="sum")),
        "bool": error(lambda: dist.all_reduce(tg.tensor([True]))),
        "src_out_of_range": error(lambda: dist.broadcast(t, src=size)),
        "short_list": error(lambda: dist.all_gather([tg.zeros(2)], t)),
        "wrong_shape": error(lambda: dist.all_gather([tg.zeros(3)] * size, t)),
        "other_group": error(lambda: dist.all_reduce(t, group="mine")),
        "twice": error(lambda: dist.init_process_group("mpi")),
        "unchanged": t.numpy().tolist(),
    }


def main(folder):
    folder = Path(folder)
    tg.set_default_dtype(tg.float64)
    before = {"get_rank": error(dist.get_rank), "initialized": dist.is_initialized(),
              "gloo": error(lambda: dist.init_process_group("gloo"))}
    dist.init_process_group("mpi")
    rank, size = dist.get_rank(), dist.get_world_size()
    out = {}
    for dev in ("cpu", "cuda"):     # cuda: the simulator, through the host
        collectives(dev, rank, size, out)
    objects = [{"from": rank}, rank * 10]
    dist.broadcast_object_list(objects, src=1)
    everyone = [None] * size
    dist.all_gather_object(everyone, ("rank", rank))
    dist.barrier()
    facts = dict(before=before, rank=rank, size=size, backend=dist.get_backend(),
                 local_rank=dist.get_local_rank(), local_size=dist.get_local_world_size(),
                 objects=objects, everyone=everyone, errors=bad_calls(size))
    dist.destroy_process_group()
    facts["after_destroy"] = [dist.is_initialized(), error(dist.get_world_size)]
    dist.init_process_group("mpi")          # a new group after the old one is gone
    t = tg.tensor([1.0])
    dist.all_reduce(t)
    facts["again"] = t.numpy().tolist()
    np.savez(folder / f"rank{rank}.npz", **out)
    (folder / f"rank{rank}.json").write_text(json.dumps(facts))


if __name__ == "__main__":
    main(sys.argv[1])
