"""Check 3 of docs/kernels.md: every CUDA kernel compiles with Numba's real compiler and ptxas,
no spills.

The suite runs with the simulator on (NUMBA_ENABLE_CUDASIM=1), and the real compiler cannot run
in the same process, so the compile runs in a subprocess with NUMBA_ENABLE_CUDASIM=0:
``python -m tilegrad.backends.cuda.ptx``. Its table (registers, shared memory, spills per kernel
and target) goes to build/ptx_report.md and into the test log; the instruction mix of each sm_90
kernel (tilegrad.backends.cuda.sass) to build/sass_report.md. That compile of every family runs
once, shared by the tests that read its reports.
"""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tilegrad.backends.cuda import ptx, sass

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
CCS = ("sm_90", "sm_80")
MIN_DEFAULT_FMA_SHARE = 0.75    # the hot loop of matmul's default kernel: mostly FFMA


def _need_tools():
    if importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed (pip install -e '.[sim]')")
    if importlib.util.find_spec("numba_cuda") is None and \
            importlib.util.find_spec("numba.cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install -e '.[sim]')")
    if ptx.find_ptxas() is None:
        pytest.skip("ptxas not found: install nvidia-cuda-nvcc (pip install -e '.[sim]'), "
                    f"put ptxas on PATH or set {ptx.PTXAS_ENV}")


