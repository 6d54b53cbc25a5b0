"""The one ONNX quantization step, shared by every path that ends in ONNX.

Keras, PyTorch, scikit-learn and ONNX sources all produce a float ONNX file first and
then, for --quantize, come here:
  fp16     onnxconverter-common's float16 conversion (float inputs/outputs kept)
  dynamic  onnxruntime quantize_dynamic (int8 weights, activations quantized at run time)
  int8     onnxruntime pre-processing + quantize_static, QDQ format, per-channel weights,
           calibrated on the --calibration data (MinMax)
(--quantize auto is not here: edgekit.converters.auto runs it for every target, calling the
path's converter once per candidate precision.)

Quantization is not always faster: on a CPU without int8 dot-product instructions, dynamic
quantization of a conv net ran ~10x slower than fp32. So every quantized result is timed
beside its float model, and a result more than 10% slower comes with a warning.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgekit.errors import BadInput, ConversionFailed, require, upstream
from edgekit.isolation import progress

CALIBRATION_LIMIT = 200
# Why int8 ONNX files use uint8 activations AND uint8 weights (U8U8), recorded in every report:
# on x86 CPUs without VNNI (AVX2 only), onnxruntime runs int8-weight models (U8S8, and S8S8,
# which it shifts to U8S8) with VPMADDUBSW, whose 16-bit sums saturate. On the digits CNN that
# cut top-1 agreement from 0.997 (AVX-512 VNNI) to 0.925 (Haswell, qemu-x86_64 -cpu Haswell);
# U8U8 kernels do not saturate and gave 0.994 on both (reduce_range: 0.986 on both).
INT8_SCHEME = ("uint8 activations and uint8 weights (U8U8): onnxruntime's x86 int8-weight kernels "
               "saturate on CPUs without VNNI, U8U8 gives the same results with and without it")
SLOWER_LIMIT = 1.10  # quantized / fp32 median latency above this gets a warning


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
        from edgekit.tensors import to_model_layout

        i = self._i
        self._i += 1
        axes = {self._names[k]: a for k, a in (self._data.axes or {}).items() if k in self._names}
        return to_model_layout({self._names[k]: v[i:i + 1] for k, v in self._data.arrays.items()}, axes)

    def rewind(self):
        self._i = 0


def _input_names(model_path: Path) -> list[str]:
    import onnx

    m = onnx.load_model(str(model_path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits]


def quantize(float_path: Path, out_path: Path, mode: str, calibration=None, report: dict | None = None) -> list[str]:
    """Write `out_path`, the `mode` quantization of the float ONNX model at `float_path`.

    Returns notes for the report. `calibration` (an edgekit Dataset keyed like the source
    model's inputs, matched to the ONNX inputs by name or position) is required for int8.
    `report`, if given, receives structured results: 'precision', 'latency_vs_fp32', 'warnings'.
    """
    report = {} if report is None else report
    notes = _quantize_one(Path(float_path), Path(out_path), mode, calibration)
    report["precision"] = mode
    notes += _compare_with_float(Path(float_path), Path(out_path), mode, report)
    return notes


# ops onnxruntime's int8 quantizers rewrite; a model with none of them would come out unchanged
QUANTIZABLE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Attention", "LSTM", "GRU", "Gather",
                   "EmbedLayerNormalization"}


def subgraph_ops(graph) -> dict[str, int]:
    """Counts of quantizable operators inside control-flow subgraphs (If/Loop/Scan bodies), at any depth."""
    counts: dict[str, int] = {}

    def walk(g, inside: bool) -> None:
        for n in g.node:
            if inside and n.op_type in QUANTIZABLE_OPS and n.domain in ("", "ai.onnx"):
                counts[n.op_type] = counts.get(n.op_type, 0) + 1
            for a in n.attribute:
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    walk(sub, True)

    walk(graph, False)
    return counts


def _check_quantizable(float_path: Path, mode: str) -> None:
    import onnx

    model = onnx.load_model(str(float_path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}
    if not ops & QUANTIZABLE_OPS:
        kinds = sorted({n.op_type for n in model.graph.node})[:6]
        nested = subgraph_ops(model.graph)
        if nested:  # e.g. a streaming model whose Conv/LSTM sit in the branches of an If
            found = ", ".join(f"{v} {k}" for k, v in sorted(nested.items()))
            raise ConversionFailed(
                f"nothing to quantize ({mode}) at the top level of the graph: its {found} sit inside "
                f"control-flow subgraphs ({', '.join(sorted({n.op_type for n in model.graph.node if any(a.HasField('g') or a.graphs for a in n.attribute)}))}), "
                "which onnxruntime's quantizers leave untouched, so they would stay float32 and the file "
                "would come out unchanged.",
                hint="keep it float (--quantize none); to quantize, export the model "
                     "without control flow (one graph per branch, e.g. per sample rate)")
        raise ConversionFailed(f"nothing to quantize ({mode}): the model has no Conv/MatMul/Gemm operators "
                               f"(it uses {', '.join(kinds)}); int8 quantization would leave it unchanged.",
                               hint="keep it float (--quantize none); tree ensembles and linear ML operators "
                                    "stay float32 in ONNX")


def _quantize_one(float_path: Path, out_path: Path, mode: str, calibration=None) -> list[str]:
    require("onnxruntime.quantization", "core")
    if mode in ("dynamic", "int8"):
        _check_quantizable(float_path, mode)
    notes: list[str] = []
    if mode == "fp16":
        onnx = require("onnx", "core")
        float16 = require("onnxconverter_common.float16", "core")
        progress("converting weights to float16 (onnxconverter-common)")
        model = onnx.load_model(str(float_path))
        # Transpose stays float32: onnxruntime 1.31's graph optimizer segfaults on some fp16
        # Transpose patterns (seen on torch's LSTM export); the casts around it cost little.
        with upstream("onnxconverter-common", "convert_float_to_float16"):
            model16 = float16.convert_float_to_float16(
                model, keep_io_types=True, op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + ["Transpose"])
        onnx.save_model(model16, str(out_path))
        notes.append("float16 weights and compute; inputs and outputs stay float32")
        return notes
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edgekit-quant-", dir=out_path.parent) as tmp:
        pre = Path(tmp).resolve() / "preprocessed.onnx"
        src = str(Path(float_path).resolve())
        progress("pre-processing for quantization (shape inference, graph optimisation)")
        # onnxruntime's symbolic shape inference may drop 'sym_shape_infer_temp.onnx' into the
        # working directory: run it from the temp folder so nothing lands in the user's folder
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            try:
                quant_pre_process(src, str(pre), skip_symbolic_shape=False)
            except Exception:  # symbolic shape inference fails on some graphs; ONNX shapes suffice
                with upstream("onnxruntime", "quant_pre_process"):
                    quant_pre_process(src, str(pre), skip_symbolic_shape=True)
        finally:
            os.chdir(cwd)
        if mode == "dynamic":
            progress("quantizing weights to int8 (dynamic)")
            # DefaultTensorType: graphs with ai.onnx.ml ops (scikit-learn) leave some tensors
            # without inferred types; float is what they carry
            with upstream("onnxruntime", "quantize_dynamic"):
                quantize_dynamic(str(pre), str(out_path), weight_type=QuantType.QInt8, per_channel=False,
                                 extra_options={"DefaultTensorType": 1})  # onnx.TensorProto.FLOAT
            notes.append("dynamic: int8 weights, activations quantized at run time")
        elif mode == "int8":
            if calibration is None:
                raise BadInput("--quantize int8 needs --calibration data.")
            names = _input_names(pre)
            keys = list(calibration.arrays)
            mapping = {k: k for k in keys} if set(keys) <= set(names) else dict(zip(keys, names))
            n = min(calibration.n, CALIBRATION_LIMIT)
            progress(f"calibrating and quantizing to int8 QDQ on {n} samples")
            # U8U8 (see INT8_SCHEME): the same results on x86 CPUs with and without VNNI
            with upstream("onnxruntime", "quantize_static"):
                quantize_static(str(pre), str(out_path), _Reader(calibration, mapping, CALIBRATION_LIMIT),
                                quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                                calibrate_method=CalibrationMethod.MinMax,
                                extra_options={"ActivationSymmetric": False, "WeightSymmetric": False})
            notes.append(f"int8 static QDQ, per-channel weights, calibrated on {n} samples "
                         f"from {calibration.source}")
            notes.append(INT8_SCHEME)
        else:
            raise ValueError(f"unknown ONNX quantization mode {mode}")
    return notes


# ----------------------------------------------------------------------------- latency
def _median_ms(paths: list[Path]) -> list[float]:
    from edgekit.converters.auto import median_ms

    return median_ms(paths)


def _slower_warning(mode: str, q_ms: float, f_ms: float) -> str:
    fix = ("try --quantize int8 with --calibration (static QDQ keeps conv nets at fp32 speed), or keep fp32"
           if mode == "dynamic" else "keep fp32 (--quantize none), or let --quantize auto choose")
    return (f"the {mode} model is {q_ms / f_ms:.1f}x slower than fp32 on this CPU "
            f"({q_ms:.3f} ms vs {f_ms:.3f} ms median, batch 1): {fix}")


def _compare_with_float(float_path: Path, quant_path: Path, mode: str, report: dict) -> list[str]:
    progress("timing the quantized model beside the float model")
    f_ms, q_ms = _median_ms([float_path, quant_path])
    ratio = q_ms / f_ms if f_ms > 0 else 1.0
    report["latency_vs_fp32"] = {"fp32_ms": f_ms, "quantized_ms": q_ms, "ratio": ratio, "mode": mode,
                                 "fp32_size_bytes": float_path.stat().st_size,
                                 "quantized_size_bytes": quant_path.stat().st_size,
                                 "slower": ratio > SLOWER_LIMIT}
    notes = [f"latency on this CPU (median, batch 1): fp32 {f_ms:.3f} ms, {mode} {q_ms:.3f} ms ({ratio:.2f}x)"]
    if ratio > SLOWER_LIMIT:
        report.setdefault("warnings", []).append(_slower_warning(mode, q_ms, f_ms))
    return notes
