"""Stages (run in a child process by `edgekit.isolation`) for `--device ssh://…`.

`validate_stage` computes the reference on the host with the source framework and compares
the device's outputs with `edgekit.validators.parity.check` (the same metrics and presets as
on the host); the same device run also times the artifact there. `measure` is the device's
`bench`. The device folder is made and removed by the CLI (or build) process (`ssh.device_folder`), so
that Ctrl-C, which kills this child, still removes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import BadInput
from edgekit.formats import detect
from edgekit.loading import Trust
from edgekit.progress import progress

if TYPE_CHECKING:
    from edgekit.request import SourceRequest
    from edgekit.validators.device import Device

VALIDATE_WARMUP = 5
VALIDATE_ITERATIONS = 50


def open_device(path: str | Path, device: Device, folder: str, *, trust: Trust = Trust(), threads: int | None = 1,
                **options):
    from edgekit.loading import check_policy
    from edgekit.validators.device.runner import DeviceRunner

    found = detect(path)
    check_policy(found, trust)
    runner = DeviceRunner(found.path, threads=threads, options={"device": device, "folder": folder, **options})
    runner.detected = found
    return runner.load()


def validate_stage(req: SourceRequest, artifact: str, device: Device, folder: str, *, precision: str | None = None,
                   iterations: int = VALIDATE_ITERATIONS) -> dict:
    """Parity of `artifact` run on `device` against `req.source` on the host; returns one result."""
    from edgekit.loading import open_model
    from edgekit.pipeline import parity_data, pin_input_shapes, recorded_precision, tolerance_for
    from edgekit.validators.device.runner import device_summary
    from edgekit.validators.parity import check

    source, trust = req.source, req.trust
    if Path(source).resolve() == Path(artifact).resolve():
        raise BadInput("the source and the artifact are the same file.")
    progress(f"loading {Path(source).name}")
    reference = open_model(source, trust=trust, options=req.open_options())
    pin_input_shapes(reference, req.source_options)
    data, warnings = parity_data(reference, req.inputs, req.seed, req.label_column)
    candidate = open_device(artifact, device, folder, trust=trust, warmup=VALIDATE_WARMUP, iterations=iterations)
    prec = precision or recorded_precision(artifact) or candidate.precision()
    tol = tolerance_for(prec, req.tolerance, reference.runtime)
    report = check(reference, candidate, data, precision=prec, tolerance=tol)
    report.arch = f"device {device.name}"
    report.notes = warnings + report.notes
    return {"arch": "device", "source": source, "artifact": artifact, "artifact_format": candidate.detected.name,
            "runtime": candidate.runtime, "runtime_version": candidate.version(), "parity": report.to_dict(),
            "device": device_summary(candidate)}


def measure(path: str, device: Device, folder: str, *, trust: Trust | None = None, warmup: int = 10,
            iterations: int = 100, inputs: str | None = None, seed: int = 0, threads: int | None = None) -> dict:
    """Latency of one artifact measured on the device (warm-up, then timed single-batch runs)."""
    from edgekit.tensors import load_dataset
    from edgekit.validators.device.runner import device_summary
    from edgekit.validators.latency import file_size, random_samples

    p = Path(path)
    progress(f"loading {p.name} (signature on the host)")
    runner = open_device(p, device, folder, trust=trust or Trust(), threads=threads or 1)
    batch = runner.batch_size() or 1
    data = load_dataset(inputs, runner.signature) if inputs else \
        random_samples(runner, batch, seed, "--inputs with real samples (.npz keyed by input name)")
    runner.run({k: v[:batch] for k, v in data.arrays.items()}, warmup=warmup, iterations=iterations,
               outputs=False)
    result = device_summary(runner)
    result.update({"artifact": str(p), "runtime": runner.runtime, "size_bytes": file_size(p),
                   "threads_requested": threads, "inputs": data.source})
    return result
