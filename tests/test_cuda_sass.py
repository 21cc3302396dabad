"""The SASS instruction-mix report (tilegrad.backends.cuda.sass) on hand-written SASS: loops from
backward branches, the hot loop and its K-tile, load/store widths, calls, occupancy arithmetic.
Nothing here compiles or needs nvdisasm; the report of the real kernels is checked by
tests/test_cuda_ptx.py, which compiles them once."""
import json

import pytest

from tilegrad.backends.cuda import sass

# A GEMM-like kernel: a K-tile loop (.L_x_0, with barriers) around a countdown loop of 4 steps
# (.L_x_1, counter UR5 from 3, compared before the step), then a trap that pads the function.
GEMM = """\
        .type           kern,@function
        .other          kern,@"STO_CUDA_ENTRY STV_DEFAULT"
kern:
.text.kern:
        /*0000*/                   S2R R0, SR_TID.X ;
        /*0010*/                   IMAD.MOV.U32 R2, RZ, RZ, 0x4 ;
.L_x_0:
        /*0020*/                   LDG.E.128.CONSTANT R4, desc[UR4][R2.64] ;
        /*0030*/                   STS.128 [R0], R4 ;
        /*0040*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0050*/                   UMOV UR5, 0x3 ;
.L_x_1:
        /*0060*/                   UISETP.NE.U32.AND UP0, UPT, UR5, URZ, UPT ;
        /*0070*/                   LDS.128 R8, [R0+UR4] ;
        /*0080*/                   FFMA R12, R8, R9, R12 ;
        /*0090*/                   FFMA R13, R10.reuse, R11, R13 ;
        /*00a0*/                   FFMA R14, R8, R10, R14 ;
        /*00b0*/                   UIADD3 UR5, UR5, -0x1, URZ ;
        /*00c0*/                   PLOP3.LUT P0, PT, PT, PT, UP0, 0x80, 0x0 ;
        /*00d0*/               @P0 BRA `(.L_x_1) ;
        /*00e0*/                   IADD3 R2, R2, -0x1, RZ ;
        /*00f0*/                   ISETP.NE.AND P1, PT, R2, RZ, PT ;
        /*0100*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0110*/               @P1 BRA `(.L_x_0) ;
        /*0120*/                   STG.E desc[UR4][R2.64], R12 ;
        /*0130*/                   EXIT ;
.L_x_2:
        /*0140*/                   BRA `(.L_x_2);
        /*0150*/                   NOP;
.L_x_3:
"""

# A float64 loop left by two backward branches to one label (a `continue`), with a forward branch
# inside, a call to the 64-bit division helper, and the helper itself after the kernel.
CALLS = """\
kern64:
        /*0000*/                   S2R R2, SR_CTAID.X ;
.L_x_5:
        /*0010*/                   IMAD.WIDE R4, R2, 0x4, R6 ;
        /*0020*/                   CALL.REL.NOINC `($__internal_0_$__cuda_sm20_div_s64) ;
        /*0030*/                   LDG.E R8, desc[UR4][R4.64] ;
        /*0040*/                   DFMA R10, R8, R8, R10 ;
        /*0050*/              @!P2 BRA `(.L_x_6) ;
        /*0060*/                   STG.E.64 desc[UR4][R4.64], R10 ;
.L_x_6:
        /*0070*/                   ISETP.GE.AND P0, PT, R2, R3, PT ;
        /*0080*/               @!P1 BRA `(.L_x_5) ;
        /*0090*/                   LEA R2, P3, R2, R9, 0x2 ;
        /*00a0*/               @P0 BRA `(.L_x_5) ;
.L_x_4:
        /*00b0*/                   IADD3 R3, R3, 0x1, RZ ;
        /*00c0*/                   LDS.U8 R1, [R3] ;
        /*00d0*/                   MOV R7, R1 ;
        /*00e0*/                   SHF.L.U32 R1, R1, 0x2, RZ ;
        /*00f0*/                   FADD R7, R7, R1 ;
        /*0100*/                   FMUL R7, R7, R7 ;
        /*0110*/                   FADD R7, R7, R1 ;
        /*0120*/                   FMUL R7, R7, R7 ;
        /*0130*/                   FADD R7, R7, R1 ;
        /*0140*/                   FMUL R7, R7, R7 ;
        /*0150*/                   STS.64 [R3], R6 ;
        /*0160*/               @P4 BRA `(.L_x_4) ;
        /*0170*/                   EXIT ;
        .type           $__internal_0_$__cuda_sm20_div_s64,@function
$__internal_0_$__cuda_sm20_div_s64:
        /*0180*/                   IADD3 R0, R1, R2, RZ ;
        /*0190*/                   RET.REL.NODEC R16 `(kern64) ;
.L_x_7:
        /*01a0*/                   BRA `(.L_x_7);
"""


