"""PyTorch sources -> TorchScript, ExecuTorch, ONNX and TFLite.

Sources are .pt2 programs, model class + weights, trusted whole-module pickles (framework
"torch") and TorchScript archives (framework "torchscript"). Every target but TorchScript
starts from a torch.export ExportedProgram; TorchScript archives get one through torch's
TS2EPConverter, checked against the archive (if that fails: exit 3 with the re-export recipe).

  torchscript  torch.jit.trace (or script with --script) -> freeze -> save (+ signature metadata)
  executorch   to_edge_transform_and_lower(XNNPACK partitioner) -> .pte; int8 through PT2E
               (XNNPACKQuantizer, symmetric per-channel; torchao prepare_pt2e/convert_pt2e)
  onnx         torch.onnx.export(dynamo=True, opset 18), then the shared onnx_quant step
  tflite       litert_torch.convert; fp16 / dynamic-range recipes, full int8 via PT2E (calibrated);
               int8 files get float I/O (tflite_edit.float_io) unless --int8-io, dynamic files
               float depthwise weights (tflite_edit.float_depthwise_weights)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from pathlib import Path

from edgekit.converters import onnx_quant
from edgekit.converters.registry import ConvertRequest, ConvertResult, register
from edgekit.converters.tflite_edit import float_io
from edgekit.errors import ConversionFailed, require, upstream
from edgekit.progress import progress

CALIBRATION_LIMIT = 200  # samples used by int8 calibration
ONNX_OPSET = 18
SOURCES = ("torch", "torchscript")


def _torch():
    return require("torch", "torch")


def _runners():
    """edgekit.validators.runners.torch, imported when a conversion runs: it imports numpy, and
    the CLI process looks converters up without it (tests/toolchain/test_isolation.py)."""
    from edgekit.validators.runners import torch as runners

    return runners


# ----------------------------------------------------------------------------- torch.export
def exported_program(model, *, static: bool = False):
    """A fresh torch.export ExportedProgram of the source (lowering mutates programs in place, and
    the runner stays the parity reference): a .pt2's own program; a TorchScript archive through
    TS2EPConverter, checked against the archive; else torch.export of the eager module. static:
    the batch fixed at 1."""
    runners = _runners()
    if isinstance(model, runners.TorchScriptRunner):
        return _program_from_torchscript(model)
    if isinstance(model, runners.TorchExportRunner) and not (static and model.dynamic_batch()):
        return model.load_program()
    torch = _torch()
    dyn = None if static else model.dynamic_shapes()
    args = model.example_inputs(batch=1 if (static or dyn is None) else 2)
    with upstream("torch", "torch.export", error=lambda exc: export_failure(exc, "torch.export")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(model.eager_module(), args, dynamic_shapes=dyn)


def _program_from_torchscript(model):
    """TorchScript -> ExportedProgram with torch's TS2EPConverter (the route to targets that need
    torch.export), checked against the TorchScript module before use."""
    torch = _torch()
    from torch._export.converter import TS2EPConverter

    flatten_outputs = _runners().flatten_outputs
    args = model.example_inputs(batch=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = TS2EPConverter(model.native, args).convert()
            with torch.no_grad():
                got = flatten_outputs(ep.module()(*args))
                want = flatten_outputs(model.native(*args))
    except Exception as exc:
        raise ConversionFailed(
            f"{model.path}: this TorchScript archive cannot be turned into a torch.export program "
            f"(TS2EPConverter: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:240]}).",
            hint=REEXPORT_HINT, details=str(exc)[-2000:]) from None
    if len(got) != len(want) or any(not torch.allclose(a, b, atol=1e-4, rtol=1e-3) for a, b in zip(got, want)):
        raise ConversionFailed(f"{model.path}: the torch.export program converted from TorchScript does not "
                               "compute what the TorchScript module does.", hint=REEXPORT_HINT)
    return ep


_OP_PATTERNS = (
    r"OpOverload\(op='(aten\.[A-Za-z0-9_]+)'",              # torch.onnx: no ONNX function found
    r"Lowering not found: (aten\.[A-Za-z0-9_]+)",            # litert-torch
    r"Operator torch\._ops\.(aten\.[A-Za-z0-9_]+)\.\w+ is not in Core ATen",  # executorch
    r"target=torch\.ops\.(aten\.[A-Za-z0-9_]+)",            # the failing FX node
    r"\baten[.:]{1,2}([A-Za-z0-9_]+)",                        # anything else quoted
)


def op_name_in(text: str) -> list[str]:
    """Operator names quoted in a converter's error message, most specific patterns first."""
    import re

    for pattern in _OP_PATTERNS:
        found = re.findall(pattern, text)
        if found:
            names = [f if f.startswith("aten.") else f"aten.{f}" for f in found]
            return list(dict.fromkeys(names))
    return []


