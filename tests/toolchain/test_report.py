"""edgekit.report on real parity reports: two tiny ONNX models (one a perturbed copy of the
other) checked with the real parity code in onnxruntime, then rendered as the one-line failure,
the summary cells, JUnit XML and summary.md."""

from __future__ import annotations

from types import SimpleNamespace
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from edgekit.report import failure_line, junit_xml, parity_cells, summary_markdown


def _matmul(path, w):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                          [numpy_helper.from_array(w.astype(np.float32), "w")])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return str(path)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Parity of the model against itself (passes) and against a copy with noisy weights (fails)."""
    from edgekit.loading import open_model
    from edgekit.pipeline import parity_data, tolerance_for
    from edgekit.validators.parity import check

    d = tmp_path_factory.mktemp("report")
    w = np.random.default_rng(0).standard_normal((8, 3))
    ref = open_model(_matmul(d / "ref.onnx", w))
    data, _ = parity_data(ref, None, seed=0)
    out = {}
    for name, weights in (("same", w), ("noisy", w + np.random.default_rng(1).standard_normal((8, 3)))):
        cand = open_model(_matmul(d / f"{name}.onnx", weights))
        out[name] = check(ref, cand, data, precision="fp32", tolerance=tolerance_for("fp32", None)).to_dict()
    return out


def test_failure_line_names_the_output_and_the_failed_criteria(reports):
    assert reports["same"]["passed"] and failure_line(reports["same"]) == ""
    line = failure_line(reports["noisy"])
    assert not reports["noisy"]["passed"]
    assert line.startswith("output 'y': ") and "abs error" in line and "allowed" in line


def test_parity_cells_give_the_verdict_and_the_worst_metrics(reports):
    ok, max_abs, cosine, top1, acc = parity_cells(reports["same"])
    assert "✓" in ok and float(max_abs) == 0.0 and acc == "-"
    bad = parity_cells(reports["noisy"])
    assert "✗" in bad[0] and float(bad[1]) > 0.1 and float(bad[2]) < 1.0
    assert parity_cells(None) == ["-"] * 5


def _build(reports):
    def row(ident, status, parity=None, error=None, arm=None):
        entry = {"parity": {"host": parity, **({"arm64": arm} if arm else {})}, "latency": {}} if parity else {}
        return {"id": ident, "status": status, "entry": entry, "error": error}

    rows = [row("good/onnx-fp32", "built", reports["same"], arm=reports["same"]),
            row("bad\x1b<img src=x>/onnx-fp32", "failed", reports["noisy"],
                {"type": "CheckFailed", "message": "parity failed", "hint": "look"}),
            row("gone/onnx-int8", "refused", None, {"message": "nothing to quantize"})]
    return SimpleNamespace(rows=rows, seconds=1.5, out="out")


def test_junit_has_a_case_per_job_and_arch_and_fails_only_the_failing_one(reports):
    root = ET.fromstring(junit_xml(_build(reports)).split("\n", 1)[1])
    cases = root.findall(".//testcase")
    names = [(c.get("classname"), c.get("name")) for c in cases]
    assert ("edgekit.good", "onnx-fp32 [host]") in names and ("edgekit.good", "onnx-fp32 [arm64]") in names
    assert len(cases) == 4 and root.get("tests") == "4" and root.get("failures") == "1"
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 1 and "\ufffd" in failed[0].get("classname")  # the ESC of the name, replaced
    assert failed[0].find("failure").get("message").startswith("parity failed on host: output 'y':")
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert [c.get("classname") for c in skipped] == ["edgekit.gone"]


def test_summary_markdown_counts_failures_and_shows_names_as_text(reports):
    md = summary_markdown(_build(reports))
    assert md.startswith("## edgekit build: ❌ 1 of 3 failed")
    assert "<img" not in md and "&lt;img src=x&gt;" in md
    assert md.count("\n| ") == 4  # the header and one row per job
    good = SimpleNamespace(rows=_build(reports).rows[:1], seconds=1.0, out="out")
    assert summary_markdown(good).startswith("## edgekit build: ✅ passed")
