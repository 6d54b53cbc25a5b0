"""The one ONNX quantization step, shared by every path that ends in ONNX.

Keras, PyTorch, scikit-learn and ONNX sources all produce a float ONNX file first and
then, for --quantize, come here:
  fp16     onnxconverter-common's float16 conversion (float inputs/outputs kept)
  dynamic  onnxruntime quantize_dynamic (int8 weights, activations quantized at run time)
  int8     onnxruntime pre-processing + quantize_static, QDQ format, per-channel weights,
           calibrated on the --calibration data (MinMax)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgekit.errors import BadInput, ConversionFailed, require
from edgekit.isolation import progress

CALIBRATION_LIMIT = 200


class _Reader:
    """onnxruntime CalibrationDataReader over an edgekit Dataset, one sample at a time."""

    def __init__(self, data, names: dict[str, str], limit: int):
        self._data = data
        self._names = names  # dataset key -> ONNX input name
        self._n = min(data.n, limit)
        self._i = 0

    def get_next(self):
        if self._i >= self._n:
            return None
        i = self._i
        self._i += 1
        return {self._names[k]: v[i:i + 1] for k, v in self._data.arrays.items()}

    def rewind(self):
        self._i = 0


def _input_names(model_path: Path) -> list[str]:
    import onnx

    m = onnx.load_model(str(model_path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits]


def quantize(float_path: Path, out_path: Path, mode: str, calibration=None) -> list[str]:
    """Write `out_path`, the `mode` quantization of the float ONNX model at `float_path`.

    Returns notes for the report. `calibration` (an edgekit Dataset keyed like the source
    model's inputs, matched to the ONNX inputs by name or position) is required for int8.
    """
    require("onnxruntime.quantization", "core")
    notes: list[str] = []
    if mode == "fp16":
        onnx = require("onnx", "core")
        float16 = require("onnxconverter_common.float16", "core")
        progress("converting weights to float16 (onnxconverter-common)")
        model = onnx.load_model(str(float_path))
        # Transpose stays float32: onnxruntime 1.31's graph optimizer segfaults on some fp16
        # Transpose patterns (seen on torch's LSTM export); the casts around it cost little.
        model16 = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + ["Transpose"])
        onnx.save_model(model16, str(out_path))
        notes.append("float16 weights and compute; inputs and outputs stay float32")
        return notes
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edgekit-quant-", dir=out_path.parent) as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        progress("pre-processing for quantization (shape inference, graph optimisation)")
        try:
            quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=False)
        except Exception:  # symbolic shape inference fails on some graphs; plain ONNX shapes are enough
            quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        try:
            if mode == "dynamic":
                progress("quantizing weights to int8 (dynamic)")
                quantize_dynamic(str(pre), str(out_path), weight_type=QuantType.QInt8, per_channel=False)
                notes.append("dynamic: int8 weights, activations quantized at run time")
            elif mode == "int8":
                if calibration is None:
                    raise BadInput("--quantize int8 needs --calibration data.")
                names = _input_names(pre)
                keys = list(calibration.arrays)
                mapping = {k: k for k in keys} if set(keys) <= set(names) else dict(zip(keys, names))
                n = min(calibration.n, CALIBRATION_LIMIT)
                progress(f"calibrating and quantizing to int8 QDQ on {n} samples")
                quantize_static(str(pre), str(out_path), _Reader(calibration, mapping, CALIBRATION_LIMIT),
                                quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax,
                                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
                notes.append(f"int8 static QDQ, per-channel weights, calibrated on {n} samples "
                             f"from {calibration.source}")
            else:
                raise ValueError(f"unknown ONNX quantization mode {mode}")
        except (BadInput, ValueError):
            raise
        except Exception as exc:
            raise ConversionFailed(f"onnxruntime could not quantize the model ({mode}): {str(exc).strip()[:300]}",
                                   details=str(exc)[-2000:]) from None
    return notes
