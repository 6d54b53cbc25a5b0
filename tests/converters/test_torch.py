"""PyTorch sources -> TorchScript / ExecuTorch / ONNX / TFLite, converted for real and checked
in each target's real runtime (LiteRT, onnxruntime, ExecuTorch, TorchScript).

The conversion matrix runs the convert stage in this process (one torch import for ~70
conversions); the CLI tests run the real `edgekit` in a subprocess (exit codes, messages,
no partial files, the security refusal).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from conftest import SAMPLES, assert_user_error, run_cli

pytestmark = [pytest.mark.torch]

torch = pytest.importorskip("torch")

MATRIX = [("torchscript", "none"), ("executorch", "none"), ("executorch", "int8"), ("onnx", "none"),
          ("onnx", "fp16"), ("onnx", "dynamic"), ("onnx", "int8"), ("tflite", "none"), ("tflite", "fp16"),
          ("tflite", "dynamic"), ("tflite", "int8")]
KINDS = ["pt2", "torchscript", "state_dict", "safetensors", "pickle"]
# Every target x precision from the .pt2; the other source kinds differ only in how the model is
# loaded (TorchScript also in its route, TS2EPConverter), so they get a spread of the matrix that
# covers every target and an int8 path each, keeping the suite within CI time.
CASES = [(t, q, "pt2") for t, q in MATRIX] + [
    ("torchscript", "none", "torchscript"), ("executorch", "none", "torchscript"), ("onnx", "none", "torchscript"),
    ("tflite", "int8", "torchscript"),
    ("torchscript", "none", "state_dict"), ("onnx", "int8", "state_dict"), ("executorch", "none", "safetensors"),
    ("tflite", "dynamic", "pickle")]
# full int8 of an LSTM fails on purpose (the PT2E quantizers leave aten.lstm float): test_quantize.py
LSTM_CASES = [("torchscript", "none"), ("executorch", "none"), ("onnx", "fp16"), ("tflite", "dynamic")]
# fp16 TFLite: litert-torch's fp16 recipe computes in fp16; on logits of magnitude ~15 that is
# ~1e-2 absolute (cosine 1.0, SNR ~65 dB), just past the preset's atol=1e-2. The preset suits
# outputs of order 1 (probabilities); here the bound is scaled to the logits.
FP16_LOGITS = {"atol": 0.05}


@pytest.fixture(scope="session")
def private_dir():
    """Session files in a folder of our own: pytest's shared numbered temp folders can be
    rotated away by another pytest session on the same machine while ours still maps them."""
    path = Path(tempfile.mkdtemp(prefix="edgekit-torch-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def digits(private_dir) -> Path:
    """The digits_torch sample (trained with a fixed seed) plus every other source kind of it."""
    out = private_dir / "torch_samples"
    out.mkdir()
    env = {**os.environ, "EDGEKIT_SAMPLES_DIR": str(out)}
    subprocess.run([sys.executable, str(SAMPLES / "make_samples.py"), "digits_torch"], check=True, env=env)
    sys.path.insert(0, str(SAMPLES))
    try:
        from digits_torch import DigitsCNN
    finally:
        sys.path.remove(str(SAMPLES))
    from safetensors.torch import save_file

    model = DigitsCNN()
    model.load_state_dict(torch.load(out / "digits_torch.state.pt", weights_only=True))
    save_file(model.state_dict(), str(out / "digits_torch.safetensors"))
    torch.save(model.eval(), out / "digits_torch.module.pt")  # whole-module pickle (refers to digits_torch)
    return out


@pytest.fixture(scope="session")
def tiny(tiny_torch) -> Path:
    """conftest's tiny_torch: lstm.pt2 (TinyLSTM, dynamic batch) with its data, and cummax.pt2."""
    return tiny_torch


def source_args(digits: Path, kind: str) -> tuple[Path, dict]:
    from edgekit.tensors import parse_input_shapes

    shape = {"input_shapes": parse_input_shapes(["image=1x1x8x8"])}
    cls = {"model_class": "digits_torch:DigitsCNN", "model_args": {"num_classes": 10}}
    return {
        "pt2": (digits / "digits_torch.pt2", {}),
        "torchscript": (digits / "digits_torch.ts.pt", shape),
        "state_dict": (digits / "digits_torch.state.pt", {**shape, **cls}),
        "safetensors": (digits / "digits_torch.safetensors", {**shape, **cls}),
        "pickle": (digits / "digits_torch.module.pt", shape),
    }[kind]


