"""int8 ONNX that keeps a few sensitive layers in float (`--keep-float NAME,…` / `--keep-float auto`).

Names are node names of the graph onnxruntime quantizes (what `edgekit debug` prints in its
`node` column; the float model's own node names where pre-processing left them). Keeping a
node float means onnxruntime's `nodes_to_exclude`; since a tensor stays quantized while any
node that produces or reads it is quantized, keeping one layer float keeps a *group*: the
layer, the activations that follow it (Relu, Clip, …) and the layers that read their output.

`auto` measures first: the full int8 file is compared layer by layer with the float graph
(edgekit.validators.debug), layers are ranked by the SNR they lose, and groups are kept float
in that order until the int8 preset passes against the float graph, within a budget of
AUTO_ROUNDS groups and a third of the nodes. No passing set within the budget: full int8 is
kept (the parity check then fails as before) and the report says what was tried.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path

from edgekit.errors import BadInput
from edgekit.isolation import progress

AUTO_ROUNDS = 4
MAX_FRACTION = 1 / 3
ACTIVATIONS = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Gelu", "Elu",
               "Identity"}


def _compute_nodes(model) -> list:
    return [n for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]


def nearest(missing: list[str], known: list[str]) -> list[str]:
    """Known names that contain a missing one (TFLite names join every fused op), else the closest."""
    near = [k for k in known if any(m in k for m in missing)]
    return near[:5] or sorted({k for m in missing for k in difflib.get_close_matches(m, known, n=5, cutoff=0.4)})


def resolve(model, names: list[str]) -> list[str]:
    """The given names, checked against the graph's node names (exit 2 with the nearest names)."""
    known = [n.name for n in _compute_nodes(model) if n.name]
    missing = [n for n in names if n not in known]
    if missing:
        near = nearest(missing, known)
        raise BadInput(f"--keep-float: no layer named {', '.join(repr(m) for m in missing)} in the model "
                       f"onnxruntime quantizes ({len(known)} layers).",
                       hint=(f"nearest names: {', '.join(near)}" if near else
                             f"layers: {', '.join(known[:12])}{' …' if len(known) > 12 else ''}") +
                       "; 'edgekit debug SOURCE ARTIFACT' prints the names")
    return list(dict.fromkeys(names))


def group(model, name: str) -> list[str]:
    """`name`, the activations that follow it, and the nodes that read the last activation's output."""
    nodes = {n.name: n for n in model.graph.node if n.name}
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    out, node = [name], nodes[name]
    while True:
        nxt = readers.get(node.output[0], []) if node.output else []
        if len(nxt) == 1 and nxt[0].op_type in ACTIVATIONS and nxt[0].name:
            node = nxt[0]
            out.append(node.name)
            continue
        out += [n.name for n in nxt if n.name and n.name not in out]
        return out


def _feeds(path: Path, data) -> tuple[dict, int]:
    from edgekit.validators.debug import onnx_io

    names = [i[0] for i in onnx_io(path)]
    keys = list(data.arrays)
    if set(names) <= set(keys):
        return {k: data.arrays[k] for k in names}, data.n
    return {n: data.arrays[k] for n, k in zip(names, keys)}, data.n


def _passes(float_path: Path, quant_path: Path, feeds: dict, n: int, source: str, labels=None):
    from edgekit.targets import tolerance_preset
    from edgekit.validators.debug import run_all
    from edgekit.validators.parity import compare

    ref, cand = run_all(float_path, feeds, n), run_all(quant_path, feeds, n)
    pairs = [(k, k) for k in ref if k in cand]
    report = compare(ref, cand, pairs, tolerance_preset("int8"), precision="int8", data_source=source, labels=labels)
    return report.passed, report


