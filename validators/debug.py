"""`edgekit debug`: where does an ONNX artifact stop computing what its float model computes?

The float reference is an ONNX file: the source itself when it is ONNX, else the source
converted to fp32 ONNX by edgekit's own converter (so a Keras/torch/sklearn source is compared
through its float ONNX graph). Every node output of both graphs is exposed as a graph output
(as onnxruntime's qdq_loss_debug does), both run on the same samples, and each float tensor
is matched by name to the artifact tensor that the next layer reads: `T_DequantizeLinear_Output`
when the artifact quantizes T (QDQ), else T itself. A float tensor without a match (fused or
renamed in the artifact) is listed as unmatched, never guessed.

Per matched tensor: cosine, SNR, max abs error; for QDQ tensors the activation scale/zero-point;
for quantized Gemm/Conv/MatMul nodes the SNR of the dequantized weights against the float
weights (error from the weights) beside the loss of the layer itself (input SNR - output SNR).
The first divergence is the first tensor, in graph order, whose SNR falls below the
precision's floor (the preset's min_snr_db, or FP_FLOOR_DB for float precisions).

TFLite artifacts are compared through the interpreter's preserve-all-tensors mode; ExecuTorch
artifacts through a copy of the program whose XNNPACK nodes all write method outputs (see
expose_pte), matched to the source's torch.export nodes and their nn.Module paths. The stage (`edgekit.pipeline.debug_stage`) builds the
float reference with edgekit's converters; this module only compares.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from edgekit.errors import BadInput
from edgekit.progress import progress

DQ_SUFFIX = "_DequantizeLinear_Output"
FP_FLOOR_DB = {"fp32": 60.0, "fp16": 40.0}
MAX_SAMPLES = 128
MEMORY_BUDGET = 1 << 30  # bytes of intermediate tensors kept (both files): fewer samples for big models
WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def snr_db(ref: np.ndarray, cand: np.ndarray) -> float:
    r, c = ref.astype(np.float64).ravel(), cand.astype(np.float64).ravel()
    noise = float(np.sum((r - c) ** 2))
    return 200.0 if noise < 1e-12 else float(10 * np.log10(max(np.sum(r ** 2), 1e-12) / noise))


def channel_snr_db(ref: np.ndarray, cand: np.ndarray) -> float | None:
    """Median over channels (axis 1: [N, C] and NCHW alike) of the per-channel SNR: one outlier
    channel that takes a tensor's whole quantization range leaves the others near 0 dB, which
    the whole-tensor SNR (dominated by the outlier) hides. Channels that are all zero are skipped."""
    if ref.ndim < 2 or ref.shape[1] < 2:
        return None
    r = np.moveaxis(ref.astype(np.float64), 1, 0).reshape(ref.shape[1], -1)
    c = np.moveaxis(cand.astype(np.float64), 1, 0).reshape(ref.shape[1], -1)
    energy, noise = np.sum(r ** 2, axis=1), np.sum((r - c) ** 2, axis=1)
    live = energy > 1e-12
    if not live.any():
        return None
    return float(np.median(10 * np.log10(energy[live] / np.maximum(noise[live], energy[live] * 1e-20))))


def _expose_all(path: Path, out: Path) -> list[str]:
    """Write `path` with every node output added as a graph output; return them in graph order."""
    import onnx

    model = onnx.load_model(str(path))
    have = {o.name for o in model.graph.output}
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    for node in model.graph.node:
        for t in node.output:
            if t and t not in names:
                names.append(t)
                if t not in have:
                    model.graph.output.append(onnx.ValueInfoProto(name=t))
    onnx.save_model(model, str(out))
    return names


def _session(path: Path):
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    return onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_io(path: Path) -> list[tuple[str, tuple, str]]:
    s = _session(path)
    return [(i.name, tuple(d if isinstance(d, int) else None for d in i.shape), i.type) for i in s.get_inputs()]


def check_same_inputs(ref: list, cand: list, source_name: str, artifact_name: str, any_int: bool = False) -> None:
    """Exit 2 when the two files (their [(name, shape, type)] inputs) cannot be fed the same inputs,
    saying which input differs and how. `any_int`: an integer input of the artifact (TFLite int8
    I/O) takes the float data quantized."""

    def fmt(ios):
        return ", ".join(f"{n} [{'x'.join('N' if d is None else str(d) for d in s)}] {t}" for n, s, t in ios)

    why = None
    if len(ref) != len(cand):
        why = f"{source_name} takes {len(ref)} input(s) and {artifact_name} takes {len(cand)}"
    else:
        for (rn, rs, rt), (cn, cs, ct) in zip(ref, cand):
            if (rt != ct and not (any_int and "int" in ct)) or len(rs) != len(cs) or any(a and b and a != b for a, b in zip(rs[1:], cs[1:])):
                why = f"input '{rn}' of {source_name} does not match input '{cn}' of {artifact_name}"
                break
    if why:
        raise BadInput(f"cannot compare layers: {why} ({source_name}: {fmt(ref)}; {artifact_name}: {fmt(cand)}).",
                       hint="debug an artifact against the model it was converted from")


def run_all(path: Path, feeds: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Every output of `path` over n samples (one batch if the model takes it, else one by one)."""
    sess = _session(path)
    names = [o.name for o in sess.get_outputs()]
    inputs = [i.name for i in sess.get_inputs()]
    try:
        values = sess.run(names, {k: feeds[k] for k in inputs})
        return dict(zip(names, values))
    except Exception:  # a fixed batch of 1: sample by sample
        rows = [sess.run(names, {k: feeds[k][i:i + 1] for k in inputs}) for i in range(n)]
        return {name: np.concatenate([r[j] for r in rows]) for j, name in enumerate(names)}


