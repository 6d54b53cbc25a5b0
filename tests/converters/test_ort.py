"""--target ort (ONNX Runtime Mobile's ORT format, edgekit.converters.ort): from ONNX, Keras and
PyTorch sources, every ONNX precision, parity on the host and on emulated arm64."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error, run_cli


def _mlp_onnx(path: Path) -> None:
    """x[N,16] -> MatMul 16x32 -> Relu -> MatMul 32x4: enough weights for every precision."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32) / 4, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((32, 4)).astype(np.float32) / 4, "w2")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
                           helper.make_node("MatMul", ["r", "w2"], ["y"])], "mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w1, w2])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ort")
    _mlp_onnx(d / "mlp.onnx")
    rng = np.random.default_rng(1)
    np.savez(d / "val.npz", x=rng.standard_normal((64, 16)).astype(np.float32))
    np.savez(d / "calib.npz", x=rng.standard_normal((64, 16)).astype(np.float32))
    return d


@pytest.mark.parametrize("quantize", ["none", "fp16", "dynamic", "int8"])
def test_onnx_to_ort_every_precision(mlp, tmp_path, quantize):
    out = tmp_path / "m.ort"
    res = run_cli("convert", mlp / "mlp.onnx", "--target", "ort", "--quantize", quantize, "--inputs", mlp / "val.npz",
                  "--calibration", mlp / "calib.npz", "-o", out, "--json")
    assert res.code == 0, res
    result = res.json["result"]
    assert result["parity"]["passed"] and result["precision"] == ("fp32" if quantize == "none" else quantize)
    assert out.read_bytes()[4:8] == b"ORTM"
    details = result["details"]
    assert details["ort_optimization_style"] == "fixed"
    config = details["required_operators_config"]
    assert "ai.onnx" in config and "MatMul" in config  # what a reduced onnxruntime build must keep
    if quantize != "none":  # the shared ONNX step timed the quantized model beside fp32
        assert details["latency_vs_fp32"]["mode"] == quantize
    insp = run_cli("inspect", out, "--json")
    assert insp.code == 0, insp
    assert insp.json["result"]["format"] == "ort"
    assert sum(insp.json["result"]["operators"].values()) >= 2


def test_runtime_style_and_the_style_flag_only_for_ort(mlp, tmp_path):
    res = run_cli("convert", mlp / "mlp.onnx", "--target", "ort", "--ort-style", "runtime", "--inputs",
                  mlp / "val.npz", "-o", tmp_path / "r.ort", "--json")
    assert res.code == 0, res
    assert res.json["result"]["details"]["ort_optimization_style"] == "runtime"
    res = run_cli("convert", mlp / "mlp.onnx", "--target", "onnx", "--ort-style", "runtime", "-o", tmp_path / "x.onnx")
    assert_user_error(res, 2, "--ort-style applies only to --target ort")


def test_build_publishes_and_checks_an_ort_artifact(mlp, tmp_path):
    (tmp_path / "edgekit.toml").write_text(textwrap.dedent(f"""
        [build]
        out = "out"

        [[models]]
        name = "mlp"
        source = "{mlp / 'mlp.onnx'}"
        inputs = "{mlp / 'val.npz'}"

          [[models.targets]]
          target = "ort"
        """))
    assert run_cli("build", cwd=tmp_path).code == 0
    assert (tmp_path / "out" / "mlp.ort").read_bytes()[4:8] == b"ORTM"
    assert run_cli("build", "--check", cwd=tmp_path).code == 0


@pytest.mark.arm
@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_onnx_to_ort_parity_on_arm64(mlp, tmp_path, quantize):
    res = run_cli("convert", mlp / "mlp.onnx", "--target", "ort", "--quantize", quantize, "--inputs", mlp / "val.npz",
                  "--calibration", mlp / "calib.npz", "--validate-arch", "arm64", "-o", tmp_path / "m.ort", "--json")
    assert res.code == 0, res
    arm = res.json["result"]["arm64"]
    assert arm["parity"]["passed"] and arm["arch"] == "arm64" and arm["runtime"].endswith("on arm64"), arm


@pytest.mark.arm
@pytest.mark.slow
@pytest.mark.tf
def test_keras_to_ort_on_host_and_arm64(samples_dir, tmp_path):
    res = run_cli("convert", samples_dir / "digits_keras.keras", "--target", "ort", "--inputs",
                  samples_dir / "digits_keras_val.npz", "--validate-arch", "arm64", "-o", tmp_path / "d.ort", "--json")
    assert res.code == 0, res
    result = res.json["result"]
    assert result["parity"]["passed"] and result["arm64"]["parity"]["passed"]
    assert result["parity"]["accuracy"]["reference"] > 0.85
    assert "tf2onnx" in result["converter"]


TORCH_MODEL = """
import sys, torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 5)).eval()
torch.export.save(torch.export.export(m, (torch.randn(1, 1, 8, 8),)), sys.argv[1])
"""


@pytest.mark.arm
@pytest.mark.slow
@pytest.mark.torch
def test_torch_to_ort_dynamic_on_host_and_arm64(tmp_path):
    subprocess.run([sys.executable, "-c", TORCH_MODEL, str(tmp_path / "m.pt2")], check=True, capture_output=True)
    np.savez(tmp_path / "val.npz", x=np.random.default_rng(0).standard_normal((32, 1, 8, 8)).astype(np.float32))
    res = run_cli("convert", tmp_path / "m.pt2", "--target", "ort", "--quantize", "dynamic", "--inputs",
                  tmp_path / "val.npz", "--validate-arch", "arm64", "-o", tmp_path / "m.ort", "--json")
    assert res.code == 0, res
    result = res.json["result"]
    assert result["precision"] == "dynamic" and result["parity"]["passed"] and result["arm64"]["parity"]["passed"]
    assert result["details"]["latency_vs_fp32"]["mode"] == "dynamic"
