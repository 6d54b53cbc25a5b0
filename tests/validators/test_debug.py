"""Issue #15: `edgekit debug` names the layer where an artifact diverges, and `--keep-float`
repairs an int8 ONNX file by keeping the sensitive layers float.

The model is samples/outlier_mlp.py (numpy + onnx, no framework): a 6-layer MLP whose third
layer writes one channel ~1000x larger than the others. Full int8 collapses it; keeping fc3,
its ReLU and fc4 float passes the int8 preset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES, assert_user_error, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("outlier")
    subprocess.run([sys.executable, str(SAMPLES / "make_samples.py"), "outlier_mlp"], check=True,
                   env={**os.environ, "EDGEKIT_SAMPLES_DIR": str(out)})
    return out


def _convert(mlp: Path, out: str, *extra):
    return run_cli("convert", mlp / "outlier_mlp.onnx", "--target", "onnx", "--quantize", "int8",
                   "--calibration", mlp / "outlier_mlp_calib.npz", "--inputs", mlp / "outlier_mlp_val.npz",
                   "-o", mlp / out, *extra)


@pytest.fixture(scope="module")
def plain_int8(mlp):
    """Full int8, kept although it fails (one conversion shared by the tests below)."""
    return _convert(mlp, "full.int8.onnx", "--keep-failed"), mlp / "full.int8.onnx"


def test_plain_int8_fails_and_points_to_debug(plain_int8, mlp):
    res, artifact = plain_int8
    assert_user_error(res, 1, "parity failed", f"edgekit debug {mlp / 'outlier_mlp.onnx'} {artifact}",
                      "--keep-float auto")


def test_debug_names_the_outlier_layer(plain_int8, mlp):
    res = run_cli("debug", mlp / "outlier_mlp.onnx", plain_int8[1], "--inputs", mlp / "outlier_mlp_val.npz", "--json")
    assert res.code == 0, res
    doc = res.json["result"]
    first = doc["first_divergence"]
    assert (first["source_layer"], first["node"]) == ("relu3", "fc3"), first
    assert first["scale"] > 1.0  # the outlier's range: the other channels get one or two steps
    rows = {r["source_layer"]: r for r in doc["layers"]}
    assert rows["relu2"]["snr_db"] > 30 and rows["relu4"]["cosine"] < 0.9  # fine before, broken after
    assert all(r["weight_snr_db"] > 30 for r in doc["layers"] if "weight_snr_db" in r)  # activations, not weights
    assert {u["tensor"] for u in doc["unmatched"]} == {"fc1", "fc2", "fc3", "fc4", "fc5"}  # fused, not guessed
    text = run_cli("debug", mlp / "outlier_mlp.onnx", plain_int8[1], "--inputs", mlp / "outlier_mlp_val.npz")
    assert text.code == 0 and "first divergence: relu3 (node fc3" in text.stdout, text


@pytest.mark.parametrize("change", ["scaled", "nan"])
def test_debug_finds_an_altered_layer_in_an_fp32_file(mlp, tmp_path, change):
    """A converter bug or a corrupted weight: fc5's weights scaled by 1.2, or one of them NaN."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model(str(mlp / "outlier_mlp.onnx"))
    for init in model.graph.initializer:
        if init.name == "fc5.weight":
            w = numpy_helper.to_array(init).copy()
            if change == "nan":
                w[0, 0] = np.nan
            else:
                w *= 1.2
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save_model(model, str(tmp_path / "altered.onnx"))
    res = run_cli("debug", mlp / "outlier_mlp.onnx", tmp_path / "altered.onnx", "--inputs",
                  mlp / "outlier_mlp_val.npz", "--json")
    assert res.code == 0, res
    doc = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))["result"]
    assert doc["precision"] == "fp32"
    assert doc["first_divergence"]["source_layer"] == "fc5", doc["first_divergence"]  # fp32: nothing is fused
    assert all(r["snr_db"] >= 100 for r in doc["layers"] if r["source_layer"] in ("fc3", "relu4", "fc4"))
    if change == "nan":
        assert doc["first_divergence"]["snr_db"] is None
        assert not next(r for r in doc["layers"] if r["source_layer"] == "fc5")["finite"]