def _initializers(model) -> dict:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _qparams(model, inits: dict) -> dict[str, dict]:
    """tensor -> {scale, zero_point} of the QuantizeLinear that quantizes it (activations)."""
    out = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            s = inits.get(node.input[1])
            z = inits.get(node.input[2]) if len(node.input) > 2 else None
            if s is not None and s.size == 1:
                out[node.input[0]] = {"scale": float(s.reshape(-1)[0]),
                                      "zero_point": None if z is None else int(z.reshape(-1)[0])}
    return out


def _dequantized_weights(model, inits: dict) -> dict[str, np.ndarray]:
    """DequantizeLinear output name -> its float value, for constant (weight) inputs."""
    out = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        q = inits[node.input[0]].astype(np.float64)
        s = inits.get(node.input[1])
        z = inits.get(node.input[2]) if len(node.input) > 2 else None
        if s is None:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if s.size > 1 and q.ndim:
            shape[axis] = -1
        zz = 0.0 if z is None else z.astype(np.float64).reshape(shape)
        out[node.output[0]] = (q - zz) * s.astype(np.float64).reshape(shape)
    return out


def _computing_node(node, producer: dict, inits: dict):
    """The node that computes a tensor, looking through the Q/DQ pair that follows it in a QDQ graph."""
    while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input[0] not in inits:
        node = producer.get(node.input[0])
    return node


def _weight_snr(art_node, art_weights: dict, float_inits: dict) -> float | None:
    """SNR of a quantized node's dequantized weights against the float weights of the same name."""
    if art_node is None or art_node.op_type not in WEIGHT_OPS:
        return None
    for a in art_node.input[1:]:
        f = float_inits.get(a[:-len(DQ_SUFFIX)] if a.endswith(DQ_SUFFIX) else a)
        if a in art_weights and f is not None and art_weights[a].shape == f.shape:
            return snr_db(f, art_weights[a])
    return None


