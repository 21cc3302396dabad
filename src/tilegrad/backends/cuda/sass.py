"""What the sm_90 machine code (SASS) of each kernel is made of, and what that predicts: no GPU.

The PTX check (``ptx.py``) assembles every kernel with ``ptxas`` into a cubin; this module reads
the sm_90 cubin back with ``nvdisasm -c`` (code only; its labels ``.L_x_N`` and branch targets
are all the control flow needed) and counts instructions by class.

Method:

- **Loops** are backward branches: a ``BRA`` whose target label is at or before it spans the loop
  from the label to the branch; branches back to one label (``continue``) make one loop. The
  ``BRA`` to itself that pads the end of every function (a trap, never reached) is not one.
- **The hot loop** is, among the innermost loops (containing no other), the one with the most
  FFMA/DFMA, then the largest. Counts are static: code a forward branch may skip (edge guards)
  counts as if it ran, and a ``CALL`` (``__cuda_sm20_div_s64``: 64-bit division) counts one
  instruction, not its callee's body; the calls column names them.
- **The K-tile** of a GEMM-like kernel is the innermost loop around the hot loop with a barrier
  (``BAR``), the hot loop itself if it has one. Inside it the hot loop runs ``steps`` times, read
  from its counter when the compiler made it a countdown from a constant to zero (``UMOV UR5,
  0x7`` before the loop, ``UISETP.NE ... UR5, URZ`` in it); else the K-tile share is unknown.
  Other loops in the K-tile (cooperative tile loads: few trips, often none of them through the
  compiler's unrolled copy) are left out.
- **Occupancy** on sm_90 as the CUDA occupancy calculator computes it: registers per warp in
  256-register units over 4 sub-partitions, 1 KB of shared memory reserved per block, at most 32
  blocks and 64 warps per SM. The block size is not in the cubin: a family gives it as a 4th
  element of a ``PTX_SIGNATURES`` row or in ``LAUNCH_BLOCKS = {kernel name: threads}``; without
  it occupancy shows "?" with the figure for 256 threads, marked assumed.
- **The issue bound** of a GEMM-like kernel (a family's ``SASS_GEMM = {kernel name: [(label, grid
  blocks), ...]}``) is the FMA share of one K-tile's instructions (the hot loop's when the steps
  are unknown) x the H200's FMA peak, 132 SMs x 128 FP32 lanes x 2 FLOP x 1.98 GHz = 66.9
  TFLOP/s (float64 signatures: 64 lanes, 33.5). A warp scheduler issues one instruction a cycle,
  so a kernel issuing one FMA in four gets at most a quarter of the peak. The bound misses
  memory-bound kernels, latency (few warps, dependent loads) and grids that underfill the GPU:
  read it beside the occupancy and the waves, grid blocks / (132 x blocks per SM). A family's
  ``SASS_DEFAULT`` names the float32 kernel it runs by default on large shapes.

    python -m tilegrad.backends.cuda.sass --family matmul [--out build]

compiles one family for sm_90 and prints its table (``--out`` also writes the reports there);
``python -m tilegrad.backends.cuda.ptx --out build`` writes ``build/sass_report.md`` and
``.json`` for every family. Importing this module needs neither Numba nor nvdisasm.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

NVDISASM_ENV = "TILEGRAD_NVDISASM"
SMS, CLOCK_GHZ = 132, 1.98                              # H200: SMs, boost clock
FP32_PEAK = SMS * 128 * 2 * CLOCK_GHZ / 1000            # TFLOP/s: 66.9
FP64_PEAK = SMS * 64 * 2 * CLOCK_GHZ / 1000             # TFLOP/s: 33.5
SM90 = dict(regs_per_sm=65536, reg_unit=256, max_regs=255, sub_partitions=4, max_warps=64,
            max_blocks=32, max_threads_per_block=1024, smem_per_sm=228 * 1024,
            smem_per_block=227 * 1024, smem_reserved=1024, smem_unit=128)
ASSUMED_THREADS = 256

FMA_OPS = {"FFMA", "DFMA"}
MEM_OPS = {"LDG", "STG", "LDS", "STS", "LDL", "STL", "LD", "ST", "LDSM", "LDGSTS", "ATOM",
           "ATOMG", "ATOMS", "RED"}
INT_OPS = {"IMAD", "IMUL", "IADD3", "IADD", "IADD32I", "VIADD", "LEA", "SHF", "SHL", "SHR",
           "LOP3", "LOP", "LOP32I", "ISETP", "ICMP", "IABS", "IMNMX", "VIMNMX", "SEL", "FLO",
           "POPC", "BREV", "BMSK", "PRMT", "ISCADD"}
# Integer and address arithmetic on the uniform datapath (UIADD3, ULEA, ...) takes issue slots too.
INT_OPS |= {"U" + op for op in INT_OPS}
BRANCH_OPS = {"BRA", "BRX", "JMP", "JMX"}


def find_nvdisasm():
    """A runnable nvdisasm, or None: $TILEGRAD_NVDISASM; the pip ``nvidia-cuda-nvdisasm`` wheel
    (nvidia/cu13/bin: 13.5, as no 13.0 wheel exists; it reads ptxas 13.0's cubins); ``nvdisasm``
    on PATH; $CUDA_HOME/bin, $CUDA_PATH/bin."""
    from .ptx import nvidia_tool_candidates
    candidates = [Path(os.environ[NVDISASM_ENV])] if os.environ.get(NVDISASM_ENV) else []
    candidates += nvidia_tool_candidates("nvdisasm")
    if shutil.which("nvdisasm"):
        candidates.append(Path(shutil.which("nvdisasm")))
    candidates += [Path(os.environ[v]) / "bin" / "nvdisasm" for v in ("CUDA_HOME", "CUDA_PATH")
                   if os.environ.get(v)]
    return next((str(p) for p in candidates if p.is_file() and os.access(p, os.X_OK)), None)


def disassemble(cubin, nvdisasm):
    proc = subprocess.run([nvdisasm, "-c", str(cubin)], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"nvdisasm exit {proc.returncode}: {' '.join(proc.stderr.split())}")
    return proc.stdout


# ---------------------------------------------------------------- parsing

_RE_INSTR = re.compile(r"^\s*/\*([0-9a-fA-F]+)\*/\s+(@!?U?P[T\d]+\s+)?([A-Z][A-Z0-9_.]*)\s*(.*?)"
                       r"\s*;?\s*$")
_RE_LABEL = re.compile(r"^([.$\w]+):\s*$")
_RE_TARGET = re.compile(r"`\(([^)]+)\)")


def parse(text):
    """SASS text -> ``[{"name", "instrs": [(offset, pred, op, args)], "labels": {label: index of
    the instruction it precedes}}]``, a function per label not starting with "." (``.L_x_3``)."""
    funcs, fn = [], None
    for line in text.splitlines():
        m = _RE_INSTR.match(line)
        if m:
            if fn is None:
                fn = {"name": "?", "instrs": [], "labels": {}}
                funcs.append(fn)
            off, pred, op, args = m.groups()
            fn["instrs"].append((int(off, 16), (pred or "").strip(), op, args))
            continue
        m = _RE_LABEL.match(line.strip())
        if m:
            label = m.group(1)
            if fn is None or not label.startswith("."):
                fn = {"name": "?" if label.startswith(".") else label, "instrs": [], "labels": {}}
                funcs.append(fn)
            fn["labels"][label] = len(fn["instrs"])
    return funcs


def _base(op):
    return op.split(".", 1)[0]


def call_target(args):
    """``($__internal_0_$__cuda_sm20_div_s64)`` -> ``__cuda_sm20_div_s64``."""
    m = _RE_TARGET.search(args)
    name = m.group(1) if m else args.split(",")[0].strip() or "?"
    return re.sub(r"^\$__internal_\d+_\$", "", name)


def mem_key(op):
    """``LDG.E.128.CONSTANT`` -> ``LDG.E.128``; ``LDS`` -> ``LDS.32``; ``STG.E.U8`` ->
    ``STG.E.8``."""
    mods = op.split(".")[1:]
    bits = next((b for b, names in ((128, {"128"}), (64, {"64"}), (16, {"U16", "S16"}),
                                    (8, {"U8", "S8"})) if names & set(mods)), 32)
    return f"{_base(op)}{'.E' if 'E' in mods else ''}.{bits}"


def mix(instrs):
    """Counts of a list of instructions by class."""
    c = {"instructions": len(instrs), "fma": 0, "int": 0, "barriers": 0, "branches": 0,
         "mem": Counter(), "calls": Counter()}
    for _, _, op, args in instrs:
        b = _base(op)
        if b in FMA_OPS:
            c["fma"] += 1
        elif b in INT_OPS:
            c["int"] += 1
        elif b in MEM_OPS:
            c["mem"][mem_key(op)] += 1
        elif b == "BAR":
            c["barriers"] += 1
        elif b in BRANCH_OPS:
            c["branches"] += 1
        elif b == "CALL":
            c["calls"][call_target(args)] += 1
    return c


def share(part, whole):
    return round(part / whole, 3) if whole else None


def loops(fn):
    """``[(start, end)]``: instruction index of the target label and of the backward branch."""
    spans = {}
    for i, (_, _, op, args) in enumerate(fn["instrs"]):
        m = _RE_TARGET.search(args)
        if _base(op) != "BRA" or not m or m.group(1) not in fn["labels"]:
            continue
        start = fn["labels"][m.group(1)]
        if start < i:       # start == i: the trap that pads a function's end
            spans[start] = max(spans.get(start, i), i)
    return sorted(spans.items())


def _inside(inner, outer):
    return inner != outer and outer[0] <= inner[0] and inner[1] <= outer[1]


def countdown_steps(fn, loop):
    """Iterations of ``loop`` when its counter counts down from a constant to zero, else None."""
    body = fn["instrs"][loop[0]:loop[1] + 1]
    labelled = set(fn["labels"].values())
    for k, (_, _, op, args) in enumerate(body):
        a = [s.strip() for s in args.split(",")]
        if _base(op) not in ("ISETP", "UISETP") or ".NE" not in op or ".EX" in op \
                or len(a) < 4 or a[3] not in ("RZ", "URZ"):
            continue
        reg = a[2]
        steps_at = [j for j, ins in enumerate(body) if _dest(ins) == reg
                    and _base(ins[2]) in ("IADD3", "UIADD3", "VIADD")]
        if not steps_at:
            continue
        for i in range(loop[0] - 1, max(-1, loop[0] - 64), -1):
            ins = fn["instrs"][i]
            if _base(ins[2]) in BRANCH_OPS:
                return None
            if _dest(ins) == reg:
                # The counter's last write before the loop: only an immediate move gives a count.
                m = re.fullmatch(r"(-?0x[0-9a-f]+|-?\d+)", ins[3].split(",")[-1].strip())
                if ins[1] or not m or not re.fullmatch(r"U?MOV|IMAD\.MOV(\.U32)?", ins[2]):
                    return None
                init = int(m.group(1), 0)
                steps = init + 1 if k < steps_at[0] else init    # compared before the step?
                return steps if 0 < steps <= 4096 else None
            if i in labelled:   # another path joins here: the count could come from it
                return None
        return None
    return None


def _dest(ins):
    return ins[3].split(",", 1)[0].strip()


def _counts(c):
    return {"instructions": c["instructions"], "fma": c["fma"],
            "fma_share": share(c["fma"], c["instructions"]), "int": c["int"],
            "int_share": share(c["int"], c["instructions"]), "barriers": c["barriers"],
            "branches": c["branches"], "mem": dict(c["mem"]), "calls": dict(c["calls"])}


def analyze(text):
    """The report for one cubin's SASS: whole-kernel counts, the hot loop, the K-tile."""
    funcs = parse(text)
    whole = mix([ins for f in funcs for ins in f["instrs"]])
    cands = []
    for f in funcs:
        spans = loops(f)
        for s in spans:
            if not any(_inside(o, s) for o in spans):
                c = mix(f["instrs"][s[0]:s[1] + 1])
                cands.append(((c["fma"], c["instructions"]), f, s, c, spans))
    out = {"instructions": whole["instructions"], "calls": dict(whole["calls"]),
           "loops": sum(len(loops(f)) for f in funcs), "hot": None, "ktile": None}
    if not cands:
        return out
    _, f, hot, hc, spans = max(cands, key=lambda t: t[0])
    out["hot"] = dict(_counts(hc), offsets=[f["instrs"][hot[0]][0], f["instrs"][hot[1]][0]])
    if hc["barriers"]:
        out["ktile"] = dict(out["hot"], steps=1, left_out=0)
        return out
    outer = [s for s in spans if _inside(hot, s) and mix(f["instrs"][s[0]:s[1] + 1])["barriers"]]
    if outer:
        k = min(outer, key=lambda s: s[1] - s[0])
        # Loops nested in the K-tile other than the hot one (cooperative tile loads) run an
        # unknown number of times, often none in the compiler's unrolled copy: left out.
        inner = [s for s in spans if _inside(s, k)]
        keep = [i for i in range(k[0], k[1] + 1) if not any(a <= i <= b for a, b in inner)]
        rest = mix([f["instrs"][i] for i in keep])
        steps = countdown_steps(f, hot)
        for key in ("instructions", "fma", "int", "barriers", "branches"):
            rest[key] += (steps or 0) * hc[key]
        for key in ("mem", "calls"):
            rest[key].update({n: (steps or 0) * v for n, v in hc[key].items()})
        out["ktile"] = dict(_counts(rest), steps=steps, offsets=[f["instrs"][k[0]][0],
                                                                 f["instrs"][k[1]][0]],
                            left_out=k[1] - k[0] + 1 - len(keep) - (hot[1] - hot[0] + 1))
        if not steps:
            out["ktile"].update(fma_share=None, int_share=None)
    return out


# ---------------------------------------------------------------- occupancy

def _round_up(x, unit):
    return -(-x // unit) * unit


def occupancy(registers, smem, threads, limits=SM90):
    """Theoretical occupancy: ``{"blocks", "warps", "occupancy", "limiter"}`` per SM."""
    L = limits
    warps = -(-threads // 32)
    if threads > L["max_threads_per_block"] or (registers or 0) > L["max_regs"] \
            or (smem or 0) > L["smem_per_block"]:
        return {"blocks": 0, "warps": 0, "occupancy": 0.0, "limiter": "does not launch"}
    limit = {"warps": L["max_warps"] // warps, "blocks": L["max_blocks"]}
    if registers:
        per_warp = _round_up(registers * 32, L["reg_unit"])
        per_part = L["regs_per_sm"] // L["sub_partitions"] // per_warp
        limit["registers"] = per_part * L["sub_partitions"] // warps
        if per_warp * _round_up(warps, L["sub_partitions"]) > L["regs_per_sm"]:
            limit["registers"] = 0
    per_block = _round_up((smem or 0) + L["smem_reserved"], L["smem_unit"])
    limit["shared memory"] = L["smem_per_sm"] // per_block
    blocks = min(limit.values())
    limiter = min(limit, key=lambda k: (limit[k], k != "registers"))
    return {"blocks": blocks, "warps": blocks * warps,
            "occupancy": round(blocks * warps / L["max_warps"], 3), "limiter": limiter}


def waves(grid_blocks, blocks_per_sm, sms=SMS):
    """Grid blocks / blocks the GPU holds at once (two significant digits below one wave)."""
    if not blocks_per_sm:
        return None
    w = grid_blocks / (sms * blocks_per_sm)
    return float(f"{w:.2g}") if w < 1 else round(w, 2)


def analyze_cubin(cubin, nvdisasm):
    """``analyze`` of a cubin, or ``{"error": why}``: a report row, never an exception."""
    try:
        return analyze(disassemble(cubin, nvdisasm))
    except (OSError, subprocess.SubprocessError, RuntimeError) as e:
        return {"error": " ".join(str(e).split())[:500]}


# ---------------------------------------------------------------- report

def family_meta(loaded):
    """``{family: {"default": SASS_DEFAULT or None, "gemm": SASS_GEMM or {}}}``."""
    return {family: {"default": getattr(mod, "SASS_DEFAULT", None),
                     "gemm": {k: [list(g) for g in v]
                              for k, v in (getattr(mod, "SASS_GEMM", None) or {}).items()}}
            for family, mod in loaded}


def report_rows(rows, meta=None):
    """A row per sm_90 row of the PTX check (``ptx.compile_all``), with occupancy and, for a
    family's SASS_GEMM kernels, ``gemm``: the bound and the waves of each grid."""
    out, meta = [], meta or {}
    for r in (r for r in rows if r.get("cc") == "sm_90"):
        s = r.get("sass") or {"error": r.get("error") or "not disassembled"}
        row = {k: r.get(k) for k in ("family", "name", "signature", "registers", "smem",
                                     "threads")}
        row.update({k: s.get(k) for k in ("instructions", "calls", "hot", "ktile")},
                   spills=(r.get("spill_stores") or 0) + (r.get("spill_loads") or 0),
                   error=s.get("error", ""), gemm=None,
                   default=meta.get(r["family"], {}).get("default") == r["name"],
                   occupancy=occupancy(r["registers"], r["smem"], r.get("threads")
                                       or ASSUMED_THREADS) if r.get("registers") else None)
        grids = meta.get(r["family"], {}).get("gemm", {}).get(r["name"])
        if grids is not None and row["hot"]:
            kt = row["ktile"] or {}
            of = "K-tile" if kt.get("fma_share") is not None else "hot loop"
            used = kt["fma_share"] if of == "K-tile" else row["hot"]["fma_share"]
            peak = FP64_PEAK if "float64" in (r.get("signature") or r["name"]) else FP32_PEAK
            per_sm = (row["occupancy"] or {}).get("blocks")
            row["gemm"] = {"share": used, "share_of": of, "peak": round(peak, 1),
                           "bound": round(used * peak, 1),
                           "grids": [[label, n, waves(n, per_sm)] for label, n in grids]}
        out.append(row)
    return out


def percent(x):
    """A share as a whole percentage ("?" when unknown)."""
    return "?" if x is None else f"{100 * x:.0f}%"


def counts_text(counts, empty="-"):
    """``{"LDS.128": 4, ...}`` as "LDS.128 x4, ...", most frequent first."""
    return ", ".join(f"{k} x{v}" for k, v in sorted((counts or {}).items(),
                                                     key=lambda kv: (-kv[1], kv[0]))) or empty


def _table(head, lines):
    return "\n".join(["| " + " | ".join(head) + " |", "|---" * len(head) + "|"] + [
        "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
        for cells in lines]) + "\n"


def family_table(rows):
    head = ["kernel", "regs", "smem B", "spills B", "block", "occupancy", "hot loop instrs",
            "FMA", "loads/stores", "int/addr", "BAR", "BRA", "calls: loop; kernel"]
    lines, names = [], Counter(r["name"] for r in rows)
    for r in rows:
        h, o, name = r["hot"] or {}, r["occupancy"], r["name"] + (" (default)" * r["default"])
        if names[r["name"]] > 1:    # one name for several dtypes: tell them apart
            name += " [" + ", ".join(dict.fromkeys(re.findall(r"array\((\w+)",
                                                              r["signature"] or ""))) + "]"
        if r["error"]:
            lines.append([name] + ["-"] * (len(head) - 2) + [f"no SASS: {r['error']}"])
            continue
        occ = "-" if o is None else (f"{percent(o['occupancy'])}, {o['blocks']} block"
                                     f"{'s' * (o['blocks'] != 1)} ({o['limiter']})")
        if o is not None and not r["threads"]:
            occ = f"? ({ASSUMED_THREADS} assumed: {occ})"
        loop = ([h["instructions"], f"{h['fma']} ({percent(h['fma_share'])})",
                 counts_text(h["mem"]), f"{h['int']} ({percent(h['int_share'])})",
                 h["barriers"], h["branches"]] if h else ["no loop"] + ["-"] * 5)
        calls = f"{counts_text(h.get('calls'))}; {counts_text(r['calls'])}"
        lines.append([name, r["registers"], r["smem"], r["spills"], r["threads"] or "?", occ]
                     + loop + [calls])
    return _table(head, lines)


def gemm_table(rows):
    head = ["kernel", "hot loop: instrs, FMA", "K-tile: steps, instrs, FMA", "bound TFLOP/s",
            "blocks/SM", "grids: blocks = waves"]
    lines = []
    for r in (r for r in rows if r["gemm"]):
        g, h, kt = r["gemm"], r["hot"], r["ktile"]
        lines.append([r["name"] + (" (default)" * r["default"]),
                      f"{h['instructions']}, {percent(h['fma_share'])}",
                      "-" if not kt else f"{kt['steps'] or '?'}, {kt['instructions']}, "
                                         f"{percent(kt['fma_share'])}",
                      f"{percent(g['share'])} ({g['share_of']}) x {g['peak']} = {g['bound']}",
                      (r["occupancy"] or {}).get("blocks", "?"),
                      "; ".join(f"{lab}: {n} = {w} waves" for lab, n, w in g["grids"])])
    return _table(head, lines)


def markdown(rows, note=""):
    md = ["# SASS instruction mix (sm_90)", "",
          "Static counts from `nvdisasm -c` of each kernel's sm_90 cubin "
          "(`tilegrad/backends/cuda/sass.py` explains the method). Hot loop: the innermost loop "
          "with the most FFMA/DFMA; FMA and int/addr are counts in it and shares of its "
          "instructions. Occupancy per SM (H100/H200 limits) from registers, static shared "
          "memory and the block size.", ""] + ([note, ""] if note else [])
    for family in dict.fromkeys(r["family"] for r in rows):
        md += [f"## {family}", "", family_table([r for r in rows if r["family"] == family])]
    if any(r["gemm"] for r in rows):
        md += ["## GEMM-like kernels: issue bound", "",
               "Bound = FMA share of one K-tile's instructions (steps x hot loop + the rest of "
               "the K-tile loop; the hot loop's share when the steps are unknown) x the FMA peak "
               f"(H200: {FP32_PEAK:.1f} TFLOP/s FP32, {FP64_PEAK:.1f} FP64). Waves = grid "
               f"blocks / ({SMS} SMs x blocks per SM). Memory bandwidth, latency and grids that "
               "underfill the GPU are not in the bound.", "", gemm_table(rows)]
    return "\n".join(md)


def write_report(out_dir, rows, meta=None, nvdisasm=None):
    """Write sass_report.md and sass_report.json into ``out_dir``; return the report rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    srows = report_rows(rows, meta)
    note = "" if nvdisasm else ("nvdisasm not found: install nvidia-cuda-nvdisasm "
                                f"(pip install -e '.[sim]') or set {NVDISASM_ENV}.")
    (out_dir / "sass_report.md").write_text(markdown(srows, note))
    (out_dir / "sass_report.json").write_text(json.dumps({
        "nvdisasm": nvdisasm, "sms": SMS, "fp32_peak_tflops": round(FP32_PEAK, 1),
        "fp64_peak_tflops": round(FP64_PEAK, 1), "families": meta or {}, "rows": srows},
        indent=1) + "\n")
    return srows


def main(argv=None):
    from . import ptx
    p = argparse.ArgumentParser(prog="python -m tilegrad.backends.cuda.sass",
                                description="Compile kernel families for sm_90 and print their "
                                            "SASS instruction-mix tables.")
    p.add_argument("--family", nargs="+", required=True, help=" ".join(ptx.FAMILIES))
    p.add_argument("--out", help="also write sass_report.md and .json (these families only)")
    p.add_argument("--jobs", type=int, default=2, help="parallel compiles (default 2)")
    args = p.parse_args(argv)
    if ptx.simulator_enabled():
        print("error: needs Numba's real compiler: run with NUMBA_ENABLE_CUDASIM=0",
              file=sys.stderr)
        return 2
    tools = {"ptxas": ptx.find_ptxas(), "nvdisasm": find_nvdisasm()}
    if None in tools.values():
        print(f"error: not found: {', '.join(k for k, v in tools.items() if v is None)} "
              "(pip install -e '.[sim]')", file=sys.stderr)
        return 2
    loaded, missing = ptx.load_modules(args.family)
    if missing:
        print(f"error: no such family: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = ptx.compile_all(((9, 0),), families=args.family, ptxas=tools["ptxas"],
                           jobs=args.jobs, nvdisasm=tools["nvdisasm"])
    meta = family_meta(loaded)
    srows = report_rows(rows, meta)
    print(markdown(srows))
    if args.out:
        write_report(args.out, rows, meta, tools["nvdisasm"])
        print(f"wrote {Path(args.out) / 'sass_report.md'} and sass_report.json")
    return 1 if any(r["error"] for r in srows) or ptx.failures(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
