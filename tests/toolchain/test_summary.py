"""Build and convert summaries as a CI log shows them (no TTY, 80/100/120 columns), and
`expect = "refused"` targets. Small ONNX models made here: no framework besides onnxruntime."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error, run_cli

pytestmark = [pytest.mark.slow]

PASSING = "a_linear_model_with_a_long_name"       # MatMul: converts and passes
REFUSED = "relu_only_model_expected_refusal"      # nothing to quantize: refused, as the config expects
FAILING = "relu_only_model_unexpected_failure"    # the same refusal, not expected: fails the build
BUILT_BUT_EXPECTED = "linear_fp16_expected_to_refuse"  # expect = "refused", but fp16 converts fine


def _save(path: Path, nodes, inits, n_in: int, n_out: int) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))


def _models(folder: Path) -> None:
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32), "w")
    _save(folder / "linear.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], [w], 16, 4)
    _save(folder / "relu.onnx", [helper.make_node("Relu", ["x"], ["y"])], [], 16, 16)


def _target(name: str, source: str, quantize: str, expect: str = "") -> str:
    return textwrap.dedent(f"""
        [[models]]
        name = "{name}"
        source = "{source}"
          [[models.targets]]
          target = "onnx"
          quantize = "{quantize}"
        """) + (f'  expect = "{expect}"\n' if expect else "")


def _config(folder: Path) -> Path:
    cfg = folder / "edgekit.toml"
    cfg.write_text('[build]\nout = "out"\njobs = 2\n'
                   + _target(PASSING, "linear.onnx", "none")
                   + _target(REFUSED, "relu.onnx", "dynamic", "refused")
                   + _target(FAILING, "relu.onnx", "dynamic")
                   + _target(BUILT_BUT_EXPECTED, "linear.onnx", "fp16", "refused"))
    return cfg


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("summary")
    _models(folder)
    _config(folder)
    return folder


@pytest.fixture(scope="module")
def first_build(project):
    """One real build at 80 columns, output captured as a CI log captures it (not a TTY)."""
    return run_cli("build", cwd=project, env={"COLUMNS": "80"})


def _ids() -> list[str]:
    return [f"{PASSING}/onnx-fp32", f"{REFUSED}/onnx-dynamic", f"{FAILING}/onnx-dynamic",
            f"{BUILT_BUT_EXPECTED}/onnx-fp16"]


def _check_log(stdout: str, width: int) -> None:
    lines = stdout.splitlines()
    table = [line for line in lines if line.split(" ", 1)[0] in _ids()]
    assert len(table) == 4, stdout  # one line per job, the id whole at the start
    assert all(len(line.rstrip()) <= width for line in table), stdout
    for line in table:
        assert re.search(r"\b(built|cached|failed|refused)\b", line), line
    # the full messages, one per job and each on one line, below the table
    refused = [line for line in lines if line.startswith(f"– {REFUSED}/onnx-dynamic refused as expected: ")]
    assert len(refused) == 1 and "nothing to quantize" in refused[0] and refused[0].endswith("unchanged."), stdout
    failed = [line for line in lines if line.startswith(f"✗ {FAILING}/onnx-dynamic failed (ConversionFailed): ")]
    assert len(failed) == 1 and "nothing to quantize" in failed[0] and "what to do: keep it float" in failed[0]
    unmet = [line for line in lines if line.startswith(f"✗ {BUILT_BUT_EXPECTED}/onnx-fp16 failed (CheckFailed): ")]
    message = unmet[0].split(" · from the last build")[0] if unmet else ""  # a rebuild says the failure is kept
    assert len(unmet) == 1 and message.endswith("remove 'expect' from the target to publish it"), stdout
    assert stdout.index(table[-1]) < stdout.index(refused[0])


def test_summary_at_80_columns_in_a_ci_log(first_build):
    res = first_build
    assert_user_error(res, 1, "2 of 4 jobs failed")
    _check_log(res.stdout, 80)
    # the final error names every failed job whole, on one line; a refusal the config expects is not a failure
    last = [line for line in res.stderr.splitlines() if line.startswith("check failed:")]
    assert len(last) == 1 and f"{FAILING}/onnx-dynamic" in last[0] and f"{BUILT_BUT_EXPECTED}/onnx-fp16" in last[0]
    assert REFUSED not in last[0]
    assert "1 built, 1 refused as expected, 2 failed" in res.stderr


def test_expected_refusal_is_recorded_in_the_manifest(project, first_build):
    man = json.loads((project / "out" / "manifest.json").read_text())
    assert [a["id"] for a in man["artifacts"]] == [f"{PASSING}/onnx-fp32"]
    assert [f["id"] for f in man["expected_refusals"]] == [f"{REFUSED}/onnx-dynamic"]
    assert man["expected_refusals"][0]["error"]["exit_code"] == 3
    assert sorted(f["id"] for f in man["failures"]) == [f"{BUILT_BUT_EXPECTED}/onnx-fp16",
                                                       f"{FAILING}/onnx-dynamic"]
    from xml.etree import ElementTree as ET

    junit = ET.parse(project / "out" / "junit.xml").getroot()
    skipped = junit.findall(".//testcase/skipped")
    assert len(skipped) == 1 and skipped[0].get("message").startswith("refused as expected: nothing to quantize")
    assert junit.get("failures") == "2"
    stages = man["artifacts"][0]["stage_seconds"]
    assert {"spawn", "import_load", "convert", "parity", "host_latency"} <= set(stages)


@pytest.mark.parametrize("columns", [100, 120])
def test_summary_at_wider_columns_adds_detail_not_lines(project, first_build, columns):
    res = run_cli("build", cwd=project, env={"COLUMNS": str(columns)})  # everything cached: quick
    assert res.code == 1, res
    _check_log(res.stdout, columns)
    header = next(line for line in res.stdout.splitlines() if line.startswith("job "))
    assert "top-1" in header  # room for more columns than at 80


def test_a_build_whose_only_problem_is_an_expected_refusal_passes(project, first_build):
    res = run_cli("build", "--only", PASSING, "--only", REFUSED, cwd=project, env={"COLUMNS": "80"})
    assert res.code == 0, res
    assert "1 cached, 1 refused as expected" in res.stderr
    check = run_cli("build", "--check", "--only", PASSING, "--only", REFUSED, cwd=project)
    assert check.code == 0, check


def test_unknown_expectation_names_the_key(tmp_path):
    _models(tmp_path)
    (tmp_path / "edgekit.toml").write_text('[build]\nout = "out"\n'
                                           + _target("m", "linear.onnx", "none", "maybe"))
    res = run_cli("build", cwd=tmp_path)
    assert_user_error(res, 2, "models[0].targets[0].expect", "unknown expectation 'maybe'")


def test_convert_summary_at_80_columns(project, tmp_path):
    out = tmp_path / "a_rather_long_artifact_name_for_the_linear_model.onnx"
    res = run_cli("convert", project / "linear.onnx", "--target", "onnx", "-o", out, env={"COLUMNS": "80"})
    assert res.code == 0, res
    row = [line for line in res.stdout.splitlines() if line.startswith(str(out))]
    assert len(row) == 1 and len(row[0].rstrip()) <= max(80, len(str(out)) + 40), res.stdout
    assert "fp32" in row[0] and "✓" in row[0]
