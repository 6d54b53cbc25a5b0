"""Stages (run in a child process by `edgekit.isolation`) for `--arch browser` / `--arch node`.

`candidates` opens an artifact once per JS runtime that runs it (an .onnx: ONNX Runtime Web;
a TF.js folder: TF.js wasm, then TF.js cpu as a second runtime), so a validate stage compares
each with the same reference, metrics and presets as the host (edgekit.validators.parity).
`measure` is `edgekit.validators.latency.measure` for the browser and Node.js.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.loading import Trust, open_model
from edgekit.progress import progress
from edgekit.validators.web import ARCHES, RUNTIMES

VALIDATE_WARMUP = 5
VALIDATE_ITERATIONS = 50


def candidates(artifact: str | Path, arch: str, *, trust: Trust = Trust(), warmup: int = VALIDATE_WARMUP,
               iterations: int = VALIDATE_ITERATIONS, timeout: float | None = None) -> list:
    """One loaded WebRunner per JS runtime that runs `artifact` in `arch` (browser or node)."""
    from edgekit.validators.web.runner import artifact_kind

    if arch not in ARCHES:
        raise ValueError(f"not a web arch: {arch}")
    out = []
    for js in RUNTIMES[artifact_kind(Path(artifact))]:
        progress(f"loading {Path(artifact).name} ({js}, {arch})")
        out.append(open_model(artifact, trust=trust, runtime="web", threads=1,
                              options={"mode": arch, "js_runtime": js, "warmup": warmup, "iterations": iterations,
                                       "timeout": timeout}))
    return out


def open_for_validate(artifact: str, *, trust: Trust, arch: str, cpu: str | None = None,
                      iterations: int | None = None, **place) -> list:
    """The candidates of validate in the browser / Node.js (edgekit.pipeline.ARCHES)."""
    return candidates(artifact, arch, trust=trust, iterations=VALIDATE_ITERATIONS if iterations is None else iterations)


def result_fields(candidate) -> dict:
    """What a browser/Node run adds to a validate result."""
    from edgekit.validators.web.runner import web_summary

    return {"arch": candidate.mode, "runtime": candidate.runtime, "runtime_version": candidate.version(),
            "web": web_summary(candidate)}


def measure(path: str, *, arch: str = "browser", trust: Trust | None = None, warmup: int = 10,
            iterations: int = 100, inputs: str | None = None, seed: int = 0, threads: int | None = None) -> list[dict]:
    """In-page (or in-Node) latency of one artifact, one result per JS runtime (in a child)."""
    from edgekit.tensors import load_dataset
    from edgekit.validators.latency import file_size, random_samples
    from edgekit.validators.web.runner import web_summary

    p = Path(path)
    results = []
    for runner in candidates(p, arch, trust=trust or Trust(), warmup=warmup, iterations=iterations):
        batch = runner.batch_size() or 1
        data = load_dataset(inputs, runner.signature) if inputs else \
            random_samples(runner, batch, seed, "--inputs with real samples (.npz keyed by input name)")
        arrays = {k: v[:batch] for k, v in data.arrays.items()}
        runner.run([arrays], warmup=warmup, iterations=iterations)
        r = web_summary(runner)
        r.update({"artifact": str(p), "runtime": runner.runtime, "runtime_version": runner.version(),
                  "size_bytes": file_size(p), "threads_requested": 1, "inputs": data.source, "batch": batch})
        if threads not in (None, 1):
            r["notes"] = ["browser and Node.js runs use one thread (wasm without cross-origin threads)"]
        results.append(r)
    return results