def apply(pre: Path, out_path: Path, keep: list[str], data, quantize_with, report: dict) -> list[str]:
    """Re-quantize `pre` into `out_path` keeping `keep` (names, or ["auto"]) in float.

    `quantize_with(exclude)` writes out_path with those nodes excluded; `data` (samples, else the
    calibration set) is what auto judges on. Records report['keep_float']."""
    import onnx

    model = onnx.load_model(str(pre), load_external_data=False)
    total = len(_compute_nodes(model))
    full_size = out_path.stat().st_size
    if keep != ["auto"]:
        names = resolve(model, keep)
        progress(f"quantizing to int8 with {len(names)} layer(s) kept in float")
        quantize_with(names)
        report["keep_float"] = {"mode": "names", "nodes": names, "of_nodes": total, "full_int8_size_bytes": full_size}
        return [f"kept in float ({len(names)} of {total} layers, as asked): {', '.join(names)}"]
    from edgekit.validators.debug import compare_layers

    feeds, n = _feeds(pre, data)
    ok, _ = _passes(pre, out_path, feeds, n, data.source, data.labels)
    if ok:
        report["keep_float"] = {"mode": "auto", "nodes": [], "of_nodes": total, "full_int8_size_bytes": full_size}
        return ["--keep-float auto: full int8 already passes the int8 preset against the float graph; "
                "no layer kept in float"]
    progress("measuring each layer's int8 loss against the float graph")
    layers = compare_layers(pre, out_path, feeds, n, 12.0)["layers"]
    ranked = [r["node"] for r in sorted(layers, key=lambda r: -r["loss_db"]) if r["node"] and r["loss_db"] > 0]
    budget = max(3, math.ceil(total * MAX_FRACTION))
    kept: list[str] = []
    tried = []
    for name in dict.fromkeys(ranked):
        if len(tried) >= AUTO_ROUNDS or name in kept:
            continue
        grow = [g for g in group(model, name) if g not in kept]
        if len(kept) + len(grow) > budget:
            continue
        kept += grow
        progress(f"--keep-float auto: trying {len(kept)} layer(s) in float ({', '.join(kept)})")
        quantize_with(kept)
        ok, rep = _passes(pre, out_path, feeds, n, data.source, data.labels)
        tried.append({"nodes": list(kept), "passed": ok, "summary": rep.failure_summary() if not ok else ""})
        if ok:
            report["keep_float"] = {"mode": "auto", "nodes": kept, "of_nodes": total, "tried": tried,
                                    "full_int8_size_bytes": full_size}
            return [f"--keep-float auto: kept {len(kept)} of {total} layers in float ({', '.join(kept)}), "
                    f"ranked by measured int8 loss; full int8 failed the int8 preset against the float graph"]
    quantize_with([])
    report["keep_float"] = {"mode": "auto", "nodes": [], "of_nodes": total, "tried": tried,
                            "full_int8_size_bytes": full_size}
    return [f"--keep-float auto: no set of at most {budget} of {total} layers kept in float passed "
            f"({len(tried)} tried); the file is full int8"]


