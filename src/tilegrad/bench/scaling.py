"""``tilegrad bench scaling``: how data-parallel training would scale, from what this machine
measures.

What it does:

1. MEASURED, allreduce: ``mpiexec -n RANKS python -m tilegrad.bench.scaling --worker allreduce``
   times ``MPI.Allreduce`` (sum, float32 NumPy buffers, through mpi4py) from 4 bytes to 64 MB:
   warm-up calls, then the median of the repeats, a barrier before each, each repeat's time the
   slowest rank's. That is MPI's own cost, which is what the model needs.
2. The ring allreduce model ``t(S) = 2(p-1) alpha + 2(p-1)/p S / beta`` is fitted to those times
   (``scaling_model.fit_alpha_beta``): latency alpha (us) and bandwidth beta (GB/s).
3. PREDICTED, weak scaling to 1024 ranks: each reference model's measured one-rank step time
   ``T_c``, plus the ring allreduce of its gradient buckets (DDP's: reverse parameter order,
   the first up to 1 MiB, the others up to 25 MB), without and with overlap of the backward
   pass (taken as 2/3 of ``T_c``: an assumption). See ``scaling_model`` for the formulas.
4. MEASURED, training steps: ``--worker steps`` trains each model with DistributedDataParallel
   on RANKS ranks at the recipe's batch per rank (weak) and at 1/RANKS of it (strong: the same
   global batch), beside one plain process at the recipe's batch (the same ``T_c`` as in 3).
   Where PyTorch is installed (and not ``--no-torch``), the same steps in PyTorch in the same
   run: one process, and its DistributedDataParallel on gloo, from the same initial weights and
   batches, with the same threads.

How to read it: the allreduce numbers and the 1-against-RANKS step times are facts about this
machine. Without ``--latency-us``/``--bandwidth-gbs`` the predictions use this machine's alpha
and beta, i.e. shared memory between local ranks, far faster in latency than any network: they
say what the model implies, not what a cluster would do. Give the interconnect's numbers to
predict for it. An efficiency of 0.5 means half of each step is spent waiting on
communication. Each rank runs ``cores // RANKS`` threads (at least 1), and so does the one-rank
baseline: a rank stands for one device.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from tilegrad.distributed import launcher

from . import scaling_model as sm

# Message sizes in bytes: 4, 16, ..., 64 MB (log-spaced); "tiny" is for tests.
MESSAGES = {"full": [4 ** k for k in range(1, 14)], "small": [4 ** k for k in range(1, 12)],
            "tiny": [4, 1024, 65536]}
KINDS = ("mlp", "cnn", "lm")
INSTALL = "pip install 'tilegrad[dist]' (mpi4py and an MPI such as the mpich wheel)"
SECTION = "Data-parallel scaling"


class MPIUnavailableError(OSError):
    """No ``mpiexec`` or no mpi4py: the machine lacks a program or a package, which the command
    line reports in one line as it does other missing files."""


def mpiexec_path() -> str:
    """The ``mpiexec`` next to this Python (a virtual environment's), else the one on PATH."""
    found = launcher.mpiexec()
    if found is None:
        raise MPIUnavailableError(f"bench scaling: no mpiexec beside {sys.executable} nor on "
                                  f"PATH; {INSTALL}")
    return found


def _check_mpi4py():
    try:
        import mpi4py  # noqa: F401  (the package only: importing mpi4py.MPI would start MPI)
    except ImportError:
        raise MPIUnavailableError(f"bench scaling: mpi4py is not installed; {INSTALL}") from None


# ---------------------------------------------------------------- a training step

def model_step(kind: str, shape: dict, rank: int = 0, wrap=None):
    """``(step, model)``: one training step of a reference model by its recipe (``bench.train``),
    on a batch seeded by ``rank`` (each rank its own data); ``wrap`` (e.g. DDP) wraps the model
    for the forward pass. ``step()`` returns the loss."""
    import tilegrad as tg
    from tilegrad.nn.utils import clip_grad_norm_

    from . import train
    model = train._seeded_model(kind, shape).to("cpu", tg.float32)
    model.train()
    net = wrap(model) if wrap else model
    x_np, y_np = train._batch(kind, shape, seed=train.SEED + rank)
    x, y = tg.tensor(x_np), tg.tensor(y_np)
    params = list(model.parameters())
    opt = train._tilegrad_optimizer(kind, params)
    clip = train._RECIPES[kind].get("clip")

    def step():
        opt.zero_grad()
        loss = train._tilegrad_loss(kind, net, x, y)
        loss.backward()
        if clip:
            clip_grad_norm_(params, clip)
        opt.step()
        return loss.item()
    return step, model


def torch_step(kind: str, shape: dict, rank: int = 0, wrap=None):
    """PyTorch's twin of ``model_step`` (None without PyTorch): the same initial weights
    (tilegrad's seeded model, loaded), the same batch and the same recipe."""
    try:
        import torch
    except ImportError:
        return None

    from . import train
    x_np, y_np = train._batch(kind, shape, seed=train.SEED + rank)
    model, x, y = train._torch_side(torch, kind, shape, train._seeded_model(kind, shape)
                                    .state_dict(), x_np, y_np, torch.device("cpu"))
    net = wrap(model) if wrap else model
    params = list(model.parameters())
    opt = train._torch_optimizer(torch, kind, params)
    clip = train._RECIPES[kind].get("clip")

    def step():
        opt.zero_grad()
        loss = train._torch_loss(torch, kind, net, x, y)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        return loss.item()
    return step


def timed(step, warmup: int, repeats: int, sync=None) -> list:
    """Seconds of each of ``repeats`` calls of ``step`` after ``warmup`` untimed ones;
    ``sync()`` (a barrier) runs before each call, untimed."""
    for _ in range(warmup):
        step()
    out = []
    for _ in range(repeats):
        if sync is not None:
            sync()
        start = time.perf_counter()
        step()
        out.append(time.perf_counter() - start)
    return out


def _sizes_of(sizes):
    from . import train
    return train._SIZES["tiny" if sizes == "tiny" else "full"]


# ---------------------------------------------------------------- the workers (under mpiexec)

def _slowest(comm, seconds):
    """Per repeat, the slowest rank's time: a collective step is as slow as its last rank."""
    return np.max(np.array(comm.allgather(seconds)), axis=0).tolist()


def _allreduce_worker(args, comm, MPI):
    rows = []
    for nbytes in MESSAGES[args.sizes]:
        send = np.random.default_rng(comm.rank).standard_normal(nbytes // 4).astype(np.float32)
        recv = np.empty_like(send)
        seconds = timed(lambda s=send, r=recv: comm.Allreduce(s, r, op=MPI.SUM), args.warmup,
                        args.repeats, comm.Barrier)
        rows.append({"bytes": nbytes, "seconds": float(np.median(_slowest(comm, seconds)))})
    return {"rows": rows}


def _per_rank_batches(shape, ranks):
    """Weak scaling keeps the recipe's batch on each rank; strong splits it among the ranks."""
    return {"weak": shape["batch"], "strong": max(1, shape["batch"] // ranks)}


def _steps_worker(args, comm):
    import tilegrad.distributed as dist
    from tilegrad.nn.parallel import DistributedDataParallel
    dist.init_process_group("mpi")
    out = {}
    try:
        for kind, shape in _sizes_of(args.sizes).items():
            out[kind] = {}
            for mode, batch in _per_rank_batches(shape, comm.size).items():
                step, _ = model_step(kind, dict(shape, batch=batch), comm.rank,
                                     lambda m: DistributedDataParallel(
                                         m, bucket_cap_mb=args.bucket_cap_mb))
                seconds = _slowest(comm, timed(step, args.warmup, args.repeats, dist.barrier))
                out[kind][mode] = {"batch": batch, "seconds": float(np.median(seconds))}
    finally:
        dist.destroy_process_group()
    if args.torch_port:
        _torch_steps_worker(args, comm, out)
    return {"models": out}


def _torch_steps_worker(args, comm, out):
    """The same steps with PyTorch's DistributedDataParallel on its gloo backend, the ranks
    meeting at rank 0's ``--torch-port``: each time goes into ``out`` as ``torch_seconds``."""
    import torch
    import torch.distributed as td
    torch.set_num_threads(args.threads)
    td.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.torch_port}",
                          rank=comm.rank, world_size=comm.size)
    try:
        for kind, shape in _sizes_of(args.sizes).items():
            for mode, batch in _per_rank_batches(shape, comm.size).items():
                step = torch_step(kind, dict(shape, batch=batch), comm.rank,
                                  lambda m: torch.nn.parallel.DistributedDataParallel(
                                      m, bucket_cap_mb=args.bucket_cap_mb))
                seconds = _slowest(comm, timed(step, args.warmup, args.repeats, comm.Barrier))
                out[kind][mode]["torch_seconds"] = float(np.median(seconds))
    finally:
        td.destroy_process_group()


def _worker_main(argv=None):
    """The entry point of ``python -m tilegrad.bench.scaling --worker ...``; rank 0 writes the
    JSON that the parent reads."""
    ap = argparse.ArgumentParser(prog="python -m tilegrad.bench.scaling")
    ap.add_argument("--worker", choices=["allreduce", "steps"], required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--sizes", choices=list(MESSAGES), default="full")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bucket-cap-mb", type=float, default=25.0)
    ap.add_argument("--torch-port", type=int, help="steps: also time PyTorch, meeting here")
    args = ap.parse_args(argv)
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    import tilegrad as tg
    tg.set_num_threads(args.threads)
    if args.worker == "allreduce":
        doc = _allreduce_worker(args, comm, MPI)
    else:
        doc = _steps_worker(args, comm)
    doc.update(ranks=comm.size, threads=args.threads,
               mpi=" ".join(MPI.Get_library_version().splitlines()[0].split()))
    if comm.rank == 0:
        with open(args.json, "w") as f:
            json.dump(doc, f)


# ---------------------------------------------------------------- the parent

def _launch(worker, ranks, options, timeout):
    """Run a worker under ``mpiexec -n ranks`` and return the JSON it wrote."""
    exe = mpiexec_path()
    _check_mpi4py()
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{worker}.json")
        cmd = [exe, "-n", str(ranks), sys.executable, "-m", "tilegrad.bench.scaling",
               "--worker", worker, "--json", path, *options]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"bench scaling: the {worker} worker ran past {timeout} s: "
                               f"{' '.join(cmd)}") from None
        if proc.returncode != 0 or not os.path.exists(path):
            tail = (proc.stderr or proc.stdout).strip()[-1500:]
            raise OSError(f"bench scaling: the {worker} worker failed (exit {proc.returncode}): "
                          f"{' '.join(cmd)}\n{tail}")
        with open(path) as f:
            return json.load(f)


def _models(sizes, threads, warmup, repeats, cap_mb, with_torch):
    """Per reference model: its shape, parameter count, gradient buckets and measured one-rank
    step time ``T_c`` (median), with ``threads`` threads; PyTorch's too (``torch_step_s``) when
    ``with_torch`` and PyTorch is installed."""
    import tilegrad as tg

    from . import train
    before = tg.get_num_threads()
    tg.set_num_threads(threads)
    out = {}
    try:
        for kind, shape in _sizes_of(sizes).items():
            print(f"timing one rank's {kind} step ...", file=sys.stderr, flush=True)
            step, model = model_step(kind, shape)
            sizes_b = [p.numel() * 4 for p in model.parameters()]    # float32 gradients
            out[kind] = {"shape": train._describe(kind, shape), "batch": shape["batch"],
                         "params": sum(sizes_b) // 4, "grad_bytes": sum(sizes_b),
                         "buckets": sm.buckets(sizes_b, cap_mb * sm.MB),
                         "step_s": float(np.median(timed(step, warmup, repeats)))}
            twin = torch_step(kind, shape) if with_torch else None
            if twin is not None:
                import torch
                torch.set_num_threads(threads)
                out[kind]["torch_step_s"] = float(np.median(timed(twin, warmup, repeats)))
    finally:
        tg.set_num_threads(before)
    return out


def _torch_version():
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def _free_port():
    """A TCP port free on this machine now, for PyTorch's ranks to meet at."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _interconnect(alpha, beta, latency_us, bandwidth_gbs):
    """The alpha and beta the predictions use, and where each comes from."""
    a_src = "given (--latency-us)" if latency_us else "measured on this machine"
    b_src = "given (--bandwidth-gbs)" if bandwidth_gbs else "measured on this machine"
    return {"alpha_s": latency_us * 1e-6 if latency_us else alpha,
            "beta_Bps": bandwidth_gbs * 1e9 if bandwidth_gbs else beta,
            "source": f"alpha {a_src}, beta {b_src}",
            "local": not (latency_us or bandwidth_gbs)}


def scaling(sizes: str = "full", out: str = os.path.join("bench", "results"), ranks: int = 2,
            latency_us: float = None, bandwidth_gbs: float = None, results_md: str = None,
            repeats: int = 10, warmup: int = 2, bucket_cap_mb: float = 25.0,
            with_torch: bool = True) -> dict:
    """Measure, fit and predict (see the module docstring); write ``out/scaling.json`` and
    ``out/scaling.png``, print the tables, and return the document. ``with_torch``: time
    PyTorch's steps too, beside tilegrad's, where PyTorch is installed."""
    from . import report, scaling_report
    if sizes not in MESSAGES:
        raise ValueError(f"bench scaling: sizes must be one of {', '.join(MESSAGES)}, got "
                         f"{sizes!r}")
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 2:
        raise ValueError(f"bench scaling: --ranks must be an integer >= 2, got {ranks!r}")
    threads = launcher.threads_per_rank(ranks)
    common = ["--sizes", sizes, "--repeats", str(repeats), "--warmup", str(warmup),
              "--threads", str(threads), "--bucket-cap-mb", str(bucket_cap_mb)]
    print(f"timing MPI allreduce on {ranks} ranks ...", file=sys.stderr, flush=True)
    ar = _launch("allreduce", ranks, common, timeout=300)
    alpha, beta, worst = sm.fit_alpha_beta([r["bytes"] for r in ar["rows"]],
                                           [r["seconds"] for r in ar["rows"]], ranks)
    torch_version = _torch_version() if with_torch else None
    models = _models(sizes, threads, warmup, repeats, bucket_cap_mb, torch_version is not None)
    print(f"timing DistributedDataParallel steps on {ranks} ranks ...", file=sys.stderr,
          flush=True)
    port = ["--torch-port", str(_free_port())] if torch_version else []
    try:
        steps = _launch("steps", ranks, common + port, timeout=600)
    except OSError as e:     # the predictions stand without this part: say why it is missing
        steps = {"unavailable": str(e)}
    net = _interconnect(alpha, beta, latency_us, bandwidth_gbs)
    rows = sm.predictions({k: (m["step_s"], m["buckets"]) for k, m in models.items()},
                          net["alpha_s"], net["beta_Bps"])
    meta = report.metadata(None, "cpu")
    meta.update(mpi=ar["mpi"], ranks=ranks, threads_per_rank=threads, sizes=sizes,
                torch=torch_version)
    doc = {"schema": "tilegrad-bench-scaling/1", "meta": meta,
           "allreduce": {"ranks": ranks, "rows": ar["rows"], "alpha_s": alpha, "beta_Bps": beta,
                         "worst_relative_residual": worst},
           "interconnect": net, "models": models, "predictions": rows, "measured_steps": steps,
           "assumptions": {"backward_share": sm.BACKWARD_SHARE, "bucket_cap_mb": bucket_cap_mb,
                           "scaling": "weak (each rank keeps the recipe's batch)"}}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "scaling.json"), "w") as f:
        json.dump(doc, f, indent=1)
    chart = scaling_report.plot(doc, os.path.join(out, "scaling.png"))
    text = scaling_report.markdown(doc)
    text += f"\nChart: `{chart}`.\n" if chart else "\nNo chart: matplotlib is not installed.\n"
    if results_md:
        report.update_results_md(results_md, SECTION, text)
    print("\n" + text, flush=True)
    return doc


if __name__ == "__main__":
    _worker_main()