def test_keep_float_auto_repairs_int8(mlp):
    res = _convert(mlp, "mixed.int8.onnx", "--keep-float", "auto")
    assert res.code == 0, res
    doc = json.loads((mlp / "mixed.int8.onnx.report.json").read_text())
    kept = doc["result"]["details"]["keep_float"]
    assert "fc3" in kept["nodes"] and len(kept["nodes"]) <= kept["of_nodes"] / 3, kept
    assert doc["result"]["parity"]["passed"]


def test_keep_float_unknown_name_lists_nearest(mlp):
    res = _convert(mlp, "typo.onnx", "--keep-float", "fc33")
    assert_user_error(res, 2, "no layer named 'fc33'", "nearest names", "fc3")
    assert not (mlp / "typo.onnx").exists()


def test_keep_float_only_for_int8(mlp):
    res = run_cli("convert", mlp / "outlier_mlp.onnx", "--target", "onnx", "--keep-float", "auto")
    assert_user_error(res, 2, "--keep-float applies to --quantize int8")


def test_debug_refuses_files_whose_inputs_differ(mlp, tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    other = tmp_path / "other.onnx"
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(other))
    res = run_cli("debug", mlp / "outlier_mlp.onnx", other)
    assert_user_error(res, 2, "cannot compare layers", "input 'x'", "[Nx16]", "[1x4]")


def test_keep_float_in_edgekit_toml_only_for_int8(mlp, tmp_path):
    cfg = tmp_path / "edgekit.toml"
    cfg.write_text(f'[[models]]\nname = "m"\nsource = "{mlp / "outlier_mlp.onnx"}"\n\n'
                   '  [[models.targets]]\n  target = "onnx"\n  keep_float = "auto"\n')
    assert_user_error(run_cli("build", cfg, "--check"), 2, "keep_float applies to", 'quantize = "int8"')


KERAS_MLP = """
import sys
import keras
import numpy as np
sys.path.insert(0, sys.argv[2])
import outlier_mlp

layers = outlier_mlp.weights(np.random.default_rng(outlier_mlp.SEED))
h = inp = keras.Input((16,), name="x")
for k, (w, b) in enumerate(layers):
    dense = keras.layers.Dense(w.shape[1], activation="relu" if k < len(layers) - 1 else None, name=f"fc{k + 1}")
    h = dense(h)
    dense.set_weights([w, b])
keras.Model(inp, h).save(sys.argv[1])
"""


@pytest.fixture(scope="module")
def keras_mlp(mlp) -> Path:
    pytest.importorskip("keras")
    subprocess.run([sys.executable, "-c", KERAS_MLP, str(mlp / "mlp.keras"), str(SAMPLES)], check=True)
    return mlp / "mlp.keras"


@pytest.mark.tf
def test_debug_names_the_outlier_layer_in_tflite_int8(mlp, keras_mlp):
    """The same MLP as a Keras model: TFLite int8 fails, and debug names fc3 from the interpreter's
    intermediate tensors (compared with the fp32 TFLite conversion of the source)."""
    art = mlp / "mlp.int8.tflite"
    res = run_cli("convert", mlp / "mlp.keras", "--target", "tflite", "--quantize", "int8", "--calibration",
                  mlp / "outlier_mlp_calib.npz", "--inputs", mlp / "outlier_mlp_val.npz", "-o", art, "--keep-failed")
    assert_user_error(res, 1, "parity failed", f"edgekit debug {mlp / 'mlp.keras'} {art}")
    res = run_cli("debug", mlp / "mlp.keras", art, "--inputs", mlp / "outlier_mlp_val.npz", "--json")
    assert res.code == 0, res
    doc = res.json["result"]
    assert "/fc3" in doc["first_divergence"]["source_layer"].split(";")[0], doc["first_divergence"]
    assert doc["first_divergence"]["scale"] > 1.0
    before = [r for r in doc["layers"] if "/fc2" in r["source_layer"].split(";")[0]]
    assert before and before[0]["snr_db"] > 25


@pytest.mark.tf
def test_keep_float_auto_repairs_tflite_int8(mlp, keras_mlp):
    out = mlp / "mlp.mixed.tflite"
    res = run_cli("convert", keras_mlp, "--target", "tflite", "--quantize", "int8", "--calibration",
                  mlp / "outlier_mlp_calib.npz", "--inputs", mlp / "outlier_mlp_val.npz", "-o", out,
                  "--keep-float", "auto")
    assert res.code == 0, res
    kept = json.loads(out.with_name(out.name + ".report.json").read_text())["result"]["details"]["keep_float"]
    assert any("/fc3" in n.split(";")[0] for n in kept["nodes"]) and len(kept["nodes"]) <= kept["of_nodes"] / 3, kept
    res = run_cli("convert", keras_mlp, "--target", "tflite", "--quantize", "int8", "--calibration",
                  mlp / "outlier_mlp_calib.npz", "-o", mlp / "typo.tflite", "--keep-float", "functional_1/fc3")
    assert_user_error(res, 2, "no layer named", "nearest names", "functional_1/fc3_1/MatMul")