def _run(out_dir, *args, extra_path=()):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    paths = [str(p) for p in extra_path] + [str(ROOT / "src")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run([sys.executable, "-m", "tilegrad.backends.cuda.ptx", "--out",
                           str(out_dir), *args], env=env, capture_output=True, text=True,
                          timeout=1800, cwd=ROOT)


# ---------------------------------------------------------------- every family of the backend

@pytest.fixture(scope="module")
def full_build():
    """Compile every family once (minutes) for the tests below: (process, ptx report data)."""
    _need_tools()
    proc = _run(BUILD)
    report = BUILD / "ptx_report.md"
    assert report.is_file(), f"no report written:\n{proc.stdout}\n{proc.stderr}"
    return proc, json.loads((BUILD / "ptx_report.json").read_text())


def test_every_kernel_compiles_for_sm90_and_sm80_without_spills(full_build, capsys):
    proc, data = full_build
    report = BUILD / "ptx_report.md"
    with capsys.disabled():     # the table in the CI log, whatever pytest's capture
        print(f"\n{report}:\n{report.read_text()}")
    assert proc.returncode == 0, (f"kernels failed to compile or spilled:\n{proc.stderr}\n"
                                  f"(full table: {report})")
    rows = data["rows"]
    if not rows:
        pytest.skip("no kernel family module yet (missing: "
                    f"{', '.join(data['missing_families'])})")
    assert data["failures"] == []
    for family in {r["family"] for r in rows}:
        for cc in CCS:
            assert any(r["family"] == family and r["cc"] == cc for r in rows), (family, cc)
    for r in rows:
        assert r["ok"], r
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, r
        assert r["registers"] > 0, r
    # The SASS report of the same compile: a row for every sm_90 kernel, none spilling.
    assert (BUILD / "sass_report.md").is_file(), proc.stderr
    srows = json.loads((BUILD / "sass_report.json").read_text())["rows"]
    assert sorted((r["family"], r["name"]) for r in srows) == \
        sorted((r["family"], r["name"]) for r in rows if r["cc"] == "sm_90")
    for r in srows:
        assert r["spills"] == 0 and r["registers"] > 0, r
        assert r["occupancy"]["blocks"] > 0, r
    if sass.find_nvdisasm() is not None:
        assert all(not r["error"] and r["instructions"] > 0 for r in srows), \
            [(r["name"], r["error"]) for r in srows if r["error"]]


def test_default_matmul_kernel_hot_loop_is_mostly_fma(full_build, capsys):
    """The float32 kernel matmul runs by default for large shapes (its SASS_DEFAULT) issues
    mostly FFMA in its hot loop: at the H200's FP32 peak, that share bounds its speed."""
    data = json.loads((BUILD / "sass_report.json").read_text())
    if data["nvdisasm"] is None:
        pytest.skip("nvdisasm not found: install nvidia-cuda-nvdisasm (pip install -e '.[sim]') "
                    f"or set {sass.NVDISASM_ENV}")
    default = data["families"].get("matmul", {}).get("default")
    if not default:
        pytest.skip("matmul defines no SASS_DEFAULT (its default large-shape float32 kernel) yet")
    rows = {r["name"]: r for r in data["rows"] if r["family"] == "matmul"}
    assert default in rows, f"SASS_DEFAULT {default!r} is not a row of matmul's PTX_SIGNATURES"
    hot = rows[default]["hot"]
    with capsys.disabled():
        print(f"\nmatmul default {default}: hot loop {hot}")
    assert hot is not None, f"{default}: no loop found in its SASS"
    assert hot["fma_share"] >= MIN_DEFAULT_FMA_SHARE, (
        f"{default}: hot loop {hot['instructions']} instructions, {hot['fma']} FFMA "
        f"({hot['fma_share']:.0%} < {MIN_DEFAULT_FMA_SHARE:.0%}); loads/stores {hot['mem']}, "
        f"integer/address {hot['int']} (see build/sass_report.md)")
    wide = {op for op in hot["mem"] if op.startswith(("LDG", "LDS")) and op.endswith(".128")}
    assert {op.split(".")[0] for op in wide} == {"LDG", "LDS"}, (
        f"{default}: its hot loop should load global and shared memory 128 bits at a time, "
        f"loads/stores {hot['mem']}")


def test_no_conv_k_loop_calls_a_division_routine(full_build):
    """A 64-bit division is a call to a software routine of dozens of instructions: none may be
    left in the K loop (hot loop and K-tile) of any convolution kernel."""
    data = json.loads((BUILD / "sass_report.json").read_text())
    if data["nvdisasm"] is None:
        pytest.skip("nvdisasm not found: install nvidia-cuda-nvdisasm (pip install -e '.[sim]') "
                    f"or set {sass.NVDISASM_ENV}")
    rows = [r for r in data["rows"] if r["family"] == "conv"]
    assert rows, "no conv kernel in the SASS report"
    for r in rows:
        for loop in ("hot", "ktile"):
            calls = (r.get(loop) or {}).get("calls") or {}
            assert not [c for c in calls if "div" in c or "rem" in c], (r["name"], loop, calls)


# ---------------------------------------------------------------- the tool on its own kernels

EXAMPLE = '''
from numba import cuda, float32, int32

TPB = 128


@cuda.jit(device=True)
def twice(v):
    return v + v


@cuda.jit
def scale(x, y, a, n):
    i = cuda.grid(1)
    if i < n:
        y[i] = a * twice(x[i])


@cuda.jit
def rowdot(a, x, y, n):
    i = cuda.grid(1)
    if i < n:
        acc = float32(0)
        for k in range(n):
            acc += a[i * n + k] * x[k]
        y[i] = acc


@cuda.jit
def block_sum(x, out, n):
    s = cuda.shared.array(TPB, float32)
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    s[t] = x[i] if i < n else float32(0)
    cuda.syncthreads()
    k = TPB // 2
    while k > 0:
        if t < k:
            s[t] += s[t + k]
        cuda.syncthreads()
        k //= 2
    if t == 0:
        cuda.atomic.add(out, 0, s[0])


PTX_SIGNATURES = [
    ("scale_f32", scale, (float32[::1], float32[::1], float32, int32), 256),
    ("block_sum_f32", block_sum, (float32[::1], float32[::1], int32)),
    ("rowdot_f32", rowdot, (float32[::1], float32[::1], float32[::1], int32)),
]
LAUNCH_BLOCKS = {"block_sum_f32": (TPB, 1)}
SASS_GEMM = {"rowdot_f32": [("toy", 2)]}
SASS_DEFAULT = "rowdot_f32"
'''

BROKEN = '''
from numba import cuda, float32

@cuda.jit
def bad(x):
    x[0] = "not a number"

PTX_SIGNATURES = [("bad", bad, (float32[::1],))]
'''


def test_example_family_rows(tmp_path):
    """A family written here (a device function called from a kernel, and shared memory)."""
    _need_tools()
    (tmp_path / "ptx_example_family.py").write_text(textwrap.dedent(EXAMPLE))
    proc = _run(tmp_path / "out", "--modules", "ptx_example_family", "--jobs", "1",
                extra_path=[tmp_path])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((tmp_path / "out" / "ptx_report.json").read_text())["rows"]
    got = {(r["name"], r["cc"]): r for r in rows}
    names = ("scale_f32", "block_sum_f32", "rowdot_f32")
    assert set(got) == {(n, cc) for n in names for cc in CCS}
    for r in rows:
        assert r["ok"] and r["family"] == "ptx_example_family", r
        assert r["registers"] > 0 and r["ptx_lines"] > 0, r
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, r
        assert "sass" not in r
    for cc in CCS:
        assert got[("scale_f32", cc)]["smem"] == 0
        assert got[("block_sum_f32", cc)]["smem"] == 128 * 4
        assert got[("block_sum_f32", cc)]["barriers"] >= 1
    md = (tmp_path / "out" / "ptx_report.md").read_text()
    assert "| ptx_example_family | block_sum_f32 | sm_90 |" in md
    # The SASS report, from the sm_90 cubins of the same compile.
    data = json.loads((tmp_path / "out" / "sass_report.json").read_text())
    srows = {r["name"]: r for r in data["rows"]}
    assert set(srows) == set(names)
    assert data["families"]["ptx_example_family"] == {"default": "rowdot_f32",
                                                      "gemm": {"rowdot_f32": [["toy", 2]]}}
    assert [srows[n]["threads"] for n in names] == [256, 128, None]
    assert srows["scale_f32"]["gemm"] is None and srows["rowdot_f32"]["default"]
    if sass.find_nvdisasm() is None:
        assert all(r["error"] for r in srows.values())
        return
    dot = srows["rowdot_f32"]
    assert not dot["error"] and dot["hot"]["fma"] >= 1 and dot["hot"]["branches"] >= 1
    assert any(k.startswith("LDG.E.") for k in dot["hot"]["mem"]), dot["hot"]
    assert dot["ktile"] is None and dot["gemm"]["share_of"] == "hot loop"
    assert dot["gemm"]["bound"] == round(dot["hot"]["fma_share"] * sass.FP32_PEAK, 1)
    assert srows["block_sum_f32"]["instructions"] > 0    # its loop of constant trips unrolled
    smd = (tmp_path / "out" / "sass_report.md").read_text()
    assert "## ptx_example_family" in smd and "| rowdot_f32 (default) |" in smd
    assert "## GEMM-like kernels: issue bound" in smd and "toy: 2 = " in smd


def test_a_kernel_that_does_not_compile_fails_the_check(tmp_path):
    _need_tools()
    (tmp_path / "ptx_broken_family.py").write_text(textwrap.dedent(BROKEN))
    proc = _run(tmp_path / "out", "--modules", "ptx_broken_family", "--cc", "9.0",
                extra_path=[tmp_path])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ptx_broken_family.bad sm_90: compile_ptx:" in proc.stderr
    data = json.loads((tmp_path / "out" / "ptx_report.json").read_text())
    assert data["failures"] == ["ptx_broken_family.bad sm_90"]


def test_refuses_to_run_under_the_simulator(tmp_path):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "tilegrad.backends.cuda.ptx", "--out",
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "NUMBA_ENABLE_CUDASIM=0" in proc.stderr
    if ptx.simulator_enabled():     # this process: the suite's simulator
        with pytest.raises(ptx.SimulatorEnabledError, match="NUMBA_ENABLE_CUDASIM=0"):
            ptx.compile_all(modules=[])


# ---------------------------------------------------------------- the ptxas -v parser

SM90_NO_SMEM = """\
ptxas info    : 8 bytes gmem
ptxas info    : Compiling entry function '_ZN8__main__5scaleB2v1E5ArrayIfLi1EEfi' for 'sm_90'
ptxas info    : Function properties for _ZN8__main__5scaleB2v1E5ArrayIfLi1EEfi
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 0 barriers
ptxas info    : Compile time = 4.463 ms
"""

SM80_SMEM = """\
ptxas info    : 8 bytes gmem, 8 bytes cmem[4]
ptxas info    : Compiling entry function '_ZN8__main__4bsumB2v4E' for 'sm_80'
ptxas info    : Function properties for _ZN8__main__4bsumB2v4E
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 14 registers, used 1 barriers, 1024 bytes smem, 468 bytes cmem[0]
ptxas info    : Compile time = 6.384 ms
"""

SPILLS = """\
ptxas info    : 0 bytes gmem
ptxas info    : Function properties for _Z6helperf
    16 bytes stack frame, 4 bytes spill stores, 8 bytes spill loads
ptxas info    : Compiling entry function 'big_kernel' for 'sm_90'
ptxas info    : Function properties for big_kernel
    280 bytes stack frame, 272 bytes spill stores, 304 bytes spill loads
ptxas info    : Used 255 registers, 8192 bytes smem, 400 bytes cmem[0], 8 bytes cmem[2]
ptxas warning : Registers are spilled to local memory in function 'big_kernel', \
272 bytes spill stores, 304 bytes spill loads
"""


def test_parse_without_smem():
    parsed = ptx.parse_ptxas(SM90_NO_SMEM)
    assert parsed["entries"] == ["_ZN8__main__5scaleB2v1E5ArrayIfLi1EEfi"]
    s = ptx.summarize(parsed)
    assert s == {"registers": 12, "barriers": 0, "smem": 0, "stack_frame": 0,
                 "spill_stores": 0, "spill_loads": 0}


def test_parse_with_smem_and_cmem():
    parsed = ptx.parse_ptxas(SM80_SMEM)
    f = parsed["functions"]["_ZN8__main__4bsumB2v4E"]
    assert f["entry"] and f["cmem0"] == 468
    assert ptx.summarize(parsed) == {"registers": 14, "barriers": 1, "smem": 1024,
                                     "stack_frame": 0, "spill_stores": 0, "spill_loads": 0}


def test_parse_spills_in_kernel_and_device_function():
    parsed = ptx.parse_ptxas(SPILLS)
    assert parsed["entries"] == ["big_kernel"]
    assert parsed["functions"]["_Z6helperf"]["spill_stores"] == 4
    assert parsed["functions"]["big_kernel"]["registers"] == 255
    assert len(parsed["warnings"]) == 1
    s = ptx.summarize(parsed)
    assert s["registers"] == 255 and s["smem"] == 8192 and s["stack_frame"] == 280
    assert s["spill_stores"] == 276 and s["spill_loads"] == 312    # the helper's count too


def test_parse_errors_and_empty_output():
    parsed = ptx.parse_ptxas("ptxas fatal   : Unresolved extern function 'foo'\n")
    assert parsed["errors"] == ["ptxas fatal   : Unresolved extern function 'foo'"]
    assert ptx.summarize(ptx.parse_ptxas(""))["registers"] is None


def _row(**kw):
    row = dict(family="f", name="k", cc="sm_90", signature="(array(float32, 1d, C), int64)",
               ok=True, registers=10, barriers=0, smem=0, stack_frame=0, spill_stores=0,
               spill_loads=0, ptx_lines=50, note="", error="")
    row.update(kw)
    return row


def test_failures_and_markdown_table():
    good, spill = _row(), _row(name="s", spill_stores=8)
    broken = _row(name="b", ok=False, registers=None, error="compile_ptx: TypingError | x")
    assert ptx.failures([good, spill, broken]) == [spill, broken]
    table = ptx.markdown_table([good, spill, broken]).splitlines()
    assert table[0].startswith("| family | kernel | arch | signature | regs | smem B")
    assert table[2] == ("| f | k | sm_90 | (float32[1dC], int64) "
                        "| 10 | 0 | 0 | 0 | 0 | 0 | 50 | ok |")
    assert table[3].endswith("| SPILLS |")
    assert "FAILED: compile_ptx: TypingError \\| x" in table[4]
