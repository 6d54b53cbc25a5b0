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
def test_conversion_is_byte_identical(samples_dir, tmp_path, target, quantize):
    digests = []
    for run in (1, 2):
        out = tmp_path / f"{run}.{target}"
        args = ["convert", samples_dir / "digits_keras.keras", "--target", target, "--quantize", quantize,
                "-o", out, "--no-validate", "-q"]
        if quantize != "none":
            args += ["--calibration", samples_dir / "digits_keras_calib.npz"]
        res = run_cli(*args)
        assert res.code == 0, res
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
