"""Compile every CUDA kernel with Numba's real compiler and ``ptxas``: no GPU needed.

Check 3 of docs/kernels.md ("Checking kernels without a GPU"): each kernel family
module (``elementwise``, ``reduce``, ``matmul``) ends with ``PTX_SIGNATURES``, a list of
``(name, kernel, signature)`` with the signatures the backend launches (a 4th element, or a
``LAUNCH_BLOCKS`` dict, may give the threads per block, for ``sass.py``). This module compiles each
one with ``numba.cuda.compile_ptx`` for sm_90 and sm_80, assembles the PTX with ``ptxas -v`` and
reads back registers, static shared memory, stack frame and spills. A kernel that fails to compile
or spills fails the check.

    python -m tilegrad.backends.cuda.ptx --out build

writes ``build/ptx_report.md`` and ``build/ptx_report.json`` and exits 1 if any kernel failed or
spilled (2 on a usage problem: the simulator on, no ptxas). It also writes
``build/sass_report.md`` and ``.json``: the instruction mix of each sm_90 cubin, read back with
``nvdisasm`` (``sass.py``; without nvdisasm that report says so and the check still passes). It
must run with the real compiler, not the simulator: ``NUMBA_ENABLE_CUDASIM=0`` (the test suite
runs it in a subprocess).

Shared memory is the static ``cuda.shared.array`` size that ptxas reports; dynamic shared memory
(sized at launch) is not in the PTX and does not appear here.

Importing this module needs neither Numba nor ptxas (the parser is tested on its own); Numba is
imported by ``compile_all``.
"""
import argparse
import importlib
import importlib.util
import inspect
import json
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from . import sass

FAMILIES = ["elementwise", "reduce", "matmul", "layout", "pool", "lstm", "optim", "softmax",
            "embedding", "conv", "random", "foreach", "norm"]
PACKAGE = "tilegrad.backends.cuda"
DEFAULT_CCS = ((9, 0), (8, 0))
PTXAS_ENV = "TILEGRAD_PTXAS"    # an explicit ptxas, ahead of every other place


class SimulatorEnabledError(RuntimeError):
    """The PTX check was asked for while Numba's CUDA simulator is on."""


def simulator_enabled():
    """Whether NUMBA_ENABLE_CUDASIM asks for the simulator (read from Numba's config if loaded)."""
    numba_config = sys.modules.get("numba.core.config")
    if numba_config is not None and hasattr(numba_config, "ENABLE_CUDASIM"):
        return bool(numba_config.ENABLE_CUDASIM)
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")


def _refuse_simulator():
    if simulator_enabled():
        raise SimulatorEnabledError(
            "the PTX check needs Numba's real CUDA compiler, but the simulator is on "
            "(NUMBA_ENABLE_CUDASIM=1). Run it with NUMBA_ENABLE_CUDASIM=0, e.g. "
            "`NUMBA_ENABLE_CUDASIM=0 python -m tilegrad.backends.cuda.ptx --out build`.")


# ---------------------------------------------------------------- finding ptxas

def nvidia_tool_candidates(tool):
    """``tool`` (ptxas, nvdisasm) inside the pip ``nvidia-*`` wheels: nvidia/cu13/bin,
    nvidia/cuda_nvcc/bin, ..."""
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return []
    found = []
    for root in spec.submodule_search_locations or []:
        root = Path(root)
        for pattern in (f"cu*/bin/{tool}", f"cuda_nvcc/bin/{tool}", f"*/bin/{tool}"):
            for p in sorted(root.glob(pattern), reverse=True):   # newest cuNN first
                if p not in found:
                    found.append(p)
    return found


