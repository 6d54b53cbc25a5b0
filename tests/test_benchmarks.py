"""The benchmark code path runs end to end (`benchmarks/run.py --quick`: one tiny model, two
iterations) and writes the documented JSON and Markdown. Nothing here checks a timing:
benchmarks are measured by `make bench`, never asserted by CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.tf
def test_quick_benchmark_writes_json_and_markdown(samples_dir, tmp_path):
    out_json, out_md = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--samples-dir",
                           str(samples_dir), "--out-dir", str(tmp_path / "out"), "--json", str(out_json),
                           "--md", str(out_md)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out_json.read_text())
    assert res["schema_version"] == 1 and res["quick"] is True
    assert {"cpu", "flags", "cores", "versions"} <= set(res["machine"])
    assert res["peak"]["1"]["gflops"] > 0
    model = res["models"]["digits_keras"]
    conv = model["conversions"][0]
    assert conv["ok"] and conv["target"] == "tflite" and Path(conv["path"]).is_file()
    assert model["flops"]["flops"] > 0 and not model["flops"]["uncounted"]
    rows = model["latency"]
    assert {r["who"] for r in rows} == {"edgekit", "baseline"}
    for r in rows:  # every row measured, with the statistics the report prints
        assert "error" not in r, r
        assert {"median_ms", "p90_ms", "min_ms", "std_ms", "load_ms", "iterations"} <= set(r)
        assert r["iterations"] == 2
    acc = {r["label"]: r for r in model["accuracy"]}
    assert acc["tflite fp32"]["agreement"] == 1.0  # the fp32 file predicts what the Keras model does
    goals = res["analysis"]["goals"]
    assert any(g["goal"].startswith("edgekit --help") for g in goals)
    assert all(isinstance(g["met"], bool) for g in goals)
    md = out_md.read_text()
    for heading in ("## Machine", "## Goals", "## Headline", "### digits_keras", "## Toolchain speed"):
        assert heading in md


def test_transformer_section_replaces_only_itself():
    """`run.py --transformer` rewrites its own section of BENCHMARKS.md (between markers) and keeps
    every other section, including hand-written ones a full render would not produce."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import transformer

    row = {"label": "edgekit onnx fp32", "precision": "fp32", "median_ms": 0.5, "size_bytes": 2_000_000,
           "accuracy_delta": 0.0}
    t = {"lengths": {str(n): {"rows": [dict(row, median_ms=n / 100)], "eager_ms": 1.0, "floor_ms": 0.01}
                     for n in transformer.LENGTHS}}
    md = "# edgekit benchmarks\n\n## Cold demo build\nhand-written\n\n## Missing from this run\n\n- nothing\n"
    once = transformer.splice(md, t)
    assert once.index("## Cold demo build") < once.index("## Transformer latency") < once.index("## Missing")
    assert "| edgekit onnx fp32 | fp32 | 0.160 | 0.640 | 1.280 | 2.00 MB | +0.0 pts |" in once
    t["lengths"]["16"]["rows"][0]["median_ms"] = 0.2
    twice = transformer.splice(once, t)
    assert twice.count("## Transformer latency") == 1 and "| 0.200 | 0.640 |" in twice
    assert twice.replace("0.200", "0.160") == once
