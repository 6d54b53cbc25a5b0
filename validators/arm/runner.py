"""`ArmRunner`: the Runner interface, with inference done on emulated aarch64.

The signature (names, dtypes, shapes, quantization) is read on the host by the host
runner of the same runtime, so parity pairs tensors exactly as on the host. `predict`
writes the inputs to an .npz, runs the device runner under qemu-aarch64 once for the
whole data set (emulator start-up costs seconds, so it is not paid per batch) and reads
the outputs back; quantized I/O is (de)quantized inside, as the host runners do.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgekit.errors import BadInput, EnvironmentProblem
from edgekit.targets import TARGETS
from edgekit.validators.arm import DEFAULT_CPU
from edgekit.validators.runners.base import Runner

DEVICE_RUNTIMES = ("litert", "onnxruntime")  # what the device runner (device_runner.py) can run


def device_runtime_of(runtime: str) -> str | None:
    """What runs, on the device, a file that the host runs with `runtime` (a target's
    declaration says; a source format's runtime runs as itself)."""
    for t in TARGETS.values():
        if t.runtime == runtime:
            return t.device_runtime
    return runtime


def instructions_per_inference(counts: dict, iterations: int) -> float | None:
    """((timed loop) - (empty baseline loop)) / iterations, from the device runner's markers."""
    m = counts.get("markers", {})
    if iterations <= 0 or not all(t in m for t in (1, 2, 3, 4)):
        return None
    return ((m[4] - m[3]) - (m[2] - m[1])) / iterations


class ArmRunner(Runner):
    runtime = "arm64"
    extra = "core"

    def load(self) -> "ArmRunner":
        from edgekit.validators.arm.emulator import Runtime, check_cpu
        from edgekit.validators.runners import runner_class

        spec = self.detected.spec
        device_runtime = device_runtime_of(spec.runtime)
        if device_runtime not in DEVICE_RUNTIMES:
            can = ", ".join(sorted({t.extension for t in TARGETS.values() if t.device_runtime in DEVICE_RUNTIMES}))
            target = next((t for t in TARGETS.values() if t.runtime == spec.runtime), None)
            if target is not None and target.no_device_runtime:  # the environment's limit, not the file's
                raise EnvironmentProblem(f"{self.path}: {target.no_device_runtime}",
                                         hint=f"check {target.extension} files with --arch host; artifacts that run "
                                              f"on arm64: {can}")
            raise BadInput(f"{self.path}: a {spec.description} cannot run on emulated arm64; only {can} artifacts "
                           "can.", hint="use --arch host for it")
        self.cpu = check_cpu(self.options.get("cpu") or DEFAULT_CPU)
        self.env = Runtime.load()
        host = runner_class(spec.runtime)(self.path, threads=1)
        host.detected = self.detected
        self.host = host.load()  # the signature as the host runtime reads it
        self.signature = host.signature
        self.device_runtime = device_runtime
        self.runtime = f"{spec.runtime} on arm64"
        if self.threads not in (None, 1):
            self.notes.append("arm64 runs use one thread (instruction counts are exact only with one)")
        self.last_run: dict | None = None
        return self

    # -- the Runner interface -----------------------------------------------------------
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run(feeds)["outputs"]

    def predict(self, arrays: dict[str, np.ndarray], max_batch: int = 256) -> dict[str, np.ndarray]:
        opts = self.options
        return self.run(arrays, warmup=int(opts.get("warmup", 0)), iterations=int(opts.get("iterations", 0)),
                        max_batch=max_batch)["outputs"]

    def version(self) -> str:
        wheels = self.env.manifest.get("wheels", {})
        dist = "ai-edge-litert" if self.device_runtime == "litert" else "onnxruntime"
        return f"{wheels.get(dist, '?')} (aarch64, qemu {self.cpu})"

    def op_counts(self) -> dict[str, int]:
        return self.host.op_counts()

    def precision(self) -> str:
        return self.host.precision()

    # -- emulated run -------------------------------------------------------------------
    def run(self, arrays: dict[str, np.ndarray], *, warmup: int = 0, iterations: int = 0, outputs: bool = True,
            max_batch: int = 256, timeout: float | None = None) -> dict:
        """One emulator launch: outputs for every sample and/or a counted timing loop."""
        from edgekit.progress import progress
        from edgekit.validators.arm.emulator import GUEST_MODEL_DIR, GUEST_WORK, expect_outputs
        from edgekit.validators.arm.recipe import DEVICE_RUNNER

        work = Path(tempfile.mkdtemp(prefix="edgekit-arm-run-"))
        try:
            # The guest sees `work` as GUEST_WORK and the artifact's folder (with any ONNX external
            # data) as GUEST_MODEL_DIR: fixed paths, so counts do not depend on temp names.
            shutil.copy(DEVICE_RUNNER, work / DEVICE_RUNNER.name)
            # text as unicode arrays: the device loads with allow_pickle=False (no object arrays)
            np.savez(work / "inputs.npz", **{k: np.ascontiguousarray(v.astype(str) if v.dtype.kind == "O" else v)
                                             for k, v in arrays.items()})
            expect_outputs(work, "report.json", "outputs.npz")
            report_path = work / "report.json"
            out_path = work / "outputs.npz"
            args = [f"{GUEST_WORK}/{DEVICE_RUNNER.name}", f"{GUEST_MODEL_DIR}/{self.path.name}",
                    "--inputs", f"{GUEST_WORK}/inputs.npz", "--report", f"{GUEST_WORK}/report.json",
                    "--threads", "1", "--max-batch", str(max_batch), "--warmup", str(warmup),
                    "--iterations", str(iterations), "--runtime", self.device_runtime]
            if outputs:
                args += ["--outputs", f"{GUEST_WORK}/outputs.npz"]
            progress(f"starting {self.device_runtime} on emulated arm64 ({self.cpu})")
            run = self.env.run(args, cpu=self.cpu, count=True, timeout=timeout, workdir=work,
                               model_dir=self.path.resolve().parent, on_progress=lambda m: progress(f"arm64: {m}"))
            report = None
            try:
                report = json.loads(report_path.read_text())
            except (OSError, ValueError):
                pass
            self._check(run, report)
            result = {"report": report, "counts": run.counts, "seconds": run.seconds, "cpu": self.cpu}
            if outputs:
                with np.load(out_path, allow_pickle=False) as npz:
                    result["outputs"] = {k: npz[k] for k in npz.files}
            result["instructions_per_inference"] = instructions_per_inference(run.counts, iterations)
            self.last_run = result
            return result
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _check(self, run, report: dict | None) -> None:
        import signal

        name = self.path.name
        if run.returncode < 0:
            sig = signal.Signals(-run.returncode).name
            raise BadInput(f"the arm64 stage crashed ({sig}): {self.device_runtime} died running {name} under "
                           f"qemu-aarch64 ({self.cpu}).",
                           hint="the file may be corrupt, or the runtime hit a bug on this core; it ran (or not) "
                                "on the host: compare with --arch host", details=run.stderr_tail or None)
        if report and report.get("error"):
            err = report["error"]
            raise BadInput(f"the arm64 stage failed ({err['stage']}) for {name}: {err['message']}",
                           details=run.stderr_tail or None)
        if run.returncode != 0 or report is None:
            raise EnvironmentProblem(f"the arm64 stage failed for {name}: the device runner exited with code "
                                     f"{run.returncode} and no report.",
                                     hint="run edgekit arm status; edgekit arm setup --force rebuilds the runtime",
                                     details=run.stderr_tail or None)
        from edgekit.validators.arm.device_runner import RUNNER_VERSION

        if report.get("runner_version") != RUNNER_VERSION:
            raise EnvironmentProblem(f"device runner version {report.get('runner_version')} != {RUNNER_VERSION}.")
        names = [o["name"] for o in report.get("outputs", [])]
        expected = [o.name for o in self.signature.outputs]
        if names and names != expected:
            raise BadInput(f"the arm64 run of {name} named its outputs {names}, the host runtime {expected}.")