# ----------------------------------------------------------------------------- TFLite (Keras, SavedModel)
def _tflite_layers(blob: bytes, tmp: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Op output names of a TFLite file in execution order, and which ops read each one's output."""
    from edgekit.validators.debug import tflite_interpreter

    path = tmp / "probe.tflite"
    path.write_bytes(blob)
    interp = tflite_interpreter(path)
    names = {d["index"]: d["name"] for d in interp.get_tensor_details()}
    ops = [o for o in interp._get_ops_details() if o["op_name"] not in ("DELEGATE", "QUANTIZE", "DEQUANTIZE")]
    layers = [names[o["outputs"][0]] for o in ops if len(o["outputs"])]
    readers = {n: [names[o["outputs"][0]] for o in ops if len(o["outputs"]) and
                   any(names.get(i) == n for i in o["inputs"] if i >= 0)] for n in layers}
    return layers, readers


def _tflite_outputs(blob: bytes, tmp: Path, name: str, feeds: list, n: int) -> dict:
    from edgekit.validators.debug import tflite_interpreter, tflite_run

    path = tmp / name
    path.write_bytes(blob)
    outs = [d["name"] for d in tflite_interpreter(path).get_output_details()]
    values, _, _ = tflite_run(path, feeds, n)
    return {f"output{k}": values[o] for k, o in enumerate(outs)}


def apply_tflite(conv, calibration_gen, blob: bytes, keep: list[str], data, report: dict) -> tuple[bytes, list[str]]:
    """The int8 TFLite file `blob` again, with `keep` (TFLite tensor names as debug prints them,
    or ["auto"]) left float by TFLite's QuantizationDebugger (`denylisted_nodes`)."""
    import tempfile

    from edgekit.errors import require, upstream

    tf = require("tensorflow", "tf")

    def selective(names: list[str]) -> bytes:
        opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(names))
        with upstream("tensorflow", "QuantizationDebugger"):
            dbg = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=calibration_gen,
                                                            debug_options=opts)
            return dbg.get_nondebug_quantized_model()

    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    with tempfile.TemporaryDirectory(prefix="edgekit-keep-") as tmp:
        tmp = Path(tmp)
        layers, readers = _tflite_layers(blob, tmp)
        total = len(layers)
        if keep != ["auto"]:
            missing = [k for k in keep if k not in layers]
            if missing:
                near = nearest(missing, layers)
                raise BadInput(f"--keep-float: no layer named {', '.join(repr(m) for m in missing)} in the TFLite "
                               f"model ({total} layers).", hint=(f"nearest names: {', '.join(near)}" if near else
                                                                 f"layers: {', '.join(layers[:8])}") +
                               "; 'edgekit debug SOURCE ARTIFACT --json' prints the names")
            progress(f"quantizing to int8 with {len(keep)} layer(s) kept in float (TFLite QuantizationDebugger)")
            report["keep_float"] = {"mode": "names", "nodes": list(keep), "of_nodes": total,
                                    "full_int8_size_bytes": len(blob)}
            return selective(keep), [f"kept in float ({len(keep)} of {total} layers, as asked): {', '.join(keep)}"]
        from edgekit.targets import tolerance_preset
        from edgekit.validators.debug import compare_tflite
        from edgekit.validators.parity import compare

        progress("converting to fp32 TFLite, the reference for --keep-float auto")
        saved = (conv.optimizations, conv.representative_dataset, conv.target_spec.supported_ops)
        conv.optimizations, conv.representative_dataset = [], None
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        with upstream("tensorflow", "TFLiteConverter.convert"):
            float_blob = conv.convert()
        conv.optimizations, conv.representative_dataset, conv.target_spec.supported_ops = saved
        feeds = list(data.arrays.values())
        n = min(data.n, 64)
        feeds = [f[:n] for f in feeds]
        ref = _tflite_outputs(float_blob, tmp, "float.tflite", feeds, n)
        labels = None if data.labels is None else data.labels[:n]

        def passes(candidate: bytes):
            cand = _tflite_outputs(candidate, tmp, "candidate.tflite", feeds, n)
            rep = compare(ref, cand, [(k, k) for k in ref], tolerance_preset("int8"), precision="int8",
                          data_source=data.source, labels=labels)
            return rep.passed, rep

        if passes(blob)[0]:
            report["keep_float"] = {"mode": "auto", "nodes": [], "of_nodes": total, "full_int8_size_bytes": len(blob)}
            return blob, ["--keep-float auto: full int8 already passes the int8 preset against fp32 TFLite; "
                          "no layer kept in float"]
        progress("measuring each layer's int8 loss against fp32 TFLite")
        (tmp / "f.tflite").write_bytes(float_blob)
        (tmp / "q.tflite").write_bytes(blob)
        rows = compare_tflite(tmp / "f.tflite", tmp / "q.tflite", feeds, n, 12.0)["layers"]
        ranked = [r["source_layer"] for r in sorted(rows, key=lambda r: -r["loss_db"])
                  if r["loss_db"] > 0 and r["source_layer"] in layers]
        budget = max(2, math.ceil(total * MAX_FRACTION))
        kept: list[str] = []
        tried = []
        for name in dict.fromkeys(ranked):
            if len(tried) >= AUTO_ROUNDS or name in kept:
                continue
            grow = [g for g in [name] + readers.get(name, []) if g not in kept]
            if len(kept) + len(grow) > budget:
                continue
            kept += grow
            progress(f"--keep-float auto: trying {len(kept)} layer(s) in float")
            candidate = selective(kept)
            ok, rep = passes(candidate)
            tried.append({"nodes": list(kept), "passed": ok, "summary": "" if ok else rep.failure_summary()})
            if ok:
                report["keep_float"] = {"mode": "auto", "nodes": kept, "of_nodes": total, "tried": tried,
                                        "full_int8_size_bytes": len(blob)}
                return candidate, [f"--keep-float auto: kept {len(kept)} of {total} layers in float "
                                   f"({', '.join(kept)}), ranked by measured int8 loss; full int8 failed the "
                                   "int8 preset against fp32 TFLite"]
        report["keep_float"] = {"mode": "auto", "nodes": [], "of_nodes": total, "tried": tried,
                                "full_int8_size_bytes": len(blob)}
        return blob, [f"--keep-float auto: no set of at most {budget} of {total} layers kept in float passed "
                      f"({len(tried)} tried); the file is full int8"]


