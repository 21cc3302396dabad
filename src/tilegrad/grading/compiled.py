"""The compile stages: a version's kernels through Numba's real compiler and ptxas (registers,
shared memory, spills), and the instruction mix of their sm_90 machine code.

Compiling needs the real compiler, not the simulator, so it runs in a process of its own with
``NUMBA_ENABLE_CUDASIM=0``:

    python -m tilegrad.grading.compiled FAMILY [--version V ...] [--cc 90 ...] [--sass] [--list]

prints one JSON object: the kernel names of each version (``families.version_rows`` of the kernel
file's ``PTX_SIGNATURES``), and unless ``--list`` the rows of ``ptx.compile_all`` for those
kernels (each compiled once, however many versions share it) and, with ``--sass``, the rows of
``sass.report_rows``. ``run_stage`` turns them into the table's rows.
"""
import argparse
import json
import sys

from tilegrad.backends.cuda import sass

from . import families
from .oracle import run_worker
from .result import Row

NO_ROWS = ("no kernels: {family} {version} has no PTX_SIGNATURES row in "
           "tilegrad/backends/cuda/{module}.py, so it would never be compiled. Add a row "
           "(name, kernel, signature) per kernel and dtype its launcher runs, named "
           "..._kernel{n} (or list the names in that file's VERSION_KERNELS)")


# ---------------------------------------------------------------- in the worker process

def version_kernels(family, versions):
    """(kernel module, {version: [kernel names]}) from the kernel file's PTX_SIGNATURES."""
    from tilegrad import kernels
    from tilegrad.backends.cuda import ptx
    loaded, _missing = ptx.load_modules([family.module])
    if not loaded:
        raise SystemExit(f"no kernel file tilegrad/backends/cuda/{family.module}.py")
    module = loaded[0][1]
    names = [entry[0] for entry in getattr(module, "PTX_SIGNATURES", None) or []]
    declared = kernels.declarations(module)
    mapping = getattr(module, "VERSION_KERNELS", None)
    return module, {v: families.version_rows(names, family, v, declared, mapping)
                    for v in versions}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tilegrad.grading.compiled")
    p.add_argument("family")
    p.add_argument("--version", action="append")
    p.add_argument("--cc", action="append", type=int, help="90, 80 (repeatable)")
    p.add_argument("--sass", action="store_true", help="also the sm_90 instruction mix")
    p.add_argument("--list", action="store_true", help="the kernel names only")
    p.add_argument("--jobs", type=int)
    args = p.parse_args(argv)
    from tilegrad.backends.cuda import ptx, sass
    family = families.resolve(args.family)
    versions = args.version or [None]
    module, names = version_kernels(family, versions)
    out = {"versions": [[v, names[v]] for v in versions], "module": family.module}
    if not args.list:
        wanted = {n for v in versions for n in names[v]}
        ccs = [divmod(cc, 10) for cc in (args.cc or [90, 80])]
        out["ptxas"] = ptx.find_ptxas()
        out["nvdisasm"] = sass.find_nvdisasm() if args.sass else None
        rows = []
        if out["ptxas"] and wanted:
            rows = ptx.compile_all(ccs, modules=[module], ptxas=out["ptxas"], jobs=args.jobs,
                                   nvdisasm=out["nvdisasm"], select=wanted.__contains__)
        out["rows"] = [{k: v for k, v in r.items() if k != "sass"} for r in rows]
        if out["nvdisasm"]:
            meta = sass.family_meta([(family.module, module)])
            out["sass"] = sass.report_rows(rows, meta)
    print(json.dumps(out))
    return 0


# ---------------------------------------------------------------- in the grader

def run_stage(family, versions, quick, stages, progress=None):
    """The rows of the "ptx" and "sass" stages (those of ``stages``) for ``versions``."""
    args = [family.name] + [a for v in versions if v is not None for a in ("--version", v)]
    args += ["--cc", "90"] + ([] if quick else ["--cc", "80"])
    if "sass" in stages:
        args.append("--sass")
    rc, records, err = run_worker("tilegrad.grading.compiled", args, simulator=False)
    if rc != 0 or not records:
        return [Row(stage, family.name, None, "-", "fail",
                    f"the compile worker exited with {rc}", err.splitlines()[-8:])
                for stage in stages if stage in ("ptx", "sass")]
    out = records[-1]
    rows = []
    if "ptx" in stages:
        rows += ptx_rows(family, out)
    if "sass" in stages:
        rows += sass_rows(family, out)
    return rows


