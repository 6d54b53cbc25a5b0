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


def open_for_validate(path: str | Path, *, trust: Trust, device: Device, folder: str, cpu: str | None = None,
                      iterations: int | None = None, **_):
    """The candidate of validate on a board (edgekit.pipeline.ARCHES["device"])."""
    return open_device(path, device, folder, trust=trust, warmup=VALIDATE_WARMUP,
                       iterations=VALIDATE_ITERATIONS if iterations is None else iterations)


def validate_stage(req: SourceRequest, artifact: str, device: Device, folder: str, *, precision: str | None = None,
                   iterations: int = VALIDATE_ITERATIONS) -> dict:
    """Parity of `artifact` run on `device` against `req.source` on the host: the one validate
    stage (edgekit.pipeline.validate_stage) with the device as its arch; returns one result."""
    from edgekit.pipeline import validate_stage as validate

    result = validate(req, artifact, precision=precision, arches=("device",), iterations=iterations,
                      place={"device": device, "folder": folder})["results"][0]
    result["parity"]["arch"] = f"device {device.name}"
    return result


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