def test_parse_functions_labels_and_predicates():
    funcs = sass.parse(GEMM)
    assert [f["name"] for f in funcs] == ["kern"]
    f = funcs[0]
    assert len(f["instrs"]) == 22
    assert f["labels"] == {"kern": 0, ".text.kern": 0, ".L_x_0": 2, ".L_x_1": 6, ".L_x_2": 20,
                           ".L_x_3": 22}
    assert f["instrs"][13] == (0xd0, "@P0", "BRA", "`(.L_x_1)")
    assert f["instrs"][20] == (0x140, "", "BRA", "`(.L_x_2)")
    assert [g["name"] for g in sass.parse(CALLS)] == ["kern64",
                                                      "$__internal_0_$__cuda_sm20_div_s64"]


def test_loops_are_backward_branches_and_the_trap_is_not_one():
    assert sass.loops(sass.parse(GEMM)[0]) == [(2, 17), (6, 13)]
    kern64, helper = sass.parse(CALLS)
    assert sass.loops(kern64) == [(1, 10), (11, 22)]    # two branches back to .L_x_5: one loop
    assert sass.loops(helper) == []


def test_hot_loop_is_the_innermost_with_fma_and_its_k_tile():
    r = sass.analyze(GEMM)
    h = r["hot"]
    assert h["offsets"] == [0x60, 0xd0] and h["instructions"] == 8
    assert h["fma"] == 3 and h["fma_share"] == 0.375
    assert h["mem"] == {"LDS.128": 1} and h["int"] == 2 and h["int_share"] == 0.25
    assert h["barriers"] == 0 and h["branches"] == 1 and h["calls"] == {}
    k = r["ktile"]
    assert k["steps"] == 4 and k["offsets"] == [0x20, 0x110] and k["left_out"] == 0
    assert k["instructions"] == 8 + 4 * 8 and k["fma"] == 12 and k["fma_share"] == 0.3
    assert k["mem"] == {"LDG.E.128": 1, "STS.128": 1, "LDS.128": 4} and k["barriers"] == 2
    assert r["loops"] == 2 and r["instructions"] == 22 and r["calls"] == {}


def test_fma_decides_between_innermost_loops_then_size():
    r = sass.analyze(CALLS)
    h = r["hot"]   # .L_x_5 (10 instructions, one DFMA), not the larger FMA-free .L_x_4
    assert h["offsets"] == [0x10, 0xa0] and h["instructions"] == 10 and h["fma"] == 1
    assert h["mem"] == {"LDG.E.32": 1, "STG.E.64": 1}
    assert h["calls"] == {"__cuda_sm20_div_s64": 1} and r["calls"] == {"__cuda_sm20_div_s64": 1}
    assert h["int"] == 3 and h["branches"] == 3 and r["ktile"] is None
    no_fma = sass.analyze(CALLS.replace("DFMA R10, R8, R8, R10", "DADD R10, R8, R10"))
    assert no_fma["hot"]["offsets"] == [0xb0, 0x160]    # then the largest body
    assert no_fma["hot"]["mem"] == {"LDS.8": 1, "STS.64": 1} and no_fma["hot"]["int"] == 2


