"""``tilegrad check``: the table and exit codes, unknown families and versions, which kernels each
version compiles (every version of every family has some), a quick oracle run that passes, and
one that catches an off-by-one planted in a copy of the sources."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tilegrad.cli.main import main as cli_main
from tilegrad.grading import Result, Row, benchmark, compiled, families, table
from tilegrad.grading import command as check_command

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _tilegrad(*args, pythonpath=SRC, simulator=True):
    env = dict(os.environ, PYTHONPATH=str(pythonpath),
               NUMBA_ENABLE_CUDASIM="1" if simulator else "0")
    return subprocess.run([sys.executable, "-m", "tilegrad", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def _need_numba():
    pytest.importorskip("numba", reason="numba-cuda is not installed")


# ---------------------------------------------------------------- the table and exit codes

def _result(*statuses):
    rows = [Row("oracle", "matmul", "v1", f"case {k}", s, f"summary {k}", [f"detail {k}"])
            for k, s in enumerate(statuses)]
    return Result("matmul", ["v1"], True, ["oracle"], "no GPU", rows, 1.5)


def test_table_shows_every_row_and_the_details_of_failures_only():
    ok = _result("pass", "skip", "info")
    text = table.render(ok)
    assert ok.ok and text.rstrip().endswith("(1.5 s)")
    assert "passed: 1 passed, 0 failed, 1 skipped, 1 info" in text
    for k, mark in enumerate(("PASS", "skip", "info")):
        assert f"case {k}" in text and mark in text and f"summary {k}" in text
    assert "detail" not in text
    assert "detail 0" in table.render(ok, verbose=True)
    bad = _result("pass", "fail")
    text = table.render(bad)
    assert not bad.ok and [r.name for r in bad.failures()] == ["case 1"]
    assert "FAIL" in text and "detail 1" in text and "detail 0" not in text
    assert "FAILED: 1 passed, 1 failed" in text
    with pytest.raises(ValueError, match="status must be one of"):
        Row("oracle", "matmul", "v1", "x", "passed", "")


@pytest.mark.parametrize("statuses, code", [(("pass", "skip", "info"), 0), (("pass", "fail"), 1)])
def test_exit_code_and_json(monkeypatch, tmp_path, capsys, statuses, code):
    monkeypatch.setattr(check_command.stages, "run", lambda *a, **k: _result(*statuses))
    out = tmp_path / "check.json"
    assert cli_main(["check", "matmul", "--json", str(out)]) == code
    assert "tilegrad check matmul" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["ok"] == (code == 0) and [r["status"] for r in doc["rows"]] == list(statuses)


# ---------------------------------------------------------------- unknown names: exit 2

def test_unknown_family_version_or_stage_exit_2_naming_the_known_ones(capsys):
    _need_numba()
    assert cli_main(["check", "matmull"]) == 2
    err = capsys.readouterr().err
    assert "unknown family 'matmull'" in err
    for name in ("matmul", "conv2d", "conv2d_bwd_weight", "softmax_cross_entropy", "optim"):
        assert name in err
    assert cli_main(["check", "matmul", "--version", "v99"]) == 2
    err = capsys.readouterr().err
    assert "not 'v99'" in err and "v1, v2" in err and "auto" in err
    assert cli_main(["check", "matmul", "--stages", "oracle,speed"]) == 2
    assert "unknown stage(s) speed" in capsys.readouterr().err


def test_names_accept_dashes_and_a_family_without_versions_takes_no_version():
    _need_numba()
    assert families.resolve("conv2d-bwd-data").registry == ("conv2d_bwd_data",)
    assert families.resolve("Softmax-Cross-Entropy").name == "softmax_cross_entropy"
    conv = families.resolve("conv2d")
    assert families.select_versions(conv) == families.select_versions(
        families.resolve("conv2d_fwd"))
    single = [f for f in families.CATALOG.values() if families.versions(f) == [None]]
    for fam in single:
        assert families.select_versions(fam) == [None]
        with pytest.raises(families.UnknownFamilyError, match="has no versions"):
            families.select_versions(fam, "v1")


# ---------------------------------------------------------------- a version's kernels

def test_version_rows_by_name():
    names = ["matmul_kernel1_float32", "matmul_kernel12_float32", "matmul_kernel2_float32_tA",
             "matmul_kernel5_64_float32", "matmul_kernel1_float32"]
    mm = families.CATALOG["matmul"]
    assert families.version_rows(names, mm, "v1") == ["matmul_kernel1_float32"]
    assert families.version_rows(names, mm, "v12") == ["matmul_kernel12_float32"]
    assert families.version_rows(names, mm, "v3") == []
    assert families.version_rows(names, mm, "auto") == []         # no mapping: nothing
    assert families.version_rows(names, mm, "auto", version_kernels={
        "auto": ("matmul_kernel5",)}) == ["matmul_kernel5_64_float32"]
    assert families.version_rows(names, mm, None) == names[:4]
    # A kernel file declaring several families: each family's kernels are named after it.
    conv = ["conv2d_fwd_kernel1_f", "conv2d_bwd_data_kernel1_f", "conv2d_fwd_direct_kernel_f"]
    declared = {"conv2d_fwd": 0, "conv2d_bwd_data": 0}
    fwd = families.CATALOG["conv2d_fwd"]
    assert families.version_rows(conv, fwd, "v1", declared) == ["conv2d_fwd_kernel1_f"]
    assert families.version_rows(conv, fwd, "v2", declared, {"v2": ("direct_kernel",)}) == \
        ["conv2d_fwd_direct_kernel_f"]
    both = families.CATALOG["conv2d"]
    assert families.version_rows(conv, both, "v1", declared) == conv[:2]


def test_a_version_without_kernels_fails_the_ptx_stage():
    out = {"versions": [["v1", ["matmul_kernel1_float32"]], ["v7", []]], "module": "matmul",
           "ptxas": "/usr/bin/ptxas",
           "rows": [{"name": "matmul_kernel1_float32", "cc": "sm_90", "ok": True,
                     "registers": 32, "smem": 0, "stack_frame": 0, "spill_stores": 0,
                     "spill_loads": 0, "signature": "(array(float32, 1d, C))"}]}
    rows = compiled.ptx_rows(families.CATALOG["matmul"], out)
    assert [(r.version, r.status) for r in rows] == [("v1", "pass"), ("v7", "fail")]
    assert "PTX_SIGNATURES" in rows[1].summary and "kernel7" in rows[1].summary
    out["rows"][0].update(spill_stores=8)
    assert compiled.ptx_rows(families.CATALOG["matmul"], out)[0].status == "fail"
    out["ptxas"] = None
    assert compiled.ptx_rows(families.CATALOG["matmul"], out)[0].status == "skip"


def test_every_version_of_every_family_has_kernels_to_compile():
    """Each registered family's versions (and each family without versions) map to at least one
    PTX_SIGNATURES row, read with the real compiler's module contents (simulator off)."""
    _need_numba()
    script = textwrap.dedent("""
        import json
        from tilegrad.grading import compiled, families
        out = {}
        for name in families.known():
            fam = families.resolve(name)
            versions = families.versions(fam)
            _, rows = compiled.version_kernels(fam, versions)
            out[name] = {str(v): len(rows[v]) for v in versions}
        print(json.dumps(out))
    """)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0", PYTHONPATH=str(SRC))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(proc.stdout)
    assert {"matmul", "conv2d", "reduce", "optim"} <= set(counts)
    assert len(counts["matmul"]) >= 7
    empty = [f"{f} {v}" for f, per in counts.items() for v, n in per.items() if not n]
    assert not empty, f"versions with no PTX_SIGNATURES row: {empty}"


