"""Target `ort`: ONNX Runtime Mobile's ORT format, everything about it in one module.

A target module declares `TARGET` (plain data: edgekit.targets reads it, so the CLI's
choices and options, `edgekit build` and its cache key, doctor, detection, the runners table,
`inspect --security` and the arm64 check all know the target) and registers its converters in
`register_converters`. This module
imports nothing heavy at import time: edgekit.targets imports it when the CLI starts.

Path: any source that reaches ONNX (its own ONNX converter, every ONNX precision, the shared
"float ONNX, then quantize" step), then onnxruntime's own converter
(`onnxruntime.tools.convert_onnx_models_to_ort`) with the optimization style as an option
(`fixed`, the default: optimizations baked in for this runtime build; `runtime`: saved for a
replay that needs `session.enable_saved_runtime_optimizations`). The required-operators config
that a reduced-size ORT build takes (build.py --include_ops_by_config) is kept in the report's
details. onnxruntime runs the .ort on the host and in the emulated arm64 environment.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from edgekit.target_decl import Target, TargetOption

ORT_STYLES = ("fixed", "runtime")

TARGET = Target(
    "ort", ".ort", "ort", "onnxruntime_ort", ("fp32", "fp16", "dynamic", "int8"),
    "ONNX Runtime Mobile ORT format, run by onnxruntime",
    runner="edgekit.converters.ort:OrtFormatRunner",
    # how edgekit.formats detects the file: a flatbuffer with file identifier ORTM
    format_description="ONNX Runtime ORT format model (.ort)", framework="ort", magic=rb"ORTM",
    device_runtime="onnxruntime",  # what runs it on emulated arm64 (edgekit.validators.arm)
    capability="a flatbuffer graph of ONNX Runtime kernels, no code",
    # onnxruntime (its converter and runtime) is a core dependency
    packages=("onnxruntime",), doctor=(("onnxruntime", "runs .ort"),),
    options=(TargetOption("--ort-style", "ort_style", "--target ort: onnxruntime's optimization style "
                          "(default: fixed).", choices=ORT_STYLES),),
)


def convert_to_ort(onnx_path: Path, out_path: Path, style: str = "fixed") -> dict:
    """onnxruntime's converter on one .onnx file: writes `out_path` and returns the details
    (optimization style, the required-operators config text)."""
    from edgekit.errors import BadInput, ConversionFailed, upstream

    if style not in ORT_STYLES:
        raise BadInput(f"--ort-style {style!r}: expected one of {', '.join(ORT_STYLES)}.")
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with tempfile.TemporaryDirectory(prefix="edgekit-ort-", dir=out_path.parent) as tmp:
        src = Path(tmp) / "model.onnx"
        src.symlink_to(Path(onnx_path).resolve())
        outdir = Path(tmp) / "out"
        chatter = io.StringIO()
        with upstream("onnxruntime", "convert_onnx_models_to_ort", error=lambda exc: ConversionFailed(
                f"onnxruntime could not convert the ONNX model to ORT format: {str(exc).strip()[:300]}")):
            with contextlib.redirect_stdout(chatter):  # the tool prints progress; stdout is not ours
                convert_onnx_models_to_ort(src, outdir, [OptimizationStyle[style.capitalize()]])
        made = next(outdir.glob("model*.ort"), None)  # the runtime style writes model.with_runtime_opt.ort
        if made is None:
            raise ConversionFailed("onnxruntime wrote no .ort file.", details=chatter.getvalue()[-2000:])
        config = next(outdir.glob("*.config"), None)
        made.replace(out_path)
        return {"ort_optimization_style": style,
                "required_operators_config": config.read_text() if config else None}


def register_converters(register, registered: dict) -> None:
    """One `source -> ort` path for every `source -> onnx` path in `registered`, with the same
    precisions (edgekit.converters.registry calls this once the source modules are loaded)."""
    for conv in [c for c in registered.values() if c.target == "onnx"]:
        register(conv.source, "ort", quantize=tuple(q for q in conv.quantize if q != "auto"),
                 needs_calibration=conv.needs_calibration, options=conv.options + ("ort_style",), extra=conv.extra,
                 library=f"{conv.library} + onnxruntime.tools.convert_onnx_models_to_ort")(_via_onnx(conv))


def _via_onnx(onnx_conv):
    def convert(model, request, out_path: Path):
        from dataclasses import replace

        with tempfile.TemporaryDirectory(prefix="edgekit-ort-onnx-", dir=out_path.parent) as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            result = onnx_conv.impl(model, replace(request, target="onnx"), onnx_path)
            from edgekit.progress import progress

            progress("converting to ORT format (onnxruntime.tools.convert_onnx_models_to_ort)")
            details = convert_to_ort(onnx_path, out_path, request.options.get("ort_style") or "fixed")
        result.details.update(details)
        result.path = out_path
        result.notes.append(f"ORT format, '{details['ort_optimization_style']}' optimization style; the "
                            "required-operators config for a reduced onnxruntime build is in the report "
                            "(details.required_operators_config)")
        return result

    return convert


def ort_op_counts(path: Path) -> dict[str, int]:
    """Operator counts of an .ort file, read from its flatbuffer (onnxruntime's own schema)."""
    from collections import Counter

    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py import fbs

    buf = Path(path).read_bytes()
    graph = fbs.InferenceSession.InferenceSession.GetRootAs(buf, 0).Model().Graph()
    return dict(Counter(graph.Nodes(i).OpType().decode() for i in range(graph.NodesLength())))


def __getattr__(name: str):
    """OrtFormatRunner is built on first use: the runner imports numpy and onnxruntime."""
    if name != "OrtFormatRunner":
        raise AttributeError(name)
    from edgekit.errors import BadInput
    from edgekit.validators.runners.onnxrt import OnnxRuntimeRunner, quantized_precision

    class OrtFormatRunner(OnnxRuntimeRunner):
        """onnxruntime on an .ort file: the same session and timing as .onnx; the checks and
        operator counts read the ORT flatbuffer instead of an ONNX protobuf."""

        def check_file(self) -> None:
            with open(self.path, "rb") as fh:
                if fh.read(8)[4:8] != TARGET.magic:
                    raise BadInput(f"{self.path}: not an ORT format model (no ORTM identifier).")

        def op_counts(self) -> dict[str, int]:
            return ort_op_counts(self.path)

        def precision(self) -> str:
            # fp16 weights are not visible here: report.json records the precision
            return quantized_precision(self.op_counts()) or "fp32"

    globals()["OrtFormatRunner"] = OrtFormatRunner
    return OrtFormatRunner