def convert_here(source: Path, target: str, quantize: str, out: Path, *, calibration=None, inputs=None,
                 source_options=None, trust=None, tolerance=None) -> dict:
    """The convert stage exactly as the CLI runs it: in a fresh child process (several
    frameworks' native code in one long-lived process is not something the product does)."""
    from edgekit import isolation
    from edgekit.loading import Trust
    from edgekit.request import SourceRequest

    req = SourceRequest(str(source), trust or Trust(), source_options or {}, inputs=inputs and str(inputs),
                        calibration=calibration and str(calibration), tolerance=tolerance)
    return isolation.run("convert", "edgekit.pipeline:convert_stage", req, target, quantize, str(out), timeout=600)


@pytest.fixture
def in_samples_dir(monkeypatch):
    """--model-class digits_torch:DigitsCNN imports from the current folder, as users do."""
    monkeypatch.chdir(SAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("target, quantize, kind", CASES)
def test_digits_sources_targets_precisions(digits, tmp_path, in_samples_dir, kind, target, quantize):
    from edgekit.loading import Trust
    from edgekit.targets import TARGETS

    source, opts = source_args(digits, kind)
    out = tmp_path / f"m{TARGETS[target].extension}"
    res = convert_here(source, target, quantize, out, calibration=digits / "digits_torch_calib.npz",
                       inputs=digits / "digits_torch_val.npz", source_options=opts,
                       trust=Trust(pickle=kind == "pickle"),
                       tolerance=FP16_LOGITS if (target, quantize) == ("tflite", "fp16") else None)
    parity = res["parity"]
    assert parity["passed"], parity
    assert parity["samples"] == 360 and out.stat().st_size > 1000
    acc = parity["accuracy"]
    assert acc["reference"] > 0.85
    if quantize == "int8":
        # int8 preset (cosine, SNR, top-1) passed above; accuracy within 1 point of fp32
        assert parity["precision"] == "int8" and acc["delta"] >= -0.01, acc
    if target == "executorch":
        assert any("XNNPACK" in n and "delegated" in n for n in res["notes"]), res["notes"]
    if kind == "torchscript" and target in ("executorch", "tflite", "onnx"):
        assert any("TS2EPConverter" in n for n in res["notes"])


@pytest.mark.slow
@pytest.mark.parametrize("target, quantize", LSTM_CASES)
def test_lstm_with_attention(tiny, tmp_path, target, quantize):
    from edgekit.targets import TARGETS

    out = tmp_path / f"m{TARGETS[target].extension}"
    res = convert_here(tiny / "lstm.pt2", target, quantize, out, calibration=tiny / "lstm_calib.npz",
                       inputs=tiny / "lstm_val.npz")
    assert res["parity"]["passed"], res["parity"]
    assert res["parity"]["outputs"][0]["shape"] == [64, 2]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "executorch", "tflite"])
def test_unsupported_operator_names_it(tiny, tmp_path, target):
    from edgekit.errors import ConversionFailed
    from edgekit.targets import TARGETS

    out = tmp_path / f"m{TARGETS[target].extension}"
    with pytest.raises(ConversionFailed) as e:
        convert_here(tiny / "cummax.pt2", target, "none", out)
    assert "aten.cummax" in e.value.message and target in e.value.message, e.value.message


# ----------------------------------------------------------------------------- the real CLI
@pytest.mark.slow
def test_cli_pt2_to_tflite_int8_and_validate_bench(digits, tmp_path):
    out = tmp_path / "d.tflite"
    res = run_cli("convert", digits / "digits_torch.pt2", "--target", "tflite", "--quantize", "int8",
                  "--calibration", digits / "digits_torch_calib.npz", "--inputs", digits / "digits_torch_val.npz",
                  "-o", out, "--json")
    assert res.code == 0, res
    doc = res.json
    assert doc["result"]["precision"] == "int8" and doc["result"]["parity"]["passed"]
    assert any("NCHW" in n for n in doc["result"]["notes"])
    assert (tmp_path / "d.tflite.report.json").is_file()
    pte = tmp_path / "d.pte"
    res = run_cli("convert", digits / "digits_torch.pt2", "--target", "executorch", "--quantize", "int8",
                  "--calibration", digits / "digits_torch_calib.npz", "--inputs", digits / "digits_torch_val.npz",
                  "-o", pte)
    assert res.code == 0, res
    res = run_cli("validate", digits / "digits_torch.pt2", pte, "--inputs", digits / "digits_torch_val.npz", "--json")
    assert res.code == 0, res
    assert res.json["result"]["parity"]["precision"] == "int8"  # read from the report next to the .pte
    res = run_cli("bench", pte, "-n", "5", "--warmup", "1", "--threads", "2", "--json")
    assert res.code == 0, res
    assert res.json["results"][0]["runtime"] == "executorch"