def compare_layers(float_path: Path, artifact: Path, feeds: dict[str, np.ndarray], n: int,
                   floor_db: float) -> dict:
    """The layer table of `artifact` against `float_path` on `feeds` (see the module doc)."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="edgekit-debug-") as tmp:
        f_all, a_all = Path(tmp) / "float.onnx", Path(tmp) / "artifact.onnx"
        order = _expose_all(float_path, f_all)
        _expose_all(artifact, a_all)
        per_sample = 2 * sum(v.nbytes for v in run_all(f_all, {k: v[:1] for k, v in feeds.items()}, 1).values())
        n = max(1, min(n, MEMORY_BUDGET // max(per_sample, 1)))
        feeds = {k: v[:n] for k, v in feeds.items()}
        progress(f"running the float model with every tensor exposed ({len(order)} tensors, {n} samples)")
        f_out = run_all(f_all, feeds, n)
        progress("running the artifact with every tensor exposed")
        a_out = run_all(a_all, feeds, n)
    fm, am = onnx.load_model(str(float_path)), onnx.load_model(str(artifact))
    f_inits, a_inits = _initializers(fm), _initializers(am)
    qp, a_weights = _qparams(am, a_inits), _dequantized_weights(am, a_inits)
    f_producer = {t: node for node in fm.graph.node for t in node.output}
    a_producer = {t: node for node in am.graph.node for t in node.output}
    layers, unmatched, snr_of = [], [], {}
    for t in order:
        node = f_producer.get(t)
        ref = f_out.get(t, feeds.get(t))
        if ref is None or not np.issubdtype(np.asarray(ref).dtype, np.floating):
            continue
        ins = [snr_of[i] for i in (node.input if node is not None else ()) if i in snr_of]
        in_snr = min(ins) if ins else (200.0 if node is not None else None)
        match = t + DQ_SUFFIX if t + DQ_SUFFIX in a_out else (t if t in a_out else None)
        if node is None and match is None:
            continue  # a graph input the artifact does not quantize
        if match is None or np.shape(a_out[match]) != np.shape(ref):
            snr_of[t] = in_snr  # what flows through an unmatched tensor is at best what went in
            unmatched.append({"source_layer": node.name or t, "tensor": t, "op": node.op_type,
                              "why": "no tensor of that name and shape in the artifact (fused or renamed)"})
            continue
        art_node = _computing_node(a_producer.get(match), a_producer, a_inits)
        row = {"source_layer": (node.name or t) if node is not None else t, "artifact_tensor": match,
               "op": node.op_type if node is not None else "input",
               "node": art_node.name if art_node is not None else None,
               **tensor_metrics(np.asarray(ref), np.asarray(a_out[match]), in_snr, 1)}
        snr_of[t] = row["effective_snr_db"]
        if t in qp:
            row.update(qp[t])
        w = _weight_snr(art_node, a_weights, f_inits)
        if w is not None:
            row["weight_snr_db"] = w
        layers.append(row)
    return {**summarize(layers, unmatched, floor_db), "samples": n}


def weight_activation_split(float_path: Path, artifact: Path, row: dict, feeds: dict, n: int) -> dict | None:
    """For one quantized layer of a QDQ ONNX file (a row of compare_layers): the effective SNR
    (the lower of whole-tensor and median channel SNR) of its output with float weights and int8
    activations (the artifact with that layer's weights swapped for the float ones), and with
    int8 weights and float activations (the float graph with that layer's weights swapped for
    their dequantized int8 values), beside the full int8 value. None when the layer has no
    quantized weight."""
    import onnx
    from onnx import numpy_helper

    am, fm = onnx.load_model(str(artifact)), onnx.load_model(str(float_path))
    f_inits, a_weights = _initializers(fm), _dequantized_weights(am, _initializers(am))
    node = next((nd for nd in am.graph.node if nd.name == row.get("node")), None)
    if node is None or node.op_type not in WEIGHT_OPS:
        return None
    weights = [i for i, t in enumerate(node.input)
               if t in a_weights and t.endswith(DQ_SUFFIX) and t[:-len(DQ_SUFFIX)] in f_inits]
    if not weights:
        return None
    ref_name, out = row["source_layer"], row["artifact_tensor"]
    with tempfile.TemporaryDirectory(prefix="edgekit-split-") as tmp:
        def run(model, name: str) -> np.ndarray | None:
            path, exposed = Path(tmp) / "m.onnx", Path(tmp) / "m.all.onnx"
            onnx.save_model(model, str(path))
            _expose_all(path, exposed)
            return run_all(exposed, feeds, n).get(name)

        ref = run(fm, ref_name)
        if ref is None:
            return None
        for i in weights:  # the artifact, this layer's weights float
            w = node.input[i][:-len(DQ_SUFFIX)]
            am.graph.initializer.append(numpy_helper.from_array(f_inits[w], f"{w}_edgekit_float"))
            node.input[i] = f"{w}_edgekit_float"
        float_weights = run(am, out)
        swapped = {node.input[i].removesuffix("_edgekit_float") for i in weights}
        for init in fm.graph.initializer:  # the float graph, this layer's weights int8 (dequantized)
            if init.name in swapped:
                init.CopyFrom(numpy_helper.from_array(
                    a_weights[init.name + DQ_SUFFIX].astype(numpy_helper.to_array(init).dtype), init.name))
        int8_weights = run(fm, ref_name)

    def eff(v):
        return None if v is None or v.shape != ref.shape else tensor_metrics(ref, v, None, 1)["effective_snr_db"]

    return {"layer": row["source_layer"], "node": node.name, "int8_snr_db": row["effective_snr_db"],
            "float_weights_snr_db": eff(float_weights), "float_activations_snr_db": eff(int8_weights)}


def tensor_metrics(ref: np.ndarray, cand: np.ndarray, in_snr: float | None, channel_axis: int) -> dict:
    """cosine, SNR, median channel SNR, max abs, and the SNR lost against the layer's input
    (`in_snr`; None for a graph input: its own quantization, no layer loss)."""
    r, c = ref.astype(np.float64).ravel(), cand.astype(np.float64).ravel()
    finite = bool(np.isfinite(c).all())
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    cos = 1.0 if nr < 1e-12 and nc < 1e-12 else float(np.dot(r, c) / max(nr * nc, 1e-12))
    snr = snr_db(ref, cand) if finite else -math.inf
    ch = channel_snr_db(np.moveaxis(ref, channel_axis, 1), np.moveaxis(cand, channel_axis, 1)) \
        if finite and ref.ndim >= 2 else None
    effective = snr if ch is None else min(snr, ch)
    in_snr = effective if in_snr is None else in_snr
    return {"cosine": cos, "snr_db": snr, "channel_snr_db": ch, "effective_snr_db": effective,
            "max_abs": (float(np.abs(r - c).max()) if r.size else 0.0) if finite else math.inf,
            "loss_db": max(0.0, in_snr - effective) if finite else math.inf, "finite": finite}


def summarize(layers: list[dict], unmatched: list[dict], floor_db: float) -> dict:
    first = next((r for r in layers if r["effective_snr_db"] < floor_db), None)
    worst = sorted((r for r in layers if r["loss_db"] > 0), key=lambda r: -r["loss_db"])[:5]
    return {"layers": layers, "unmatched": unmatched, "floor_db": floor_db,
            "first_divergence": None if first is None else
            {k: first[k] for k in ("source_layer", "artifact_tensor", "node", "op", "cosine", "snr_db",
                                    "channel_snr_db", "max_abs") + tuple(k for k in ("scale", "zero_point") if k in first)},
            "worst": [{"source_layer": r["source_layer"], "node": r["node"], "loss_db": r["loss_db"]} for r in worst]}


# ----------------------------------------------------------------------------- TFLite
TFLITE_SAMPLES = 64  # the interpreter runs one sample at a time


def tflite_interpreter(path: Path):
    from edgekit.errors import require

    mod = require("ai_edge_litert.interpreter", "tf")
    # no XNNPACK: delegated intermediates are not kept; the builtin kernels keep every tensor
    interp = mod.Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    return interp


def _dequant(value: np.ndarray, detail: dict) -> np.ndarray:
    q = detail.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []), dtype=np.float64)
    if not np.issubdtype(value.dtype, np.integer) or not scales.size:
        return value.astype(np.float64)
    zeros = np.asarray(q.get("zero_points", [0] * scales.size), dtype=np.float64)
    shape = [1] * value.ndim
    if scales.size > 1:
        shape[q.get("quantized_dimension", 0)] = -1
    return (value.astype(np.float64) - zeros.reshape(shape)) * scales.reshape(shape)


def tflite_io(path: Path) -> list[tuple[str, tuple, str]]:
    d = tflite_interpreter(path).get_input_details()
    return [(i["name"], tuple(None if s < 0 else int(s) for s in i["shape_signature"]), str(i["dtype"].__name__))
            for i in d]


def tflite_run(path: Path, feeds: list[np.ndarray], n: int) -> tuple[dict, list, dict]:
    """{tensor name: [n, ...] float values} of every op output, the ops (in execution order) and details."""
    interp = tflite_interpreter(path)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    ops = [o for o in interp._get_ops_details() if o["op_name"] != "DELEGATE"]
    ins = interp.get_input_details()
    outs = [i for o in ops for i in o["outputs"] if i >= 0]
    values: dict[int, list] = {i: [] for i in outs + [d["index"] for d in ins]}
    for k in range(n):
        for d, x in zip(ins, feeds):
            v = x[k:k + 1]
            if np.issubdtype(d["dtype"], np.integer) and not np.issubdtype(v.dtype, np.integer):
                sc, zp = d["quantization"]
                info = np.iinfo(d["dtype"])
                v = np.clip(np.round(v / (sc or 1.0) + zp), info.min, info.max)
            interp.set_tensor(d["index"], v.astype(d["dtype"]))
        interp.invoke()
        for i in values:
            values[i].append(_dequant(interp.get_tensor(i), details[i]))
    named = {details[i]["name"]: np.concatenate(v) for i, v in values.items() if v}
    return named, ops, details


def compare_tflite(float_path: Path, artifact: Path, feeds: list[np.ndarray], n: int, floor_db: float) -> dict:
    """The layer table of a TFLite artifact against a float TFLite file: tensors matched by name."""
    n = min(n, TFLITE_SAMPLES)
    feeds = [f[:n] for f in feeds]
    progress(f"running the float TFLite file with every tensor kept ({n} samples)")
    f_vals, f_ops, f_det = tflite_run(float_path, feeds, n)
    progress("running the artifact with every tensor kept")
    a_vals, a_ops, a_det = tflite_run(artifact, feeds, n)
    a_by_name = {a_det[o["outputs"][0]]["name"]: o for o in a_ops if len(o["outputs"])}
    a_interp = tflite_interpreter(artifact)
    f_interp = tflite_interpreter(float_path)
    layers, unmatched, snr_of = [], [], {}
    for op in a_ops:  # the artifact's QUANTIZE of a float input: the input as its first layer sees it
        src = a_det[op["inputs"][0]]["name"] if op["op_name"] == "QUANTIZE" and len(op["inputs"]) else None
        if src in f_vals and len(op["outputs"]):
            snr_of[src] = snr_db(f_vals[src], a_vals[a_det[op["outputs"][0]]["name"]])
    for op in f_ops:
        for t in (i for i in op["outputs"] if i >= 0):
            name = f_det[t]["name"]
            ref = f_vals[name]
            ins = [snr_of[f_det[i]["name"]] for i in op["inputs"] if i >= 0 and f_det[i]["name"] in snr_of]
            in_snr = min(ins) if ins else 200.0
            if name not in a_vals or a_vals[name].shape != ref.shape:
                snr_of[name] = in_snr
                unmatched.append({"source_layer": name, "tensor": name, "op": op["op_name"],
                                  "why": "no tensor of that name and shape in the artifact (fused or renamed)"})
                continue
            row = {"source_layer": name, "artifact_tensor": name, "op": op["op_name"], "node": None,
                   **tensor_metrics(ref, a_vals[name], in_snr, -1)}
            snr_of[name] = row["effective_snr_db"]
            q = (a_det[a_by_name[name]["outputs"][0]] if name in a_by_name else {}).get("quantization", (0.0, 0))
            if q[0]:
                row.update({"scale": float(q[0]), "zero_point": int(q[1])})
            a_op = a_by_name.get(name)
            if a_op is not None and len(a_op["inputs"]) > 1 and len(op["inputs"]) > 1 and a_op["inputs"][1] >= 0:
                wd = a_det[a_op["inputs"][1]]
                if np.issubdtype(wd["dtype"], np.integer) and op["inputs"][1] >= 0:
                    try:
                        w_ref = f_interp.get_tensor(op["inputs"][1]).astype(np.float64)
                        w_q = _dequant(a_interp.get_tensor(a_op["inputs"][1]), wd)
                        if w_ref.shape == w_q.shape:
                            row["weight_snr_db"] = snr_db(w_ref, w_q)
                    except ValueError:  # a tensor the interpreter does not expose
                        pass
            layers.append(row)
    return {**summarize(layers, unmatched, floor_db), "samples": n}


# ----------------------------------------------------------------------------- ExecuTorch
# ETDump records only a delegate's inputs and outputs (one event for a fully delegated model), so
# the .pte is rewritten instead: every tensor an XNNPACK node writes becomes an output of its
# delegate and of the method, with its own planned buffer, and the rewritten program runs on the
# ExecuTorch runtime. The XNNPACK graph carries no layer names, so its nodes are matched in order
# to the source's torch.export nodes by operator and element count.
XNN_OPS = {  # XNNPACK node -> the aten ops it computes
    "FullyConnected": {"linear", "addmm", "mm", "matmul"}, "Conv2d": {"convolution", "conv2d", "conv1d"},
    "DepthwiseConv2d": {"convolution", "conv2d", "conv1d"}, "ConvTranspose2d": {"convolution", "conv_transpose2d"},
    "Clamp": {"relu", "hardtanh", "clamp", "relu6"}, "Add": {"add"}, "Subtract": {"sub"}, "Multiply": {"mul"},
    "Div": {"div"}, "Sigmoid": {"sigmoid"}, "Tanh": {"tanh"}, "Softmax": {"softmax", "_softmax"},
    "GlobalAvgPooling2d": {"mean", "adaptive_avg_pool2d"}, "AvgPooling2d": {"avg_pool2d"},
    "MaxPooling2d": {"max_pool2d", "max_pool2d_with_indices"}, "HardSwish": {"hardswish"}, "Gelu": {"gelu"},
    "LeakyReLU": {"leaky_relu"}, "ELU": {"elu"}, "BatchMatrixMultiply": {"bmm", "matmul"},
    "Concatenate2": {"cat"}, "Concatenate3": {"cat"}, "Concatenate4": {"cat"}, "Concatenate5": {"cat"},
    "Abs": {"abs"}, "Negate": {"neg"}, "SquareRoot": {"sqrt"}, "Exp": {"exp"}, "Log": {"log"},
}
ACTIVATION_OPS = {"relu", "hardtanh", "clamp", "relu6"}  # what XNNPACK fuses into the node before (output_min_max)
XNN_DTYPES = {"xnn_datatype_fp32": "float32", "xnn_datatype_qint8": "int8", "xnn_datatype_quint8": "uint8"}


def _xnn_graph(blob: bytes) -> tuple[dict, bytes]:
    """An XNNPACK delegate payload as (its graph as JSON, its constant data)."""
    import json
    import re

    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader, _get_schema_bytes
    from executorch.exir._serialize._flatbuffer import _flatc_decompile

    h = XNNHeader.from_bytes(blob[:XNNHeader.EXPECTED_LENGTH])
    with tempfile.TemporaryDirectory(prefix="edgekit-xnn-") as d:
        Path(d, "schema.fbs").write_bytes(_get_schema_bytes())
        Path(d, "g.bin").write_bytes(blob[h.flatbuffer_offset:h.flatbuffer_offset + h.flatbuffer_size])
        _flatc_decompile(d, str(Path(d, "schema.fbs")), str(Path(d, "g.bin")), ["--raw-binary"])
        text = Path(d, "g.json").read_text()
    graph = json.loads(re.sub(r":\s*(-?)inf\b", r": \1Infinity", text))  # flatc writes inf, JSON says Infinity
    return graph, blob[h.constant_data_offset:h.constant_data_offset + h.constant_data_size]


def _xnn_tensor(value: dict) -> dict:
    v = value["xvalue_union"]
    return v.get("tensor_value", v)


def expose_pte(data: bytes) -> tuple[bytes, list[dict]]:
    """The program with every tensor its XNNPACK nodes write added as a method output (after the
    model's own); taps: one dict per node output in graph order (its method output index, node type,
    fused activation, dims, dtype, per-tensor scale/zero-point)."""
    from executorch.backends.xnnpack.serialization.xnnpack_graph_schema import XNNGraph
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import serialize_xnnpack_binary
    from executorch.exir import schema as S
    from executorch.exir._serialize._dataclass import _json_to_dataclass
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

    scalar = {"float32": S.ScalarType.FLOAT, "int8": S.ScalarType.CHAR, "uint8": S.ScalarType.BYTE}
    pte = deserialize_pte_binary(data)
    plan = pte.program.execution_plan[0]
    calls = {i.instr_args.delegate_index: i.instr_args for c in plan.chains for i in c.instructions
             if isinstance(i.instr_args, S.DelegateCall)}
    taps = []
    for di, d in enumerate(plan.delegates):
        if "xnnpack" not in d.id.lower() or d.processed.location != S.DataLocation.INLINE or di not in calls:
            continue
        store = pte.program.backend_delegate_data[d.processed.index]
        graph, consts = _xnn_graph(store.data)
        values = {_xnn_tensor(v)["id_out"]: v for v in graph["xvalues"]}
        ins, outs = sorted(graph["input_ids"]), sorted(graph["output_ids"])
        arg_of = dict(zip(ins + outs, calls[di].args))  # XNNPACK binds externals in id order
        template = plan.values[arg_of[outs[0]]].val
        new = []
        for node in graph["xnodes"]:
            kind = node["xnode_union_type"].removeprefix("XNN")
            oid = node["xnode_union"].get("output_id")
            t = _xnn_tensor(values[oid]) if oid in values else None
            if t is None or t["datatype"] not in XNN_DTYPES or t["flags"] & 1 or (kind == "Convert" and (
                    t["datatype"] == "xnn_datatype_fp32" or node["xnode_union"]["input_id"] not in ins)):
                continue  # inputs, dequantizing Converts, and Converts other than the input's quantization
            q = values[oid]["xvalue_union"].get("quant_params") or {}
            dtype = XNN_DTYPES[t["datatype"]]
            tap = {"kind": kind, "fused": "output_min_max" in node, "dims": list(t["dims"]), "dtype": dtype,
                   "scale": q.get("scale"), "zero_point": q.get("zero_point"), "debug_handle": node.get("debug_handle")}
            if oid in outs:  # already a model output
                taps.append({**tap, "output": plan.outputs.index(arg_of[oid])})
                continue
            t["flags"] = 2  # XNN_VALUE_FLAG_EXTERNAL_OUTPUT
            plan.non_const_buffer_sizes.append(int(np.prod(t["dims"])) * np.dtype(dtype).itemsize)
            arg_of[oid] = len(plan.values)
            plan.values.append(S.EValue(S.Tensor(
                scalar_type=scalar[dtype], storage_offset=0, sizes=list(t["dims"]),
                dim_order=list(range(len(t["dims"]))), requires_grad=False, layout=template.layout,
                data_buffer_idx=0, shape_dynamism=template.shape_dynamism,
                allocation_info=S.AllocationDetails(memory_id=len(plan.non_const_buffer_sizes) - 1,
                                                    memory_offset_low=0, memory_offset_high=0))))
            taps.append({**tap, "output": len(plan.outputs) + len(new)})
            new.append(oid)
        graph["output_ids"] = sorted(outs + new)
        externals = ins + graph["output_ids"]
        for k, vid in enumerate(externals):
            _xnn_tensor(values[vid])["external_id"] = k
        graph["num_externs"] = len(externals)
        calls[di].args = [arg_of[v] for v in externals]
        plan.outputs += [arg_of[v] for v in new]
        store.data = serialize_xnnpack_binary(_json_to_dataclass(graph, XNNGraph), bytearray(consts))
    return bytes(serialize_pte_binary(pte)), taps


def pte_run(data: bytes, feeds: list[np.ndarray], n: int) -> tuple[list[np.ndarray], list[dict]]:
    """Every XNNPACK node's output (dequantized, [n, ...]) over n samples, one sample at a time
    (edgekit's .pte files have batch 1), and the taps describing them."""
    import torch

    from edgekit.errors import require

    rt = require("executorch.runtime", "torch")
    exposed, taps = expose_pte(data)
    with tempfile.TemporaryDirectory(prefix="edgekit-debug-") as tmp:
        path = Path(tmp) / "exposed.pte"
        path.write_bytes(exposed)
        method = rt.Runtime.get().load_program(str(path)).load_method("forward")
        rows: list[list[np.ndarray]] = [[] for _ in taps]
        for k in range(n):
            outs = method.execute([torch.from_numpy(np.ascontiguousarray(f[k:k + 1])) for f in feeds])
            for j, tap in enumerate(taps):
                v = outs[tap["output"]].detach().numpy().astype(np.float64)
                if taps[j]["scale"] is not None and taps[j]["dtype"] != "float32":
                    v = (v - (taps[j]["zero_point"] or 0)) * taps[j]["scale"]
                rows[j].append(v)
    return [np.concatenate(r) for r in rows], taps


def module_path(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def torch_intermediates(gm, feeds: list[np.ndarray], n: int) -> list[dict]:
    """The float output of every call_function node of a graph module (a torch.export program's
    .module(), or its PT2E-quantized version) over n samples, in graph order: {node, op, module
    (nn.Module path), value, users}."""
    import torch

    nodes = [nd for nd in gm.graph.nodes if nd.op == "call_function"]
    seen: dict[str, list] = {nd.name: [] for nd in nodes}

    class Capture(torch.fx.Interpreter):
        def run_node(self, nd):
            out = super().run_node(nd)
            if nd.name in seen and isinstance(out, torch.Tensor) and out.is_floating_point():
                seen[nd.name].append(out.detach().numpy().astype(np.float64))
            return out

    with torch.no_grad():
        for k in range(n):
            Capture(gm).run(*[torch.from_numpy(np.ascontiguousarray(f[k:k + 1])) for f in feeds])
    return [{"node": nd.name, "op": str(getattr(nd.target, "__name__", nd.target)).split(".")[0],
             "module": module_path(nd), "value": np.concatenate(seen[nd.name]),
             "users": [u.name for u in nd.users]} for nd in nodes if len(seen[nd.name]) == n]


def _as_ref_layout(value: np.ndarray, ref: np.ndarray) -> np.ndarray | None:
    if value.shape == ref.shape:
        return value
    if value.ndim == 4 and np.moveaxis(value, -1, 1).shape == ref.shape:  # XNNPACK's NHWC
        return np.moveaxis(value, -1, 1)
    return value.reshape(ref.shape) if value.size == ref.size else None


def compare_pte(ep, artifact: Path, feeds: list[np.ndarray], n: int, floor_db: float) -> dict:
    """The layer table of an ExecuTorch (XNNPACK) artifact against the source's torch.export program."""
    n = min(n, TFLITE_SAMPLES)
    feeds = [f[:n] for f in feeds]
    progress(f"running the torch.export program and keeping every node's output ({n} samples)")
    ref = torch_intermediates(ep.module(), feeds, n)
    progress("running the artifact with every XNNPACK tensor exposed")
    values, taps = pte_run(artifact.read_bytes(), feeds, n)
    by_name = {r["node"]: r for r in ref}
    layers, unmatched, pos = [], [], 0
    for value, tap in zip(values, taps):
        if tap["kind"] == "Convert":  # the artifact's int8 input: what its first layer sees
            if len(feeds) == 1 and value.size == feeds[0].size and not layers:
                x = feeds[0].astype(np.float64)
                layers.append({"source_layer": "input", "artifact_tensor": "xnnpack input (Convert)", "op": "quantize",
                               "node": None, **tensor_metrics(x, value.reshape(x.shape), None, 1),
                               "scale": float(tap["scale"]), "zero_point": int(tap["zero_point"] or 0)})
            continue
        ops = XNN_OPS.get(tap["kind"])
        j = next((j for j in range(pos, len(ref)) if (ops is None or ref[j]["op"] in ops)
                  and _as_ref_layout(value, ref[j]["value"]) is not None), None)
        if j is None:
            continue  # an XNNPACK-only node (a layout transpose): nothing in the source to compare with
        r = ref[j]
        for skipped in ref[pos:j]:
            unmatched.append({"source_layer": skipped["module"] or skipped["node"], "tensor": skipped["node"],
                              "op": skipped["op"], "why": "no XNNPACK node computes it alone (fused or decomposed)"})
        pos, op, target = j + 1, r["op"], r
        if tap["fused"] and len(r["users"]) == 1 and by_name.get(r["users"][0], {}).get("op") in ACTIVATION_OPS:
            target = by_name[r["users"][0]]  # the activation XNNPACK fused into this node
            op = f"{r['op']}+{target['op']}"
            pos = max(pos, ref.index(target) + 1)
        cand = _as_ref_layout(value, target["value"])
        in_snr = layers[-1]["effective_snr_db"] if layers else None  # the layer matched before feeds this one
        row = {"source_layer": r["module"] or r["node"], "artifact_tensor": f"xnnpack#{len(layers)} ({tap['kind']})",
               "op": op, "node": target["node"], **tensor_metrics(target["value"], cand, in_snr, 1)}
        if tap["scale"] is not None:
            row.update({"scale": float(tap["scale"]), "zero_point": int(tap["zero_point"] or 0)})
        layers.append(row)
    return {**summarize(layers, unmatched, floor_db), "samples": n}


def short(name: str) -> str:
    """A TFLite tensor named after every op fused into it ('a/MatMul;a/Relu;a/BiasAdd'): its first."""
    head = name.split(";")[0]
    return head if head == name else head + ";…"


def _loss(db) -> str:
    return "NaN/Inf" if db is None else f"-{db:.1f} dB"


def json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def render(result: dict) -> list:
    """The debug table (graph order), then the first divergence and the layers that lose the most."""
    from edgekit.ui import fmt, plain, table

    first = result["first_divergence"]
    rows = []
    for r in result["layers"]:
        flag = "◀ first" if first and r["artifact_tensor"] == first["artifact_tensor"] else ""
        rows.append([plain(short(r["source_layer"])), plain(r["node"] or "-"), r["op"], fmt(r["cosine"], 6),
                     fmt(r["snr_db"], 4), fmt(r["channel_snr_db"], 4), fmt(r["max_abs"]), fmt(r.get("scale")),
                     "-" if r.get("zero_point") is None else str(r["zero_point"]),
                     fmt(r.get("weight_snr_db"), 4), fmt(r["loss_db"], 3), flag])
    caption = (f"{result['precision']} · {result['samples']} samples from {plain(result['data_source'])} · "
               f"diverged = SNR or median channel SNR below {result['floor_db']:g} dB")
    parts = [table(f"layers: {plain(Path(result['artifact']).name)} vs {plain(Path(result['source']).name)} "
                   "(graph order)", ["source layer", "node", "op", "cosine", "SNR dB", "chan SNR", "max abs",
                                     "act scale", "zp", "weight SNR", "loss dB", ""],
                   rows, caption=caption, caption_justify="left")]
    if first:
        what = f"activation scale {first['scale']:.4g}, " if first.get("scale") is not None else ""
        node = f"node {first['node']}, " if first["node"] else ""
        parts.append(plain(f"first divergence: {short(first['source_layer'])} ({node}{first['op']}, "
                           f"tensor {first['artifact_tensor']}): cosine {fmt(first['cosine'], 4)}, SNR "
                           f"{fmt(first['snr_db'], 3)} dB, median channel SNR {fmt(first['channel_snr_db'], 3)} dB, "
                           f"{what}max abs {fmt(first['max_abs'], 4)}" +
                           ("" if first["snr_db"] is not None else " (NaN/Inf in the artifact)")))
    else:
        parts.append(f"no layer falls below {result['floor_db']:g} dB: the artifact follows the float graph")
    if result["worst"]:
        parts.append(plain("layers that lose the most: " + ", ".join(
            f"{short(w['source_layer'])} ({'node ' + w['node'] + ', ' if w['node'] else ''}{_loss(w['loss_db'])})"
            for w in result["worst"][:3])))
    for u in result["unmatched"]:
        parts.append(plain(f"  not matched: {u['source_layer']} ({u['op']}, tensor {u['tensor']}): {u['why']}"))
    return parts + explain_split(result)


def explain_split(result: dict) -> list[str]:
    """What --explain adds: how much of the worst layer's error comes from its weights versus its
    activation ranges (measured on edited ONNX copies; the weights' own SNR elsewhere)."""
    from edgekit.ui import fmt, plain

    sp = result.get("split")
    if sp:
        fw, fa = sp["float_weights_snr_db"], sp["float_activations_snr_db"]
        blame = ("" if fw is None or fa is None else
                 "; the activation ranges cost the most" if fa > fw + 3 else
                 "; the weights cost the most" if fw > fa + 3 else "; weights and activations cost alike")
        return [plain(f"weights vs activations at {short(sp['layer'])} (node {sp['node']}): output SNR "
                      f"{fmt(sp['int8_snr_db'], 3)} dB at int8, {fmt(fw, 3)} dB with float weights and int8 activations, "
                      f"{fmt(fa, 3)} dB with int8 weights and float activations (lower of whole-tensor and median "
                      f"channel SNR){blame}")]
    if result.get("worst") and result.get("explain"):
        w = next((r for r in result["layers"] if r["source_layer"] == result["worst"][0]["source_layer"]), {})
        if w.get("weight_snr_db") is not None:
            return [plain(f"weights vs activations at {short(w['source_layer'])}: its int8 weights alone have SNR "
                          f"{fmt(w['weight_snr_db'], 3)} dB, its output {fmt(w['snr_db'], 3)} dB (loss "
                          f"{fmt(w['loss_db'], 3)} dB); the split is measured on ONNX files only")]
        return ["weights vs activations: not measured for this format (the split is measured on ONNX files)"]
    return []
