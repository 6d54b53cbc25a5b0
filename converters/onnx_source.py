"""ONNX sources -> ONNX: quantization (fp16/dynamic/int8/auto) of a model exported elsewhere.

The source's external-data locations were checked by `edgekit.loading.check_onnx_file`
before anything read them (the onnxruntime runner checks on load, and this converter checks
again before it loads the tensors). The output is always one self-contained file: the
external tensors are embedded, because edgekit publishes a single artifact atomically.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.converters.registry import ConvertRequest, ConvertResult, register
from edgekit.errors import ConversionFailed, require
from edgekit.progress import progress

MAX_EMBEDDED_BYTES = 2 * 1024 ** 3 - 64 * 1024 ** 2  # protobuf's 2 GB limit, with headroom


@register("onnx", "onnx", quantize=("none", "fp16", "dynamic", "int8"), extra="core",
          library="onnxruntime.quantization")
def onnx_to_onnx(model, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """Re-save (embedding external data) and optionally quantize an ONNX model."""
    from edgekit.converters import onnx_quant
    from edgekit.loading import check_onnx_file

    onnx = require("onnx", "core")
    from onnx.external_data_helper import uses_external_data

    check_onnx_file(model.path)
    head = onnx.load_model(str(model.path), load_external_data=False)
    external = [t.name for t in head.graph.initializer if uses_external_data(t)]
    total = model.path.stat().st_size + sum(
        (model.path.parent / {e.key: e.value for e in t.external_data}["location"]).stat().st_size
        for t in head.graph.initializer if uses_external_data(t))
    if total > MAX_EMBEDDED_BYTES:
        raise ConversionFailed(f"{model.path}: the model with its external data is {total >> 20} MB; a single "
                               "ONNX file holds at most 2 GB, and edgekit writes single-file artifacts.",
                               hint="quantize it with onnxruntime.quantization directly (use_external_data_format=True)")
    progress("loading the ONNX model" + (f" and {len(external)} external tensor(s)" if external else ""))
    proto = onnx.load_model(str(model.path), load_external_data=True)
    notes = [f"embedded {len(external)} external-data tensor(s) into the output file"] if external else []
    details = {"converter": "onnxruntime.quantization", "opset": {o.domain or "ai.onnx": o.version
                                                                 for o in proto.opset_import}}
    if request.quantize == "none":
        notes.append("no quantization: the model is re-saved as is")
    return onnx_quant.finish(request, out_path, lambda path: onnx.save_model(proto, str(path)), details, notes)