@pytest.mark.slow
def test_cli_torchscript_source_needs_and_uses_input_shape(digits, tmp_path):
    src = digits / "digits_torch.ts.pt"
    res = run_cli("convert", src, "--target", "onnx", "-o", tmp_path / "a.onnx")
    assert_user_error(res, 2, "--input-shape image=", "forward(image)")
    assert not (tmp_path / "a.onnx").exists()
    res = run_cli("convert", src, "--target", "torchscript", "--input-shape", "1x1x8x8", "-o", tmp_path / "a.pt")
    assert res.code == 0, res
    # edgekit's TorchScript artifact records its signature: no --input-shape needed to bench it
    res = run_cli("bench", tmp_path / "a.pt", "-n", "3", "--warmup", "0")
    assert res.code == 0, res


def _evil_pt(path: Path, sentinel: Path) -> None:
    """A torch.save-style zip whose pickle calls os.system when unpickled."""

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    torch.save({"weights": torch.zeros(2), "x": Evil()}, path)


@pytest.mark.parametrize("env", [{}, {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}])
def test_malicious_pickle_is_refused_without_running(tmp_path, env):
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    _evil_pt(evil, sentinel)
    assert zipfile.is_zipfile(evil) and not sentinel.exists()
    for target in ("onnx", "tflite"):
        res = run_cli("convert", evil, "--target", target, "--input-shape", "1x2", "-o", tmp_path / f"o.{target}",
                      env=env)
        assert_user_error(res, 2, "refuses", "torch.export.save", "--model-class", "system")
        assert not sentinel.exists()
    res = run_cli("validate", evil, evil, env=env)
    assert_user_error(res, 2, "refuses")
    assert not sentinel.exists() and not list(tmp_path.glob("o.*"))


def test_state_dict_with_malicious_globals_is_refused_even_with_model_class(tmp_path):
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "weights.pt"
    _evil_pt(evil, sentinel)
    res = run_cli("convert", evil, "--target", "onnx", "--model-class", "x:Y", "--input-shape", "1x2",
                  "-o", tmp_path / "o.onnx", env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert res.code == 2, res
    assert not sentinel.exists()


def test_wrong_input_shape_for_pt2_says_expected_and_given(digits, tmp_path):
    res = run_cli("convert", digits / "digits_torch.pt2", "--target", "onnx", "--input-shape", "1x3x8x8",
                  "-o", tmp_path / "a.onnx")
    assert_user_error(res, 2, "expected float32[?x1x8x8]", "given float32[1x3x8x8]")
    assert not (tmp_path / "a.onnx").exists()


def test_input_shape_syntax_error_fails_fast(digits, tmp_path):
    res = run_cli("convert", digits / "digits_torch.ts.pt", "--target", "onnx", "--input-shape", "1xfoo")
    assert_user_error(res, 2, "'foo' is not a dimension")


def test_model_class_that_does_not_import(digits, tmp_path):
    res = run_cli("convert", digits / "digits_torch.state.pt", "--target", "onnx", "--model-class",
                  "no_such_pkg.nets:Net", "--input-shape", "1x1x8x8", "-o", tmp_path / "a.onnx", cwd=tmp_path)
    assert_user_error(res, 2, "cannot import 'no_such_pkg.nets'", "PYTHONPATH")
    res = run_cli("convert", digits / "digits_torch.state.pt", "--target", "onnx", "--model-class",
                  "digits_torch:NoSuchClass", "--input-shape", "1x1x8x8", "-o", tmp_path / "a.onnx", cwd=SAMPLES)
    assert_user_error(res, 2, "has no attribute 'NoSuchClass'")


def test_weights_that_do_not_match_the_class(digits, tmp_path):
    res = run_cli("convert", digits / "digits_torch.state.pt", "--target", "onnx", "--model-class",
                  "digits_torch:DigitsCNN", "--model-args", '{"num_classes": 5, "width": 8}', "--input-shape",
                  "1x1x8x8", "-o", tmp_path / "a.onnx", cwd=SAMPLES)
    assert_user_error(res, 2, "do not match digits_torch:DigitsCNN", "different shapes", "features.0.weight",
                      "model [8, 1, 3, 3], file [16, 1, 3, 3]")
    assert not (tmp_path / "a.onnx").exists()


def test_weights_without_model_class(digits, tmp_path):
    res = run_cli("convert", digits / "digits_torch.state.pt", "--target", "onnx")
    assert_user_error(res, 2, "only weights", "--model-class")
    res = run_cli("convert", digits / "digits_torch.pt2", "--target", "onnx", "--model-class", "a:B")
    assert_user_error(res, 2, "--model-class is for weights files")


@pytest.mark.slow
def test_cli_unsupported_operator_exit_3_no_file(tiny, tmp_path):
    out = tmp_path / "c.tflite"
    res = run_cli("convert", tiny / "cummax.pt2", "--target", "tflite", "-o", out)
    assert_user_error(res, 3, "aten.cummax", "tflite")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".edgekit")]