def test_bench_is_skipped_without_a_gpu():
    (row,) = benchmark.run_stage(families.CATALOG["matmul"], ["v1"], True, gpu=False)
    assert row.status == "skip" and row.summary == benchmark.NO_GPU


def test_gpu_detection_does_not_import_numba():
    proc = subprocess.run([sys.executable, "-c", "import sys; from tilegrad.grading import "
                           "device; n = device.gpu_count(); assert n >= 0; "
                           "print('numba' in sys.modules)"],
                          env=dict(os.environ, PYTHONPATH=str(SRC)), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# ---------------------------------------------------------------- the oracle, end to end

def test_quick_oracle_of_matmul_v2_passes():
    _need_numba()
    proc = _tilegrad("check", "matmul", "--version", "v2", "--quick", "--stages", "oracle")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "oracle  v2" in proc.stdout and "PASS" in proc.stdout and "FAIL" not in proc.stdout


def test_a_planted_off_by_one_fails_and_names_the_case(tmp_path):
    """matmul v1's K loop one short, in a copy of the package: the check fails (exit 1) and
    names the family, version, shape and the first mismatch."""
    _need_numba()
    copy = tmp_path / "tilegrad"
    shutil.copytree(SRC / "tilegrad", copy, ignore=shutil.ignore_patterns("__pycache__"))
    source = copy / "backends" / "cuda" / "matmul.py"
    text = source.read_text()
    planted = text.replace("for p in range(k):", "for p in range(k - 1):", 1)
    assert planted != text, "matmul v1's K loop is no longer written as expected"
    source.write_text(planted)
    proc = _tilegrad("check", "matmul", "--version", "v1", "--quick", "--stages", "oracle",
                     pythonpath=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "FAIL" in out and "matmul v1 matmul float" in out
    assert "M,N,K=" in out and "elements differ; first at" in out and "expected" in out


def test_quick_compile_of_a_family_reports_registers_and_the_sass_mix():
    _need_numba()
    from tilegrad.backends.cuda import ptx
    if ptx.find_ptxas() is None:
        pytest.skip("ptxas not found")
    proc = _tilegrad("check", "pool", "--quick", "--stages", "ptx,sass", "--verbose")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sm_90" in proc.stdout and "sm_80" not in proc.stdout
    assert "max_pool2d_fwd_kernel1_float32:" in proc.stdout and "registers" in proc.stdout
