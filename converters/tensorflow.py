"""TensorFlow SavedModel folders -> TFLite (TFLiteConverter) and ONNX (tf2onnx).

The converters use the signature the runner loaded (`serving_default` or --signature), so
the artifacts keep the signature's input and output names. Quantization goes through the
same code as Keras sources (`edgekit.converters.keras.write_tflite` and the shared ONNX step).
"""

from __future__ import annotations

from pathlib import Path

from edgekit.converters.keras import function_to_onnx, write_tflite
from edgekit.converters.registry import ConvertRequest, ConvertResult, register
from edgekit.errors import require
from edgekit.progress import progress


@register("tensorflow", "tflite", quantize=("none", "fp16", "dynamic", "int8"), options=("int8_io",),
          extra="tf", library="tensorflow.lite.TFLiteConverter")
def savedmodel_to_tflite(model, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """SavedModel signature -> TFLite: fp32, fp16, dynamic-range int8, or full int8."""
    tf = require("tensorflow", "tf")
    progress(f"reading signature '{model.signature_name}' of the SavedModel")
    conv = tf.lite.TFLiteConverter.from_saved_model(str(model.path), signature_keys=[model.signature_name])
    result = write_tflite(conv, request, model.signature, out_path)
    result.details["signature"] = model.signature_name
    return result


@register("tensorflow", "onnx", quantize=("none", "fp16", "dynamic", "int8"), extra="tf", library="tf2onnx")
def savedmodel_to_onnx(model, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """SavedModel signature -> ONNX through tf2onnx, then the shared ONNX quantization step."""
    tf = require("tensorflow", "tf")
    sig_fn = model.native
    names = [s.name for s in model.signature.inputs]
    _, kwargs = sig_fn.structured_input_signature
    specs = [tf.TensorSpec(kwargs[n].shape, kwargs[n].dtype, name=n) for n in names]

    def call(*args):
        return dict(sig_fn(**dict(zip(names, args))))

    fn = tf.function(call, input_signature=specs)
    result = function_to_onnx(fn, specs, request, out_path)
    result.details["signature"] = model.signature_name
    return result