def test_no_loop_and_unknown_steps():
    straight = "\n".join(line for line in GEMM.splitlines() if "BRA" not in line)
    r = sass.analyze(straight)
    assert r["hot"] is None and r["ktile"] is None and r["loops"] == 0
    # The counter set from a register: the steps, and so the K-tile share, are unknown.
    r = sass.analyze(GEMM.replace("UMOV UR5, 0x3", "UMOV UR5, UR9"))
    assert r["hot"]["fma_share"] == 0.375
    assert r["ktile"]["steps"] is None and r["ktile"]["fma_share"] is None
    # Compared after the step: 3 iterations, not 4.
    late = GEMM.replace("UISETP.NE.U32.AND UP0, UPT, UR5, URZ, UPT", "NOP").replace(
        "PLOP3.LUT P0, PT, PT, PT, UP0, 0x80, 0x0", "UISETP.NE.U32.AND UP0, UPT, UR5, URZ, UPT")
    assert sass.analyze(late)["ktile"]["steps"] == 3


@pytest.mark.parametrize("op, key", [("LDG.E.128.CONSTANT", "LDG.E.128"), ("LDS", "LDS.32"),
                                     ("LDS.U.128", "LDS.128"), ("STG.E.U8", "STG.E.8"),
                                     ("LDG.E.64.STRONG.GPU", "LDG.E.64"), ("STS.U16", "STS.16"),
                                     ("LDG.E", "LDG.E.32")])
def test_load_store_widths(op, key):
    assert sass.mem_key(op) == key


def test_call_targets():
    assert sass.call_target("`($__internal_1_$__cuda_sm20_rem_s64)") == "__cuda_sm20_rem_s64"
    assert sass.call_target("`(vprintf)") == "vprintf"
    assert sass.call_target("0x0") == "0x0"


