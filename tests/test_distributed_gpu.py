"""tilegrad.distributed on a real GPU (skipped elsewhere: NCCL has no simulator): one rank with
backend "nccl" (NCCL on CuPy memory, on its own stream) and with backend "mpi" (cuda tensors
through the host): the collectives and a DistributedDataParallel step against the same step
without it. Several GPUs are needed for more than one rank; this checks the paths one GPU can."""
import subprocess
import sys

import pytest

import tilegrad as tg

from dist_helpers import job_env

pytestmark = pytest.mark.skipif(not tg.accelerator.is_available(),
                                reason="needs a CUDA GPU (NCCL has no simulator)")

SCRIPT = r"""
import sys
import numpy as np
import tilegrad as tg, tilegrad.distributed as dist
import tilegrad.nn.functional as F
from tilegrad import nn
from tilegrad.nn.parallel import DistributedDataParallel as DDP

backend = sys.argv[1]
tg.set_default_dtype(tg.float64)
dist.init_process_group(backend)
assert dist.get_backend() == backend and dist.get_world_size() == 1
g = np.random.default_rng(0)
x = g.standard_normal((33, 7))
for op in ("SUM", "AVG", "MAX"):
    t = tg.tensor(x, device="cuda")
    work = dist.all_reduce(t, op=getattr(dist.ReduceOp, op), async_op=True)
    assert work.wait()
    assert np.array_equal(t.numpy(), x), op          # one rank: the tensor itself
t = tg.tensor(x, device="cuda")
dist.broadcast(t, src=0)
parts = [tg.zeros(33, 7, device="cuda")]
dist.all_gather(parts, t)
assert np.array_equal(parts[0].numpy(), x)

def step(wrap):
    tg.manual_seed(0)
    net = nn.Sequential(nn.Linear(7, 64), nn.ReLU(), nn.Linear(64, 3)).to("cuda")
    model = DDP(net, bucket_cap_mb=0.001) if wrap else net
    opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    y = tg.tensor(g2.integers(0, 3, 33), device="cuda")
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(tg.tensor(x, device="cuda")), y).backward()
        opt.step()
    return [p.numpy() for p in net.parameters()]
g2 = np.random.default_rng(1); plain = step(False)
g2 = np.random.default_rng(1); wrapped = step(True)
assert all(np.allclose(a, b, rtol=1e-13, atol=1e-13) for a, b in zip(plain, wrapped))
dist.destroy_process_group()
print("ok", backend)
"""


@pytest.mark.parametrize("backend", ["nccl", "mpi"])
def test_one_rank_on_the_gpu(backend):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install tilegrad[dist])")
    import tilegrad.distributed as dist
    if backend == "nccl" and not dist.is_nccl_available():
        pytest.skip("CuPy cannot load NCCL here (pip install 'nvidia-nccl-cu13>=2.27.7,<3')")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, backend], capture_output=True,
                          text=True, timeout=300, env=job_env(NUMBA_ENABLE_CUDASIM=0))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ok {backend}" in proc.stdout