@pytest.mark.slow
def test_build_of_weights_with_model_class_and_a_torchscript_with_input_shape(digits, tmp_path):
    """#14: edgekit.toml's input_shape, model_class and model_args reach every stage of a build
    (convert, host parity, `build --check`), as --input-shape/--model-class/--model-args do."""
    (tmp_path / "edgekit.toml").write_text(textwrap.dedent(f"""
        [build]
        out = "out"
        jobs = 1

        [[models]]
        name = "weights"
        source = "{digits / 'digits_torch.state.pt'}"
        inputs = "{digits / 'digits_torch_val.npz'}"
        model_class = "digits_torch:DigitsCNN"
        model_args = {{ num_classes = 10 }}
        input_shape = "image=1x1x8x8"

          [[models.targets]]
          target = "onnx"

        [[models]]
        name = "script"
        source = "{digits / 'digits_torch.ts.pt'}"
        inputs = "{digits / 'digits_torch_val.npz'}"
        input_shape = ["image=1x1x8x8"]

          [[models.targets]]
          target = "onnx"
        """))
    env = {"PYTHONPATH": str(SAMPLES)}  # where digits_torch:DigitsCNN imports from
    res = run_cli("build", "--json", cwd=tmp_path, env=env)
    assert res.code == 0, res
    arts = {a["id"]: a for a in json.loads((tmp_path / "out" / "manifest.json").read_text())["artifacts"]}
    assert set(arts) == {"weights/onnx-fp32", "script/onnx-fp32"}, arts
    for a in arts.values():
        assert a["parity"]["host"]["passed"] and a["parity"]["host"]["samples"] == 360, a
    assert run_cli("build", "--check", cwd=tmp_path, env=env).code == 0


def test_build_refuses_weights_without_model_class_at_plan_time(digits, tmp_path):
    (tmp_path / "edgekit.toml").write_text(textwrap.dedent(f"""
        [[models]]
        name = "weights"
        source = "{digits / 'digits_torch.state.pt'}"
        input_shape = "1x1x8x8"

          [[models.targets]]
          target = "onnx"
        """))
    res = run_cli("build", cwd=tmp_path)
    assert_user_error(res, 2, "edgekit.toml:4", "only weights, no model code", "--model-class")


@pytest.mark.slow
def test_quantized_torch_to_onnx_reports_latency_beside_fp32(tiny, tmp_path):
    """#14: torch -> ONNX runs the shared "float ONNX, then quantize" step with its report:
    the quantized-vs-fp32 table, and the slower warning exactly when the numbers say so."""
    res = run_cli("convert", tiny / "lstm.pt2", "--target", "onnx", "--quantize", "fp16", "--inputs",
                  tiny / "lstm_val.npz", "-o", tmp_path / "q.onnx", "--json")
    assert res.code == 0, res
    lat = res.json["result"]["details"]["latency_vs_fp32"]
    assert lat["fp32_ms"] > 0 and lat["quantized_ms"] > 0 and lat["mode"] == "fp16", lat
    assert lat["slower"] == (lat["quantized_ms"] > lat["fp32_ms"] * 1.10)
    assert ("QUANTIZED MODEL IS SLOWER" in res.stderr) == lat["slower"]
    assert "quantized vs fp32" in " ".join((res.stdout + res.stderr).split())
