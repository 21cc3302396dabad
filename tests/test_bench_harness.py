"""The benchmark harness itself: FLOP and byte formulas on small cases counted by hand,
validation that rejects wrong and non-finite results, timing statistics, the JSON schema and the
Markdown file's sections."""
import itertools
import json

import numpy as np
import pytest

import tilegrad as tg
from tilegrad.bench import formulas, harness, report


def test_matmul_formula_counts_every_multiply_add():
    m, n, k = 2, 3, 4
    macs = sum(1 for _ in itertools.product(range(m), range(n), range(k)))
    assert formulas.matmul(m, n, k) == (2 * macs, (m * k + k * n + m * n) * 4)
    assert formulas.matmul(m, n, k, itemsize=8, batch=5)[1] == 5 * (8 + 12 + 6) * 8


@pytest.mark.parametrize("h,w,k,stride,pad", [(5, 4, 3, 2, 1), (7, 9, 3, 1, 0), (6, 6, 2, 2, 0)])
def test_conv2d_formula_against_a_counted_loop_and_the_backend(h, w, k, stride, pad):
    n, c, f = 2, 3, 5
    ho, wo = formulas.conv2d_out(h, w, k, k, stride, pad)
    be = tg.device("cpu").backend
    x, wt = np.ones((n, c, h, w)), np.ones((f, c, k, k))
    assert be.conv2d_fwd(x, wt, None, (stride, stride), (pad, pad)).shape == (n, f, ho, wo)
    macs = 0   # one multiply-add per (image, filter, output pixel, channel, tap), padding included
    for _ in itertools.product(range(n), range(f), range(ho), range(wo), range(c), range(k),
                               range(k)):
        macs += 1
    flops, nbytes = formulas.conv2d(n, c, h, w, f, k, k, stride, pad)
    assert flops == 2 * macs
    assert nbytes == (x.size + wt.size + n * f * ho * wo) * 4


def test_memory_bound_formulas_on_small_cases():
    # 1x1x4x4 input, kernel 2: 4 outputs of 4 bytes each plus their int64 argmax.
    assert formulas.max_pool2d(1, 1, 4, 4, 2) == (0, 16 * 4 + 4 * (4 + 8))
    assert formulas.relu(10) == (10, 80) and formulas.relu(10, backward=True) == (10, 120)
    assert formulas.cross_entropy(3, 5)[1] == (15 + 3) * 4 + 3 * 8
    assert formulas.adam(100) == (1200, 2800)


def test_validate_accepts_close_and_rejects_wrong_nan_inf_and_shape():
    ref = np.random.default_rng(0).standard_normal((3, 7))
    harness.validate("ok", ref * (1 + 1e-6), ref)
    harness.validate("tuple", (ref, ref[0]), [ref, ref[0]])
    wrong = ref.copy()
    wrong[2, 5] += 0.1
    with pytest.raises(harness.ValidationError, match=r"wrong: output 0: 1 of 21 .*\(2, 5\)"):
        harness.validate("wrong", wrong, ref)
    for bad in (np.nan, np.inf):
        poisoned = ref.copy()
        poisoned[0, 0] = bad
        with pytest.raises(harness.ValidationError, match="NaN or infinity"):
            harness.validate("bad", poisoned, ref)
    with pytest.raises(harness.ValidationError, match="shape"):
        harness.validate("shape", ref.T, ref)
    with pytest.raises(harness.ValidationError, match="2 outputs"):
        harness.validate("count", (ref, ref), ref)


