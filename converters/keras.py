"""Keras 3 sources -> TFLite (TFLiteConverter) and ONNX (tf2onnx).

Both go through a `tf.function` whose input signature carries the Keras input names and
whose outputs are a dict keyed by the Keras output names, so the artifacts keep the
source's names and parity can pair tensors by name.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from edgekit.converters.registry import ConvertRequest, ConvertResult, register
from edgekit.errors import ConversionFailed, require, upstream
from edgekit.progress import progress

CALIBRATION_LIMIT = 200  # samples used by full-int8 calibration


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name) or "input"


def serving_function(model, signature, batch: int | None = None):
    """A tf.function with named inputs and a dict of named outputs, for converters."""
    tf = require("tensorflow", "tf")
    specs = [tf.TensorSpec((batch,) + tuple(s.shape[1:]), tf.as_dtype(s.dtype), name=_safe_name(s.name))
             for s in signature.inputs]
    out_names = [s.name for s in signature.outputs]

    def call(*args):
        out = model(args[0] if len(args) == 1 else list(args), training=False)
        if isinstance(out, dict):
            out = list(out.values())
        elif not isinstance(out, (list, tuple)):
            out = [out]
        return {_safe_name(n): o for n, o in zip(out_names, out)}

    return tf.function(call, input_signature=specs), specs


def _calibration_samples(request: ConvertRequest, signature):
    data = request.calibration
    names = [_safe_name(s.name) for s in signature.inputs]
    n = min(data.n, CALIBRATION_LIMIT)

    def gen():
        for i in range(n):
            yield {nm: data.arrays[s.name][i:i + 1] for nm, s in zip(names, signature.inputs)}

    return gen


def _tflite_converter(model, signature, workdir: Path):
    """A TFLiteConverter over a SavedModel that carries the named serving signature.

    keras.export.ExportArchive tracks the Keras 3 variables; a bare tf.Module holding the
    model does not, and the converter would then silently drop the weights.
    """
    tf = require("tensorflow", "tf")
    saved = workdir / "saved_model"
    export_saved_model(model, signature, saved)
    return tf.lite.TFLiteConverter.from_saved_model(str(saved))


def export_saved_model(model, signature, saved: Path) -> None:
    """The Keras model as a SavedModel with one 'serving_default' signature (its variables tracked)."""
    keras = require("keras", "tf")
    fn, specs = serving_function(model, signature)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", fn, input_signature=specs)
    archive.write_out(str(saved), verbose=False)


def _run_tflite_conversion(converter, what: str) -> bytes:
    with upstream("tensorflow", "TFLiteConverter.convert", error=lambda exc: _tflite_error(exc, what)):
        return converter.convert()


def _tflite_error(exc: Exception, what: str) -> ConversionFailed:
    """TF raises ConverterError and friends with the MLIR diagnostic: name its operators."""
    text = str(exc)
    ops = sorted(set(re.findall(r"'(tf\.[A-Za-z0-9_]+)' op", text)))
    named = f" Unsupported operator(s): {', '.join(ops)}." if ops else ""
    return ConversionFailed(f"the TFLite converter could not convert this model ({what}).{named}",
                            hint="unsupported TensorFlow ops can sometimes be kept with Select TF ops, "
                                 "which edgekit does not enable because mobile runtimes lack them",
                            details=text[-2000:])


@register("keras", "tflite", quantize=("none", "fp16", "dynamic", "int8"), options=("int8_io",),
          extra="tf", library="tensorflow.lite.TFLiteConverter")
def keras_to_tflite(model, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """Keras -> TFLite: fp32, fp16 weights, dynamic-range int8, or full int8 (calibrated)."""
    with tempfile.TemporaryDirectory(prefix="edgekit-keras-", dir=out_path.parent) as tmp:
        progress("tracing the Keras model into a SavedModel signature")
        conv = _tflite_converter(model.native, model.signature, Path(tmp))
        try:
            return write_tflite(conv, request, model.signature, out_path)
        except ConversionFailed as exc:
            if "TensorList" not in exc.message:
                raise
            first = exc
        # Recurrent layers (GRU/LSTM) at a dynamic batch keep TensorList ops the builtin op set lacks
        # (the converter suggests Select TF ops, which needs the Flex delegate in the app). At batch 1
        # with the variables frozen into constants, the loop lowers to builtin WHILE/FULLY_CONNECTED.
        progress("retrying at batch 1 with frozen variables (recurrent layers: builtin ops only)")
        try:
            conv = _frozen_batch1_converter(model.native, model.signature)
            result = write_tflite(conv, request, model.signature, out_path)
        except ConversionFailed:
            raise first from None
    result.notes.append("recurrent layers: converted at batch 1 with the variables frozen into constants "
                        "(a concrete function, convert_variables_to_constants_v2), so the loop uses builtin "
                        "ops only (no Flex delegate); the artifact takes a batch of 1")
    return result


def _frozen_batch1_converter(model, signature):
    tf = require("tensorflow", "tf")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn, _ = serving_function(model, signature, batch=1)
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    return tf.lite.TFLiteConverter.from_concrete_functions([frozen])


def write_tflite(conv, request: ConvertRequest, signature, out_path: Path) -> ConvertResult:
    """Apply the --quantize mode to a TFLiteConverter, convert, and write `out_path`.

    Shared by every TensorFlow-family source (Keras, SavedModel): fp32, fp16 weights,
    dynamic-range int8, or full int8 calibrated on the request's data (with --int8-io).
    """
    tf = require("tensorflow", "tf")
    mode = request.quantize
    notes = []
    if mode in ("fp16", "dynamic", "int8"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        conv.representative_dataset = _calibration_samples(request, signature)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if request.options.get("int8_io"):
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
            notes.append("inputs and outputs are int8 (quantize with the scale/zero point in the manifest)")
        n = min(request.calibration.n, CALIBRATION_LIMIT)
        notes.append(f"calibrated on {n} samples from {request.calibration.source}")
    progress(f"converting to TFLite ({'fp32' if mode == 'none' else mode})")
    blob = _run_tflite_conversion(conv, mode)
    details = {"converter": "tf.lite.TFLiteConverter", "tensorflow": tf.__version__}
    if mode == "int8" and request.options.get("keep_float"):
        from edgekit.converters import keep_float

        blob, kept = keep_float.apply_tflite(conv, conv.representative_dataset, blob, request.options["keep_float"],
                                             request.samples or request.calibration, details)
        notes += kept
    out_path.write_bytes(blob)
    return ConvertResult(out_path, "fp32" if mode == "none" else mode, notes, details)


ONNX_OPSET = 18


@register("keras", "onnx", quantize=("none", "fp16", "dynamic", "int8"), extra="tf", library="tf2onnx")
def keras_to_onnx(model, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """Keras -> ONNX through tf2onnx on a tf.function with a named input signature,
    then the shared ONNX quantization step for --quantize."""
    fn, specs = serving_function(model.native, model.signature)
    return function_to_onnx(fn, specs, request, out_path)


def function_to_onnx(fn, specs, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """tf2onnx on a tf.function with named inputs and a dict of named outputs, then the
    shared ONNX quantization step. Shared by Keras and SavedModel sources."""
    from edgekit.converters import onnx_quant

    tf2onnx = require("tf2onnx", "tf")
    fn, frozen_note = _freeze_captured_constants(fn, specs)
    progress(f"converting to ONNX (tf2onnx, opset {ONNX_OPSET})")

    def write_float(path: Path) -> None:
        with upstream("tf2onnx", "convert.from_function", error=lambda exc: ConversionFailed(
                f"tf2onnx could not convert this model: {(str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]}",
                details=str(exc)[-2000:])):
            tf2onnx.convert.from_function(fn, input_signature=specs, opset=ONNX_OPSET, output_path=str(path))

    return onnx_quant.finish(request, out_path, write_float,
                             {"converter": "tf2onnx", "tf2onnx": tf2onnx.__version__, "opset": ONNX_OPSET},
                             frozen_note)


def _freeze_captured_constants(fn, specs):
    """A function that captures plain tensors (Keras Normalization's mean/variance, given as
    arguments or adapted) is frozen first: tf2onnx turned those captures into ONNX graph inputs
    that nobody feeds ('Required inputs ... normalization/Sub/y:0 are missing'). Functions that
    capture only variables convert as before."""
    tf = require("tensorflow", "tf")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = fn.get_concrete_function()
    if not any(t.dtype != tf.resource for t in concrete.captured_inputs):
        return fn, []
    progress("freezing the constants the function captures (convert_variables_to_constants_v2)")
    frozen = convert_variables_to_constants_v2(concrete)
    return tf.function(lambda *args: frozen(*args), input_signature=specs), [
        "captured constants (e.g. a Normalization layer's mean and variance) frozen into the graph"]
