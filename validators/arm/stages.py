"""Stages (run in a child process by `edgekit.isolation`) for `--arch arm64`.

`validate_stage` computes the reference once on the host with the source framework, then
compares every requested architecture's candidate with `edgekit.validators.parity.check`
(the same metrics and presets as the host path). On arm64 the same emulator launch also
runs a short counted timing loop, so a validation reports instructions per inference.
`measure` is `edgekit.validators.latency.measure` for emulated arm64.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import BadInput
from edgekit.progress import progress
from edgekit.loading import Trust, open_model
from edgekit.validators.arm import DEFAULT_CPU, EMULATED_LABEL
from edgekit.validators.web import ARCHES as WEB_ARCHES
from edgekit.validators.web import stages as web_stages

if TYPE_CHECKING:
    from edgekit.request import SourceRequest

VALIDATE_WARMUP = 2
VALIDATE_ITERATIONS = 10


class _Once:
    """The reference runner, predicting once for every architecture compared with it."""

    def __init__(self, runner):
        self._runner = runner
        self._out = None

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def predict(self, arrays, *args, **kwargs):
        if self._out is None:
            self._out = self._runner.predict(arrays, *args, **kwargs)
        return self._out


def open_arm(path: str | Path, *, cpu: str | None, trust: Trust = Trust(), **options):
    return open_model(path, trust=trust, runtime="arm64", threads=1, options={"cpu": cpu or DEFAULT_CPU, **options})


def arm_summary(runner) -> dict:
    """What an emulated run adds to a result: core, counts, emulated timings."""
    from edgekit.validators.latency import stats_ms

    run = runner.last_run or {}
    report = run.get("report") or {}
    bench = report.get("bench") or {}
    out = {"arch": "arm64", "cpu": runner.cpu, "emulated": True, "latency_label": EMULATED_LABEL,
           "instructions_per_inference": run.get("instructions_per_inference"),
           "guest_threads": run.get("counts", {}).get("vcpus"), "emulator_seconds": run.get("seconds"),
           "load_ms": report.get("load_s", 0.0) * 1000.0, "qemu": runner.env.manifest.get("qemu"),
           "runtime_version": runner.version(), "runner_version": report.get("runner_version")}
    if bench.get("samples_s"):
        out.update(stats_ms(bench["samples_s"]))
        out["first_inference_ms"] = bench["first_inference_s"] * 1000.0
        out["warmup"] = bench["warmup"]
        out["batch"] = bench["batch"]
    return out


def validate_stage(req: SourceRequest, artifact: str, *, arches=("host", "arm64"), cpu: str | None = None,
                   precision: str | None = None, iterations: int = VALIDATE_ITERATIONS) -> dict:
    """Parity of `artifact` against `req.source` on each architecture; returns {"results": [...]}."""
    from edgekit.pipeline import parity_data, pin_input_shapes, recorded_precision, tolerance_for
    from edgekit.validators.parity import check

    source, trust = req.source, req.trust
    progress(f"loading {Path(source).name}")
    reference = open_model(source, trust=trust, options=req.open_options())
    pin_input_shapes(reference, req.source_options)
    if Path(source).resolve() == Path(artifact).resolve():
        raise BadInput("the source and the artifact are the same file.")
    data, warnings = parity_data(reference, req.inputs, req.seed, req.label_column)
    once = _Once(reference)
    results = []
    for arch, candidate in _candidates(artifact, arches, cpu, trust, iterations):
        prec = precision or recorded_precision(artifact) or candidate.precision()
        tol = tolerance_for(prec, req.tolerance, reference.runtime)
        try:
            report = check(once, candidate, data, precision=prec, tolerance=tol)
        except BadInput as exc:
            if arch != "arm64":
                raise
            # the file loads and runs on the host but not on arm64 (e.g. a kernel missing from
            # onnxruntime's arm64 build): a failed check there, shown beside the host verdict
            results.append(refused_on_arm(exc, source, artifact, candidate, prec, tol, data, warnings))
            continue
        report.arch = arch
        report.notes = warnings + report.notes
        result = {"arch": arch, "source": source, "artifact": artifact, "artifact_format": candidate.detected.name,
                  "runtime": candidate.runtime, "runtime_version": candidate.version(), "parity": report.to_dict()}
        if arch == "arm64":
            result["arm"] = arm_summary(candidate)
        elif arch in WEB_ARCHES:  # the browser / Node.js (edgekit.validators.web)
            result.update(web_stages.result_fields(candidate))
        results.append(result)
    return {"results": results}


def _candidates(artifact: str, arches, cpu: str | None, trust: Trust, iterations: int):
    """(arch, loaded candidate runner) for every arch; the browser and Node give one per JS runtime."""
    for arch in arches:
        if arch in WEB_ARCHES:
            for candidate in web_stages.candidates(artifact, arch, trust=trust):
                yield arch, candidate
            continue
        progress(f"loading {Path(artifact).name} ({arch})")
        if arch == "arm64":
            yield arch, open_arm(artifact, cpu=cpu, trust=trust, warmup=VALIDATE_WARMUP, iterations=iterations)
        else:
            yield arch, open_model(artifact, trust=trust)


def refused_on_arm(exc, source: str, artifact: str, candidate, precision: str, tolerance, data,
                   warnings: list[str]) -> dict:
    """The result of an artifact that arm64 refused to load or run: parity failed (exit 1), with why."""
    from edgekit.validators.parity import Check, OutputParity, ParityReport

    why = f"it does not run on arm64: {exc.message}"
    report = ParityReport(precision, tolerance, data.n, data.source,
                          [OutputParity("(model)", "(model)", [], {}, [Check("runs_on_arch", 0.0, 1.0, False)])],
                          notes=warnings + [why], arch="arm64")
    result = {"arch": "arm64", "source": source, "artifact": artifact, "artifact_format": candidate.detected.name,
              "runtime": candidate.runtime, "runtime_version": candidate.version(), "parity": report.to_dict(),
              "error": why, "arm": arm_summary(candidate)}
    return result


def measure(path: str, *, cpu: str | None = None, trust: Trust | None = None, warmup: int = 10,
            iterations: int = 100, inputs: str | None = None, seed: int = 0, threads: int | None = None) -> dict:
    """Emulated arm64 latency and instructions per inference of one artifact (in a child)."""
    from edgekit.tensors import load_dataset
    from edgekit.validators.latency import file_size, random_samples

    p = Path(path)
    progress(f"loading {p.name} (signature on the host)")
    runner = open_arm(p, cpu=cpu, trust=trust or Trust())
    batch = runner.batch_size() or 1
    data = load_dataset(inputs, runner.signature) if inputs else \
        random_samples(runner, batch, seed, "--inputs with real samples (.npz keyed by input name)")
    runner.run(data.arrays, warmup=warmup, iterations=iterations, outputs=False)
    result = arm_summary(runner)
    result.update({"artifact": str(p), "runtime": runner.runtime, "size_bytes": file_size(p),
                   "threads_requested": 1, "inputs": data.source,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0})
    if threads not in (None, 1):
        result["notes"] = ["arm64 runs use one thread (instruction counts are exact only with one)"]
    return result
