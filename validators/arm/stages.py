"""Stages (run in a child process by `edgekit.isolation`) for `--arch arm64`.

`validate_stage` is `edgekit.pipeline.validate_stage` with arm64 among its arches: the
reference runs once on the host, every arch's candidate is compared with the same metrics and
presets. This module gives what is arm64's own: opening the candidate under QEMU (the same
emulator launch runs a short counted timing loop, so a validation reports instructions per
inference), its summary, and the failed result when arm64 refuses the file.
`measure` is `edgekit.validators.latency.measure` for emulated arm64.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.progress import progress
from edgekit.loading import Trust, open_model
from edgekit.validators.arm import DEFAULT_CPU, EMULATED_LABEL

if TYPE_CHECKING:
    from edgekit.request import SourceRequest

VALIDATE_WARMUP = 2
VALIDATE_ITERATIONS = 10


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


def open_for_validate(path: str | Path, *, trust: Trust, cpu: str | None = None, iterations: int | None = None,
                      **place):
    """The candidate for validate on arm64 (pipeline.ARCHES): the same launch runs a short counted loop."""
    return open_arm(path, cpu=cpu, trust=trust, warmup=VALIDATE_WARMUP,
                    iterations=VALIDATE_ITERATIONS if iterations is None else iterations)


def validate_stage(req: SourceRequest, artifact: str, *, arches=("host", "arm64"), cpu: str | None = None,
                   precision: str | None = None, iterations: int = VALIDATE_ITERATIONS) -> dict:
    """Parity of `artifact` against `req.source` on each architecture; returns {"results": [...]}
    (edgekit.pipeline.validate_stage, the one validate stage, with arm64 among the arches)."""
    from edgekit.pipeline import validate_stage as validate

    return validate(req, artifact, precision=precision, arches=tuple(arches), cpu=cpu, iterations=iterations)


def refused_on_arm(exc, result: dict, candidate, precision: str, tolerance, data, warnings: list[str]) -> dict:
    """The result of an artifact that arm64 refused to load or run: parity failed (exit 1), with why."""
    from edgekit.validators.parity import Check, OutputParity, ParityReport

    why = f"it does not run on arm64: {exc.message}"
    report = ParityReport(precision, tolerance, data.n, data.source,
                          [OutputParity("(model)", "(model)", [], {}, [Check("runs_on_arch", 0.0, 1.0, False)])],
                          notes=warnings + [why], arch="arm64")
    return {**result, "parity": report.to_dict(), "error": why, "arm": arm_summary(candidate)}


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
