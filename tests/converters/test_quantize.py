"""Quantized artifacts edgekit hands out: --quantize auto on non-ONNX targets, the TFLite int8
and dynamic-range files' graphs (float I/O, everything delegated to XNNPACK), and an int8
request the quantizer cannot honour. Real conversions of tiny PyTorch models, real runtimes.
Behaviour only: CI never compares timings."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error, run_cli

pytestmark = [pytest.mark.torch, pytest.mark.slow]

torch = pytest.importorskip("torch")


class GreyCNN(torch.nn.Module):
    """1x8x8 grey image -> 4 logits; the first conv (one input channel) becomes DEPTHWISE_CONV_2D in TFLite."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, image):
        x = torch.relu(self.c1(image))
        x = torch.relu(self.c2(torch.nn.functional.max_pool2d(x, 2)))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def models(tiny_torch):
    out = Path(tempfile.mkdtemp(prefix="edgekit-quant-tests-"))
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cnn = GreyCNN().eval()
    torch.export.save(torch.export.export(cnn, (torch.rand(1, 1, 8, 8),)), out / "cnn.pt2")
    np.savez(out / "cnn_calib.npz", image=rng.random((64, 1, 8, 8), dtype=np.float32))
    np.savez(out / "cnn_val.npz", image=rng.random((48, 1, 8, 8), dtype=np.float32))
    for name in ("lstm.pt2", "lstm_calib.npz"):  # conftest's TinyLSTM (LSTM + attention), shared
        shutil.copy(tiny_torch / name, out / name)
    yield out
    shutil.rmtree(out, ignore_errors=True)