REEXPORT_HINT = ("re-export from the Python model instead: ep = torch.export.export(model.eval(), "
                 "(example_input,)); torch.export.save(ep, 'model.pt2'); then edgekit convert model.pt2 --target ...")


def export_failure(exc: Exception, what: str, target: str | None = None) -> ConversionFailed:
    """A ConversionFailed naming the operator(s) quoted in a torch/exporter error."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(exc).__name__}: {exc}")
    ops = op_name_in(text)
    head = text.split(": ", 1)[-1].strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
    where = f" to {target}" if target else ""
    named = f" Unsupported operator(s){where}: {', '.join(ops[:5])}." if ops else ""
    return ConversionFailed(f"{what} could not convert the model{where}.{named} ({head})",
                            hint="replace or rewrite the operator(s) in the model, or choose another --target",
                            details=text[-2000:])


def _calibration(request: ConvertRequest, model) -> list[tuple]:
    """Calibration samples as batch-1 tuples of tensors, in the model's input order."""
    torch = _torch()
    data = request.calibration
    n = min(data.n, CALIBRATION_LIMIT)
    return [tuple(torch.from_numpy(data.arrays[s.name][i:i + 1].copy()).to(getattr(torch, s.dtype))
                  for s in model.signature.inputs) for i in range(n)]


def _layout_note(model, target: str) -> list[str]:
    four_d = [s.name for s in model.signature.inputs if len(s.shape) == 4]
    if not four_d:
        return []
    if target == "tflite":
        return [f"layout: input(s) {', '.join(four_d)} keep PyTorch's NCHW layout in the .tflite "
                "(litert-torch converts to NHWC inside the graph); feed NCHW data"]
    return []


def _batch_note(model, target: str) -> list[str]:
    if model.dynamic_batch():
        return [f"the source has a dynamic batch; the {target} artifact has a fixed batch of 1 "
                f"({'litert-torch cannot export a dynamic batch' if target == 'tflite' else 'static memory plan'})"]
    return []


