"""DistributedDataParallel on every rank of an MPI job, for test_ddp.py.

    mpiexec -n P python tests/dist_ddp.py OUT_DIR DEVICE

Every rank also computes the oracle itself: one process training the same model on the whole
global batch. Each rank writes its parameters, the oracle's and some facts to
OUT_DIR/rank<r>.npz and .json.
"""
import json
import sys
from pathlib import Path

import numpy as np

import tilegrad as tg
import tilegrad.distributed as dist
import tilegrad.nn.functional as F
from tilegrad import nn
from tilegrad.nn.parallel import DistributedDataParallel as DDP
from tilegrad.utils.data.distributed import share_range

from dist_collectives import error

BATCHES = (17, 17, 4)       # global batch sizes: the last is short and splits unevenly


def model(seed, device):
    tg.manual_seed(seed)
    return nn.Sequential(nn.Linear(7, 13), nn.Tanh(), nn.Linear(13, 11), nn.ReLU(),
                         nn.Linear(11, 3)).to(device)


def data():
    g = np.random.default_rng(3)
    n = sum(BATCHES)
    return g.standard_normal((n, 7)), g.integers(0, 3, n)


def mean_loss(net, x, y, device):
    return F.cross_entropy(net(tg.tensor(x, device=device)), tg.tensor(y, device=device))


def train_alone(device):
    """The oracle: one process, every global batch whole."""
    x, y = data()
    net = model(0, device)
    opt = tg.optim.SGD(net.parameters(), lr=0.3, momentum=0.9)
    start = 0
    for b in BATCHES:
        opt.zero_grad()
        mean_loss(net, x[start:start + b], y[start:start + b], device).backward()
        opt.step()
        start += b
    return net


def train_shared(device, rank, size, **ddp_args):
    """The same, data-parallel: each rank its share of every batch, the loss scaled by it."""
    x, y = data()
    ddp = DDP(model(0 if rank == 0 else 100 + rank, device), **ddp_args)   # rank 0: the same
    opt = tg.optim.SGD(ddp.parameters(), lr=0.3, momentum=0.9)
    start = 0
    for b in BATCHES:
        part = share_range(b, size, rank)
        lo, hi = start + part.start, start + part.stop
        opt.zero_grad()
        if hi > lo:
            loss = mean_loss(ddp, x[lo:hi], y[lo:hi], device) * ((hi - lo) * size / b)
        else:       # an empty share: zero, through every parameter
            loss = sum(p.sum() for p in ddp.parameters()) * 0.0
        loss.backward()
        opt.step()
        start += b
    return ddp


def accumulated(device, rank, size, shared):
    """Gradients of three micro-batches: two under no_sync, the third synced (or alone)."""
    x, y = data()
    net = DDP(model(0, device)) if shared else model(0, device)
    start = 0
    for i, b in enumerate(BATCHES):
        part = share_range(b, size, rank) if shared else range(b)
        lo, hi = start + part.start, start + part.stop
        scale = (hi - lo) * size / b if shared else 1.0
        with net.no_sync() if shared and i < 2 else _nothing():
            (mean_loss(net, x[lo:hi], y[lo:hi], device) * scale).backward()
        start += b
    return {n: p.grad.numpy() for n, p in (net.module if shared else net).named_parameters()}


class WithUnused(nn.Module):
    """The model and a layer that forward never uses, so backward never reaches it."""

    def __init__(self, device):
        super().__init__()
        self.net, self.extra = model(0, device), nn.Linear(2, 2).to(device)

    def forward(self, x):
        return self.net(x)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def facts_of(device, rank, size):
    net = DDP(model(0, device), bucket_cap_mb=1e-4)
    facts = {"tiny_buckets": net.bucket_names(),
             "default_buckets": DDP(model(0, device)).bucket_names(),
             "keys": list(net.state_dict())}
    x, y = data()
    unused = DDP(WithUnused(device))
    facts["unused"] = error(lambda: mean_loss(unused, x[:5], y[:5], device).backward())
    found = DDP(WithUnused(device), find_unused_parameters=True)
    mean_loss(found, x[:5], y[:5], device).backward()
    facts["found_unused_grad"] = found.module.extra.weight.grad.numpy().tolist()
    other = model(0, device) if rank == 0 else nn.Sequential(nn.Linear(7, 5)).to(device)
    facts["different_models"] = error(lambda: DDP(other))
    bn = nn.Sequential(nn.Linear(7, 5), nn.BatchNorm1d(5)).to(device)
    with tg.no_grad():
        bn[1].running_mean.copy_(tg.full((5,), float(rank), device=device))
    ddp = DDP(bn)
    facts["buffer_after_wrap"] = bn[1].running_mean.numpy().tolist()
    with tg.no_grad():
        bn[1].running_var.copy_(tg.full((5,), float(rank + 2), device=device))
        ddp(tg.tensor(x[:4], device=device))      # training mode: rank 0's buffers first
    facts["var_after_forward"] = bn[1].running_var.numpy().tolist()
    return facts


def main(folder, device):
    folder = Path(folder)
    tg.set_default_dtype(tg.float64)
    dist.init_process_group("mpi")
    rank, size = dist.get_rank(), dist.get_world_size()
    out = {}
    for name, p in train_shared(device, rank, size).module.named_parameters():
        out[f"shared/{name}"] = p.numpy()
    for name, p in train_shared(device, rank, size, bucket_cap_mb=1e-4).module.named_parameters():
        out[f"small_buckets/{name}"] = p.numpy()
    for name, p in train_alone(device).named_parameters():
        out[f"alone/{name}"] = p.numpy()
    for name, g in accumulated(device, rank, size, shared=True).items():
        out[f"no_sync/{name}"] = g
    for name, g in accumulated(device, rank, size, shared=False).items():
        out[f"accumulated_alone/{name}"] = g
    np.savez(folder / f"rank{rank}.npz", **out)
    (folder / f"rank{rank}.json").write_text(json.dumps(facts_of(device, rank, size)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