@pytest.mark.parametrize("regs, smem, threads, blocks, occ, limiter", [
    (128, 0, 256, 2, 0.25, "registers"),          # 4096 regs a warp: 16 warps
    (32, 0, 256, 8, 1.0, "registers"),            # 8 blocks, 64 warps: as many as fit
    (67, 8192, 256, 3, 0.375, "registers"),       # 72 a thread after rounding: 28 warps
    (32, 48 * 1024, 128, 4, 0.25, "shared memory"),   # 49 KB with the reserved 1 KB
    (16, 0, 32, 32, 0.5, "blocks"),               # 32 blocks of one warp
    (64, 0, 1024, 1, 0.5, "registers"),
    (72, 0, 1024, 0, 0.0, "registers"),           # 73728 registers: the launch fails
    (32, 228 * 1024, 256, 0, 0.0, "does not launch"),
])
def test_occupancy(regs, smem, threads, blocks, occ, limiter):
    o = sass.occupancy(regs, smem, threads)
    assert (o["blocks"], o["occupancy"], o["limiter"]) == (blocks, occ, limiter)
    assert o["warps"] == blocks * -(-threads // 32)


def test_peaks_and_waves():
    assert round(sass.FP32_PEAK, 1) == 66.9 and round(sass.FP64_PEAK, 1) == 33.5
    assert sass.waves(2, 1) == 0.015 and sass.waves(2, 8) == 0.0019
    assert sass.waves(792, 3) == 2.0 and sass.waves(1000, 3) == 2.53
    assert sass.waves(10, 0) is None


def _ptx_row(name, **kw):
    row = dict(family="mm", name=name, cc="sm_90", signature="(array(float32, 1d, C), int64)",
               ok=True, registers=67, smem=8192, spill_stores=0, spill_loads=0, error="",
               threads=256, sass=sass.analyze(GEMM))
    row.update(kw)
    return row


def test_report_rows_gemm_bound_and_markdown(tmp_path):
    rows = [_ptx_row("mm_f32"), _ptx_row("mm_f32", cc="sm_80"),
            _ptx_row("mm_f64", signature="(array(float64, 1d, C), int64)", threads=None),
            _ptx_row("copy", sass=sass.analyze(CALLS)),
            _ptx_row("bad", ok=False, registers=None, sass=None, error="compile_ptx: boom"),
            _ptx_row("twice"), _ptx_row("twice", signature="(array(float64, 1d, C), int64)")]
    meta = {"mm": {"default": "mm_f32", "gemm": {"mm_f32": [["lm", 2], ["big", 792]],
                                                 "mm_f64": [["lm", 2]]}}}
    got = sass.write_report(tmp_path, rows, meta, "/bin/nvdisasm")
    assert [r["name"] for r in got] == ["mm_f32", "mm_f64", "copy", "bad", "twice", "twice"]
    f32, f64, copy, bad = got[:4]    # sm_90 only
    assert f32["default"] and not f64["default"]
    assert f32["gemm"] == {"share": 0.3, "share_of": "K-tile", "peak": 66.9,
                           "bound": round(0.3 * sass.FP32_PEAK, 1),
                           "grids": [["lm", 2, 0.0051], ["big", 792, 2.0]]}
    assert f64["gemm"]["peak"] == 33.5 and f64["gemm"]["bound"] == round(0.3 * sass.FP64_PEAK, 1)
    assert f64["occupancy"]["blocks"] == 3    # for the assumed 256 threads
    assert copy["gemm"] is None and copy["hot"]["calls"] == {"__cuda_sm20_div_s64": 1}
    assert bad["error"] == "compile_ptx: boom" and bad["occupancy"] is None
    md = (tmp_path / "sass_report.md").read_text()
    assert "| mm_f32 (default) | 67 | 8192 | 0 | 256 | 38%, 3 blocks (registers) | 8 | 3 (38%) | " \
           "LDS.128 x1 | 2 (25%) | 0 | 1 | -; - |" in md
    assert "| mm_f64 | 67 | 8192 | 0 | ? | ? (256 assumed: 38%, 3 blocks (registers)) |" in md
    assert "| copy | 67 | 8192 | 0 | 256 |" in md and \
           "| __cuda_sm20_div_s64 x1; __cuda_sm20_div_s64 x1 |" in md
    assert "| bad | - |" in md and "no SASS: compile_ptx: boom |" in md
    assert "| twice [float32] | 67 |" in md and "| twice [float64] | 67 |" in md
    assert "| mm_f32 (default) | 8, 38% | 4, 40, 30% | 30% (K-tile) x 66.9 = 20.1 | 3 | " \
           "lm: 2 = 0.0051 waves; big: 792 = 2.0 waves |" in md
    data = json.loads((tmp_path / "sass_report.json").read_text())
    assert data["families"] == meta and data["fp32_peak_tflops"] == 66.9
    assert [r["name"] for r in data["rows"]] == [r["name"] for r in got]


def test_report_without_nvdisasm(tmp_path):
    rows = [_ptx_row("k", sass=None)]
    got = sass.write_report(tmp_path, rows, {}, None)
    assert got[0]["error"] == "not disassembled" and got[0]["occupancy"]["blocks"] == 3
    assert "nvdisasm not found" in (tmp_path / "sass_report.md").read_text()


def test_find_nvdisasm_honours_the_environment(tmp_path, monkeypatch):
    tool = tmp_path / "nvdisasm"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv(sass.NVDISASM_ENV, str(tool))
    assert sass.find_nvdisasm() == str(tool)


def test_cli_sass_subcommand_runs_the_module_without_the_simulator():
    from tilegrad.cli.main import build_parser, main
    args = build_parser().parse_args(["sass"])
    assert args.family == ["matmul"] and args.out is None
    assert main(["sass", "--family", "no_such_family"]) == 2     # refused before compiling