@pytest.mark.tf
def test_debug_finds_an_altered_layer_in_a_tflite_file(mlp, keras_mlp, tmp_path):
    """The TFLite artifact of a copy of the Keras model whose fc5 weights were scaled by 1.2."""
    import keras

    model = keras.models.load_model(keras_mlp)
    w, b = model.get_layer("fc5").get_weights()
    model.get_layer("fc5").set_weights([w * 1.2, b])
    model.save(tmp_path / "altered.keras")
    art = tmp_path / "altered.tflite"
    assert run_cli("convert", tmp_path / "altered.keras", "--target", "tflite", "-o", art, "--no-validate").code == 0
    res = run_cli("debug", keras_mlp, art, "--inputs", mlp / "outlier_mlp_val.npz", "--json")
    assert res.code == 0, res
    doc = res.json["result"]
    assert "/fc5" in doc["first_divergence"]["source_layer"].split(";")[0], doc["first_divergence"]
    assert all(r["snr_db"] > 100 for r in doc["layers"] if "/fc4" in r["source_layer"].split(";")[0])


@pytest.fixture(scope="module")
def torch_mlp(mlp) -> Path:
    """The outlier MLP as a torch.export program (modules fc1..fc6), and a copy with fc5's weights x1.2."""
    pytest.importorskip("executorch")
    subprocess.run([sys.executable, str(SAMPLES / "outlier_mlp.py"), "--torch", str(mlp / "mlp.pt2"),
                    str(mlp / "mlp_fc5.pt2")], check=True, cwd=SAMPLES)
    return mlp / "mlp.pt2"


@pytest.mark.torch
def test_debug_finds_an_altered_layer_in_an_executorch_file(mlp, torch_mlp):
    """The .pte is built from the altered copy; debug reads every XNNPACK node's output of that
    file on the ExecuTorch runtime and names fc5 (its nn.Module path)."""
    art = mlp / "fc5.pte"
    assert run_cli("convert", mlp / "mlp_fc5.pt2", "--target", "executorch", "-o", art, "--no-validate").code == 0
    res = run_cli("debug", torch_mlp, art, "--inputs", mlp / "outlier_mlp_val.npz", "--json")
    assert res.code == 0, res
    doc = res.json["result"]
    assert doc["first_divergence"]["source_layer"] == "fc5", doc["first_divergence"]
    rows = {r["source_layer"]: r for r in doc["layers"]}
    assert list(rows) == ["fc1", "fc2", "fc3", "fc4", "fc5", "fc6"]  # ReLUs fused into the layer before
    assert rows["fc4"]["snr_db"] > 100 and rows["fc5"]["snr_db"] < 30


@pytest.mark.torch
def test_debug_names_the_outlier_layer_in_executorch_int8(mlp, torch_mlp):
    art = mlp / "mlp.int8.pte"
    res = run_cli("convert", torch_mlp, "--target", "executorch", "--quantize", "int8", "--calibration",
                  mlp / "outlier_mlp_calib.npz", "--inputs", mlp / "outlier_mlp_val.npz", "-o", art, "--keep-failed")
    assert_user_error(res, 1, "parity failed", f"edgekit debug {torch_mlp} {art}")
    res = run_cli("debug", torch_mlp, art, "--inputs", mlp / "outlier_mlp_val.npz", "--json")
    assert res.code == 0, res
    doc = res.json["result"]
    first = doc["first_divergence"]
    assert (first["source_layer"], first["op"]) == ("fc3", "linear+relu") and first["scale"] > 1.0, first
    assert doc["layers"][0]["source_layer"] == "input" and doc["worst"][0]["source_layer"] == "fc3"
    res = run_cli("validate", torch_mlp, art, "--inputs", mlp / "outlier_mlp_val.npz", "--explain")
    assert_user_error(res, 1, "parity failed", f"edgekit debug {torch_mlp} {art}")
    assert "first divergence: fc3" in res.stdout and "not measured for this format" in res.stdout, res