def test_timing_statistics_and_measure_call_counts():
    t = harness.Timing([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (t.median, t.p10, t.p90) == (3.0, 1.0, 5.0)
    calls = []
    timing = harness.measure(lambda: calls.append(1), warmup=3, repeats=4)
    assert len(calls) == 7 and len(timing.samples) == 4
    calls.clear()   # very short calls are repeated until they add up, at most 10x the repeats
    timing = harness.measure(lambda: calls.append(1), warmup=0, repeats=2, min_seconds=10.0)
    assert len(timing.samples) == 20


def _doc():
    row = dict(group="matmul", name="mm", shape="2x3x4", flops=48, bytes=104, bound="compute",
               device="cpu",
               tilegrad={"median_s": 1e-3, "p10_s": 1e-3, "p90_s": 2e-3, "repeats": 3},
               torch={"median_s": 2e-3, "p10_s": 1e-3, "p90_s": 3e-3, "repeats": 3},
               unit="GFLOP/s", tilegrad_rate=4.8e-5, torch_rate=2.4e-5, ratio=0.5,
               peak_fraction=1e-6)
    skipped = dict(group="conv2d", name="c", shape="s", flops=1, bytes=1, bound="compute",
                   device="cpu", skipped="tilegrad's result is wrong, not timed: ...")
    peaks = {"gflops": 50.0, "gflops_by": "x", "gbps": 10.0, "gbps_by": "y"}
    prof = {"mlp": {"matmul": 0.002, "binary:add": 0.001, "_total": 0.004, "_python": 0.001}}
    return report.document(report.metadata(None, "cpu"), peaks, [row, skipped], prof, ["note"])


def test_json_document_schema(tmp_path):
    doc = _doc()
    path = tmp_path / "r.json"
    report.write_json(doc, path)
    report.check_document(json.loads(path.read_text()))
    for breaking in (lambda d: d.pop("peaks"), lambda d: d["meta"].pop("git_commit"),
                     lambda d: d["rows"][0].pop("ratio"),
                     lambda d: d["rows"][0]["tilegrad"].pop("p90_s"),
                     lambda d: d["rows"][1].pop("group"), lambda d: d.update(schema="other/2")):
        bad = json.loads(json.dumps(doc))
        breaking(bad)
        with pytest.raises(ValueError, match="bench JSON"):
            report.check_document(bad)


def test_markdown_names_rows_skips_and_where_the_time_goes():
    md = report.markdown(_doc())
    assert "| matmul | mm | 2x3x4 | 1.000 (1.000-2.000) | 2.000 (1.000-3.000) |" in md
    assert "| 0.50 |" in md and "skipped: tilegrad's result is wrong" in md
    assert "| matmul | 2.00 | 50% |" in md and "| framework | 1.00 | 25% |" in md
    assert "Not measured: note." in md


def test_results_md_keeps_other_devices_sections(tmp_path):
    path = tmp_path / "RESULTS.md"
    report.update_results_md(path, "cpu", "first cpu table\n")
    report.update_results_md(path, "cuda", "gpu table\n")
    report.update_results_md(path, "cpu", "second cpu table\n")
    text = path.read_text()
    assert "second cpu table" in text and "gpu table" in text and "first cpu table" not in text
    assert text.index("## cpu") < text.index("## cuda")


def test_bench_command_end_to_end_at_tiny_sizes(tmp_path, capsys):
    from tilegrad.cli import main
    results = tmp_path / "RESULTS.md"
    assert main(["bench", "all", "--sizes", "tiny", "--repeats", "1", "--warmup", "0",
                 "--out", str(tmp_path / "out"), "--results-md", str(results)]) == 0
    doc = report.check_document(json.loads((tmp_path / "out" / "cpu" / "results.json").read_text()))
    groups = {r["group"] for r in doc["rows"]}
    assert {"matmul", "conv2d", "lstm", "max_pool2d", "relu", "adam", "train"} <= groups
    assert all("skipped" not in r for r in doc["rows"]), [r for r in doc["rows"] if "skipped" in r]
    assert set(doc["profiles"]) == {"mlp", "cnn", "lm"}
    assert doc["meta"]["cpu_cores"] and doc["peaks"]["gflops"] > 0
    assert (tmp_path / "out" / "cpu" / "ratios.png").read_bytes()[:4] == b"\x89PNG"
    assert results.read_text().startswith("# Benchmark results") and "## cpu" in results.read_text()
    assert "[1/" in capsys.readouterr().err       # the progress line


def test_bench_on_an_unavailable_device_says_why(tmp_path, capsys, disabled_cuda):
    from tilegrad.cli import main
    assert main(["bench", "kernels", "--device", "cuda", "--out", str(tmp_path)]) == 1
    assert disabled_cuda.reason in capsys.readouterr().err


def test_gpu_check_goals_read_the_bench_document():
    """bench/gpu_check.py turns a bench document into the project's goals: speed against PyTorch
    for the 4096 matmul, the MLP's narrow fc1 and the CNN convolutions, the copy bandwidth for
    memory-bound kernels."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)

    def row(group, name, ours, theirs, rate=None):
        return {"group": group, "name": name, "tilegrad": {"median_s": ours},
                "torch": {"median_s": theirs}, "tilegrad_rate": rate}
    doc = {"peaks": {"gbps": 1000.0, "gflops": 1.0},
           "rows": [row("matmul", "matmul 4096x4096 @ 4096x4096 (square)", 2.0, 1.5),
                    row("matmul", "matmul 1024x1024 @ 1024x1024 (square)", 9.0, 1.0),
                    row("matmul", "matmul 64x784 @ 128x784^T (MLP fc1 fwd)", 3.0, 1.0),
                    row("conv2d", "conv2d fwd 64x1x28x28 * 64x1x3x3 pad 1 (CNN conv1)", 4.0, 1.0),
                    row("relu", "relu fwd 64x64x28x28 (CNN block1)", 1.0, 1.0, rate=800.0),
                    {"group": "relu", "name": "relu bwd", "skipped": "wrong result"}]}
    goals = gc.goals(doc)
    assert [(g[2], g[4]) for g in goals] == [("75% of PyTorch", "yes"),
                                             ("3.00x PyTorch's time", "no"), ("25% of cuDNN", "no"),
                                             ("800 GB/s = 80% of copy", "yes"),
                                             ("not measured: wrong result", "no")]