def find_ptxas():
    """The path of a runnable ptxas, or None.

    In order: $TILEGRAD_PTXAS; the pip ``nvidia-cuda-nvcc`` wheel next to the ``nvidia-nvvm`` that
    Numba compiles with (the two are pinned to the same CUDA release, so ptxas accepts the PTX
    version NVVM writes); ``ptxas`` on PATH; $CUDA_HOME/bin, $CUDA_PATH/bin.
    """
    candidates = []
    if os.environ.get(PTXAS_ENV):
        candidates.append(Path(os.environ[PTXAS_ENV]))
    candidates += nvidia_tool_candidates("ptxas")
    on_path = shutil.which("ptxas")
    if on_path:
        candidates.append(Path(on_path))
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]) / "bin" / "ptxas")
    for p in candidates:
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def ptxas_version(ptxas):
    try:
        out = subprocess.run([ptxas, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release\s+([\d.]+),\s*(V[\d.]+)", out.stdout + out.stderr)
    return f"{m.group(1)} ({m.group(2)})" if m else None


# ---------------------------------------------------------------- parsing ptxas -v

_RE_ENTRY = re.compile(r"Compiling entry function '([^']+)'(?: for '(\w+)')?")
_RE_PROPS = re.compile(r"Function properties for (\S+)")
_RE_STACK = re.compile(r"(\d+) bytes stack frame")
_RE_SPILL_ST = re.compile(r"(\d+) bytes spill stores")
_RE_SPILL_LD = re.compile(r"(\d+) bytes spill loads")
_RE_REGS = re.compile(r"Used (\d+) registers")
_RE_BARRIERS = re.compile(r"used (\d+) barriers")
_RE_SMEM = re.compile(r"(\d+) bytes smem")
_RE_CMEM0 = re.compile(r"(\d+) bytes cmem\[0\]")


def _new_function():
    return {"entry": False, "registers": None, "barriers": 0, "smem": 0, "cmem0": None,
            "stack_frame": 0, "spill_stores": 0, "spill_loads": 0}


def parse_ptxas(text):
    """Read ``ptxas -v`` output into ``{"functions": {name: info}, "entries": [...], "warnings":
    [...], "errors": [...]}``.

    Each info has registers, barriers, smem (0 when ptxas leaves it out), cmem0, stack_frame,
    spill_stores, spill_loads. "Used N registers" belongs to the entry function being compiled;
    the stack/spill line to the function named by the "Function properties for" line above it.
    """
    functions, entries, warnings, errors = {}, [], [], []
    entry = props = None

    def fn(name):
        return functions.setdefault(name, _new_function())

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if re.match(r"ptxas\s+(fatal|error)", stripped) or stripped.startswith("error"):
            errors.append(stripped)
            continue
        if re.match(r"ptxas\s+warning", stripped):
            warnings.append(stripped)
            continue
        m = _RE_ENTRY.search(stripped)
        if m:
            entry = props = m.group(1)
            fn(entry)["entry"] = True
            if entry not in entries:
                entries.append(entry)
            continue
        m = _RE_PROPS.search(stripped)
        if m:
            props = m.group(1)
            fn(props)
            continue
        m = _RE_STACK.search(stripped)
        if m and props is not None:
            info = fn(props)
            info["stack_frame"] = int(m.group(1))
            for key, rx in (("spill_stores", _RE_SPILL_ST), ("spill_loads", _RE_SPILL_LD)):
                mm = rx.search(stripped)
                if mm:
                    info[key] = int(mm.group(1))
            continue
        m = _RE_REGS.search(stripped)
        if m:
            name = entry if entry is not None else props
            if name is None:
                continue
            info = fn(name)
            info["registers"] = int(m.group(1))
            for key, rx in (("barriers", _RE_BARRIERS), ("smem", _RE_SMEM), ("cmem0", _RE_CMEM0)):
                mm = rx.search(stripped)
                if mm:
                    info[key] = int(mm.group(1))
    return {"functions": functions, "entries": entries, "warnings": warnings, "errors": errors}


def summarize(parsed):
    """One row's numbers from a parse: registers, barriers and smem of the entry function(s)
    (the largest if several), the largest stack frame and the spills summed over every function
    (a spill in a called device function counts against the kernel)."""
    funcs = parsed["functions"]
    entries = [funcs[e] for e in parsed["entries"]] or list(funcs.values())

    def biggest(items, key):
        vals = [f[key] for f in items if f[key] is not None]
        return max(vals) if vals else None

    return {
        "registers": biggest(entries, "registers"),
        "barriers": biggest(entries, "barriers") or 0,
        "smem": biggest(entries, "smem") or 0,
        "stack_frame": biggest(list(funcs.values()), "stack_frame") or 0,
        "spill_stores": sum(f["spill_stores"] for f in funcs.values()),
        "spill_loads": sum(f["spill_loads"] for f in funcs.values()),
    }


# ---------------------------------------------------------------- families

def load_modules(families=None, modules=None):
    """``([(family, module), ...], [missing family names])``.

    ``families`` are names under tilegrad.backends.cuda (default FAMILIES); one whose module does
    not exist yet is listed as missing, not an error. ``modules`` are module objects or import
    names, loaded as given (a missing one there is an error). A family module that exists but
    fails to import raises: that is a failure of the check, not a skip.
    """
    loaded, missing = [], []
    if modules is None:
        for family in (FAMILIES if families is None else families):
            full = f"{PACKAGE}.{family}"
            try:
                loaded.append((family, importlib.import_module(full)))
            except ModuleNotFoundError as e:
                # Only the family module itself (or its package) being absent is "missing".
                if e.name is not None and (full == e.name or full.startswith(e.name + ".")):
                    missing.append(family)
                else:
                    raise
    else:
        for mod in modules:
            if isinstance(mod, str):
                mod = importlib.import_module(mod)
            loaded.append((mod.__name__.rsplit(".", 1)[-1], mod))
    return loaded, missing


def extra_signatures(family, mod):
    """Entries to compile beside ``mod.PTX_SIGNATURES``: integer instantiations that the family's
    own (floating-point) list leaves out but the backend launches. The composed losses
    (``nn.loss``: nll_loss, cross_entropy with a weight or label smoothing) build their gather
    indices from int64 targets on the device: ``target != ignore_index`` and the range tests
    (compare with a scalar), ``where`` with a scalar, and ``row * C + target`` (add)."""
    if family != "elementwise":
        return []
    from numba import boolean, int64
    ints, flags = int64[::1], boolean[::1]
    return [
        ("binary_fwd_kernel1_int64", mod.binary_fwd_kernel1,
         (ints, ints, ints, ints, ints, ints, int64, int64)),
        ("compare_scalar_fwd_kernel1_int64", mod.compare_scalar_fwd_kernel1,
         (ints, int64, flags, int64, int64)),
        ("where_mask_scalar_fwd_kernel1_int64", mod.where_mask_scalar_fwd_kernel1,
         (flags, ints, int64, ints, ints, ints, ints, int64)),
    ]


def _compile_options(kernel):
    """The dispatcher's own options (fastmath, lineinfo, opt, ...) that compile_ptx accepts, so
    the PTX is the one the launcher gets."""
    from numba import cuda
    accepted = set(inspect.signature(cuda.compile_ptx).parameters) - {"pyfunc", "sig", "cc",
                                                                        "device"}
    opts = getattr(kernel, "targetoptions", None) or {}
    return {k: v for k, v in opts.items() if k in accepted}


def _sig_text(sig):
    if isinstance(sig, (tuple, list)):
        return "(" + ", ".join(str(t) for t in sig) + ")"
    return str(sig)


def _one_line(exc):
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return " ".join(text.split())[:2000]


def _row(family, name, cc, sig):
    return {"family": family, "name": name, "cc": f"sm_{cc[0]}{cc[1]}", "signature": _sig_text(sig),
            "ok": False, "registers": None, "barriers": None, "smem": None, "stack_frame": None,
            "spill_stores": None, "spill_loads": None, "ptx_lines": None, "note": "",
            "error": ""}


def _assemble(ptxas, ptx, cc, workdir, stem):
    ptx_path = Path(workdir) / f"{stem}.ptx"
    ptx_path.write_text(ptx)
    arch = f"-arch=sm_{cc[0]}{cc[1]}"
    cmd = [ptxas, "-v", arch, str(ptx_path), "-o", str(ptx_path.with_suffix(".cubin"))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    note = ""
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and "Unresolved extern function" in out:
        # PTX that Numba links later (external device functions): assemble it relocatable.
        proc = subprocess.run(cmd[:1] + ["-c"] + cmd[1:], capture_output=True, text=True,
                              timeout=600)
        out = proc.stdout + proc.stderr
        note = "relocatable (-c): calls external functions linked at load time"
    return proc.returncode, out, note


def compile_one(family, name, kernel, sig, cc, ptxas, workdir, nvdisasm=None):
    """One row: compile ``kernel`` for ``sig`` and ``cc``, assemble it, read ptxas -v; for sm_90
    with ``nvdisasm``, also ``row["sass"]``: ``sass.analyze`` of the cubin ptxas wrote."""
    from numba import cuda

    from ._numba_compat import target_cc
    row = _row(family, name, cc, sig)
    pyfunc = getattr(kernel, "py_func", kernel)
    try:
        with target_cc(cc):
            ptx, _ = cuda.compile_ptx(pyfunc, sig, cc=cc, **_compile_options(kernel))
    except Exception as e:      # a typing or lowering error is the result, not a crash
        row["error"] = f"compile_ptx: {_one_line(e)}"
        return row
    row["ptx_lines"] = len(ptx.splitlines())
    if ptxas is None:
        row["error"] = "ptxas not found"
        return row
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", f"{family}_{name}_{row['cc']}")
    # Rows may share a name (one per dtype, say) and run at once in other processes: each
    # compile writes its .ptx and .cubin in a folder of its own.
    workdir = tempfile.mkdtemp(dir=workdir)
    try:
        rc, out, note = _assemble(ptxas, ptx, cc, workdir, stem)
    except (OSError, subprocess.SubprocessError) as e:
        row["error"] = f"ptxas: {_one_line(e)}"
        return row
    row["note"] = note
    parsed = parse_ptxas(out)
    row.update(summarize(parsed))
    if rc != 0:
        msg = "; ".join(parsed["errors"]) or " ".join(out.split())[-2000:]
        row["error"] = f"ptxas exit {rc}: {msg}"
        return row
    if row["registers"] is None:
        row["error"] = "ptxas -v printed no register count: " + " ".join(out.split())[-500:]
        return row
    if parsed["warnings"]:
        row["note"] = "; ".join(filter(None, [row["note"]] + parsed["warnings"]))
    row["ok"] = True
    if nvdisasm and tuple(cc) == (9, 0):
        # The cubin ptxas just wrote, read back here: the SASS report compiles nothing again.
        row["sass"] = sass.analyze_cubin(Path(workdir) / f"{stem}.cubin", nvdisasm)
    return row


def compile_all(ccs=DEFAULT_CCS, families=None, modules=None, ptxas=None, jobs=None,
                nvdisasm=None, select=None):
    """A row per (family, kernel name, cc) for every entry of every family's PTX_SIGNATURES
    (and its ``extra_signatures``).

    Row keys: family, name, cc ("sm_90"), signature, ok, registers, barriers, smem (static
    bytes), stack_frame, spill_stores, spill_loads (bytes), ptx_lines, note, error. ``ok`` is
    False when compile_ptx or ptxas failed; spills are reported separately, see ``failures``.
    A family module that fails to import, or lacks PTX_SIGNATURES, gives one failing row.
    ``jobs`` compiles in that many forked processes (default: up to 8, the CPUs there are).
    ``threads``: the block size, from a 4th element of the PTX_SIGNATURES row or the module's
    ``LAUNCH_BLOCKS`` (None when neither). With ``nvdisasm``, sm_90 rows also get ``sass`` (see
    ``compile_one``). ``select``, a predicate on a kernel's name, compiles only the entries it
    accepts (``tilegrad check`` compiles one version's kernels).
    """
    _refuse_simulator()
    ptxas = ptxas or find_ptxas()
    ccs = [tuple(cc) for cc in ccs]
    rows = []
    loaded = []
    try:
        loaded, _missing = load_modules(families, modules)
    except Exception:
        # Load one at a time so one broken family does not hide the others.
        names = modules if modules is not None else (FAMILIES if families is None else families)
        for item in names:
            try:
                got, _ = (load_modules(modules=[item]) if modules is not None
                          else load_modules(families=[item]))
                loaded += got
            except Exception as e:
                family = item if isinstance(item, str) else getattr(item, "__name__", str(item))
                row = _row(family.rsplit(".", 1)[-1], "<import>", ccs[0], ())
                row["cc"] = "-"
                row["error"] = f"import: {_one_line(e)}"
                rows.append(row)
    tasks = []
    for family, mod in loaded:
        entries = getattr(mod, "PTX_SIGNATURES", None)
        if not entries:
            row = _row(family, "<PTX_SIGNATURES>", ccs[0], ())
            row["cc"] = "-"
            row["error"] = f"{mod.__name__} has no (or an empty) PTX_SIGNATURES list"
            rows.append(row)
            continue
        blocks = getattr(mod, "LAUNCH_BLOCKS", None) or {}
        for name, kernel, sig, *block in [*entries, *extra_signatures(family, mod)]:
            if select is not None and not select(name):
                continue
            threads = block[0] if block else blocks.get(name)
            if isinstance(threads, (tuple, list)):
                threads = math.prod(threads)
            for cc in ccs:
                tasks.append((family, name, kernel, sig, cc, threads))
    jobs = _default_jobs() if jobs is None else max(1, int(jobs))
    with tempfile.TemporaryDirectory(prefix="tilegrad-ptx-") as workdir:
        global _TASKS
        _TASKS = (tasks, ptxas, workdir, nvdisasm)
        try:
            if jobs > 1 and len(tasks) > 1 and "fork" in multiprocessing.get_all_start_methods():
                # Compiling holds the GIL: processes, forked so that kernels made by factories
                # at import time need no pickling (a child reads them from _TASKS).
                with multiprocessing.get_context("fork").Pool(min(jobs, len(tasks))) as pool:
                    rows += pool.map(_compile_task, range(len(tasks)), chunksize=1)
            else:
                rows += [_compile_task(i) for i in range(len(tasks))]
        finally:
            _TASKS = None
    return rows


_TASKS = None


def _compile_task(i):
    tasks, ptxas, workdir, nvdisasm = _TASKS
    family, name, kernel, sig, cc, threads = tasks[i]
    return dict(compile_one(family, name, kernel, sig, cc, ptxas, workdir, nvdisasm),
                threads=threads)


def _default_jobs():
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        return max(1, min(8, os.cpu_count() or 1))


def spilled(row):
    return bool(row.get("spill_stores") or row.get("spill_loads"))


def failures(rows):
    """The rows that fail the check: not compiled, or spilling."""
    return [r for r in rows if not r["ok"] or spilled(r)]


# ---------------------------------------------------------------- report

_COLUMNS = [("family", "family"), ("name", "kernel"), ("cc", "arch"), ("sig", "signature"),
            ("registers", "regs"),
            ("smem", "smem B"), ("barriers", "barriers"), ("stack_frame", "stack B"),
            ("spill_stores", "spill st B"), ("spill_loads", "spill ld B"),
            ("ptx_lines", "PTX lines")]


def _short_sig(text):
    """``(array(float32, 1d, C), int64)`` -> ``(float32[1dC], int64)``."""
    return re.sub(r"array\((\w+), (\d+)d, (\w)\)", r"\1[\2d\3]", text or "")


def _cell(v):
    if v is None:
        return "-"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows):
    """A Markdown table, one line per row, with a status column (ok / SPILLS / FAILED: why)."""
    head = [title for _, title in _COLUMNS] + ["status"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i < 4 else "---:" for i in range(len(_COLUMNS))) + "|---|"]
    for r in rows:
        if not r["ok"]:
            status = f"FAILED: {r['error']}"
        elif spilled(r):
            status = "SPILLS"
        else:
            status = "ok"
        if r.get("note"):
            status += f" ({r['note']})"
        cells = dict(r, sig=_short_sig(r.get("signature")))
        lines.append("| " + " | ".join(_cell(cells.get(k)) for k, _ in _COLUMNS)
                     + " | " + _cell(status) + " |")
    return "\n".join(lines) + "\n"


def _versions():
    out = {}
    for mod in ("numba", "numba_cuda"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except Exception:
            out[mod] = None
    return out


def write_report(out_dir, rows, missing, ptxas, ccs):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bad = failures(rows)
    versions = _versions()
    pv = ptxas_version(ptxas) if ptxas else None
    md = ["# PTX check: registers, shared memory, spills", "",
          f"Numba {versions['numba']}, numba-cuda {versions['numba_cuda']}, "
          f"ptxas {pv or '?'} ({ptxas}); targets: "
          + ", ".join(f"sm_{a}{b}" for a, b in ccs) + ".",
          "Shared memory is static (`cuda.shared.array`); dynamic shared memory is set at launch.",
          ""]
    if missing:
        md += [f"Families not present (skipped): {', '.join(missing)}.", ""]
    md += [markdown_table(rows) if rows else "No kernels.\n"]
    if bad:
        md += ["", f"**{len(bad)} failing:**", ""]
        md += [f"- {r['family']}.{r['name']} {r['cc']}: "
               + (r["error"] if not r["ok"] else
                  f"spills {r['spill_stores']} B stores, {r['spill_loads']} B loads")
               for r in bad]
    (out_dir / "ptx_report.md").write_text("\n".join(md) + "\n")
    (out_dir / "ptx_report.json").write_text(json.dumps({
        "ptxas": ptxas, "ptxas_version": pv, **versions,
        "ccs": [f"sm_{a}{b}" for a, b in ccs], "missing_families": missing,
        "failures": [f"{r['family']}.{r['name']} {r['cc']}" for r in bad],
        "rows": [{k: v for k, v in r.items() if k != "sass"} for r in rows],   # sass_report
    }, indent=2) + "\n")
    return bad


def _parse_cc(text):
    m = re.fullmatch(r"(?:sm_?)?(\d)\.?(\d)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a compute capability: {text!r} (e.g. 9.0, sm_80)")
    return int(m.group(1)), int(m.group(2))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tilegrad.backends.cuda.ptx",
                                description="Compile every CUDA kernel to PTX and run ptxas -v.")
    p.add_argument("--out", required=True, help="folder for ptx_report.md and ptx_report.json")
    p.add_argument("--cc", action="append", type=_parse_cc,
                   help="compute capability, repeatable (default: 9.0 and 8.0)")
    p.add_argument("--families", nargs="+",
                   help=f"families under {PACKAGE} (default: {' '.join(FAMILIES)})")
    p.add_argument("--modules", nargs="+", help="import names of family modules, instead")
    p.add_argument("--jobs", type=int, help="parallel compiles (default: up to 8)")
    args = p.parse_args(argv)
    ccs = tuple(args.cc) if args.cc else DEFAULT_CCS
    try:
        _refuse_simulator()
    except SimulatorEnabledError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ptxas = find_ptxas()
    if ptxas is None:
        print("error: ptxas not found: install nvidia-cuda-nvcc (pip install -e '.[sim]'), put "
              f"ptxas on PATH, or set {PTXAS_ENV}", file=sys.stderr)
        return 2
    missing, loaded = [], []
    try:
        loaded, missing = load_modules(args.families, args.modules)
    except Exception:
        pass    # compile_all reports the broken family as a failing row
    nvdisasm = sass.find_nvdisasm()
    rows = compile_all(ccs, families=args.families, modules=args.modules, ptxas=ptxas,
                       jobs=args.jobs, nvdisasm=nvdisasm)
    bad = write_report(args.out, rows, missing, ptxas, ccs)
    sass.write_report(args.out, rows, sass.family_meta(loaded), nvdisasm)
    print(markdown_table(rows) if rows else "No kernels.")
    if missing:
        print(f"families not present (skipped): {', '.join(missing)}")
    print(f"wrote {Path(args.out) / 'ptx_report.md'} and {Path(args.out) / 'ptx_report.json'}, "
          "sass_report.md and .json")
    if nvdisasm is None:
        print(f"note: nvdisasm not found, so sass_report has no instruction counts: install "
              f"nvidia-cuda-nvdisasm (pip install -e '.[sim]') or set {sass.NVDISASM_ENV}",
              file=sys.stderr)
    if bad:
        print(f"{len(bad)} kernel(s) failed to compile or spilled:", file=sys.stderr)
        for r in bad:
            why = r["error"] if not r["ok"] else (f"spills {r['spill_stores']} B stores, "
                                                  f"{r['spill_loads']} B loads")
            print(f"  {r['family']}.{r['name']} {r['cc']}: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
