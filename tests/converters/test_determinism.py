"""Converting the same model twice gives byte-identical output where the converter allows it.

Measured: Keras -> TFLite (all precisions) and Keras -> ONNX (tf2onnx, and the shared int8
quantization step) are byte-identical run to run.
"""

from __future__ import annotations

import hashlib

import pytest

from conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.tf]


@pytest.mark.parametrize("target,quantize", [("tflite", "none"), ("tflite", "int8"), ("onnx", "none"),
                                             ("onnx", "int8")])
def test_conversion_is_byte_identical(samples_dir, digits_converted, tmp_path, target, quantize):
    # the first conversion is the session's shared one (conftest.DIGITS_CONVERSIONS; with parity,
    # which does not touch the file), the second is made here without it
    first = digits_converted[f"{target}-{'fp32' if quantize == 'none' else quantize}"]
    digests = [hashlib.sha256(first.read_bytes()).hexdigest()]
    for run in (2,):
        out = tmp_path / f"{run}.{target}"
        args = ["convert", samples_dir / "digits_keras.keras", "--target", target, "--quantize", quantize,
                "-o", out, "--no-validate", "-q"]
        if quantize != "none":
            args += ["--calibration", samples_dir / "digits_keras_calib.npz"]
        res = run_cli(*args)
        assert res.code == 0, res
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


@pytest.mark.torch
@pytest.mark.parametrize("target", ["torchscript", "executorch", "onnx", "tflite"])
def test_pytorch_conversion_is_deterministic(tmp_path, target):
    """Measured: ExecuTorch, ONNX (dynamo) and litert-torch TFLite are byte-identical run to run;
    TorchScript archives differ only in torch's random serialization id, so the manifest's
    semantic hash is what stays equal there."""
    import subprocess
    import sys

    from edgekit.build import file_digest, semantic_digest

    script = (f"import torch; m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), "
              f"torch.nn.Linear(144, 3)).eval(); torch.manual_seed(0); "
              f"torch.export.save(torch.export.export(m, (torch.randn(1, 1, 8, 8),)), r'{tmp_path / 'm.pt2'}')")
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    outs = []
    for run in (1, 2):
        out = tmp_path / f"{run}.{target}"
        res = run_cli("convert", tmp_path / "m.pt2", "--target", target, "-o", out, "--no-validate", "-q")
        assert res.code == 0, res
        outs.append(out)
    assert semantic_digest(outs[0]) == semantic_digest(outs[1])
    if target != "torchscript":
        assert file_digest(outs[0]) == file_digest(outs[1])
