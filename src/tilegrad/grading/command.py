"""``tilegrad check FAMILY [--version V] [--quick] [--stages ...] [--json PATH]``."""
import sys

from . import families, stages, table

EXIT_FAILED, EXIT_USAGE = 1, 2


def add_parser(sub):
    """The ``check`` subcommand on ``sub``, argparse's subparsers of the ``tilegrad`` command."""
    c = sub.add_parser("check", help="grade a CUDA kernel family without a GPU: correctness "
                                     "against NumPy, PTX/ptxas, SASS mix, benchmark on a GPU",
                       description="Check one kernel family (every version, or --version): "
                                   "its primitives against the NumPy backend (in Numba's "
                                   "simulator without a GPU), its kernels through Numba's "
                                   "compiler and ptxas (registers, shared memory, spills), "
                                   "their sm_90 instruction mix, and on a GPU a benchmark "
                                   "against PyTorch. Exit 1 if anything fails, 2 on bad usage.")
    c.add_argument("family", help=", ".join(families.CATALOG) + " ('-' or '_')")
    c.add_argument("--version", help="one version (default: every version of the family)")
    c.add_argument("--quick", action="store_true", help="fewer cases; sm_90 only")
    c.add_argument("--stages", default=",".join(stages.STAGES),
                   help=f"comma-separated, of {','.join(stages.STAGES)} (default: all)")
    c.add_argument("--json", metavar="PATH", help="also write the results here")
    c.add_argument("--verbose", action="store_true",
                   help="details under every row (each kernel's registers and hot loop)")
    return c


def check(args):
    """Run the check ``args`` ask for, print the table; the exit code."""
    try:
        result = stages.run(args.family, args.version, args.quick, args.stages,
                            progress=lambda text: print(text, file=sys.stderr, flush=True))
    except families.UnknownFamilyError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    print(table.render(result, args.verbose))
    if args.json:
        table.write_json(result, args.json)
    return 0 if result.ok else EXIT_FAILED
