"""--device ssh://… and `edgekit device check` against a REAL OpenSSH server (no mock).

Debian's sshd runs in a network namespace of its own (tests/validators/sshd_netns.py) with a
throwaway host key, user key, known_hosts and ssh config; the CLI runs in that namespace. The
devices behind it: this machine with the project venv's Python, this machine's system Python
(no runtimes: the exit-4 case), and the aarch64 sysroot under qemu-user.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import CliResult, assert_user_error

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "toolchain"))
import sshd_netns  # noqa: E402
from tiny_onnx import matmul_onnx  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="needs root (ip netns, sshd); CI runs as root")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    sshd_netns.install_openssh_server()
    srv = sshd_netns.Server(tmp_path_factory.mktemp("sshd"))
    try:
        yield srv.start()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("device_model")
    src = matmul_onnx(d / "src.onnx", 64)
    art = d / "art.onnx"
    shutil.copy(src, art)
    np.savez(d / "in.npz", x=np.random.default_rng(1).standard_normal((20, 64)).astype(np.float32))
    return {"source": src, "artifact": art, "inputs": d / "in.npz", "dir": d}


@pytest.fixture(scope="module")
def aarch64(server):
    py = sshd_netns.qemu_python(server.root)
    if py is None:
        pytest.skip("the emulated arm64 runtime is not provisioned (edgekit arm setup)")
    return py


def run(server, *args, timeout: float = 600) -> CliResult:
    env = {**os.environ, "COLUMNS": "200"}
    return CliResult(subprocess.run(server.cli_command(*args), capture_output=True, text=True, env=env,
                                    timeout=timeout))


def validate(server, model, url, *extra, config=None):
    return run(server, "validate", model["source"], model["artifact"], "--inputs", model["inputs"], "--device", url,
               "--ssh-config", config or server.config, *extra)


def remote_dir(tmp_path) -> Path:
    d = tmp_path / "device-tmp"
    d.mkdir()
    return d


# ----------------------------------------------------------------------------- it works
def test_validate_on_the_host_python_through_sshd(server, model, tmp_path):
    tmp = remote_dir(tmp_path)
    res = validate(server, model, server.url(python=sys.executable, tmpdir=tmp), "--json")
    assert res.code == 0, res
    (r,) = res.json["results"]
    assert r["parity"]["passed"] and r["arch"] == "device"
    dev = r["device"]
    assert dev["device"].startswith("ssh://localhost:") and dev["emulated"] is False
    assert dev["machine"] == os.uname().machine and dev["python"] and dev["packages"]["onnxruntime"]
    assert dev["median_ms"] > 0 and dev["p99_ms"] >= dev["median_ms"] and dev["load_ms"] > 0
    assert dev["peak_rss_mb"] > 0 and dev["os_threads"] >= 1
    assert len(dev["runner_sha256"]) == 64 and len(dev["artifact_sha256"]) == 64
    assert list(tmp.iterdir()) == []  # the device folder is removed after success


@pytest.mark.arm
@pytest.mark.slow
def test_bench_on_emulated_aarch64_behind_sshd(server, model, aarch64, tmp_path):
    """(validate on it: test_keras_int8_tflite_on_both_devices)"""
    res = run(server, "bench", model["artifact"], "--inputs", model["inputs"], "-n", "20", "--warmup", "2",
              "--device", server.url(python=aarch64), "--ssh-config", server.config)
    assert res.code == 0, res
    assert "latency on the host CPU" in res.stdout and "latency on the device" in res.stdout
    assert "aarch64" in res.stdout


@pytest.mark.slow
@pytest.mark.tf
@pytest.mark.arm
def test_keras_int8_tflite_on_both_devices(server, aarch64, samples_dir, tmp_path):
    """The issue's 'done when': a Keras model's int8 TFLite file, LiteRT on the host's Python and on
    the emulated aarch64 one, both through the real sshd."""
    from conftest import run_cli

    art = tmp_path / "digits.int8.tflite"
    res = run_cli("convert", samples_dir / "digits_keras.keras", "-t", "tflite", "--quantize", "int8",
                  "--calibration", samples_dir / "digits_keras_calib.npz", "-o", art, "-q")
    assert res.code == 0, res
    model = {"source": samples_dir / "digits_keras.keras", "artifact": art,
             "inputs": samples_dir / "digits_keras_val.npz"}
    machines = []
    for py in (sys.executable, aarch64):
        res = validate(server, model, server.url(python=py), "--json")
        assert res.code == 0, res
        (r,) = res.json["results"]
        assert r["parity"]["passed"] and r["device"]["device_runtime"] == "litert"
        machines.append(r["device"]["machine"])
    assert machines == [os.uname().machine, "aarch64"]


def test_convert_checks_the_staged_artifact_on_the_device(server, model, tmp_path):
    import json

    out = tmp_path / "m.onnx"
    res = run(server, "convert", model["source"], "-t", "onnx", "--inputs", model["inputs"], "-o", out,
              "--device", server.url(python=sys.executable), "--ssh-config", server.config)
    assert res.code == 0, res
    assert "real device" in res.stdout
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    (dev,) = report["result"]["devices"]
    assert dev["parity"]["passed"] and dev["device"]["machine"] == os.uname().machine


def test_device_check_lists_what_the_device_has(server):
    res = run(server, "device", "check", server.url(python=sys.executable), "--ssh-config", server.config, "--json")
    assert res.code == 0, res
    info = res.json["result"]["info"]
    assert info["machine"] == os.uname().machine and info["packages"]["numpy"] and info["memory_mb"] > 0
    assert res.json["result"]["missing"] == []


def test_build_checks_a_target_on_its_devices(server, tmp_path):
    import json
    import textwrap

    matmul_onnx(tmp_path / "m.onnx", 16)
    shutil.copy(server.config, tmp_path / "ssh_config")
    url = server.url(python=sys.executable)
    (tmp_path / "edgekit.toml").write_text(textwrap.dedent(f"""
        [build]
        out = "out"
        jobs = 1
        ssh_config = "ssh_config"
        [[models]]
        name = "m"
        source = "m.onnx"
          [[models.targets]]
          target = "onnx"
          devices = ["{url}"]
        """))
    res = run(server, "build", tmp_path / "edgekit.toml", "--json")
    assert res.code == 0, res
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["artifacts"][0]
    key = url.split("?")[0]
    assert entry["parity"][key]["passed"] and entry["parity"]["host"]["passed"]
    lat = entry["latency"][key]
    assert lat["emulated"] is False and lat["python"] and lat["packages"]["onnxruntime"] and lat["median_ms"] > 0
    assert "secret" not in json.dumps(entry) and str(server.root / "user_key") not in json.dumps(entry)


# ----------------------------------------------------------------------------- faults
def _python_without_runtimes() -> str | None:
    for py in ("/usr/bin/python3", shutil.which("python3")):
        if py and subprocess.run([py, "-c", "import onnxruntime"], capture_output=True).returncode != 0:
            return py
    return None


def test_device_without_the_runtime_is_exit_4_with_the_pip_line(server, model, tmp_path):
    py = _python_without_runtimes()
    if py is None:
        pytest.skip("every python3 on this machine has onnxruntime")
    from importlib.metadata import version

    tmp = remote_dir(tmp_path)
    res = validate(server, model, server.url(python=py, tmpdir=tmp))
    assert_user_error(res, 4, "has no", f"{py} -m pip install", f"onnxruntime=={version('onnxruntime')}")
    assert list(tmp.iterdir()) == []
    res = run(server, "device", "check", server.url(python=py), "--ssh-config", server.config)
    assert_user_error(res, 4, "lacks", f"onnxruntime=={version('onnxruntime')}")


def test_wrong_host_key_is_refused(server, model, tmp_path):
    res = validate(server, model, server.url(python=sys.executable), config=server.root / "ssh_config_wrong_key")
    assert_user_error(res, 4, "host key", "never accepts a host key")
    known = (server.root / "wrong_known_hosts").read_text()
    assert (server.root / "wrong_known_hosts").read_text() == known  # nothing was added


def test_full_disk_on_the_device(server, model, tmp_path):
    tmp = remote_dir(tmp_path)
    in_sshd = ["nsenter", "-t", str(server.listener_pid()), "-m"]  # the device's (sshd's) mounts
    subprocess.run([*in_sshd, "mount", "-t", "tmpfs", "-o", "size=24k", "edgekit-full", str(tmp)], check=True)
    try:
        assert "edgekit-full" in server.ssh(f"df {tmp}").stdout
        res = validate(server, model, server.url(python=sys.executable, tmpdir=tmp))
        assert_user_error(res, 4, "disk is full", "tmpdir=")
        assert server.ssh(f"ls -A {tmp}").stdout == ""
    finally:
        subprocess.run([*in_sshd, "umount", str(tmp)], check=False)


def _runner_running(tmp: Path) -> bool:
    for p in Path("/proc").iterdir():
        try:
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if b"device_runner.py" in cmd and b"--report" in cmd:
            try:
                if str(tmp) in os.readlink(p / "cwd"):
                    return True
            except OSError:
                continue
    return False


def _start_and_wait_for_the_runner(server, model, url, tmp):
    proc = subprocess.Popen(server.cli_command("validate", model["source"], model["artifact"], "--inputs",
                                               model["inputs"], "--device", url, "--ssh-config", server.config),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _runner_running(tmp):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the device runner never started"
        time.sleep(0.1)
    return proc


def _soon(check) -> bool:
    """The remote side's clean-up runs after ssh's end: give it (and qemu's exit) 10 s."""
    for _ in range(100):
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.arm
@pytest.mark.slow
def test_dropped_connection_mid_run(server, model, aarch64, tmp_path):
    tmp = remote_dir(tmp_path)
    proc = _start_and_wait_for_the_runner(server, model, server.url(python=aarch64, tmpdir=tmp), tmp)
    for pid in server.session_pids():  # the sshd processes serving the run: the connection drops
        os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert_user_error(CliResult(subprocess.CompletedProcess([], proc.returncode, out, err)), 4,
                      "connection failed or dropped")
    assert _soon(lambda: not list(tmp.iterdir()))
    assert _soon(lambda: not _runner_running(tmp))


@pytest.mark.arm
@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_removes_the_device_folder(server, model, aarch64, tmp_path, sig, code):
    tmp = remote_dir(tmp_path)
    proc = _start_and_wait_for_the_runner(server, model, server.url(python=aarch64, tmpdir=tmp), tmp)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode == code
    assert _soon(lambda: not list(tmp.iterdir()))
    assert _soon(lambda: not _runner_running(tmp))


# ----------------------------------------------------------------------------- usage
@pytest.mark.parametrize("url, words", [
    ("http://host", "not an ssh://"), ("ssh://u:secret@host", "password"), ("ssh://-oProxyCommand=x", "host name"),
    ("ssh://host?shell=1", "unknown option"), ("ssh://host:99999", "port"),
])
def test_bad_device_addresses_are_usage_errors(url, words, model):
    from conftest import run_cli

    res = run_cli("validate", model["source"], model["artifact"], "--device", url)
    assert_user_error(res, 2, words)
    assert "secret" not in res.stderr