@pytest.mark.torch
def test_keep_float_auto_repairs_executorch_int8(mlp, torch_mlp):
    """Full int8 fails (test above); auto keeps fc3 and the layer that reads it float and passes."""
    out = mlp / "mlp.mixed.pte"
    res = run_cli("convert", torch_mlp, "--target", "executorch", "--quantize", "int8", "--calibration",
                  mlp / "outlier_mlp_calib.npz", "--inputs", mlp / "outlier_mlp_val.npz", "-o", out,
                  "--keep-float", "auto")
    assert res.code == 0, res
    doc = json.loads(out.with_name(out.name + ".report.json").read_text())["result"]
    kept = doc["details"]["keep_float"]
    assert kept["nodes"] == ["fc3", "fc4"] and kept["of_nodes"] == 6, kept
    assert doc["parity"]["passed"] and out.stat().st_size > kept["full_int8_size_bytes"]
    res = run_cli("convert", torch_mlp, "--target", "executorch", "--quantize", "int8", "--calibration",
                  mlp / "outlier_mlp_calib.npz", "-o", mlp / "typo.pte", "--keep-float", "fc33")
    assert_user_error(res, 2, "no layer named 'fc33'", "nearest names", "fc3")


@pytest.mark.torch
def test_keep_float_auto_repairs_torch_tflite_int8(mlp, torch_mlp):
    """torch→TFLite (litert-torch PT2E): full int8 fails; auto ranks modules by their loss in the
    PT2E-quantized module and keeps fc3, fc4 float; the .tflite passes."""
    args = ("convert", torch_mlp, "--target", "tflite", "--quantize", "int8", "--calibration",
            mlp / "outlier_mlp_calib.npz", "--inputs", mlp / "outlier_mlp_val.npz")
    assert_user_error(run_cli(*args, "-o", mlp / "torch.int8.tflite"), 1, "parity failed", "--keep-float auto")
    out = mlp / "torch.mixed.tflite"
    res = run_cli(*args, "-o", out, "--keep-float", "auto")
    assert res.code == 0, res
    doc = json.loads(out.with_name(out.name + ".report.json").read_text())["result"]
    assert doc["details"]["keep_float"]["nodes"] == ["fc3", "fc4"] and doc["parity"]["passed"], doc["details"]


def test_quantize_auto_tries_the_mixed_candidate(mlp):
    """Full int8 fails, so auto also tries int8 with --keep-float auto, and reports what the float
    layers cost against the (failed, but timed) full int8 file."""
    out = mlp / "auto.onnx"
    res = run_cli("convert", mlp / "outlier_mlp.onnx", "--target", "onnx", "--quantize", "auto", "--calibration",
                  mlp / "outlier_mlp_calib.npz", "--inputs", mlp / "outlier_mlp_val.npz", "-o", out)
    assert res.code == 0, res
    rows = {r["mode"]: r for r in json.loads(out.with_name(out.name + ".report.json").read_text())
            ["result"]["details"]["auto"]}
    mixed, full = rows["int8+keep-float"], rows["int8"]
    assert mixed["passed"] and not full["passed"] and "fc3" in mixed["keep_float"], mixed
    cost = mixed["vs_full_int8"]
    assert cost["full_int8_ms"] == full["median_ms"] and cost["size_bytes"] == mixed["size_bytes"] - full["size_bytes"] > 0
    assert "vs full int8" in mixed["reason"] and "int8+keep-float" in res.stdout


def test_explain_prints_the_findings_of_a_failing_conversion(mlp):
    """--explain: debug's table and findings without a second command, and how much of the worst
    layer's error comes from its weights versus its activation ranges (measured on edited copies)."""
    out = mlp / "explained.int8.onnx"
    res = _convert(mlp, out.name, "--explain", "--keep-failed")
    assert_user_error(res, 1, "parity failed")
    assert "first divergence: relu3 (node fc3" in res.stdout and "layers that lose the most" in res.stdout, res
    assert "weights vs activations at relu3 (node fc3)" in res.stdout and "activation ranges cost the most" in res.stdout
    split = json.loads(out.with_name(out.name + ".report.json").read_text())["result"]["explain"]["split"]
    assert split["float_weights_snr_db"] < 12 < 30 < split["float_activations_snr_db"], split
