"""`DeviceRunner`: the Runner interface, with inference done on a real board over SSH.

The signature is read on the host by the host runner of the same runtime (as for emulated
arm64), so parity pairs tensors exactly as on the host. `load` probes the device, refuses
(exit 4, with the pip line) a device without the runtime, then copies the device runner and
the artifact into the run's private folder and checks their hashes there. `run` copies the
inputs (.npz), runs the runner with the device's Python and brings back outputs and report.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgekit.errors import BadInput, EnvironmentProblem
from edgekit.validators.runners.base import Runner


class DeviceRunner(Runner):
    runtime = "device"
    extra = "core"

    def load(self) -> "DeviceRunner":
        from edgekit.progress import progress
        from edgekit.targets import TARGETS
        from edgekit.validators.arm.provision import DEVICE_RUNNER
        from edgekit.validators.device import ssh
        from edgekit.validators.runners import runner_class

        spec = self.detected.spec
        self.device = self.options["device"]
        self.folder = self.options["folder"]
        dev = self.device
        if spec.runtime == "executorch":
            raise BadInput(f"{self.path.name}: ExecuTorch (.pte) files cannot run through edgekit's device runner "
                           "yet (it drives LiteRT and onnxruntime).",
                           hint="check the .tflite or .onnx artifact on the device; the .pte with --arch host")
        targets = list(TARGETS.values())
        device_runtime = {t.runtime: t.device_runtime for t in targets}.get(spec.runtime, spec.runtime)
        if device_runtime not in ssh.RUNTIMES:
            can = ", ".join(f"{t.extension} ({t.device_runtime})" for t in targets if t.device_runtime in ssh.RUNTIMES)
            raise BadInput(f"{self.path.name}: a {spec.description} cannot run on a device; only {can} "
                           "artifacts can.")
        host = runner_class(spec.runtime)(self.path, threads=1)
        host.detected = self.detected
        self.host = host.load()
        self.signature = host.signature
        self.device_runtime = device_runtime
        progress(f"probing {dev.name}")
        self.info = ssh.probe_device(dev)
        ssh.require_runtime(dev, self.info, device_runtime)
        self.threads = self.threads or 1
        self.runtime = f"{spec.runtime} on {dev.name}"
        self.model_name = "model" + "".join(self.path.suffixes[-1:])
        ssh.check_folder_space(dev, self.info, self.path.stat().st_size + DEVICE_RUNNER.stat().st_size)
        progress(f"copying the device runner and {self.path.name} to {dev.name}")
        self.hashes = ssh.upload(dev, self.folder, {"device_runner.py": DEVICE_RUNNER, self.model_name: self.path})
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
        dist = "ai-edge-litert" if self.device_runtime == "litert" else "onnxruntime"
        return f"{(self.info.get('packages') or {}).get(dist)} ({self.info.get('machine')})"

    def op_counts(self) -> dict[str, int]:
        return self.host.op_counts()

    def precision(self) -> str:
        return self.host.precision()

    # -- the device run -----------------------------------------------------------------
    def run(self, arrays: dict[str, np.ndarray], *, warmup: int = 0, iterations: int = 0, outputs: bool = True,
            max_batch: int = 256, timeout: float | None = None) -> dict:
        from edgekit.progress import progress
        from edgekit.validators.arm.device_runner import RUNNER_VERSION
        from edgekit.validators.device import ssh

        dev, folder = self.device, self.folder
        work = Path(tempfile.mkdtemp(prefix="edgekit-device-run-"))
        try:
            # text as unicode arrays: the device loads with allow_pickle=False (no object arrays)
            np.savez(work / "inputs.npz", **{k: np.ascontiguousarray(v.astype(str) if v.dtype.kind == "O" else v)
                                             for k, v in arrays.items()})
            ssh.check_folder_space(dev, self.info, (work / "inputs.npz").stat().st_size)
            progress(f"copying the inputs to {dev.name}")
            ssh.upload(dev, folder, {"inputs.npz": work / "inputs.npz"})
            args = ["device_runner.py", self.model_name, "--inputs", "inputs.npz", "--report", "report.json",
                    "--threads", str(self.threads), "--max-batch", str(max_batch), "--warmup", str(warmup),
                    "--iterations", str(iterations)] + (["--outputs", "outputs.npz"] if outputs else [])
            progress(f"running {self.device_runtime} on {dev.name}")
            code, tail = ssh.run_runner(dev, folder, args, timeout=timeout,
                                        on_progress=lambda m: progress(f"{dev.name}: {m}"))
            report = None
            if ssh.download(dev, folder, "report.json", work / "report.json"):
                try:
                    report = json.loads((work / "report.json").read_text())
                except ValueError:
                    pass
            if report and report.get("error"):
                err = report["error"]
                raise BadInput(f"the run on {dev.name} failed ({err['stage']}) for {self.path.name}: "
                               f"{err['message']}", details=tail or None)
            if code != 0 or report is None:
                raise EnvironmentProblem(f"the device runner on {dev.name} exited with code {code} and no report.",
                                         hint=f"run: edgekit device check ssh://{dev.name}", details=tail or None)
            if report.get("runner_version") != RUNNER_VERSION:
                raise EnvironmentProblem(f"device runner version {report.get('runner_version')} != "
                                         f"{RUNNER_VERSION}.")
            names = [o["name"] for o in report.get("outputs", [])]
            expected = [o.name for o in self.signature.outputs]
            if names and names != expected:
                raise BadInput(f"the run on {dev.name} named the outputs {names}, the host runtime {expected}.")
            result = {"report": report}
            if outputs:
                if not ssh.download(dev, folder, "outputs.npz", work / "outputs.npz"):
                    raise EnvironmentProblem(f"the outputs of the run on {dev.name} could not be copied back.")
                with np.load(work / "outputs.npz", allow_pickle=False) as npz:
                    result["outputs"] = {k: npz[k] for k in npz.files}
            self.last_run = result
            return result
        finally:
            shutil.rmtree(work, ignore_errors=True)


def device_summary(runner) -> dict:
    """What a device run adds to a result: the device, its versions, measured timings."""
    from edgekit.validators.device import DEVICE_LABEL
    from edgekit.validators.latency import stats_ms

    info = runner.info
    report = (runner.last_run or {}).get("report") or {}
    bench = report.get("bench") or {}
    out = {"device": f"ssh://{runner.device.name}", "device_runtime": runner.device_runtime, "emulated": False,
           "latency_label": DEVICE_LABEL,
           "machine": info.get("machine"), "cpu": info.get("cpu"), "cpu_count": info.get("cpu_count"),
           "os": info.get("os"), "kernel": info.get("kernel"), "python": info.get("python"),
           "memory_mb": info.get("memory_mb"), "packages": info.get("packages"),
           "runtime_version": runner.version(), "runner_version": report.get("runner_version"),
           "runner_sha256": runner.hashes.get("device_runner.py"), "artifact_sha256": runner.hashes.get(
               runner.model_name), "load_ms": report.get("load_s", 0.0) * 1000.0, "threads": runner.threads,
           "os_threads": report.get("os_threads"), "peak_rss_mb": report.get("peak_rss_mb")}
    if bench.get("samples_s"):
        out.update(stats_ms(bench["samples_s"]))
        out["first_inference_ms"] = bench["first_inference_s"] * 1000.0
        out["warmup"] = bench["warmup"]
        out["batch"] = bench["batch"]
    return out
