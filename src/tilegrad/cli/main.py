"""The ``tilegrad`` command: train, generate, info, bench, demo, sass, check."""
import argparse
import math
import os
import sys

from tilegrad import DeviceUnavailableError, __version__
from tilegrad.data import DataNotFoundError
from tilegrad.grading import command as check_command


def _number(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse ``type``: a finite ``kind`` (int or float) within the bounds, else an
    ArgumentTypeError, so that a bad value stops the command before anything runs or is written.
    (``--limit 0`` used to mean "everything" and ``--limit -90`` "all but the last 90".)"""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if low_open else '>='} {low}")
        if high is not None and (value >= high if high_open else value > high):
            raise argparse.ArgumentTypeError(f"{text} must be {'<' if high_open else '<='} {high}")
        return value
    parse.__name__ = kind.__name__    # argparse names the type in some of its messages
    return parse


POSITIVE_INT = _number(int, low=1)
COUNT = _number(int, low=0)
POSITIVE = _number(float, low=0, low_open=True)
MOMENTUM = _number(float, low=0, high=1, high_open=True)

# Mirrors trainer.MAY_CHANGE; said here so that -h tells it.
RESUME_HELP = ("continue a run from a checkpoint, or from a run folder's latest checkpoint. The "
               "run keeps its settings: only --epochs, --device, --out, --data-dir, --log-every, "
               "--quiet and --overwrite may be given anew; any other flag must match the "
               "checkpoint's value or is an error")


def _train_parser(sub):
    p = sub.add_parser("train", help="train a reference model (mlp, cnn or lm)",
                       description="Train a reference model with its reference recipe; every "
                                   "setting can be changed by a flag.",
                       epilog="A run folder holds one run. A new run into a folder that holds one "
                              "is refused unless --overwrite; --resume continues it. Two runs "
                              "cannot use one folder at once (run.lock). See "
                              "docs/training-runs.md. Started by `mpiexec -n P`, the run is "
                              "data-parallel over P processes, --batch-size being the global "
                              "batch (docs/distributed.md).")
    p.add_argument("task", choices=["mlp", "cnn", "lm"])
    # Defaults of None: a flag given on the command line can be told from one left out (resume
    # checks the given ones against the checkpoint); the trainer fills in the rest.
    p.add_argument("--epochs", type=COUNT,
                   help="train up to this epoch (default: mlp 10, cnn 3, lm 5; 0 checks the "
                        "settings and data and writes nothing)")
    p.add_argument("--batch-size", type=POSITIVE_INT, help="default: mlp 64, cnn 64, lm 20")
    p.add_argument("--lr", type=POSITIVE, help="default: mlp 0.01, cnn 0.01, lm 0.001")
    p.add_argument("--optimizer", choices=["sgd", "adam"], help="default: sgd, lm adam")
    p.add_argument("--momentum", type=MOMENTUM,
                   help="SGD momentum in [0, 1); default: cnn 0.9, else 0")
    p.add_argument("--bptt", type=POSITIVE_INT, help="lm: truncated-BPTT window (default 35)")
    p.add_argument("--clip", type=POSITIVE, help="lm: gradient-norm clipping (default 0.25)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", choices=["float32", "float64"],
                   help="the parameters' and images' dtype (default float32)")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="cuda: run every step eagerly instead of replaying one captured CUDA "
                        "graph per step")
    p.add_argument("--dataset", choices=["fashion-mnist", "mnist", "cifar10"],
                   help="mlp/cnn data (default Fashion-MNIST; guessed from --data-dir)")
    p.add_argument("--data-dir", help="where the data is (default: $TILEGRAD_DATA, then the "
                                      "Debian packages' folders)")
    p.add_argument("--limit", type=POSITIVE_INT,
                   help="use only the first N training images (lm: tokens)")
    p.add_argument("--eval-limit", type=POSITIVE_INT,
                   help="evaluate on the first N test images (lm: validation tokens)")
    p.add_argument("--seed", type=COUNT, help="default 0")
    p.add_argument("--out", help="folder for metrics, curves and checkpoints (default runs/TASK; "
                                 "with --resume, the checkpoint's folder)")
    p.add_argument("--resume", help=RESUME_HELP)
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out: its metrics, curves and checkpoints "
                        "(with --resume: the checkpoints after the one resumed from, or another "
                        "run in --out)")
    p.add_argument("--log-every", type=POSITIVE_INT, help="steps between metric records "
                                                          "(default 10)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def build_parser():
    parser = argparse.ArgumentParser(prog="tilegrad", description="tilegrad: train the reference "
                                     "models, sample text, list devices, run the demo.")
    parser.add_argument("--version", action="version", version=f"tilegrad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    g = sub.add_parser("generate", help="sample text from a trained language model")
    g.add_argument("--checkpoint", required=True, help="an lm checkpoint, or its run folder")
    g.add_argument("--words", type=int, default=50)
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu")
    sub.add_parser("info", help="backends, devices (and why one is unavailable), data, versions")
    b = sub.add_parser("bench", help="benchmark kernels and training steps against PyTorch")
    b.add_argument("what", choices=["kernels", "train", "all", "launches", "scaling"],
                   help="scaling: MPI allreduce and data-parallel steps under mpiexec, and "
                        "predictions to 1024 ranks (not part of all)")
    b.add_argument("--device", default="cpu")
    b.add_argument("--sizes", choices=["full", "small", "tiny"], default="full",
                   help="full: the models' shapes and large squares; small: cheaper; tiny: a check")
    b.add_argument("--repeats", type=int, default=10)
    b.add_argument("--warmup", type=int, default=2)
    b.add_argument("--out", default=os.path.join("bench", "results"),
                   help="folder for results.json, results.md and ratios.png (per device)")
    b.add_argument("--results-md", help="also update this device's section of this Markdown file")
    b.add_argument("--no-torch", action="store_true", help="tilegrad rows only")
    b.add_argument("--ranks", type=_number(int, low=2), default=2,
                   help="scaling: ranks for the measurement (default 2)")
    b.add_argument("--latency-us", type=POSITIVE,
                   help="scaling: predict with this latency instead of the measured one")
    b.add_argument("--bandwidth-gbs", type=POSITIVE,
                   help="scaling: predict with this bandwidth instead of the measured one")
    b.add_argument("--bucket-cap-mb", type=POSITIVE, default=25.0,
                   help="scaling: DistributedDataParallel's bucket size (default 25)")
    d = sub.add_parser("demo", help="train the three models briefly and write a report")
    d.add_argument("--out", default="report", help="report folder (default ./report); its runs "
                   "OUT/mlp, OUT/cnn and OUT/lm are replaced each time")
    d.add_argument("--device", default="cpu")
    d.add_argument("--data-dir", help="folder with the data, as for train")
    s = sub.add_parser("sass", help="compile a CUDA kernel family for sm_90 (no GPU needed) and "
                                    "print its SASS instruction mix and occupancy")
    s.add_argument("--family", nargs="+", default=["matmul"], help="default: matmul")
    s.add_argument("--out", help="also write sass_report.md and .json here")
    check_command.add_parser(sub)
    return parser


def _sass(args):
    """The real compiler cannot run beside the simulator: a process of its own, simulator off."""
    import subprocess
    cmd = [sys.executable, "-m", "tilegrad.backends.cuda.sass", "--family", *args.family]
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    return subprocess.run(cmd + (["--out", args.out] if args.out else []), env=env).returncode


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except BaseException as e:
        from .parallel import end_job, in_job
        if in_job():       # one rank of several: the others must not wait for it forever
            return end_job(args.command, e)
        # Bad data, missing files, an unusable device, a diverged run: one clear line, no
        # traceback (TILEGRAD_DEBUG=1 shows it).
        if isinstance(e, (DataNotFoundError, DeviceUnavailableError, ValueError, OSError)) \
                and not os.environ.get("TILEGRAD_DEBUG"):
            print(f"tilegrad {args.command}: {e}", file=sys.stderr)
            return 1
        raise


def _run(args):
    if args.command == "train":
        from .trainer import train
        train(args, quiet=args.quiet)
    elif args.command == "generate":
        from .generate import generate
        print(generate(args.checkpoint, args.words, args.temperature, args.seed, args.device))
    elif args.command == "info":
        from .info import info
        print(info())
    elif args.command == "bench" and args.what == "launches":
        from tilegrad.bench import launches
        print(launches.markdown(launches.count(args.sizes)), end="")
    elif args.command == "bench" and args.what == "scaling":
        from tilegrad.bench.scaling import scaling
        if args.device != "cpu":
            raise ValueError(f"bench scaling runs on device cpu, not {args.device!r}")
        scaling(args.sizes, args.out, args.ranks, args.latency_us, args.bandwidth_gbs,
                args.results_md, args.repeats, args.warmup, args.bucket_cap_mb,
                not args.no_torch)
    elif args.command == "bench":
        from tilegrad.bench.command import bench
        bench(args.what, args.device, args.sizes, args.repeats, args.warmup, args.out,
              args.results_md, not args.no_torch)
    elif args.command == "demo":
        from .demo import demo
        demo(args.out, args.device, args.data_dir)
    elif args.command == "sass":
        return _sass(args)
    elif args.command == "check":
        return check_command.check(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
