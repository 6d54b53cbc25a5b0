"""Run the aarch64 Python of a provisioned runtime under qemu-aarch64.

Three things make emulated runs work and their counts deterministic:
- a private mount namespace (`unshare -m` as root, `unshare -rm` otherwise) in which an
  aarch64 text is bind-mounted over /proc/cpuinfo: qemu-user 7.2 passes the host's x86
  one through, and the CPU-info code in onnxruntime and LiteRT (XNNPACK) crashes on it.
  The text describes the same core as `-cpu` (features that the core lacks give SIGILL);
- one guest thread (OMP/OpenBLAS threads = 1, runtimes with one thread): the plugin's
  counter is exact only with a single vCPU, and a second OpenBLAS thread spin-waits;
- a fixed, minimal environment (PYTHONHASHSEED=0, no host variables leaking in).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import BadInput, EnvironmentProblem
from edgekit.validators.arm import CPUS, DEFAULT_CPU
from edgekit.validators.arm.recipe import DEVICE_RUNNER, PYTHON, arm_root, read_manifest, runtime_dir

MARKER_FD = -7771  # the device runner's markers: lseek(MARKER_FD, tag, 0) fails with EBADF
EXIT_MOUNT_FAILED = 97
# Inside the mount namespace the run's folder and the artifact's folder are bind-mounted on
# fixed paths of the sysroot, so the guest sees the same paths (and string sizes, hashes,
# heap layout) on every run: instruction counts then do not depend on temp-folder names.
# qemu -L redirects a path into the sysroot only when it already exists there, so a file the
# guest writes must be created (empty) on the host side first: see `expect_outputs`.
GUEST_WORK = "/tmp"
GUEST_MODEL_DIR = "/mnt/model"


def expect_outputs(work: Path, *names: str) -> None:
    for name in names:
        (work / name).write_bytes(b"")

# MIDR fields of QEMU's models; the feature list is what both cores have (ARMv8.2 + dotprod)
_CPU_IDS = {"neoverse-n1": ("0x4", "0xd0c"), "cortex-a76": ("0x4", "0xd0b")}
_FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
             "asimddp ssbs")


def cpuinfo_text(cpu: str, ncpu: int | None = None) -> str:
    variant, part = _CPU_IDS[cpu]
    block = ("processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {f}\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: {v}\nCPU part\t: {p}\nCPU revision\t: 1\n\n")
    return "".join(block.format(i=i, f=_FEATURES, v=variant, p=part) for i in range(ncpu or os.cpu_count() or 1))


def check_cpu(cpu: str | None) -> str:
    cpu = cpu or DEFAULT_CPU
    if cpu not in CPUS:
        raise BadInput(f"--arm-cpu {cpu}: not supported; choose one of {', '.join(CPUS)}.",
                       hint="'max' gives wrong int8 results with LiteRT on QEMU 7.2, and older cores "
                            "(cortex-a72/a53) lack the dot-product instructions the runtimes use")
    return cpu


@dataclass
class GuestRun:
    returncode: int
    stderr_tail: str
    counts: dict = field(default_factory=dict)  # {"markers": {tag: n}, "total": n, "vcpus": n}
    seconds: float = 0.0


def parse_counts(path: Path) -> dict:
    counts: dict = {"markers": {}}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return counts
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "marker":
            counts["markers"][int(parts[1])] = int(parts[2])
        elif len(parts) == 2 and parts[0] in ("total", "vcpus"):
            counts[parts[0]] = int(parts[1])
    return counts


def _set_pdeathsig() -> None:
    # The stage child can be killed (timeout, Ctrl-C): take the emulator down with it.
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Runtime:
    """A provisioned runtime folder, and how to run its Python under qemu-aarch64."""

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self.sysroot = self.path / "sysroot"
        self.site = self.path / "site"
        self.plugin = self.path / "libinsn.so"

    @classmethod
    def load(cls) -> "Runtime":
        """The current runtime, or an environment error (exit 4) saying how to get it."""
        if shutil.which("qemu-aarch64") is None:
            root = os.geteuid() == 0
            raise EnvironmentProblem(
                "qemu-aarch64 is not installed (not found on PATH); the arm64 checks run under it.",
                hint="run: edgekit arm setup" + (" (it installs qemu-user)" if root else
                                                 "  — it needs qemu-user first: sudo apt-get install -y qemu-user"))
        path = runtime_dir()
        manifest = read_manifest(path)
        if manifest is None:
            where = "is incomplete (an interrupted set-up?)" if path.exists() else "is not set up"
            others = [p.name for p in arm_root().glob("r*-*")] if arm_root().is_dir() else []
            if others and not path.exists():
                where = f"was set up for another recipe ({', '.join(others)})"
            raise EnvironmentProblem(f"the emulated arm64 runtime {where} (expected at {path}).",
                                     hint="run: edgekit arm setup   (about a minute, once; cached)")
        return cls(path, manifest)

    def environment(self) -> dict:
        home = f"{GUEST_WORK}/home"
        return {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home,
            "TMPDIR": home, "LANG": "C.UTF-8", "PYTHONPATH": str(self.site), "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
        }

    def command(self, args: list[str], *, cpu: str, cpuinfo: Path, work: Path, model_dir: Path | None,
                counts: Path | None) -> list[str]:
        qemu = shutil.which("qemu-aarch64")
        unshare = shutil.which("unshare") or "/usr/bin/unshare"
        mount = shutil.which("mount") or "/bin/mount"
        # mode=vcpu: each guest thread counts for itself; markers read the calling thread's count
        plugin = ["-plugin", f"{self.plugin},out={counts},mode=vcpu"] if counts else []
        ns = ["-m"] if os.geteuid() == 0 else ["-rm"]  # -r: a user namespace when not root
        binds = [(cpuinfo, Path("/proc/cpuinfo")), (work, self.sysroot / GUEST_WORK.lstrip("/"))]
        if model_dir is not None:
            binds.append((model_dir, self.sysroot / GUEST_MODEL_DIR.lstrip("/")))
        script = "".join(f'{mount} --bind "${i * 2 + 1}" "${i * 2 + 2}" || exit {EXIT_MOUNT_FAILED}; '
                         for i in range(len(binds)))
        script += f'cd "${len(binds) * 2}"; shift {len(binds) * 2}; exec "$@"'
        return [unshare, *ns, "sh", "-c", script, "edgekit-arm", *[str(p) for b in binds for p in b],
                qemu, "-L", str(self.sysroot), "-cpu", cpu, *plugin, str(self.sysroot / "usr/bin" / PYTHON), "-s",
                *args]

    def run(self, args: list[str], *, cpu: str = DEFAULT_CPU, count: bool = True, timeout: float | None = None,
            on_progress: Callable[[str], None] | None = None, workdir: Path | None = None,
            model_dir: Path | None = None) -> GuestRun:
        """Run the guest Python with `args` (paths as the guest sees them: GUEST_WORK for
        `workdir`, GUEST_MODEL_DIR for `model_dir`); device-runner progress is relayed."""
        import time

        cpu = check_cpu(cpu)
        own = workdir is None
        work = Path(tempfile.mkdtemp(prefix="edgekit-arm-")) if own else Path(workdir)
        try:
            cpuinfo = work / f"cpuinfo-{cpu}"
            cpuinfo.write_text(cpuinfo_text(cpu))
            counts_path = work / "counts.txt" if count else None
            (work / "home").mkdir(exist_ok=True)
            cmd = self.command(args, cpu=cpu, cpuinfo=cpuinfo, work=work, model_dir=model_dir, counts=counts_path)
            t0 = time.monotonic()
            tail: deque[str] = deque(maxlen=60)
            with open(work / "stdout.txt", "wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env=self.environment(),
                                        cwd=work, preexec_fn=_set_pdeathsig)
                timer = threading.Timer(timeout, proc.kill) if timeout else None
                if timer:
                    timer.start()
                try:
                    for raw in proc.stderr:
                        line = raw.decode(errors="replace").rstrip()
                        if line.startswith("edgekit-device: ") and on_progress:
                            on_progress(line.removeprefix("edgekit-device: "))
                        elif line and "telemetry" not in line:  # onnxruntime's harmless device-ID notice
                            tail.append(line)
                    proc.wait()
                finally:
                    if timer:
                        timer.cancel()
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            stderr = "\n".join(tail)
            self._check_namespace(proc.returncode, stderr)
            if timeout and proc.returncode == -signal.SIGKILL and time.monotonic() - t0 >= timeout:
                from edgekit.errors import StageTimeout

                raise StageTimeout(f"the emulated arm64 run took longer than {timeout:g} s and was stopped.",
                                   hint="raise --timeout; emulation is 10-50x slower than the host")
            counts = parse_counts(counts_path) if counts_path else {}
            return GuestRun(proc.returncode, stderr, counts, time.monotonic() - t0)
        finally:
            if own:
                shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _check_namespace(code: int, stderr: str) -> None:
        if code == EXIT_MOUNT_FAILED or (code == 1 and "unshare" in stderr and "failed" in stderr):
            raise EnvironmentProblem(
                "edgekit could not give the emulated CPU an ARM /proc/cpuinfo: that needs a private mount "
                "namespace (root, or unprivileged user namespaces). onnxruntime and LiteRT crash under "
                "qemu-user when they read the host's x86 /proc/cpuinfo.",
                hint="run as root (CI usually is), or enable user namespaces: "
                     "sudo sysctl -w kernel.unprivileged_userns_clone=1",
                details=stderr or None)

    def probe(self) -> dict:
        """The device runner's self-test: versions of everything, and a counted loop."""
        with tempfile.TemporaryDirectory(prefix="edgekit-arm-probe-") as tmp:
            shutil.copy(DEVICE_RUNNER, Path(tmp) / DEVICE_RUNNER.name)
            expect_outputs(Path(tmp), "probe.json")
            report = Path(tmp) / "probe.json"
            run = self.run([f"{GUEST_WORK}/{DEVICE_RUNNER.name}", "--probe", "--report", f"{GUEST_WORK}/probe.json"],
                           workdir=Path(tmp))
            try:
                info = json.loads(report.read_text())
            except (OSError, ValueError):
                info = None
        if run.returncode != 0 or not info:
            raise EnvironmentProblem(f"the emulated arm64 Python does not work (its self-test failed with exit "
                                     f"code {run.returncode}).",
                                     hint="run edgekit arm setup --force to rebuild the runtime",
                                     details=run.stderr_tail or None)
        m = run.counts.get("markers", {})
        if 1 not in m or 2 not in m:
            raise EnvironmentProblem("the instruction-counting plugin did not report its markers under "
                                     "qemu-aarch64 (does this qemu support -plugin?).",
                                     hint="edgekit needs Debian's qemu-user 7.2 (TCG plugins enabled)",
                                     details=run.stderr_tail or None)
        info["probe_loop_instructions"] = m[2] - m[1]
        return info
