"""Keras -> TFLite and ONNX, converted for real and validated in the real runtimes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def _convert(cli, samples_dir, tmp_path, target, quantize="none", *extra):
    out = tmp_path / f"m.{quantize}.{'tflite' if target == 'tflite' else 'onnx'}"
    args = ["convert", samples_dir / "digits_keras.keras", "--target", target, "--quantize", quantize,
            "--inputs", samples_dir / "digits_keras_val.npz", "-o", out, "--json", *extra]
    if quantize != "none":
        args += ["--calibration", samples_dir / "digits_keras_calib.npz"]
    return cli(*args), out


@pytest.mark.parametrize("target,quantize", [
    ("tflite", "none"), ("tflite", "fp16"), ("tflite", "dynamic"), ("tflite", "int8"),
    ("onnx", "none"), ("onnx", "fp16"), ("onnx", "dynamic"), ("onnx", "int8"),
])
def test_keras_conversion_passes_parity(cli, samples_dir, digits_converted, tmp_path, target, quantize):
    shared = {("tflite", "none"): "tflite-fp32", ("tflite", "int8"): "tflite-int8", ("onnx", "none"): "onnx-fp32",
              ("onnx", "int8"): "onnx-int8"}.get((target, quantize))
    if shared:  # the same convert command, run once per session for the test files that use it
        out, doc = digits_converted.convert(shared)
    else:
        res, out = _convert(cli, samples_dir, tmp_path, target, quantize)
        assert res.code == 0, res
        doc = res.json
    assert doc["ok"] and doc["schema_version"] == 1
    parity = doc["result"]["parity"]
    assert parity["passed"]
    assert parity["precision"] == ("fp32" if quantize == "none" else quantize)
    assert parity["samples"] == 360 and parity["accuracy"] is not None
    # the digits model is a classifier: top-1 agreement is measured for every precision
    assert parity["outputs"][0]["metrics"]["top1"] >= 0.95
    if quantize in ("int8", "dynamic"):
        assert abs(parity["accuracy"]["delta"]) <= 0.01
    assert out.is_file() and (out.parent / (out.name + ".report.json")).is_file()
    # nothing else left behind (no staging folders or temp files)
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, out.name + ".report.json"])


def test_int8_io_tflite_has_quantized_io(cli, samples_dir, tmp_path):
    res, out = _convert(cli, samples_dir, tmp_path, "tflite", "int8", "--int8-io")
    assert res.code == 0, res
    ins = res.json["result"]["signature"]["inputs"]
    assert ins[0]["dtype"] == "int8" and ins[0]["quantization"]["scale"][0] > 0
    info = cli("inspect", out, "--json").json["result"]
    assert info["precision"] == "int8" and info["signature"]["outputs"][0]["dtype"] == "int8"


def test_keras_model_that_is_not_a_sample(cli, tmp_path):
    """A multi-input functional model, made here, converts to TFLite with names kept."""
    script = f"""
import os; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np
keras.utils.set_random_seed(1)
a = keras.Input((6,), name="features"); b = keras.Input((4, 4, 2), name="patch")
h = keras.layers.Concatenate()([keras.layers.Dense(8, activation="tanh")(a),
                                keras.layers.Flatten()(keras.layers.Conv2D(3, 2)(b))])
m = keras.Model([a, b], [keras.layers.Dense(3, name="score")(h), keras.layers.Dense(1, name="aux")(h)])
m.save(r"{tmp_path / 'two.keras'}")
rng = np.random.default_rng(0)
np.savez(r"{tmp_path / 'two.npz'}", features=rng.normal(size=(32, 6)).astype("float32"),
         patch=rng.normal(size=(32, 4, 4, 2)).astype("float32"))
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    res = cli("convert", tmp_path / "two.keras", "--target", "tflite", "--inputs", tmp_path / "two.npz",
              "-o", tmp_path / "two.tflite", "--json")
    assert res.code == 0, res
    sig = res.json["result"]["signature"]
    assert {t["name"] for t in sig["inputs"]} == {"features", "patch"}
    assert {o["name"] for o in res.json["result"]["parity"]["outputs"]} == {"score", "aux"}
    res = cli("convert", tmp_path / "two.keras", "--target", "onnx", "--inputs", tmp_path / "two.npz",
              "-o", tmp_path / "two.onnx")
    assert res.code == 0, res


def _break_onnx(src: Path, dst: Path) -> None:
    import onnx
    from onnx import numpy_helper

    m = onnx.load_model(str(src))
    biggest = max(m.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = numpy_helper.to_array(biggest).copy()
    arr *= 1.5
    biggest.CopyFrom(numpy_helper.from_array(arr, biggest.name))
    onnx.save_model(m, str(dst))


def _break_tflite(src: Path, dst: Path) -> None:
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.read_model(str(src))
    biggest = max(model.buffers, key=lambda b: 0 if b.data is None else len(b.data))
    w = np.frombuffer(bytes(biggest.data), dtype=np.float32).copy()
    w *= 1.5
    biggest.data = np.frombuffer(w.tobytes(), dtype=np.uint8)
    fbu.write_model(model, str(dst))


@pytest.mark.parametrize("target,breaker", [("onnx", _break_onnx), ("tflite", _break_tflite)])
def test_altered_weights_fail_parity_with_exit_1(cli, samples_dir, tmp_path, target, breaker):
    res, good = _convert(cli, samples_dir, tmp_path, target)
    assert res.code == 0, res
    bad = tmp_path / f"broken.{target}"
    breaker(good, bad)
    res = cli("validate", samples_dir / "digits_keras.keras", bad, "--inputs", samples_dir / "digits_keras_val.npz")
    assert_user_error(res, 1, "parity failed")
    assert "✗" in res.stdout
    ok = cli("validate", samples_dir / "digits_keras.keras", good, "--inputs", samples_dir / "digits_keras_val.npz")
    assert ok.code == 0, ok


def test_validate_without_inputs_warns_about_random_data(cli, samples_dir, tmp_path):
    res, out = _convert(cli, samples_dir, tmp_path, "onnx")
    res = cli("validate", samples_dir / "digits_keras.keras", out)
    assert res.code == 0, res
    assert "random inputs" in res.stderr


def test_bench_reports_the_same_statistics_for_every_runtime(cli, samples_dir, tmp_path):
    _, tfl = _convert(cli, samples_dir, tmp_path, "tflite")
    _, onx = _convert(cli, samples_dir, tmp_path, "onnx")
    res = cli("bench", tfl, onx, samples_dir / "digits_keras.keras", "--iterations", "20", "--warmup", "2",
              "--threads", "1", "--json")
    assert res.code == 0, res
    results = res.json["results"]
    assert [r["runtime"] for r in results] == ["litert", "onnxruntime", "keras"]
    keys = {"median_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "std_ms", "first_inference_ms", "load_ms",
            "size_bytes", "peak_rss_mb", "os_threads", "iterations"}
    for r in results:
        assert keys <= set(r)
        assert r["iterations"] == 20 and 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]


def test_inspect_shows_operators_and_signature(cli, samples_dir, tmp_path):
    _, tfl = _convert(cli, samples_dir, tmp_path, "tflite", "int8")
    res = cli("inspect", tfl, "--json")
    assert res.code == 0, res
    info = res.json["result"]
    assert info["format"] == "tflite" and info["precision"] == "int8"
    assert info["operators"].get("CONV_2D", 0) == 2
    assert info["signature"]["inputs"][0]["name"] == "image"
    text = cli("inspect", tfl)
    assert "CONV_2D" in text.stdout and "image" in text.stdout