def _ops(path: Path, delegated: bool = False) -> list[str]:
    """The file's operators in graph order; with `delegated`, the XNNPACK partitions the
    interpreter made (one DELEGATE node each, listed after the nodes of the file)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    ops = [d["op_name"] for d in it._get_ops_details()]
    return [o for o in ops if o == "DELEGATE"] if delegated else [o for o in ops if o != "DELEGATE"]


def test_auto_on_tflite_keeps_a_passing_candidate_and_records_the_decision(models, tmp_path):
    out = tmp_path / "cnn.auto.tflite"
    res = run_cli("convert", models / "cnn.pt2", "--target", "tflite", "--quantize", "auto",
                  "--calibration", models / "cnn_calib.npz", "--inputs", models / "cnn_val.npz", "-o", out, "--json")
    assert res.code == 0, res
    result = res.json["result"]
    rows = result["details"]["auto"]
    assert [r["mode"] for r in rows] == ["none", "fp16", "dynamic", "int8"]
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["passed"] and "parity passed" in chosen[0]["reason"]
    passing = [r for r in rows if r["passed"]]
    assert all(r["median_ms"] > 0 and r["size_bytes"] > 0 for r in passing)
    # the rule, checked on the figures the report gives: no faster passing candidate was ignored
    assert chosen[0]["median_ms"] <= min(r["median_ms"] for r in passing) * 1.05 + 1e-9
    assert result["precision"] == chosen[0]["precision"] and result["parity"]["passed"]
    lat = result["details"]["latency_vs_fp32"]
    assert lat["mode"] == chosen[0]["mode"] and lat["fp32_ms"] == rows[0]["median_ms"]
    assert out.stat().st_size == chosen[0]["size_bytes"]
    assert any("--quantize auto chose" in n for n in result["notes"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, out.name + ".report.json"])


def test_torch_int8_tflite_has_float_io_and_int8_io_on_request(models, tmp_path):
    from edgekit.converters.tflite_edit import float_io

    out = tmp_path / "cnn.int8.tflite"
    res = run_cli("convert", models / "cnn.pt2", "--target", "tflite", "--quantize", "int8",
                  "--calibration", models / "cnn_calib.npz", "--inputs", models / "cnn_val.npz", "-o", out, "--json")
    assert res.code == 0, res
    sig = res.json["result"]["signature"]
    assert sig["inputs"][0]["dtype"] == "float32" and sig["outputs"][0]["dtype"] == "float32"
    ops = _ops(out)
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE", ops
    assert len(_ops(out, delegated=True)) == 1  # one XNNPACK partition: the (de)quantization runs in it
    assert res.json["result"]["precision"] == "int8" and res.json["result"]["parity"]["passed"]
    # an already float-faced file is left alone
    assert float_io(out.read_bytes())[1] == []

    raw = tmp_path / "cnn.int8io.tflite"
    res = run_cli("convert", models / "cnn.pt2", "--target", "tflite", "--quantize", "int8", "--int8-io",
                  "--calibration", models / "cnn_calib.npz", "--inputs", models / "cnn_val.npz", "-o", raw, "--json")
    assert res.code == 0, res
    assert res.json["result"]["signature"]["inputs"][0]["dtype"] == "int8"
    raw_ops = _ops(raw)  # litert-torch's own graph: no (de)quantization at its edges
    assert raw_ops[0] != "QUANTIZE" and raw_ops[-1] != "DEQUANTIZE" and len(raw_ops) == len(ops) - 2, raw_ops


def test_torch_dynamic_tflite_is_one_xnnpack_partition(models, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "cnn.dyn.tflite"
    res = run_cli("convert", models / "cnn.pt2", "--target", "tflite", "--quantize", "dynamic",
                  "--inputs", models / "cnn_val.npz", "-o", out, "--json")
    assert res.code == 0, res
    assert res.json["result"]["parity"]["passed"]
    it = Interpreter(model_path=str(out))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    dw = [d for d in it._get_ops_details() if d["op_name"] == "DEPTHWISE_CONV_2D"]
    conv = [d for d in it._get_ops_details() if d["op_name"] == "CONV_2D"]
    assert dw and all(tensors[int(d["inputs"][1])]["dtype"] == np.float32 for d in dw)
    assert conv and all(tensors[int(d["inputs"][1])]["dtype"] == np.int8 for d in conv)  # still dynamic-range
    assert len(_ops(out, delegated=True)) == 1  # before: the hybrid depthwise split the graph in two
    assert any("depthwise" in n for n in res.json["result"]["notes"])


def test_int8_that_quantizes_almost_nothing_fails_and_auto_keeps_fp32(models, tmp_path):
    out = tmp_path / "lstm.int8.pte"
    res = run_cli("convert", models / "lstm.pt2", "--target", "executorch", "--quantize", "int8",
                  "--calibration", models / "lstm_calib.npz", "-o", out)
    assert_user_error(res, 3, "left most of the model float", "lstm", "--quantize auto")
    assert not out.exists() and not list(tmp_path.iterdir())
    res = run_cli("convert", models / "lstm.pt2", "--target", "tflite", "--quantize", "int8",
                  "--calibration", models / "lstm_calib.npz", "-o", tmp_path / "lstm.int8.tflite")
    assert_user_error(res, 3, "int8 quantization for tflite left most of the model float", "lstm")
    assert not list(tmp_path.iterdir())

    auto = tmp_path / "lstm.auto.pte"
    res = run_cli("convert", models / "lstm.pt2", "--target", "executorch", "--quantize", "auto",
                  "--calibration", models / "lstm_calib.npz", "-o", auto, "--json")
    assert res.code == 0, res
    rows = {r["mode"]: r for r in res.json["result"]["details"]["auto"]}
    assert set(rows) == {"none", "dynamic", "int8"}
    assert rows["none"]["chosen"] and rows["none"]["passed"]
    for mode in ("dynamic", "int8"):  # XNNPACKQuantizer leaves the LSTM float, static or dynamic
        assert not rows[mode]["passed"] and "left most of the model float" in rows[mode]["reason"]
    assert res.json["result"]["precision"] == "fp32"
