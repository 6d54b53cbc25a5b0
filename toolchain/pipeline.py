"""The stages behind each command. Each `*_stage` function runs inside a child process
(`edgekit.isolation.run`) and returns plain data; the CLI process only plans, shows
progress, publishes files and prints.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgekit.errors import BadInput
from edgekit.isolation import progress
from edgekit.loading import Trust, open_model
from edgekit.targets import TOLERANCES, get_target, precision_of
from edgekit.tensors import Dataset, load_dataset, random_dataset

RANDOM_SAMPLES = 16
RANDOM_WARNING = ("no --inputs given: parity used seeded random inputs, which can hide divergence "
                  "on real data; pass --inputs with real samples")


def tolerance_for(precision: str, overrides: dict | None):
    return TOLERANCES.get(precision, TOLERANCES["fp32"]).override(**(overrides or {}))


def parity_data(reference, inputs: str | None, seed: int = 0) -> tuple[Dataset, list[str]]:
    if inputs:
        return load_dataset(inputs, reference.signature, "--inputs"), []
    return random_dataset(reference.signature, n=RANDOM_SAMPLES, seed=seed), [RANDOM_WARNING]


def convert_stage(source: str, target: str, quantize: str, staged_path: str, *,
                  calibration: str | None = None, inputs: str | None = None, validate: bool = True,
                  tolerance: dict | None = None, trust: Trust = Trust(), options: dict | None = None,
                  seed: int = 0, source_options: dict | None = None) -> dict:
    """Load the source, convert it into `staged_path`, and (by default) check parity.

    `source_options` describe sources without their own signature or code (--input-shape,
    --model-class, --model-args); the source's runner interprets them."""
    from edgekit.converters.registry import ConvertRequest, lookup
    from edgekit.validators.parity import check

    t_start = time.perf_counter()
    progress(f"loading {Path(source).name}")
    reference = open_model(source, trust=trust, options={"trust": trust, **(source_options or {})})
    conv = lookup(reference.detected.spec.framework, target, quantize)
    calib = None
    if calibration:
        calib = load_dataset(calibration, reference.signature, "--calibration")
    request = ConvertRequest(target, quantize, calib, dict(options or {}))
    t0 = time.perf_counter()
    result = conv.func(reference, request, Path(staged_path))
    convert_s = time.perf_counter() - t0
    out = {
        "source": source, "source_format": reference.detected.name, "target": target,
        "quantize": quantize, "precision": result.precision, "converter": conv.library,
        "notes": result.notes, "details": result.details, "convert_seconds": convert_s,
        "size_bytes": Path(staged_path).stat().st_size,
        "source_signature": reference.signature.to_dict(),
    }
    if validate:
        candidate = open_model(staged_path, runtime=get_target(target).runtime)
        out["signature"] = candidate.signature.to_dict()
        data, warnings = parity_data(reference, inputs, seed)
        report = check(reference, candidate, data, precision=result.precision,
                       tolerance=tolerance_for(result.precision, tolerance))
        report.notes = warnings + report.notes
        out["parity"] = report.to_dict()
    out["total_seconds"] = time.perf_counter() - t_start
    return out


def validate_stage(source: str, artifact: str, *, inputs: str | None = None, precision: str | None = None,
                   tolerance: dict | None = None, trust: Trust = Trust(), seed: int = 0,
                   source_options: dict | None = None) -> dict:
    """Parity of an existing artifact against its source model."""
    from edgekit.validators.parity import check

    progress(f"loading {Path(source).name}")
    reference = open_model(source, trust=trust, options={"trust": trust, **(source_options or {})})
    progress(f"loading {Path(artifact).name}")
    candidate = open_model(artifact, trust=trust)
    if candidate.detected.spec.framework == reference.detected.spec.framework and \
            candidate.detected.name == reference.detected.name and Path(source).resolve() == Path(artifact).resolve():
        raise BadInput("the source and the artifact are the same file.")
    prec = precision or candidate.precision()
    data, warnings = parity_data(reference, inputs, seed)
    report = check(reference, candidate, data, precision=prec, tolerance=tolerance_for(prec, tolerance))
    report.notes = warnings + report.notes
    return {"source": source, "artifact": artifact, "artifact_format": candidate.detected.name,
            "runtime": candidate.runtime, "runtime_version": candidate.version(), "parity": report.to_dict()}


def inspect_stage(path: str, *, trust: Trust = Trust()) -> dict:
    """Format, size, signature, quantization parameters and operator counts of a model."""
    from edgekit.validators.latency import file_size

    runner = open_model(path, trust=trust, options={"trust": trust})
    return {
        "path": path, "format": runner.detected.name, "description": runner.detected.spec.description,
        "detected_by": runner.detected.evidence, "size_bytes": file_size(Path(path)),
        "runtime": runner.runtime, "runtime_version": runner.version(), "precision": runner.precision(),
        "signature": runner.signature.to_dict(), "operators": runner.op_counts(),
    }
