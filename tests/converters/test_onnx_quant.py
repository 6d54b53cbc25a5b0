"""edgekit.converters.onnx_quant.finish: the one "float ONNX, then quantize" step every ONNX
path ends with (Keras/TF, PyTorch, scikit-learn, ONNX and, through them, ORT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.converters import onnx_quant
from edgekit.converters.registry import ConvertRequest


def _write_mlp(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
                           helper.make_node("MatMul", ["r", "w2"], ["y"])], "mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                          [numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "w1"),
                           numpy_helper.from_array(rng.standard_normal((32, 4)).astype(np.float32), "w2")])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def test_none_writes_the_float_model_as_the_artifact(tmp_path):
    out = tmp_path / "m.onnx"
    res = onnx_quant.finish(ConvertRequest("onnx", "none"), out, _write_mlp, {"converter": "test"}, ["a note"])
    assert res.path == out and res.precision == "fp32" and res.notes == ["a note"] and out.is_file()
    assert "latency_vs_fp32" not in res.details  # nothing to compare with
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize("mode", ["fp16", "dynamic"])
def test_quantized_result_carries_the_latency_report(tmp_path, mode):
    out = tmp_path / "q.onnx"
    details = {"converter": "test"}
    res = onnx_quant.finish(ConvertRequest("onnx", mode), out, _write_mlp, details)
    assert res.precision == mode and res.details is details and details["converter"] == "test"
    lat = details["latency_vs_fp32"]
    assert lat["mode"] == mode and lat["fp32_ms"] > 0 and lat["quantized_ms"] > 0
    assert lat["quantized_size_bytes"] < lat["fp32_size_bytes"]
    assert lat["slower"] == (lat["ratio"] > onnx_quant.SLOWER_LIMIT)
    assert bool(details.get("warnings")) == lat["slower"]
    assert any("latency on this CPU" in n for n in res.notes)
    assert [p.name for p in tmp_path.iterdir()] == ["q.onnx"]  # the float model was temporary


def test_quantization_table_reads_the_report():
    from edgekit.report import quantization_tables

    details = {"latency_vs_fp32": {"mode": "dynamic", "fp32_ms": 1.0, "quantized_ms": 2.0, "ratio": 2.0,
                                   "fp32_size_bytes": 4000, "quantized_size_bytes": 1000}}
    (table,) = quantization_tables(details)
    assert table.title.startswith("quantized vs fp32") and table.row_count == 1
    assert quantization_tables({}) == []