@contextlib.contextmanager
def _quiet():
    """Keep converters' Python warnings out of the way (the stage's log keeps C++ output)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ----------------------------------------------------------------------------- torchscript
def _torchscript_error(exc: Exception, how: str, script: bool) -> ConversionFailed:
    err = export_failure(exc, how, "torchscript")
    hint = ("scripting needs TorchScript-compatible Python; try tracing (drop --script)" if script
            else "data-dependent control flow needs --script")
    return ConversionFailed(err.message, hint=hint, details=err.details)


@register("torch", "torchscript", options=("script",), extra="torch", library="torch.jit (trace/script + freeze)")
@register("torchscript", "torchscript", options=("script",), extra="torch", library="torch.jit.freeze")
def torch_to_torchscript(model, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """trace (or script with --script), freeze, save; the signature is stored in the archive."""
    torch = _torch()
    notes: list[str] = []
    module = model.eager_module()
    script = bool(request.options.get("script"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        how = "torch.jit.script" if script else "torch.jit.trace"
        with upstream("torch", how, error=lambda exc: _torchscript_error(exc, how, script)):
            with torch.no_grad():
                if isinstance(module, torch.jit.ScriptModule):
                    progress("freezing the TorchScript module")
                    ts = module
                elif script:
                    progress("scripting the model (torch.jit.script)")
                    ts = torch.jit.script(module)
                else:
                    progress("tracing the model (torch.jit.trace)")
                    module = model.traceable_module()
                    example = model.example_inputs(batch=2 if model.dynamic_batch() else None)
                    ts = torch.jit.trace(module, example)
                progress("freezing (torch.jit.freeze)")
                frozen = torch.jit.freeze(ts.eval())
                fixed_batch = model.dynamic_batch() and not _batch_generalises(frozen, model)
                if fixed_batch:  # the trace baked the example's batch in: record batch 1 honestly
                    progress("re-tracing at batch 1 (the trace does not generalise over the batch)")
                    ts = module if script or isinstance(module, torch.jit.ScriptModule) else \
                        torch.jit.trace(module, model.example_inputs(batch=1))
                    frozen = torch.jit.freeze(ts.eval())
    if not script and not isinstance(module, torch.jit.ScriptModule):
        _check_trace_fits_the_data(frozen, model, request.samples)
    trace_warnings = sorted({str(w.message).splitlines()[0][:160] for w in caught
                             if issubclass(w.category, torch.jit.TracerWarning)})
    # An ExportedProgram's graph is straight-line code: its only tracer warnings come from
    # the input guards torch.export adds, not from data-dependent control flow.
    if trace_warnings and getattr(model, "runtime", "") != "torch_export":
        notes.append("tracer warnings (parts of forward() may be frozen to the example input): "
                     + " | ".join(trace_warnings[:2]))
    meta = {"inputs": [s.to_dict() for s in model.signature.inputs],
            "outputs": [s.to_dict() for s in model.signature.outputs],
            "source": str(model.path), "method": "script" if script else "trace"}
    for t in meta["inputs"] + meta["outputs"]:
        t.pop("quantization", None)
        if fixed_batch and t["shape"] and t["shape"][0] is None:
            t["shape"][0] = 1
    if fixed_batch:
        notes.append("the source has a dynamic batch but the TorchScript trace does not generalise over it; "
                     "the artifact takes a batch of 1")
    elif model.dynamic_batch():
        notes.append("dynamic batch kept (checked at batch 3 against the source)")
    torch.jit.save(frozen, str(out_path), _extra_files={_runners().TS_METADATA: json.dumps(meta)})
    notes.append(f"{'scripted' if script else 'traced'} and frozen; input signature stored in the archive")
    return ConvertResult(out_path, "fp32", notes, {"converter": "torch.jit", "torch": torch.__version__,
                                                   "method": meta["method"]})


def _check_trace_fits_the_data(frozen, model, samples) -> None:
    """A trace bakes the example's shapes in. When the source has dynamic axes besides the batch
    (a sequence length) and the user's data has other lengths, the frozen trace must still give
    the source's result on that data; if it cannot even run there, the conversion fails (exit 3)
    here, instead of parity failing later inside the TorchScript runtime."""
    import numpy as np

    torch = _torch()
    if samples is None or samples.axes or not any(d is None for s in model.signature.inputs for d in s.shape[1:]):
        return
    names = [s.name for s in model.signature.inputs]
    if model.python_scalars or not set(names) <= set(samples.arrays):
        return
    args = tuple(torch.from_numpy(np.ascontiguousarray(samples.arrays[n][:1])) for n in names)
    shapes = ", ".join(f"{n} {'x'.join(map(str, a.shape))}" for n, a in zip(names, args))
    try:
        with torch.no_grad():
            frozen(*args)
    except Exception as exc:
        raise ConversionFailed(
            f"the TorchScript trace does not generalise to the shapes of your data ({shapes}): torch.jit.trace "
            "records the example's sequence length, and the traced graph fails at another one "
            f"({(str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]}).",
            hint="export the model at the fixed length your app uses (torch.export with static shapes) and convert "
                 "that, or use --script, or another target (ONNX keeps the dynamic axis)") from None


def _batch_generalises(frozen, model) -> bool:
    """Does the frozen module give the source's result at another batch size?"""
    torch = _torch()

    probe = model.example_inputs(batch=3, seed=1)
    try:
        with torch.no_grad():
            got = _runners().flatten_outputs(frozen(*probe))
            want = _runners().flatten_outputs(model.call(*probe))
    except Exception:
        return False
    return len(got) == len(want) and all(
        g.shape == w.shape and torch.allclose(g, w, atol=1e-4, rtol=1e-3) for g, w in zip(got, want))