# ----------------------------------------------------------------------------- ExecuTorch (XNNPACK PT2E)
def module_paths(ep) -> list[str]:
    """nn.Module paths of a torch.export program's computing modules, in graph order (what
    `edgekit debug` prints for a .pte; XNNPACKQuantizer.set_module_name takes them)."""
    from edgekit.validators.debug import module_path

    return list(dict.fromkeys(p for p in (module_path(n) for n in ep.graph.nodes if n.op == "call_function") if p))


def module_readers(ep, name: str) -> list[str]:
    """The modules that read what `name` computes, looking through module-less nodes (a functional
    ReLU): keeping a layer float helps only if the next one does not quantize its output again."""
    from edgekit.validators.debug import module_path

    out, todo, seen = [], [n for n in ep.graph.nodes if n.op == "call_function" and module_path(n) == name], set()
    while todo:
        node = todo.pop()
        for u in node.users:
            if u.name in seen or u.op != "call_function":
                continue
            seen.add(u.name)
            path = module_path(u)
            if path and path != name:
                out.append(path)
            else:
                todo.append(u)
    return list(dict.fromkeys(out))


def float_nodes(ep, keep: list[str]) -> set[str]:
    """Names of the nodes the quantizer must leave alone to keep the modules `keep` float: their
    own nodes and the module-less nodes (a functional ReLU) that only they feed."""
    from edgekit.validators.debug import module_path

    out = {n.name for n in ep.graph.nodes if n.op == "call_function" and module_path(n) in keep}
    todo = [n for n in ep.graph.nodes if n.name in out]
    while todo:
        for u in todo.pop().users:
            if u.op == "call_function" and not module_path(u) and u.name not in out and \
                    all(a.name in out for a in u.all_input_nodes if a.op == "call_function"):
                out.add(u.name)
                todo.append(u)
    return out


def skip_nodes(quantizer, names: set[str]) -> None:
    """Leave the nodes `names` float: the PT2E quantizer's annotation of them is dropped after it
    annotates (their neighbours still quantize what they themselves read and write)."""
    annotate = quantizer.annotate

    def annotate_but_skip(model):
        model = annotate(model)
        for node in model.graph.nodes:
            if node.name in names:
                node.meta.pop("quantization_annotation", None)
        return model

    quantizer.annotate = annotate_but_skip


def _pte_outputs(blob: bytes, feeds: list, n: int) -> dict:
    import tempfile

    import numpy as np
    import torch

    from edgekit.errors import require

    rt = require("executorch.runtime", "torch")
    with tempfile.TemporaryDirectory(prefix="edgekit-keep-") as tmp:
        path = Path(tmp) / "candidate.pte"
        path.write_bytes(blob)
        method = rt.Runtime.get().load_program(str(path)).load_method("forward")
        rows = [method.execute([torch.from_numpy(f[k:k + 1].copy()) for f in feeds]) for k in range(n)]
    return {f"output{j}": np.concatenate([r[j].numpy() for r in rows]) for j in range(len(rows[0]))}


def _check_modules(keep: list[str], layers: list[str]) -> None:
    missing = [k for k in keep if k not in layers]
    if missing:
        near = nearest(missing, layers)
        raise BadInput(f"--keep-float: no layer named {', '.join(repr(m) for m in missing)} in the torch.export "
                       f"program ({len(layers)} modules).", hint=(f"nearest names: {', '.join(near)}" if near else
                                                                  f"layers: {', '.join(layers[:12])}") +
                       "; 'edgekit debug SOURCE ARTIFACT' prints them (nn.Module paths)")


