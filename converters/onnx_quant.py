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
from edgekit.progress import progress

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


def finish(request, out_path: Path, write_float, details: dict, notes: list[str] | None = None):
    """The one "float ONNX, then quantize" step of every source that reaches ONNX (Keras and
    SavedModel, PyTorch, scikit-learn, ONNX): `write_float(path)` writes the float model. With
    --quantize none it goes straight to `out_path`; otherwise to a temporary file that `quantize`
    turns into `out_path`, timed beside it on the request's real samples (else its calibration
    data) into details['latency_vs_fp32'] and the slower-than-fp32 warning. Returns the
    ConvertResult (an edgekit.converters.registry.ConvertResult)."""
    from edgekit.converters.registry import ConvertResult

    notes = list(notes or [])
    fuse = request.quantize in FUSE_MODES and request.options.get("transformer_fusion", True)
    if request.quantize == "none" and not fuse:
        write_float(out_path)
        _check_loads(out_path, details.get("converter", "the ONNX exporter"))
        return ConvertResult(out_path, "fp32", notes, details)
    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-", dir=out_path.parent) as tmp:
        float_path = Path(tmp) / "float.onnx"
        write_float(float_path)
        _check_loads(float_path, details.get("converter", "the ONNX exporter"))
        if fuse:
            notes += transformer_fusion(float_path, request.samples if request.samples is not None
                                        else request.calibration, details)
        if request.quantize == "none":
            os.replace(float_path, out_path)
            return ConvertResult(out_path, "fp32", notes, details)
        notes += quantize(float_path, out_path, request.quantize, request.calibration, report=details,
                          samples=request.samples, keep_float=request.options.get("keep_float"))
    return ConvertResult(out_path, details.get("precision", request.quantize), notes, details)


# ----------------------------------------------------------------------------- transformer fusion
FUSE_MODES = ("none", "dynamic")  # the fused float graph is the file (fp32) or what quantize_dynamic reads
FUSED_FASTER = 0.98  # the fused graph is kept when its median latency is at most this share of the plain one
FUSION_SAMPLES = 32  # parity samples for the fused graph against the plain one


def _is_transformer(path: Path) -> bool:
    """Attention-shaped graphs: Softmax, MatMul and layer normalisation (an ONNX LayerNormalization,
    or the ReduceMean/Pow/Sqrt pattern of older exporters)."""
    import onnx

    ops = {n.op_type for n in onnx.load_model(str(path), load_external_data=False).graph.node}
    return {"Softmax", "MatMul"} <= ops and bool(ops & {"LayerNormalization", "ReduceMean"})