def _dtype(row):
    sig = row.get("signature") or ""
    return next((d for d in ("float32", "float64") if d in sig), "")


def _kernel(row):
    return f"{row['name']} [{_dtype(row)}]" if _dtype(row) and _dtype(row) not in row["name"] \
        else row["name"]


def ptx_rows(family, out):
    """A failing row per version without kernels; else a row per (version, target)."""
    rows = []
    for version, names in out["versions"]:
        if not names:
            m = version[1:] if version and version[1:].isdigit() else "<N>"
            rows.append(Row("ptx", family.name, version, "-", "fail", NO_ROWS.format(
                family=family.name, version=version, module=out["module"], n=m)))
            continue
        if not out.get("ptxas"):
            rows.append(Row("ptx", family.name, version, "-", "skip",
                            "ptxas not found: install nvidia-cuda-nvcc (pip install -e "
                            "'.[sim]'), put ptxas on PATH or set TILEGRAD_PTXAS"))
            continue
        mine = [r for r in out["rows"] if r["name"] in names]
        for cc in dict.fromkeys(r["cc"] for r in mine):
            rows.append(_ptx_row(family, version, cc, [r for r in mine if r["cc"] == cc]))
    return rows


def _ptx_row(family, version, cc, rows):
    bad = [r for r in rows if not r["ok"] or r.get("spill_stores") or r.get("spill_loads")]
    lines = []
    for r in rows:
        if not r["ok"]:
            lines.append(f"{_kernel(r)}: FAILED: {r['error']}")
        else:
            spill = (f", SPILLS {r['spill_stores']} B stores, {r['spill_loads']} B loads"
                     if r in bad else "")
            lines.append(f"{_kernel(r)}: {r['registers']} registers, {r['smem']} B shared, "
                         f"{r['stack_frame']} B stack{spill}")
    if bad:
        return Row("ptx", family.name, version, cc, "fail",
                   f"{len(bad)} of {len(rows)} kernels fail to compile or spill",
                   [line for line in lines if "FAILED" in line or "SPILLS" in line])
    low, high = min(r["registers"] for r in rows), max(r["registers"] for r in rows)
    regs = f"{low}-{high}" if low != high else f"{low}"
    smem = max(r["smem"] for r in rows)
    return Row("ptx", family.name, version, cc, "pass",
               f"{len(rows)} kernels: {regs} registers, shared memory up to {smem} B, "
               "no spills", lines)


def sass_rows(family, out):
    """An info row per (version, registry family): the hot loop of its representative kernel
    (the family's SASS_DEFAULT if the version has it, else its first float32 kernel); every
    kernel's line in the details."""
    if not out.get("ptxas") or out.get("nvdisasm") is None:
        why = "ptxas" if not out.get("ptxas") else "nvdisasm"
        return [Row("sass", family.name, None, "sm_90", "skip",
                    f"{why} not found: install nvidia-cuda-nvcc and nvidia-cuda-nvdisasm "
                    "(pip install -e '.[sim]')")]
    rows = []
    for version, names in out["versions"]:
        mine = [r for r in out.get("sass", []) if r["name"] in names]
        if not mine:
            continue        # the ptx stage says why
        groups = {}
        for r in mine:
            key = next((f for f in family.registry if r["name"].startswith(f + "_")), "")
            groups.setdefault(key, []).append(r)
        for group in groups.values():
            lead = next((r for r in group if r["default"]), None) or \
                next((r for r in group if _dtype(r) == "float32"), group[0])
            rows.append(Row("sass", family.name, version, "sm_90", "info",
                            f"{_kernel(lead)}: {mix_line(lead)}",
                            [f"{_kernel(r)}: {mix_line(r)}" for r in group]))
    return rows


def mix_line(r):
    """One kernel's hot loop in a line: instructions, FMA share, loads and stores, the issue
    bound of a GEMM-like kernel, occupancy."""
    if r.get("error"):
        return f"no SASS: {r['error']}"
    h = r.get("hot")
    if not h:
        text = f"no loop; {r.get('instructions')} instructions"
    else:
        text = (f"hot loop {h['instructions']} instructions, FMA {h['fma']} "
                f"({sass.percent(h['fma_share'])}), memory {sass.counts_text(h['mem'], 'none')}")
    g = r.get("gemm")
    if g:
        text += f"; issue bound {g['bound']} TFLOP/s ({g['share_of']} FMA share x {g['peak']})"
    o = r.get("occupancy")
    if o:
        text += f"; occupancy {sass.percent(o['occupancy'])} ({o['limiter']})"
    return text


if __name__ == "__main__":
    sys.exit(main())
