"""The stages behind each command. Each `*_stage` function runs inside a child process
(`edgekit.isolation.run`) and returns plain data; the CLI process only plans, shows
progress, publishes files and prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import BadInput
from edgekit.progress import progress
from edgekit.loading import Trust, open_model
from edgekit.targets import get_target, tolerance_preset

if TYPE_CHECKING:
    from edgekit.request import SourceRequest
    from edgekit.tensors import Dataset

RANDOM_SAMPLES = 16
CALIBRATION_NOTE = ("no --inputs given: parity used the --calibration data (what int8 was calibrated on); "
                    "pass --inputs with held-out samples for an independent check")
RANDOM_WARNING = ("no --inputs given: parity used seeded random inputs, which can hide divergence "
                  "on real data; pass --inputs with real samples")


def tolerance_for(precision: str, overrides: dict | None, source_runtime: str | None = None):
    return tolerance_preset(precision, source_runtime).override(**(overrides or {}))


def inherit_layout(reference, candidate) -> None:
    """A converted tensor of the same shape keeps the source's layout (NHWC/NCHW) unless
    its converter already said otherwise."""
    for ref_list, cand_list in ((reference.inputs, candidate.inputs), (reference.outputs, candidate.outputs)):
        by_name = {t.name: t for t in ref_list}
        for k, c in enumerate(cand_list):
            r = by_name.get(c.name) or (ref_list[k] if k < len(ref_list) else None)
            if r is not None and c.layout is None and r.layout and tuple(r.shape[1:]) == tuple(c.shape[1:]):
                c.layout = r.layout


def pin_input_shapes(reference, source_options: dict | None) -> None:
    """--input-shape on a source that has its own signature (ONNX, Keras...): it must agree with
    that signature, and pins its dynamic axes (all but the batch) for random inputs."""
    from edgekit.sources import SHAPE_SOURCES
    from edgekit.tensors import check_shapes_against

    shapes = (source_options or {}).get("input_shapes")
    if not shapes or reference.detected.spec.framework in SHAPE_SOURCES:
        return  # those runners build their signature from --input-shape themselves
    check_shapes_against(shapes, reference.signature, str(reference.path))
    by_name = {s.name: s for s in shapes} if shapes[0].name else dict(zip(reference.signature.input_names, shapes))
    for spec in reference.signature.inputs:
        given = by_name.get(spec.name)
        if given is not None:
            spec.shape = (spec.shape[0], *[g if d is None else d for g, d in zip(given.shape[1:], spec.shape[1:])])


def parity_data(reference, inputs: str | None, seed: int = 0,
                label_column: str | None = None, batch_axis: dict | None = None) -> tuple[Dataset, list[str]]:
    from edgekit.tensors import load_dataset
    from edgekit.validators.latency import random_samples, shape_flags

    if inputs:
        return load_dataset(inputs, reference.signature, "--inputs", label_column, batch_axis), []
    return random_samples(reference, RANDOM_SAMPLES, seed, shape_flags(reference), batch_axis), [RANDOM_WARNING]


def convert_stage(req: SourceRequest, target: str, quantize: str, staged_path: str, *, validate: bool = True,
                  options: dict | None = None) -> dict:
    """Load the source, convert it into `staged_path`, and (by default) check parity.

    `req.source_options` describe sources without their own signature or code (--input-shape,
    --model-class, --model-args); the source's runner interprets them. `options` are the
    converter's own (--int8-io, --script)."""
    from edgekit.converters.registry import ConvertRequest, lookup
    from edgekit.tensors import load_dataset

    source, inputs, calibration, trust = req.source, req.inputs, req.calibration, req.trust
    label_column, batch_axis, source_options = req.label_column, req.batch_axis, req.source_options
    t_start = time.perf_counter()
    progress(f"loading {Path(source).name}")
    reference = open_model(source, trust=trust, options=req.open_options())
    pin_input_shapes(reference, source_options)
    conv = lookup(reference.detected.spec.framework, target, quantize)
    calib = None
    if calibration:
        calib = load_dataset(calibration, reference.signature, "--calibration", label_column, batch_axis)
    real = load_dataset(inputs, reference.signature, "--inputs", label_column, batch_axis) if inputs else calib
    # timing and auto's gate run on real samples: --inputs, else --calibration
    request = ConvertRequest(target, quantize, calib, {"signature": req.signature, **(options or {})}, samples=real)
    if validate:  # read the parity data before the (slow) conversion: bad data fails fast
        if real is not None:  # real samples beat random ones, even if they are the calibration samples
            data, warnings = real, ([] if inputs else [CALIBRATION_NOTE])
        else:
            data, warnings = parity_data(reference, None, req.seed, label_column, batch_axis)
    scalars = getattr(reference, "python_scalars", None)  # forward(x, sr: int): export specializes sr
    if scalars and real is not None:
        reference.example_scalars = {k: real.arrays[k].reshape(-1)[0].item() for k in scalars if k in real.arrays}
    t0 = time.perf_counter()
    result = conv.func(reference, request, Path(staged_path))
    convert_s = time.perf_counter() - t0
    from edgekit.validators.latency import file_size  # a folder artifact (tfjs) counts all its files
    out = {
        "source": source, "source_format": reference.detected.name, "target": target,
        "quantize": quantize, "precision": result.precision, "converter": conv.library,
        "notes": result.notes, "details": result.details, "convert_seconds": convert_s,
        "load_seconds": t0 - t_start,  # framework import, source model and data
        "size_bytes": file_size(Path(staged_path)),
        "source_signature": reference.signature.to_dict(),
        "warnings": list(result.details.get("warnings", [])),
    }
    if validate:
        from edgekit.validators.parity import check

        candidate = open_model(staged_path, runtime=get_target(target).runtime)
        inherit_layout(reference.signature, candidate.signature)
        out["signature"] = candidate.signature.to_dict()
        report = check(reference, candidate, data, precision=result.precision,
                       tolerance=tolerance_for(result.precision, req.tolerance, reference.runtime),
                       kinds=req.output_kinds)
        report.notes = warnings + report.notes
        out["parity"] = report.to_dict()
    out["total_seconds"] = time.perf_counter() - t_start
    return out