class _TorchJudge:
    """The int8 preset against the torch.export program's outputs, on at most 64 samples."""

    def __init__(self, ep, data):
        import numpy as np
        import torch

        from edgekit.validators.debug import TFLITE_SAMPLES

        self.n = n = min(data.n, TFLITE_SAMPLES)
        self.feeds = [np.ascontiguousarray(a[:n]) for a in data.arrays.values()]
        self.labels = None if data.labels is None else data.labels[:n]
        self.source = data.source
        gm = ep.module()
        with torch.no_grad():
            outs = [gm(*[torch.from_numpy(f[k:k + 1].copy()) for f in self.feeds]) for k in range(n)]
        outs = [o if isinstance(o, (tuple, list)) else (o,) for o in outs]
        self.ref = {f"output{j}": np.concatenate([o[j].numpy() for o in outs]) for j in range(len(outs[0]))}

    def __call__(self, cand: dict):
        from edgekit.targets import tolerance_preset
        from edgekit.validators.parity import compare

        rep = compare(self.ref, cand, [(k, k) for k in self.ref], tolerance_preset("int8"), precision="int8",
                      data_source=self.source, labels=self.labels)
        return rep.passed, rep


def _greedy_modules(ep, ranked: list[str], layers: list[str], attempt) -> tuple[list[str], list[dict], object]:
    """Keep modules float in the order `ranked`, each with the modules that read it, until
    `attempt(kept) -> (passed, report, result)` passes; ([], tried, None) when nothing does."""
    budget = max(2, math.ceil(len(layers) * MAX_FRACTION))
    kept: list[str] = []
    tried = []
    for name in dict.fromkeys(ranked):
        if len(tried) >= AUTO_ROUNDS or name in kept:
            continue
        grow = [g for g in [name] + module_readers(ep, name) if g not in kept]
        if len(kept) + len(grow) > budget:
            continue
        kept += grow
        progress(f"--keep-float auto: trying {len(kept)} module(s) in float ({', '.join(kept)})")
        ok, rep, result = attempt(kept)
        tried.append({"nodes": list(kept), "passed": ok, "summary": "" if ok else rep.failure_summary()})
        if ok:
            return kept, tried, result
    return [], tried, None


def _auto_notes(kept: list[str], tried: list, total: int, against: str) -> list[str]:
    if kept:
        return [f"--keep-float auto: kept {len(kept)} of {total} layers in float ({', '.join(kept)}), ranked by "
                f"measured int8 loss; full int8 failed the int8 preset against {against}"]
    return [f"--keep-float auto: no set of at most {max(2, math.ceil(total * MAX_FRACTION))} of {total} layers kept "
            f"in float passed ({len(tried)} tried); the file is full int8"]


def apply_executorch(ep, lower_int8, keep: list[str], data, report: dict):
    """int8 ExecuTorch with `keep` (nn.Module paths, or ["auto"]) left float by XNNPACKQuantizer
    (see float_nodes, skip_nodes). `lower_int8(names)` quantizes and lowers; returns (edge program,
    calibration count, notes) and records report['keep_float']."""
    import tempfile

    layers = module_paths(ep)
    total = len(layers)
    if keep != ["auto"]:
        _check_modules(keep, layers)
        progress(f"quantizing to int8 with {len(keep)} module(s) kept in float (XNNPACKQuantizer)")
        edge, n = lower_int8(list(keep))
        report["keep_float"] = {"mode": "names", "nodes": list(keep), "of_nodes": total}
        return edge, n, [f"kept in float ({len(keep)} of {total} layers, as asked): {', '.join(keep)}"]
    from edgekit.validators.debug import compare_pte

    judge = _TorchJudge(ep, data)
    edge, count = lower_int8([])
    blob = edge.to_executorch().buffer
    full = {"mode": "auto", "of_nodes": total, "full_int8_size_bytes": len(blob)}
    if judge(_pte_outputs(blob, judge.feeds, judge.n))[0]:
        report["keep_float"] = {**full, "nodes": []}
        return edge, count, ["--keep-float auto: full int8 already passes the int8 preset against the torch.export "
                             "program; no layer kept in float"]
    progress("measuring each layer's int8 loss against the torch.export program")
    with tempfile.TemporaryDirectory(prefix="edgekit-keep-") as tmp:
        (Path(tmp) / "q.pte").write_bytes(blob)
        rows = compare_pte(ep, Path(tmp) / "q.pte", judge.feeds, judge.n, 12.0)["layers"]
    ranked = [r["source_layer"] for r in sorted(rows, key=lambda r: -r["loss_db"])
              if r["loss_db"] > 0 and r["source_layer"] in layers]

    def attempt(kept):
        cand, _ = lower_int8(kept)
        ok, rep = judge(_pte_outputs(cand.to_executorch().buffer, judge.feeds, judge.n))
        return ok, rep, cand

    kept, tried, cand = _greedy_modules(ep, ranked, layers, attempt)
    report["keep_float"] = {**full, "nodes": kept, "tried": tried}
    return cand or edge, count, _auto_notes(kept, tried, total, "the torch.export program")