def transformer_fusion(float_path: Path, samples, details: dict) -> list[str]:
    """ONNX Runtime's transformer optimizer (`onnxruntime.transformers.optimizer`, model_type bert,
    opt_level 0: graph fusions only, no ORT-specific layout changes, so the file stays portable to
    ONNX Runtime Mobile) on a transformer's float ONNX file, in place. Kept only when onnxruntime
    loads it, it matches the plain graph (fp32 preset) and it is faster on this CPU; otherwise the
    plain graph stays, and the report says why. `details['transformer_fusion']` gets the fused
    operator counts, both latencies and the decision. Opt out with --no-transformer-fusion."""
    import shutil

    from edgekit.converters.auto import gate_data, median_ms
    from edgekit.loading import open_model
    from edgekit.targets import tolerance_preset
    from edgekit.validators.parity import check

    if not _is_transformer(float_path):
        return []
    progress("fusing attention/LayerNorm/GELU (onnxruntime.transformers.optimizer)")
    fused = float_path.with_name("fused.onnx")
    record: dict = {"optimizer": "onnxruntime.transformers.optimizer (model_type bert, opt_level 0)"}
    details["transformer_fusion"] = record
    try:
        import logging

        from onnxruntime.transformers.optimizer import optimize_model

        logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
        model = optimize_model(str(float_path), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
        counts = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
        model.save_model_to_file(str(fused))
    except Exception as exc:  # the optimizer's own failure: the plain graph is still a good file
        record.update(kept=False, reason=f"optimizer failed: {type(exc).__name__}: {str(exc)[:160]}")
        return [f"transformer fusion skipped: the optimizer failed ({record['reason'][18:]})"]
    record["fused"] = counts
    if not counts:
        record.update(kept=False, reason="nothing fused")
        return ["transformer fusion: onnxruntime's optimizer found nothing to fuse; the plain graph is kept"]
    what = ", ".join(f"{k}×{v}" for k, v in sorted(counts.items()))
    error = load_error(fused)
    if error is not None:
        record.update(kept=False, reason=f"does not load: {error[-160:]}")
        return [f"transformer fusion ({what}) not kept: onnxruntime cannot load the fused graph"]
    plain = open_model(float_path, runtime="onnxruntime")
    data = gate_data(plain, samples.take(min(samples.n, FUSION_SAMPLES)) if samples is not None else None)
    rep = check(plain, open_model(fused, runtime="onnxruntime"), data, precision="fp32",
                tolerance=tolerance_preset("fp32"))
    record["parity"] = {o.name: o.metrics.get("max_abs") for o in rep.outputs}
    if not rep.passed:
        record.update(kept=False, reason=f"parity failed: {rep.failure_summary()}")
        return [f"transformer fusion ({what}) not kept: it does not match the plain graph "
                f"({rep.failure_summary()[:160]})"]
    progress("timing the fused graph beside the plain one")
    plain_ms, fused_ms = median_ms([float_path, fused], data=samples)
    record.update(plain_ms=plain_ms, fused_ms=fused_ms, kept=fused_ms <= plain_ms * FUSED_FASTER)
    timing = f"median batch 1 {fused_ms:.3f} ms vs {plain_ms:.3f} ms plain"
    if not record["kept"]:
        record["reason"] = "not faster on this CPU"
        return [f"transformer fusion ({what}) not kept: not faster on this CPU ({timing})"]
    record["reason"] = "parity passed; faster"
    shutil.move(fused, float_path)
    return [f"transformer fusion (onnxruntime.transformers.optimizer): {what}; matches the plain graph, "
            f"{timing} (--no-transformer-fusion keeps the plain graph)"]


def quantize(float_path: Path, out_path: Path, mode: str, calibration=None, report: dict | None = None,
             samples=None, keep_float: list[str] | None = None) -> list[str]:
    """Write `out_path`, the `mode` quantization of the float ONNX model at `float_path`.

    Returns notes for the report. `calibration` (an edgekit Dataset keyed like the source
    model's inputs, matched to the ONNX inputs by name or position) is required for int8.
    `samples` (real inputs, else the calibration data) is what the float/quantized timing runs on.
    `report`, if given, receives structured results: 'precision', 'latency_vs_fp32', 'warnings'.
    `keep_float` (int8 only): node names, or ["auto"], to keep in float (edgekit.converters.keep_float).
    """
    report = {} if report is None else report
    keep = (keep_float or None, samples if samples is not None else calibration, report)
    notes = _quantize_one(Path(float_path), Path(out_path), mode, calibration, keep)
    report["precision"] = mode
    notes += _compare_with_float(Path(float_path), Path(out_path), mode, report,
                                 samples if samples is not None else calibration)
    return notes


def load_error(path: Path) -> str | None:
    """Why onnxruntime cannot load a file edgekit just wrote (None if it loads). A file of our own
    making that does not load is a conversion failure, never the user's bad input."""
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.log_severity_level = 3
    try:
        onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        return str(exc).strip()
    return None


def _check_loads(path: Path, converter: str) -> None:
    """The exporter's float file must load: one onnxruntime refuses (an invalid graph, e.g. tf2onnx's
    output for a stock ConvNeXt) is that converter's failure, exit 3, before parity or quantization
    would report it as a corrupt input."""
    error = load_error(path)
    if error is not None:
        short = error if len(error) <= 300 else f"{error[:120]} … {error[-180:]}"
        why = (" It left a TensorFlow function call (StatefulPartitionedCall) in the graph, which is no ONNX "
               "operator; Keras grouped convolutions (Conv2D groups>1, as in ConvNeXt) are one cause."
               if "StatefulPartitionedCall" in error else "")
        raise ConversionFailed(f"{converter} wrote an ONNX file that onnxruntime cannot load: {short}{why}",
                               hint="the exporter produced an invalid graph; try another target (tflite), or "
                                    "export the model to ONNX by hand and convert that file", details=error[-2000:])


def _casts_to_float(model) -> list[str]:
    """Names of the Cast(to=float) nodes (unnamed nodes get a name, needed to block them)."""
    from onnx import TensorProto

    names = []
    for k, node in enumerate(model.graph.node):
        if node.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.FLOAT for a in node.attribute):
            node.name = node.name or f"edgekit_cast_{k}"
            names.append(node.name)
    return names


