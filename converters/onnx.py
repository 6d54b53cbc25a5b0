"""Target `onnx`: ONNX models run by onnxruntime (its declaration; see edgekit.targets).

Its converters live in the source families' modules, and every quantized one ends in the
shared "float ONNX, then quantize" step (edgekit.converters.onnx_quant). The format is
detected by parsing (edgekit.formats), not by a magic number.
"""

from edgekit.target_decl import Target

TARGET = Target(
    "onnx", ".onnx", "onnx", "onnxruntime", ("fp32", "fp16", "dynamic", "int8"),
    "ONNX, run by onnxruntime",
    runner="edgekit.validators.runners.onnxrt:OnnxRuntimeRunner",
    format_description="ONNX model", framework="onnx",
    device_runtime="onnxruntime",
    capability="a graph of ONNX operators, no code; may reference external data files",
    packages=("onnx", "onnxruntime", "onnxconverter-common"),
    doctor=(("onnx", "ONNX models"), ("onnxruntime", "runs .onnx"), ("onnxconverter-common", "fp16 ONNX")),
)