# ----------------------------------------------------------------------------- executorch
def _pt2e_quantize(ep, model, request: ConvertRequest, quantizer, dynamic: bool = False):
    """prepare_pt2e -> calibrate -> convert_pt2e on the program's module (torchao PT2E). A
    dynamic-activation quantizer has nothing to calibrate: one example input runs it."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    torch = _torch()
    prepared = prepare_pt2e(_integer_scalar_ops(ep.module()), quantizer)
    samples = [model.example_inputs(batch=1)] if dynamic else _calibration(request, model)
    if not dynamic:
        progress(f"calibrating on {len(samples)} samples")
    with torch.no_grad():
        for args in samples:
            prepared(*args)
    return convert_pt2e(prepared), len(samples)


def _integer_scalar_ops(gm):
    """add/mul.Tensor(int tensor, python number) -> add/mul.Scalar. XNNPACKQuantizer's
    transform_for_annotation turns every number operand of add/mul.Tensor into a float32 tensor
    constant, so integer index arithmetic (the `arange(seq) + 0` that Hugging Face models build
    their positions and attention mask from) became float and aten.index failed with
    'tensors used as indices must be long'. The .Scalar overloads are left alone."""
    torch = _torch()
    swap = {torch.ops.aten.add.Tensor: torch.ops.aten.add.Scalar, torch.ops.aten.mul.Tensor: torch.ops.aten.mul.Scalar}
    changed = False
    for n in gm.graph.nodes:
        val = n.meta.get("val")
        if (n.op == "call_function" and n.target in swap and len(n.args) == 2
                and isinstance(n.args[0], torch.fx.Node) and isinstance(n.args[1], (int, float, bool))
                and isinstance(val, torch.Tensor) and not val.dtype.is_floating_point):
            n.target = swap[n.target]
            changed = True
    if changed:
        gm.recompile()
    return gm


MIN_QUANTIZED_SHARE = 0.5  # int8 requests where fewer weights than this became int8 fail


def _quantized_share(gm) -> tuple[int, int, dict[str, int]]:
    """(int8 weight elements, float weight elements, float elements by the op using them)
    of a PT2E-converted graph module; 1-D constants (biases, scales) are left out."""
    torch = _torch()
    q = f = 0
    float_users: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op != "get_attr":
            continue
        obj = gm
        for part in node.target.split("."):
            obj = getattr(obj, part, None)
        if not isinstance(obj, torch.Tensor) or obj.dim() < 2:  # weights, not biases or scales
            continue
        if obj.dtype == torch.int8 or (obj.is_floating_point() and any(
                "quantize_per" in str(u.target) and "dequantize" not in str(u.target) for u in node.users)):
            q += obj.numel()  # int8 already, or float feeding a quantize op (convert_pt2e(fold_quantize=False))
        elif obj.is_floating_point():
            f += obj.numel()
            for u in node.users:
                op = str(getattr(u.target, "__name__", u.target)).split(".")[0]
                float_users[op] = float_users.get(op, 0) + obj.numel()
    return q, f, float_users


def _check_quantized_share(gm, target: str) -> None:
    """An int8 request whose quantizer left most weights float fails (exit 3) instead of
    writing a file labelled int8 that is as large as fp32 and slower (the quantizer's Q/DQ
    pairs around the few int8 ops cost time; measured on an LSTM: 1.01x the fp32 size,
    1.58x its latency)."""
    q, f, users = _quantized_share(gm)
    if q + f == 0 or q / (q + f) >= MIN_QUANTIZED_SHARE:
        return
    top = ", ".join(f"{op} ({n} weights)" for op, n in sorted(users.items(), key=lambda kv: -kv[1])[:3])
    raise ConversionFailed(
        f"int8 quantization for {target} left most of the model float: {q} of {q + f} weights "
        f"({100 * q / (q + f):.0f}%) became int8; the quantizer does not handle {top or 'the rest'}. "
        "The file would be about as large as fp32 and slower.",
        hint=f"keep {target} at fp32 (--quantize none), let --quantize auto choose, or quantize to a target "
             "whose quantizer covers these operators (e.g. --target onnx --quantize dynamic)")


def _delegation_summary(gm) -> tuple[list[str], dict]:
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(gm)
    by_op = {k: (v.delegated, v.non_delegated) for k, v in info.delegation_by_operator.items()}
    not_delegated = {k: nd for k, (d, nd) in sorted(by_op.items()) if nd and k not in ("getitem",)}
    delegated = sum(d for k, (d, nd) in by_op.items() if k != "getitem")
    total = delegated + sum(not_delegated.values())
    note = (f"XNNPACK: {delegated} of {total} operators delegated in {info.num_delegated_subgraphs} subgraph(s)"
            + (f"; not delegated (portable kernels): "
               + ", ".join(f"{k}×{v}" for k, v in not_delegated.items()) if not_delegated else "; all delegated"))
    return [note], {"delegated_operators": delegated, "non_delegated_operators": not_delegated,
                    "delegated_subgraphs": info.num_delegated_subgraphs}


@register("torch", "executorch", quantize=("none", "dynamic", "int8"), extra="torch",
          library="executorch (to_edge_transform_and_lower + XNNPACK)")
@register("torchscript", "executorch", quantize=("none", "dynamic", "int8"), extra="torch",
          library="torch TS2EPConverter + executorch (XNNPACK)")
def torch_to_executorch(model, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """torch.export -> (PT2E int8 or dynamic) -> to_edge_transform_and_lower(XNNPACK) -> .pte.

    dynamic: int8 per-channel weights of linear/conv layers, activations quantized per token at
    run time (XNNPACK's dynamically quantized fully-connected kernels): what suits transformers,
    whose activations have outliers a static scale calibrated once cannot fit."""
    torch = _torch()
    require("executorch.exir", "torch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    notes = _route_note(model) + _batch_note(model, "executorch")
    details: dict = {"converter": "executorch", "torch": torch.__version__}
    progress("exporting with torch.export")
    ep = exported_program(model, static=True)
    with _quiet(), upstream("executorch", "export and lowering",
                            error=lambda exc: export_failure(exc, "ExecuTorch", "executorch")):
        if request.quantize in ("int8", "dynamic"):
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer, get_symmetric_quantization_config)

            dynamic = request.quantize == "dynamic"

            def lower_int8(keep: list[str]):
                """PT2E int8 (static, or dynamic activations) lowered to XNNPACK, the modules in `keep` left float."""
                quantizer = XNNPACKQuantizer().set_global(
                    get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))
                if keep:  # XNNPACKQuantizer.set_module_name refuses None: the kept modules' nodes lose their annotation
                    from edgekit.converters.keep_float import float_nodes, skip_nodes

                    skip_nodes(quantizer, float_nodes(ep, keep))
                converted, n = _pt2e_quantize(ep, model, request, quantizer, dynamic=dynamic)
                if not keep:  # layers kept float on purpose may leave most weights float
                    _check_quantized_share(converted, "executorch")
                progress("lowering to the XNNPACK delegate")
                qep = torch.export.export(converted, model.example_inputs(batch=1))
                return to_edge_transform_and_lower(qep, partitioner=[XnnpackPartitioner()]), n

            keep = request.options.get("keep_float") if not dynamic else None
            if keep:
                from edgekit.converters import keep_float

                edge, n, kept = keep_float.apply_executorch(ep, lower_int8, keep, request.samples or request.calibration,
                                                            details)
                notes += kept
            else:
                edge, n = lower_int8([])
            notes.append("dynamic: int8 PT2E (XNNPACKQuantizer, is_dynamic=True): int8 per-channel weights, "
                         "activations quantized at run time; inputs and outputs stay float32" if dynamic else
                         f"int8 PT2E (XNNPACKQuantizer, symmetric per-channel weights), calibrated on {n} "
                         f"samples from {request.calibration.source}; inputs and outputs stay float32")
        else:
            progress("lowering to the XNNPACK delegate")
            edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
        more_notes, deleg = _delegation_summary(edge.exported_program().graph_module)
        progress("serializing the ExecuTorch program")
        buffer = edge.to_executorch().buffer
    out_path.write_bytes(buffer)
    details.update(deleg)
    precision = request.quantize if request.quantize in ("int8", "dynamic") else "fp32"
    return ConvertResult(out_path, precision, notes + more_notes, details)


def _route_note(model) -> list[str]:
    if getattr(model, "runtime", "") == "torchscript":
        return ["TorchScript turned into a torch.export program with torch._export.converter.TS2EPConverter "
                "(checked against the archive on example inputs)"]
    return []


# ----------------------------------------------------------------------------- onnx
@register("torch", "onnx", quantize=("none", "fp16", "dynamic", "int8"), extra="torch",
          library="torch.onnx.export (dynamo=True, onnxscript)")
@register("torchscript", "onnx", quantize=("none", "fp16", "dynamic", "int8"), extra="torch",
          library="torch TS2EPConverter + torch.onnx.export (dynamo=True)")
def torch_to_onnx(model, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """torch.onnx.export(dynamo=True, opset 18, one self-contained file), then onnx_quant."""
    import logging


    torch = _torch()
    require("onnxscript", "torch")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    notes = _route_note(model)
    progress("exporting with torch.export")
    ep = exported_program(model)
    progress(f"converting to ONNX (torch.onnx dynamo exporter, opset {ONNX_OPSET})")

    def write_float(path: Path) -> None:
        with _quiet():
            with upstream("torch", "torch.onnx.export",
                          error=lambda exc: export_failure(exc, "torch.onnx.export", "onnx")):
                torch.onnx.export(ep, (), str(path), dynamo=True, opset_version=ONNX_OPSET,
                                  input_names=model.signature.input_names,
                                  output_names=[s.name for s in model.signature.outputs],
                                  external_data=False, verbose=False, optimize=True)

    result = onnx_quant.finish(request, out_path, write_float, {"converter": "torch.onnx.export(dynamo=True)",
                                                               "torch": torch.__version__, "opset": ONNX_OPSET}, notes)
    if model.dynamic_batch() and getattr(model, "runtime", "") != "torchscript":
        result.notes.append("dynamic batch kept (ONNX dim 'batch')")
    return result


# ----------------------------------------------------------------------------- tflite
@register("torch", "tflite", quantize=("none", "fp16", "dynamic", "int8"), options=("int8_io",), extra="torch",
          library="litert_torch.convert")
@register("torchscript", "tflite", quantize=("none", "fp16", "dynamic", "int8"), options=("int8_io",),
          extra="torch", library="torch TS2EPConverter + litert_torch.convert")
def torch_to_tflite(model, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """litert-torch: fp32; fp16 and dynamic-range int8 recipes; full int8 through PT2E (calibrated)."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    torch = _torch()
    litert_torch = require("litert_torch", "torch")
    mode = request.quantize
    notes = _route_note(model) + _batch_note(model, "tflite") + _layout_note(model, "tflite")
    progress("exporting with torch.export")
    ep = exported_program(model, static=True)
    args = model.example_inputs(batch=1)
    details = {"converter": "litert_torch.convert", "torch": torch.__version__}

    def convert(keep: list[str]):
        """The .tflite bytes at `mode` and the module litert-torch converted (PT2E-quantized for int8);
        int8 leaves the modules in `keep` float."""
        module = ep.module()
        kwargs = {}
        if mode == "fp16":
            from litert_torch.generative.quantize import quant_recipes

            kwargs["quant_config"] = quant_recipes.full_fp16_recipe()
        elif mode in ("dynamic", "int8"):
            from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
            from litert_torch.quantize.quant_config import QuantConfig
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            quantizer = PT2EQuantizer().set_global(
                get_symmetric_quantization_config(is_per_channel=True, is_dynamic=mode == "dynamic"))
            if keep:  # set_module_name refuses None: the kept modules' nodes lose their annotation
                from edgekit.converters.keep_float import float_nodes, skip_nodes

                skip_nodes(quantizer, float_nodes(ep, keep))
            prepared = prepare_pt2e(module, quantizer)
            with torch.no_grad():
                if mode == "dynamic":
                    prepared(*args)
                else:
                    samples = _calibration(request, model)
                    progress(f"calibrating on {len(samples)} samples")
                    for a in samples:
                        prepared(*a)
            module = convert_pt2e(prepared, fold_quantize=False)
            if mode == "int8" and not keep:
                _check_quantized_share(module, "tflite")
            kwargs["quant_config"] = QuantConfig(pt2e_quantizer=quantizer)
        progress(f"converting with litert-torch ({'fp32' if mode == 'none' else mode})")
        edge_model = litert_torch.convert(module, args, **kwargs)
        with tempfile.TemporaryDirectory(prefix="edgekit-litert-", dir=out_path.parent) as tmp:
            tmp_file = Path(tmp) / "model.tflite"
            edge_model.export(str(tmp_file))
            data = tmp_file.read_bytes()
        if mode == "int8" and not request.options.get("int8_io"):
            data, wrapped = _float_io(data)
            if wrapped and not keep:
                notes.append("inputs and outputs are float32: a QUANTIZE/DEQUANTIZE op inside the graph converts "
                             "them (litert-torch writes int8 ones; --int8-io keeps those)")
        return data, module

    with _quiet(), upstream("litert-torch", "convert",
                            error=lambda exc: export_failure(exc, "litert-torch", "tflite")):
        keep = request.options.get("keep_float") if mode == "int8" else None
        if keep:
            from edgekit.converters import keep_float

            blob, kept = keep_float.apply_torch_tflite(ep, convert, keep, request.samples or request.calibration,
                                                       details)
            notes += kept
        else:
            blob, _ = convert([])
    if mode == "fp16":
        notes.append("fp16 weights (litert-torch full_fp16_recipe); inputs and outputs stay float32")
    elif mode == "dynamic":
        notes.append("dynamic-range int8: int8 per-channel weights, activations quantized at run time")
    elif mode == "int8":
        notes.append(f"full int8 (PT2E, symmetric per-channel weights), calibrated on "
                     f"{min(request.calibration.n, CALIBRATION_LIMIT)} samples from {request.calibration.source}")
    if mode == "dynamic":
        blob, n_tables = _edit(blob, "symmetric_embedding_tables")
        if n_tables:
            notes.append(f"{n_tables} int8 embedding table(s) requantized with zero point 0 (per tensor): LiteRT's "
                         "hybrid EMBEDDING_LOOKUP refuses the asymmetric table litert-torch wrote; they stay int8")
        blob, n_float = _float_depthwise(blob)
        if n_float:
            notes.append(f"{n_float} depthwise convolution(s) keep float32 weights (the int8 values, dequantized): "
                         "XNNPACK has no dynamic-range depthwise kernel, and TFLite's own runs outside the delegate")
    out_path.write_bytes(blob)
    if mode == "dynamic":
        _check_litert_loads(out_path)
    if mode == "int8":
        notes += _int8_io_note(out_path)
    precision = "fp32" if mode == "none" else mode
    return ConvertResult(out_path, precision, notes, details)


def _float_depthwise(blob: bytes) -> tuple[bytes, int]:
    """Dynamic-range files: depthwise convolutions get float32 weights back.

    litert-torch's dynamic-range conversion gives every conv and linear layer int8 weights
    (whatever the PT2E annotation says). A hybrid DEPTHWISE_CONV_2D (int8 weights, float
    activations) is not delegated to XNNPACK: TFLite's builtin kernel runs it between two
    delegate partitions, on its own thread pool, which at 2 threads on a loaded machine
    measured 1.27 ms per digits inference instead of 0.008 ms. Depthwise weights are a few
    percent of a model's, so they are stored as the float32 values of their int8 codes
    (results unchanged), and the whole graph is delegated."""
    return _edit(blob, "float_depthwise_weights")


def _edit(blob: bytes, edit: str) -> tuple[bytes, int]:
    """One of edgekit.converters.tflite_edit's edits; one it cannot make is a converter failure."""
    from edgekit.converters import tflite_edit

    try:
        return getattr(tflite_edit, edit)(blob)
    except Exception as exc:
        raise ConversionFailed(f"could not edit the TFLite file ({edit.replace('_', ' ')}): {exc}",
                               hint="use --quantize int8 (with --calibration) or fp16") from None


def _float_io(blob: bytes) -> tuple[bytes, list[str]]:
    """Float32 inputs/outputs for litert-torch's full-int8 file.

    litert-torch folds the first QUANTIZE and last DEQUANTIZE of the PT2E graph into int8
    model inputs/outputs. The app then has to (de)quantize in its own code, which on small
    models costs more than the int8 arithmetic saves (digits CNN: 3x slower than fp32 through
    the Python API, 1.8x more instructions on ARM). Putting the two ops back inside the graph
    lets XNNPACK run them with the rest: the same file layout TFLiteConverter writes for
    Keras int8 by default."""

    try:
        return float_io(blob)
    except Exception as exc:  # a flatbuffer we cannot edit is a converter bug, not the user's
        raise ConversionFailed(f"could not give the int8 TFLite file float inputs/outputs: {exc}",
                               hint="pass --int8-io to keep litert-torch's int8 inputs/outputs") from None


def _check_litert_loads(path: Path) -> None:
    """A dynamic-range file LiteRT cannot prepare is litert-torch's failure (exit 3), not a corrupt
    input: e.g. a BERT's word embeddings get asymmetric int8 weights, and LiteRT's hybrid
    EMBEDDING_LOOKUP requires a zero point of 0."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        Interpreter(model_path=str(path)).allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ConversionFailed(f"litert-torch wrote a dynamic-range TFLite file that LiteRT cannot load: {reason}",
                               hint="use --quantize int8 (with --calibration) or fp16 for this model") from None


def _int8_io_note(path: Path) -> list[str]:
    """litert-torch decides per tensor whether int8 I/O stays int8: say which did."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    ints = [f"{d['name']} ({'input' if k == 'in' else 'output'})" for k, ds in
            (("in", it.get_input_details()), ("out", it.get_output_details())) for d in ds
            if d["dtype"].__name__ in ("int8", "uint8")]
    if ints:
        return ["int8 tensors at the model's edge: " + ", ".join(ints) +
                " — quantize/dequantize them with the scale and zero point in the file (edgekit's runner does)"]
    return []