def _unloadable(step: str, error: str, tried: list[str]) -> ConversionFailed:
    short = error if len(error) <= 300 else f"{error[:120]} … {error[-180:]}"  # ORT puts the reason last
    return ConversionFailed(f"{step} wrote a model onnxruntime cannot load ({'; '.join(tried)}): {short}",
                            hint="keep a float precision (--quantize none/fp16), or quantize with "
                                 "onnxruntime.quantization by hand and validate the result with 'edgekit validate'",
                            details=error[-2000:])


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


def _quantize_one(float_path: Path, out_path: Path, mode: str, calibration=None, keep=(None, None, None)) -> list[str]:
    require("onnxruntime.quantization", "core")
    if mode in ("dynamic", "int8"):
        _check_quantizable(float_path, mode)
    notes: list[str] = []
    if mode == "fp16":
        onnx = require("onnx", "core")
        float16 = require("onnxconverter_common.float16", "core")
        progress("converting weights to float16 (onnxconverter-common)")
        # Transpose stays float32: onnxruntime 1.31's graph optimizer segfaults on some fp16
        # Transpose patterns (seen on torch's LSTM export); the casts around it cost little.
        blocked = list(float16.DEFAULT_OP_BLOCK_LIST) + ["Transpose"]
        model = onnx.load_model(str(float_path))
        with upstream("onnxconverter-common", "convert_float_to_float16"):
            model16 = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
        onnx.save_model(model16, str(out_path))
        error = load_error(out_path)
        casts = _casts_to_float(model)
        if error is not None and casts:
            # onnxconverter-common 1.16 turns Cast(to=float) (one-hot casts, torch's arange grids) into
            # Cast(to=float16) but leaves the output typed float, and onnxruntime refuses the file
            # ("Type (tensor(float16)) of output arg ... Cast"): those Cast nodes are kept as they are.
            # (op_block_list=["Cast"] would also block the casts it inserts: it never finishes.)
            with upstream("onnxconverter-common", "convert_float_to_float16"):
                model16 = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked,
                                                           node_block_list=casts)
            onnx.save_model(model16, str(out_path))
            error = load_error(out_path)
            notes.append(f"{len(casts)} Cast-to-float node(s) kept in float32: onnxconverter-common's plain "
                         "float16 conversion of them does not load in onnxruntime")
        if error is not None:
            raise _unloadable("onnxconverter-common's float16 conversion", error,
                              ["float16 conversion"] + (["again keeping Cast-to-float nodes"] if casts else []))
        notes.insert(0, "float16 weights and compute; inputs and outputs stay float32")
        return notes
    # Pre-processing levels, tried in turn until the quantized file loads. On PP-OCR models int8
    # ended in INVALID_GRAPH on the ConvAddFusion_* biases onnxruntime's graph optimisation makes;
    # rebuilt here, the cause was their opset 11 (fixed by _at_least_opset), but a quantizer that
    # cannot take the optimised graph is still redone without the optimisation, then without
    # pre-processing, and a file that loads at no level is a conversion failure (exit 3).
    levels = [("pre-processing (shape inference, graph optimisation)", False),
              ("pre-processing without graph optimisation", True), ("no pre-processing", None)]
    tried: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgekit-quant-", dir=out_path.parent) as tmp:
        source = Path(float_path) if mode != "int8" else \
            _at_least_opset(Path(float_path), Path(tmp) / "opset.onnx", QDQ_MIN_OPSET, notes)
        for level, (what, skip_opt) in enumerate(levels):
            pre = Path(tmp).resolve() / f"preprocessed{level}.onnx"
            try:
                _pre_process(source, pre, skip_opt, tmp)
            except Exception as exc:  # the next level does less
                tried.append(f"{what}: failed ({str(exc).strip()[:100]})")
                continue
            try:
                step_notes = _quantize_file(pre, out_path, mode, calibration)
            except ConversionFailed as exc:  # the quantizer itself broke on this level's graph
                if level == len(levels) - 1:
                    raise
                tried.append(f"{mode} after {what}: failed ({exc.message[:100]})")
                continue
            error = load_error(out_path)
            tried.append(f"{mode} after {what}" + ("" if error is None else ": does not load"))
            if error is None and keep[0] and mode == "int8":
                from edgekit.converters import keep_float

                step_notes += keep_float.apply(pre, out_path, keep[0], keep[1], lambda exclude: _quantize_file(
                    pre, out_path, mode, calibration, exclude), keep[2])
            if error is None:
                if level:
                    step_notes.append(f"quantized after {what}: with full pre-processing onnxruntime's quantizer "
                                      "wrote a file that does not load")
                return notes + step_notes
        raise _unloadable(f"onnxruntime.quantization ({mode})", error, tried)