def simulated_losses(ep, quantized, feeds: list, n: int) -> list[dict]:
    """Per module of `ep`, in graph order, the SNR its output loses in `quantized` (the PT2E
    module a converter hands on: each tensor read as its dequantized int8 value), against the
    float program: {source_layer, node, snr_db, loss_db}. For files whose tensors are not named
    after the source's modules (litert-torch's TFLite)."""
    from edgekit.validators.debug import tensor_metrics, torch_intermediates

    ref = torch_intermediates(ep.module(), feeds, n)
    q = {r["node"]: r for r in torch_intermediates(quantized, feeds, n)}

    def as_read(name: str):  # a quantized tensor as the next layer reads it: its quantize -> dequantize
        for u in q[name]["users"]:
            if u in q and q[u]["op"].startswith("quantize_per"):
                dq = [d for d in q[u]["users"] if d in q and q[d]["op"].startswith("dequantize_per")]
                if dq:
                    return q[dq[0]]["value"]
        return q[name]["value"]

    producers: dict[str, list[str]] = {}
    for r in ref:
        for u in r["users"]:
            producers.setdefault(u, []).append(r["node"])
    module_of: dict[str, str] = {}
    rows, prev = [], None
    for r in ref:  # a module-less node (a functional ReLU) belongs to the module that feeds it
        module = r["module"] or next((module_of[p] for p in producers.get(r["node"], []) if p in module_of), "")
        if not module:
            continue
        module_of[r["node"]] = module
        if r["node"] not in q or q[r["node"]]["value"].shape != r["value"].shape:
            continue
        m = tensor_metrics(r["value"], as_read(r["node"]), prev, 1)
        prev = m["effective_snr_db"]
        rows.append({"source_layer": module, "node": r["node"], "snr_db": m["snr_db"], "loss_db": m["loss_db"]})
    return rows


def apply_torch_tflite(ep, convert, keep: list[str], data, report: dict) -> tuple[bytes, list[str]]:
    """int8 TFLite from torch (litert-torch, PT2E) with `keep` (nn.Module paths, or ["auto"]) left
    float. `convert(names) -> (bytes, PT2E module)`; auto ranks modules by simulated_losses and
    judges each candidate .tflite on the LiteRT interpreter against the torch.export program."""
    import tempfile

    layers = module_paths(ep)
    total = len(layers)
    if keep != ["auto"]:
        _check_modules(keep, layers)
        progress(f"quantizing to int8 with {len(keep)} module(s) kept in float (PT2EQuantizer)")
        report["keep_float"] = {"mode": "names", "nodes": list(keep), "of_nodes": total}
        return convert(list(keep))[0], [f"kept in float ({len(keep)} of {total} layers, as asked): {', '.join(keep)}"]
    judge = _TorchJudge(ep, data)
    blob, quantized = convert([])
    full = {"mode": "auto", "of_nodes": total, "full_int8_size_bytes": len(blob)}
    with tempfile.TemporaryDirectory(prefix="edgekit-keep-") as tmp:
        def run(candidate: bytes):
            return judge(_tflite_outputs(candidate, Path(tmp), "candidate.tflite", judge.feeds, judge.n))

        if run(blob)[0]:
            report["keep_float"] = {**full, "nodes": []}
            return blob, ["--keep-float auto: full int8 already passes the int8 preset against the torch.export "
                          "program; no layer kept in float"]
        progress("measuring each layer's int8 loss (the PT2E-quantized module against the float program)")
        rows = simulated_losses(ep, quantized, judge.feeds, judge.n)
        ranked = [r["source_layer"] for r in sorted(rows, key=lambda r: -r["loss_db"]) if r["loss_db"] > 0]

        def attempt(kept):
            cand = convert(kept)[0]
            return (*run(cand), cand)

        kept, tried, cand = _greedy_modules(ep, ranked, layers, attempt)
    report["keep_float"] = {**full, "nodes": kept, "tried": tried}
    return cand or blob, _auto_notes(kept, tried, total, "the torch.export program")
