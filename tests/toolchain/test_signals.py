"""No stage outlives its limits: the real CLI, killed (SIGKILL) or terminated (SIGTERM) while a
stage runs an endless model, leaves no process, no staging folder and no stage log behind;
and the limits themselves (--timeout, [build] timeout, EDGEKIT_MEMORY_MB) refuse values
that would switch them off.

The endless model is an ONNX `Loop` with a trip count of 2^62: the parity check of
`convert`/`build` runs it in onnxruntime and never returns. Processes are found by a unique
marker in their environment (every stage child inherits it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import assert_user_error, run_cli
from tiny_onnx import endless_onnx, matmul_onnx, write_project


def marked(marker: str) -> list[int]:
    """pids of live processes whose environment holds the marker."""
    needle = f"EDGEKIT_TEST_MARKER={marker}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in (d / "environ").read_bytes().split(b"\0"):
                    stat = (d / "stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[0] != "Z":  # a zombie is dead
                        pids.append(int(d.name))
            except OSError:
                pass
    return pids


def wait_for(pred, timeout: float = 60.0) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.1)
    return False


class Endless:
    """The real CLI running a command whose stage never ends, with its own marker and TMPDIR."""

    def __init__(self, tmp_path: Path, command: str):
        self.marker = uuid.uuid4().hex
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.cwd = tmp_path / "work"
        self.cwd.mkdir()
        endless_onnx(self.cwd / "loop.onnx")
        if command == "build":
            write_project(self.cwd, "loop.onnx")
            args = ["build", "-q"]
        else:
            args = ["convert", "loop.onnx", "--target", "onnx", "-o", "artifact.onnx", "-q"]
        env = {**os.environ, "EDGEKIT_TEST_MARKER": self.marker, "TMPDIR": str(self.tmpdir)}
        self.proc = subprocess.Popen([sys.executable, "-m", "edgekit", *args], cwd=self.cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stage_pids(self) -> list[int]:
        out = []
        for pid in marked(self.marker):
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(pid)
            except OSError:
                pass
        return out

    def wait_until_the_stage_runs(self) -> None:
        assert wait_for(lambda: self.stage_pids() or self.proc.poll() is not None), "no stage started"
        assert self.proc.poll() is None, self.proc.communicate()
        time.sleep(2)  # let the stage get into the endless model
        assert self.stage_pids() and self.proc.poll() is None

    def kill_leftovers(self) -> None:
        """After a failed test: stop what this test started, so that no orphan keeps a core busy."""
        if self.proc.poll() is None:
            self.proc.kill()
        for pid in marked(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in [*self.cwd.glob(".edgekit-*"), *self.cwd.glob(".out.staging-*"),
                                       *self.tmpdir.glob("edgekit-log-*")])


pytestmark = pytest.mark.slow


@pytest.fixture
def endless(tmp_path):
    runs = []

    def start(command: str) -> Endless:
        runs.append(Endless(tmp_path, command))
        return runs[-1]

    yield start
    for run in runs:
        run.kill_leftovers()


@pytest.mark.parametrize("command", ["convert", "build"])
def test_sigkill_of_the_cli_leaves_no_stage_running(endless, command):
    run = endless(command)
    run.wait_until_the_stage_runs()
    run.proc.kill()
    run.proc.communicate(timeout=60)
    assert wait_for(lambda: not marked(run.marker), timeout=10), \
        f"still running after the CLI was killed: {marked(run.marker)}"
    assert not (run.cwd / "artifact.onnx").exists() and not (run.cwd / "out").exists()


@pytest.mark.parametrize("command, sig", [("convert", signal.SIGTERM), ("build", signal.SIGTERM),
                                          ("build", signal.SIGHUP)])
def test_sigterm_stops_the_stage_cleans_up_and_exits_143(endless, command, sig):
    run = endless(command)
    run.wait_until_the_stage_runs()
    run.proc.send_signal(sig)
    _, err = run.proc.communicate(timeout=60)
    assert run.proc.returncode == 128 + sig, err  # 143 for SIGTERM, 129 for SIGHUP
    assert "Traceback" not in err and "terminated" in err
    assert not marked(run.marker), "a stage outlived the CLI"
    assert run.leftovers() == []
    assert not (run.cwd / "artifact.onnx").exists() and not (run.cwd / "out").exists()


# ----------------------------------------------------------------------------- limits that switch off
@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("small")
    matmul_onnx(d / "m.onnx")
    write_project(d, "m.onnx")
    return d


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-5"])
def test_timeout_that_would_disable_the_limit_is_a_usage_error(small, tmp_path, value):
    res = run_cli("convert", small / "m.onnx", "--target", "onnx", "-o", tmp_path / "a.onnx", f"--timeout={value}")
    assert_user_error(res, 2, "--timeout", "finite number of seconds")
    cfg = (small / "edgekit.toml").read_text().replace("[build]", f"[build]\ntimeout = {value}")
    (tmp_path / "edgekit.toml").write_text(cfg.replace('source = "m.onnx"', f'source = "{small / "m.onnx"}"'))
    assert_user_error(run_cli("build", cwd=tmp_path), 2, "build.timeout", "finite number of seconds")
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["abc", "-5", "0", "1.5"])
def test_bad_memory_limit_names_the_variable(small, tmp_path, value):
    env = {"EDGEKIT_MEMORY_MB": value}
    res = run_cli("convert", small / "m.onnx", "--target", "onnx", "-o", tmp_path / "a.onnx", env=env)
    assert_user_error(res, 2, "EDGEKIT_MEMORY_MB", "megabytes")
    assert_user_error(run_cli("build", "--out", tmp_path / "out", cwd=small, env=env), 2, "EDGEKIT_MEMORY_MB")
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "out").exists()