# per-channel DequantizeLinear (its `axis`) and int32 bias scales per channel need opset 13;
# PP-OCR files ship at opset 11, where onnxruntime's quantizer writes files that do not load
QDQ_MIN_OPSET = 13


def _at_least_opset(float_path: Path, upgraded: Path, opset: int, notes: list[str]) -> Path:
    """`float_path`, or a copy converted to `opset` when its ai.onnx opset is older (onnx's version
    converter); the original if the converter cannot (the quantized file's load check then says)."""
    import onnx
    from onnx import version_converter

    model = onnx.load_model(str(float_path))
    old = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if old >= opset:
        return float_path
    progress(f"converting the model from opset {old} to {opset} for per-channel quantization")
    try:
        onnx.save_model(version_converter.convert_version(model, opset), str(upgraded))
    except Exception:  # an op without an adapter: quantize as is
        return float_path
    notes.append(f"converted from opset {old} to {opset} before quantizing: per-channel QDQ needs opset "
                 f"{opset} (at {old} onnxruntime's quantizer writes a file that does not load)")
    return upgraded


def _pre_process(float_path: Path, pre: Path, skip_optimization: bool | None, tmp: str) -> None:
    """onnxruntime's quant_pre_process at a level (None: none at all, the float file as is)."""
    import shutil

    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = str(Path(float_path).resolve())
    if skip_optimization is None:
        shutil.copyfile(src, pre)
        return
    progress("pre-processing for quantization (shape inference" +
             (")" if skip_optimization else ", graph optimisation)"))
    # onnxruntime's symbolic shape inference may drop 'sym_shape_infer_temp.onnx' into the
    # working directory: run it from the temp folder so nothing lands in the user's folder
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        try:
            quant_pre_process(src, str(pre), skip_symbolic_shape=False, skip_optimization=skip_optimization)
        except Exception:  # symbolic shape inference fails on some graphs; ONNX shapes suffice
            quant_pre_process(src, str(pre), skip_symbolic_shape=True, skip_optimization=skip_optimization)
    finally:
        os.chdir(cwd)


def _quantize_file(pre: Path, out_path: Path, mode: str, calibration, exclude=()) -> list[str]:
    """One quantizer call on a pre-processed file (the argument choice lives here)."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    notes: list[str] = []
    # a library failure raises ConversionFailed (errors.upstream): the caller tries the next level
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
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": False},
                            nodes_to_exclude=list(exclude))
        notes.append(f"int8 static QDQ, per-channel weights, calibrated on {n} samples "
                     f"from {calibration.source}")
        notes.append(INT8_SCHEME)
    else:
        raise ValueError(f"unknown ONNX quantization mode {mode}")
    return notes


# ----------------------------------------------------------------------------- latency
def _median_ms(paths: list[Path], samples=None) -> list[float]:
    from edgekit.converters.auto import median_ms

    return median_ms(paths, data=samples)


def _slower_warning(mode: str, q_ms: float, f_ms: float) -> str:
    fix = ("try --quantize int8 with --calibration (static QDQ keeps conv nets at fp32 speed), or keep fp32"
           if mode == "dynamic" else "keep fp32 (--quantize none), or let --quantize auto choose")
    return (f"the {mode} model is {q_ms / f_ms:.1f}x slower than fp32 on this CPU "
            f"({q_ms:.3f} ms vs {f_ms:.3f} ms median, batch 1): {fix}")


def _compare_with_float(float_path: Path, quant_path: Path, mode: str, report: dict, samples=None) -> list[str]:
    from edgekit.validators.latency import timed_on

    progress("timing the quantized model beside the float model" + (f" on {samples.source}" if samples else ""))
    f_ms, q_ms = _median_ms([float_path, quant_path], samples)
    ratio = q_ms / f_ms if f_ms > 0 else 1.0
    report["latency_vs_fp32"] = {"fp32_ms": f_ms, "quantized_ms": q_ms, "ratio": ratio, "mode": mode,
                                 "fp32_size_bytes": float_path.stat().st_size,
                                 "quantized_size_bytes": quant_path.stat().st_size,
                                 "slower": ratio > SLOWER_LIMIT, "timed_on": timed_on(samples)}
    notes = [f"latency on this CPU (median, batch 1): fp32 {f_ms:.3f} ms, {mode} {q_ms:.3f} ms ({ratio:.2f}x)"]
    if ratio > SLOWER_LIMIT:
        report.setdefault("warnings", []).append(_slower_warning(mode, q_ms, f_ms))
    return notes
