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
