"""Target `tflite`: TensorFlow Lite / LiteRT flatbuffers (its declaration; see edgekit.targets).

Its converters live in the source families' modules (keras, tensorflow, torch): each
registers its `source -> tflite` path there.
"""

from edgekit.target_decl import Target

TARGET = Target(
    "tflite", ".tflite", "tflite", "litert", ("fp32", "fp16", "dynamic", "int8"),
    "TensorFlow Lite / LiteRT flatbuffer",
    runner="edgekit.validators.runners.litert:LiteRTRunner",
    format_description="TFLite flatbuffer", framework="tflite", magic=rb"TFL3",
    device_runtime="litert",
    capability="a flatbuffer graph of TFLite operators, no code",
    extra="tf", packages=("ai-edge-litert",), doctor=(("ai-edge-litert", "runs .tflite"),),
)