def recorded_precision(artifact: str) -> str | None:
    """The precision `edgekit convert` recorded in <artifact>.report.json (what it was checked
    with), so that validate judges the file as convert did; None without a readable report."""
    import json

    report = Path(str(artifact) + ".report.json")
    try:
        doc = json.loads(report.read_text())
        prec = doc["result"]["precision"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return prec if prec in ("fp32", "fp16", "dynamic", "int8") else None


@dataclass(frozen=True)
class Arch:
    """Where `validate` runs a candidate (ARCHITECTURE.md, "A place to run"): the reference,
    data, presets, parity check and report are the same for every arch; only this differs."""

    open: str  # "module:function"(artifact, *, trust, cpu, iterations, **place) -> a loaded Runner, or a list
    #            of them (one per runtime that runs the file there: the browser's ORT Web, TF.js wasm/cpu)
    summary: str = ""  # "module:function"(runner) -> dict, kept in the result under `key` (merged into it if no key)
    key: str = ""
    refusal_fails: bool = False  # a BadInput while running there is a failed check (exit 1), not exit 2
    refused: str = ""  # "module:function"(exc, result, runner) -> the failed result, when refusal_fails


ARCHES: dict[str, Arch] = {
    "host": Arch("edgekit.pipeline:open_on_host"),
    "arm64": Arch("edgekit.validators.arm.stages:open_for_validate", "edgekit.validators.arm.stages:arm_summary",
                  "arm", True, "edgekit.validators.arm.stages:refused_on_arm"),
    # JS runtimes (edgekit.validators.web): one candidate per runtime that runs the file
    "browser": Arch("edgekit.validators.web.stages:open_for_validate", "edgekit.validators.web.stages:result_fields"),
    "node": Arch("edgekit.validators.web.stages:open_for_validate", "edgekit.validators.web.stages:result_fields"),
    # a real board over SSH (edgekit.validators.device): `place` names the device and the folder
    # that the CLI process made there (and removes, whatever happens to this stage)
    "device": Arch("edgekit.validators.device.stages:open_for_validate",
                   "edgekit.validators.device.runner:device_summary", "device"),
}


def open_on_host(artifact: str, *, trust: Trust, cpu: str | None = None, iterations: int | None = None, **place):
    return open_model(artifact, trust=trust)


def _function(spec: str):
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


class _Once:
    """The reference runner, predicting once for every arch compared with it."""

    def __init__(self, runner):
        self._runner = runner
        self._out = None

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def predict(self, arrays, *args, **kwargs):
        if self._out is None:
            self._out = self._runner.predict(arrays, *args, **kwargs)
        return self._out


def validate_stage(req: SourceRequest, artifact: str, *, precision: str | None = None,
                   arches: tuple[str, ...] | None = None, cpu: str | None = None,
                   iterations: int | None = None, place: dict | None = None) -> dict:
    """Parity of an existing artifact against its source model, on each arch of `arches`
    (ARCHES: where it runs; `place`: what that arch needs to know, e.g. which device):
    {"results": [one per arch]}. Without `arches`: the host only, one
    result, with the artifact timed beside the source when the same runtime runs both."""
    from edgekit.validators.parity import check

    source, trust = req.source, req.trust
    unknown = [a for a in (arches or ()) if a not in ARCHES]
    if unknown:
        raise BadInput(f"unknown arch {', '.join(unknown)}.", hint=f"choose from: {', '.join(ARCHES)}")
    progress(f"loading {Path(source).name}")
    reference = open_model(source, trust=trust, options=req.open_options())
    pin_input_shapes(reference, req.source_options)
    if Path(source).resolve() == Path(artifact).resolve():
        raise BadInput("the source and the artifact are the same file.")
    data, warnings = parity_data(reference, req.inputs, req.seed, req.label_column, req.batch_axis)
    recorded = None if precision else recorded_precision(artifact)
    if recorded:
        warnings = warnings + [f"the {recorded} preset is the precision recorded in {Path(artifact).name}.report.json"]
    once = _Once(reference)
    results = []
    for arch in arches or ("host",):
        where = ARCHES[arch]
        progress(f"loading {Path(artifact).name}" + (f" ({arch})" if arches else ""))
        opened = _function(where.open)(artifact, trust=trust, cpu=cpu, iterations=iterations, arch=arch,
                                       **(place or {}))
        for candidate in opened if isinstance(opened, list) else [opened]:
            prec = precision or recorded or candidate.precision()
            tol = tolerance_for(prec, req.tolerance, reference.runtime)
            result = {**({"arch": arch} if arches else {}), "source": source, "artifact": artifact,
                      "artifact_format": candidate.detected.name, "runtime": candidate.runtime,
                      "runtime_version": candidate.version()}
            try:
                report = check(once, candidate, data, precision=prec, tolerance=tol, kinds=req.output_kinds)
            except BadInput as exc:
                if not where.refusal_fails:
                    raise
                # the file loads and runs on the host but not there (e.g. a kernel missing from
                # onnxruntime's arm64 build): a failed check, shown beside the host's verdict
                results.append(_function(where.refused)(exc, result, candidate, prec, tol, data, warnings))
                continue
            if arches:
                report.arch = arch
            report.notes = warnings + report.notes
            result["parity"] = report.to_dict()
            if where.summary:
                summary = _function(where.summary)(candidate)
                if where.key:
                    result[where.key] = summary
                else:
                    result.update(summary)
            results.append(result)
    if arches:
        return {"results": results}
    out = results[0]
    if candidate.runtime == reference.runtime:  # comparable: the same runtime runs both files
        out["latency"] = latency_vs_source(source, artifact, prec, data)
    return out


def latency_vs_source(source: str, artifact: str, precision: str, data=None) -> dict:
    """Median batch-1 latency of the source and the artifact on the same runtime (alternating
    rounds, as convert times a quantized file beside its float model), and a warning when the
    artifact is more than SLOWER_LIMIT slower. Timed on the first sample of `data` (the parity
    samples: real shapes, never an invented image size)."""
    from edgekit.converters.auto import median_ms
    from edgekit.converters.onnx_quant import SLOWER_LIMIT

    progress("timing the artifact beside the source (same runtime)")
    src_ms, art_ms = median_ms([Path(source), Path(artifact)], data=data)
    ratio = art_ms / src_ms if src_ms > 0 else 1.0
    out = {"source_ms": src_ms, "artifact_ms": art_ms, "ratio": ratio, "slower": ratio > SLOWER_LIMIT}
    if out["slower"]:
        out["warning"] = (f"the artifact ({precision}) is {ratio:.1f}x slower than the source on this CPU "
                          f"({art_ms:.3f} ms vs {src_ms:.3f} ms median, batch 1): keep the source's precision, "
                          "or let convert --quantize auto choose by measurement")
    return out


def security_stage(path: str, *, trust: Trust = Trust()) -> dict:
    from edgekit.loading import security_report

    return security_report(path, trust)


def inspect_stage(path: str, *, trust: Trust = Trust(), source_options: dict | None = None) -> dict:
    """Format, size, signature, quantization parameters and operator counts of a model."""
    from edgekit.validators.latency import file_size

    runner = open_model(path, trust=trust, options={"trust": trust, **(source_options or {})})
    return {
        "path": path, "format": runner.detected.name, "description": runner.detected.spec.description,
        "detected_by": runner.detected.evidence, "size_bytes": file_size(Path(path)),
        "runtime": runner.runtime, "runtime_version": runner.version(), "precision": runner.precision(),
        "signature": runner.signature.to_dict(), "operators": runner.op_counts(),
    }


# ----------------------------------------------------------------------------- edgekit debug
def float_tflite(reference, tmp: Path) -> tuple[Path, list[str]]:
    from edgekit.converters.registry import ConvertRequest, lookup

    fw = reference.detected.spec.framework
    if reference.detected.name == "tflite":
        return Path(reference.path), []
    progress(f"converting the {fw} source to fp32 TFLite, the float reference for the layer comparison")
    out = tmp / "float.tflite"
    lookup(fw, "tflite", "none").func(reference, ConvertRequest("tflite"), out)
    return out, [f"the {fw} source is compared through its fp32 TFLite conversion (layers are its TFLite tensors)"]


def float_onnx(reference, tmp: Path) -> tuple[Path, list[str]]:
    """The float ONNX reference for a loaded source: itself if ONNX, else edgekit's fp32 conversion."""
    from edgekit.converters.registry import ConvertRequest, lookup

    fw = reference.detected.spec.framework
    if fw == "onnx":
        return Path(reference.path), []
    progress(f"converting the {fw} source to fp32 ONNX, the float reference for the layer comparison")
    out = tmp / "float.onnx"
    lookup(fw, "onnx", "none").func(reference, ConvertRequest("onnx"), out)
    return out, [f"the {fw} source is compared through its fp32 ONNX conversion (layers are its ONNX nodes)"]


def debug_stage(source: str, artifact: str, *, inputs: str | None = None, precision: str | None = None,
                trust=None, seed: int = 0, source_options: dict | None = None, batch_axis: dict | None = None,
                signature: str | None = None, split: bool = False) -> dict:
    """`edgekit debug`: layer-by-layer comparison of an ONNX, TFLite or ExecuTorch artifact with its
    source (inside a child process); the comparison itself is edgekit.validators.debug's. `split`
    (--explain): also measure the weights-vs-activations split of the layer that loses the most."""
    import tempfile

    from edgekit.formats import detect
    from edgekit.validators.debug import (FP_FLOOR_DB, MAX_SAMPLES, MEMORY_BUDGET, TFLITE_SAMPLES, check_same_inputs,
                                          compare_layers, compare_pte, compare_tflite, json_safe, onnx_io, tflite_io)

    trust = trust or Trust()
    found = detect(artifact)
    if found.name not in ("onnx", "tflite", "executorch"):
        raise BadInput(f"{artifact}: edgekit debug compares layers of ONNX, TFLite and ExecuTorch artifacts "
                       f"(this is a {found.spec.description}).",
                       hint="'edgekit validate' still checks its outputs")
    progress(f"loading {Path(source).name}")
    reference = open_model(source, trust=trust, options={"trust": trust, "signature": signature,
                                                         **(source_options or {})})
    candidate = open_model(artifact, trust=trust)
    prec = precision or recorded_precision(artifact) or candidate.precision()
    data, notes = parity_data(reference, inputs, seed, None, batch_axis)
    data = data.take(min(data.n, MAX_SAMPLES))
    floor = FP_FLOOR_DB.get(prec) or tolerance_preset(prec).min_snr_db or 12.0
    names = (Path(source).name, Path(artifact).name)
    with tempfile.TemporaryDirectory(prefix="edgekit-debug-") as tmp:
        if found.name == "executorch":
            if reference.runtime not in ("torch_export", "torch_eager", "torchscript"):
                raise BadInput(f"{source}: an ExecuTorch artifact is compared layer by layer with a PyTorch source "
                               f"(.pt2, weights + --model-class, TorchScript); this is a {reference.detected.spec.description}.",
                               hint="debug the .pte against the torch model it was converted from")
            check_same_inputs([(s.name, s.shape, s.dtype) for s in reference.signature.inputs],
                              [(s.name, s.shape, s.dtype) for s in candidate.signature.inputs], *names)
            feeds = [data.arrays[s.name] if s.name in data.arrays else v
                     for s, v in zip(reference.signature.inputs, data.arrays.values())]
            progress("exporting the source with torch.export (batch 1, as the .pte)")
            from edgekit.converters.torch import exported_program

            result = compare_pte(exported_program(reference, static=True), Path(artifact), feeds, data.n, floor)
            more = ["the source is compared through its torch.export graph; the artifact's XNNPACK nodes are "
                    "matched to it in order by operator and size (layers are nn.Module paths)"]
        elif found.name == "tflite":
            float_path, more = float_tflite(reference, Path(tmp))
            check_same_inputs(tflite_io(float_path), tflite_io(Path(artifact)), *names, any_int=True)
            feeds = list(data.arrays.values())  # in the source signature's order, as the converter keeps it
            result = compare_tflite(float_path, Path(artifact), feeds, data.n, floor)
        else:
            float_path, more = float_onnx(reference, Path(tmp))
            check_same_inputs(onnx_io(float_path), onnx_io(Path(artifact)), *names)
            inputs_ = [i[0] for i in onnx_io(float_path)]
            keys = list(data.arrays)
            feeds = {k: data.arrays[k] for k in inputs_} if set(inputs_) <= set(keys) else \
                {n: data.arrays[k] for n, k in zip(inputs_, keys)}
            result = compare_layers(float_path, Path(artifact), feeds, data.n, floor)
            if split and result["worst"]:
                from edgekit.validators.debug import weight_activation_split

                worst = next(r for r in result["layers"] if r["source_layer"] == result["worst"][0]["source_layer"])
                progress(f"measuring weights vs activations at {worst['source_layer']}")
                k = result["samples"]
                result["split"] = weight_activation_split(float_path, Path(artifact), worst,
                                                          {n: v[:k] for n, v in feeds.items()}, k)
    if result.get("samples", data.n) < data.n:
        more.append(f"compared on the first {result['samples']} of {data.n} samples: every intermediate tensor "
                    f"is kept, within {MEMORY_BUDGET >> 20} MB" + (f" (at most {TFLITE_SAMPLES}, one at a time)" if found.name != "onnx" else ""))
    result = json_safe(result)  # NaN/Inf in the artifact: the row says finite: false, its metrics are null
    result.update({"source": source, "artifact": artifact, "precision": prec, "samples": result.pop("samples", data.n),
                   "data_source": data.source, "notes": notes + more, **({"explain": True} if split else {})})
    return result
