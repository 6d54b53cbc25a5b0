"""The device end of `--device ssh://…`, through the system's OpenSSH client.

edgekit never handles a credential: `ssh` reads the user's config, keys, agent and
known_hosts; `BatchMode=yes` makes it fail instead of prompting; host-key checking is left
as the user configured it (an unknown or changed key is refused, never accepted). The
commands run on the device are fixed shell lines (paths quoted), and the only program run
there is the device runner copied from edgekit's package and checked by hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from edgekit.errors import EnvironmentProblem
from edgekit.validators.device import Device

SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=5",
               "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR")
FOLDER_PREFIX = "edgekit-device-"
_FOLDER = re.compile(r"^/[A-Za-z0-9._/-]*/" + FOLDER_PREFIX + r"[A-Za-z0-9]{8,}$")
EXIT_NO_PYTHON = 127
SSH_FAILED = 255
# the runtimes a device runner can use, by edgekit runtime name: (module to import, pip distribution)
RUNTIMES = {"litert": ("ai_edge_litert", "ai-edge-litert"), "onnxruntime": ("onnxruntime", "onnxruntime")}
PROBE = r"""
import json, os, platform, shutil, sys
from importlib import metadata
info = {"machine": platform.machine(), "system": platform.system(), "kernel": platform.release(),
        "python": platform.python_version(), "python_path": sys.executable, "cpu_count": os.cpu_count()}
try:
    rel = dict(l.rstrip().split("=", 1) for l in open("/etc/os-release") if "=" in l)
    info["os"] = rel.get("PRETTY_NAME", "").strip('"')
except OSError:
    info["os"] = platform.platform()
cpu = {}
try:
    for l in open("/proc/cpuinfo"):
        k, _, v = l.partition(":")
        cpu.setdefault(k.strip(), v.strip())
except OSError:
    pass
info["cpu"] = cpu.get("model name") or cpu.get("Hardware") or cpu.get("Model") or (
    "ARM implementer %s part %s" % (cpu["CPU implementer"], cpu.get("CPU part")) if "CPU implementer" in cpu
    else platform.processor() or "?")
info["cpu_features"] = cpu.get("Features") or cpu.get("flags") or ""
try:
    mem = dict(l.split(":", 1) for l in open("/proc/meminfo"))
    info["memory_mb"] = int(mem["MemTotal"].split()[0]) // 1024
    info["memory_available_mb"] = int(mem["MemAvailable"].split()[0]) // 1024
except (OSError, KeyError, ValueError):
    pass
packages = {}
for dist, mod in (("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("ai-edge-litert", "ai_edge_litert"),
                  ("executorch", "executorch")):
    try:
        packages[dist] = metadata.version(dist)
    except Exception:
        packages[dist] = None
info["packages"] = packages
tmp = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else os.environ.get("TMPDIR") or "/tmp"
try:
    info["tmpdir"], info["tmp_free_mb"] = tmp, shutil.disk_usage(tmp).free // 2 ** 20
except OSError as exc:
    info["tmpdir"], info["tmp_error"] = tmp, str(exc)
print(json.dumps(info))
"""
HASHES = r"""
import hashlib, json, os, sys
out = {}
for name in sys.argv[1:]:
    h = hashlib.sha256()
    with open(name, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    out[name] = h.hexdigest()
print(json.dumps(out))
"""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def command(dev: Device, script: str) -> list[str]:
    """`ssh [-F cfg] OPTIONS [-p port] [-l user] -- host sh -c SCRIPT` (the device's login shell
    may not be POSIX, so the script runs under sh)."""
    cmd = ["ssh", *(["-F", dev.ssh_config] if dev.ssh_config else []), *SSH_OPTIONS]
    if dev.port:
        cmd += ["-p", str(dev.port)]
    if dev.user:
        cmd += ["-l", dev.user]
    return cmd + ["--", dev.host.strip("[]"), "sh -c " + shlex.quote(script)]


def _preexec():
    """ssh dies with the process that started it (a stage killed on Ctrl-C leaves no client behind;
    its connection closing is what stops the remote run, see RUN)."""
    from edgekit.isolation import die_with_parent

    parent = os.getpid()

    def set_up():
        die_with_parent(parent)

    return set_up


def run(dev: Device, script: str, *, stdin: bytes | None = None, stdin_file: Path | None = None,
        timeout: float | None = 120, what: str) -> subprocess.CompletedProcess:
    """One ssh command; connection-level failures (exit 255) raise the environment error."""
    if stdin_file is not None:
        with open(stdin_file, "rb") as fh:
            proc = _run(dev, script, fh, None, timeout, what)
    else:
        proc = _run(dev, script, subprocess.PIPE, stdin if stdin is not None else b"", timeout, what)
    if proc.returncode == SSH_FAILED:
        raise connection_error(dev, proc.stderr.decode(errors="replace"), what)
    if b"No space left on device" in proc.stderr:
        raise disk_full(dev, what, proc.stderr.decode(errors="replace"))
    return proc


def _run(dev, script, stdin, data, timeout, what):
    try:
        p = subprocess.Popen(command(dev, script), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=_preexec())
    except FileNotFoundError:
        raise EnvironmentProblem("the OpenSSH client (ssh) is not installed; --device needs it.",
                                 hint="install it: apt-get install openssh-client") from None
    try:
        out, err = p.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise EnvironmentProblem(f"{dev.name}: no answer within {timeout:g} s while {what}.",
                                 hint="check the device is up and reachable (ssh into it by hand)") from None
    except BaseException:
        p.kill()
        p.wait()
        raise
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def connection_error(dev: Device, stderr: str, what: str) -> EnvironmentProblem:
    """ssh's own failure (exit 255), said in one paragraph; its stderr is kept as details."""
    tail = "\n".join(ln for ln in stderr.splitlines() if ln.strip())[-2000:] or None
    low = stderr.lower()
    if "host key verification failed" in low or "remote host identification has changed" in low \
            or "no matching host key" in low:
        return EnvironmentProblem(
            f"{dev.name}: the device's host key is not in your known_hosts, or it changed: the connection was "
            "refused (edgekit never accepts a host key for you).",
            hint=f"check the key's fingerprint on the device, then add it: ssh-keyscan -p {dev.port or 22} "
                 f"{dev.host} >> ~/.ssh/known_hosts (or the UserKnownHostsFile of your ssh config)", details=tail)
    if "permission denied" in low or "too many authentication failures" in low:
        return EnvironmentProblem(
            f"{dev.name}: authentication refused (edgekit uses your SSH keys and agent, never a password).",
            hint="install your public key on the device (ssh-copy-id), or give the key in your ssh config "
                 "(--ssh-config FILE with IdentityFile)", details=tail)
    if "could not resolve" in low or "connection refused" in low or "timed out" in low or \
            "no route to host" in low or "network is unreachable" in low:
        return EnvironmentProblem(f"{dev.name}: cannot connect while {what}.",
                                  hint="check the address and port, and that sshd runs on the device "
                                       "(ssh into it by hand)", details=tail)
    return EnvironmentProblem(f"{dev.name}: the SSH connection failed or dropped while {what}.",
                              hint="check the device and the network (ssh into it by hand), then run again; "
                                   "the device's folder is removed when the connection ends", details=tail)


def disk_full(dev: Device, what: str, stderr: str = "") -> EnvironmentProblem:
    return EnvironmentProblem(f"{dev.name}: the device's disk is full (no space left while {what}).",
                              hint="free space on the device, or point edgekit at a larger folder: "
                                   "--device ssh://…?tmpdir=/path/with/space",
                              details=stderr.strip()[-1000:] or None)


def _probe_result(dev: Device, proc) -> dict:
    if proc.returncode == EXIT_NO_PYTHON:
        raise EnvironmentProblem(f"{dev.name}: no Python at '{dev.python}' on the device.",
                                 hint="install Python 3 there (apt-get install python3), or name the device's "
                                      "interpreter: --device ssh://…?python=/opt/venv/bin/python")
    try:
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise EnvironmentProblem(f"{dev.name}: '{dev.python}' on the device did not answer edgekit's probe.",
                                 hint="it must be Python 3.8 or newer",
                                 details=proc.stderr.decode(errors="replace")[-1000:] or None) from None


def _with_args(script: str, *args: str) -> str:
    """A sh script run with positional arguments ($1, $2, …), each quoted."""
    return f"set -- {' '.join(shlex.quote(a) for a in args)}; {script}"


def probe_device(dev: Device) -> dict:
    py = shlex.quote(dev.python)
    script = _with_args(f'command -v {py} >/dev/null 2>&1 || exit {EXIT_NO_PYTHON}; exec {py} -c "$1" "$2"',
                        PROBE, dev.tmpdir or "")
    return _probe_result(dev, run(dev, script, what="probing the device"))


def make_folder(dev: Device) -> str:
    """A private (0700) folder for one run, in the device's temp folder."""
    base = shlex.quote(dev.tmpdir) if dev.tmpdir else '"${TMPDIR:-/tmp}"'
    proc = run(dev, f"umask 077; mktemp -d {base}/{FOLDER_PREFIX}XXXXXXXX", what="creating a temporary folder")
    path = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0 or not _FOLDER.match(path):
        raise EnvironmentProblem(f"{dev.name}: cannot create a temporary folder in "
                                 f"{dev.tmpdir or '$TMPDIR (or /tmp)'} on the device.",
                                 hint="point edgekit at a writable folder: --device ssh://…?tmpdir=/path",
                                 details=proc.stderr.decode(errors="replace")[-1000:] or None)
    return path


@contextmanager
def device_folder(dev: Device):
    """make_folder, then remove_folder on the way out (success, failure, Ctrl-C/SIGTERM, which the
    CLI turns into KeyboardInterrupt). Used by the process that outlives the stage children."""
    folder = make_folder(dev)
    try:
        yield folder
    finally:
        remove_folder(dev, folder)


def remove_folder(dev: Device, folder: str) -> bool:
    """Remove a folder made by make_folder (only such a path); False when the device is unreachable."""
    if not _FOLDER.match(folder or ""):
        return False
    try:
        proc = _run(dev, f"rm -rf -- {shlex.quote(folder)}", subprocess.PIPE, b"", 30, "removing")
    except EnvironmentProblem:
        return False
    return proc.returncode == 0


def upload(dev: Device, folder: str, files: dict[str, Path]) -> dict[str, str]:
    """Copy files into the device's folder, then check their SHA-256 there; returns name -> hash."""
    for name, path in files.items():
        proc = run(dev, f"cat > {shlex.quote(folder + '/' + name)}", stdin_file=path, timeout=None,
                   what=f"copying {name}")
        if proc.returncode != 0:
            raise EnvironmentProblem(f"{dev.name}: copying {name} to the device failed.",
                                     details=proc.stderr.decode(errors="replace")[-1000:] or None)
    expected = {name: sha256(path) for name, path in files.items()}
    py = shlex.quote(dev.python)
    proc = run(dev, _with_args(f'h="$1"; cd "$2" && shift 2 && exec {py} -c "$h" "$@"', HASHES, folder, *files),
               what="checking the copies")
    try:
        got = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        got = {}
    bad = [n for n in files if got.get(n) != expected[n]]
    if bad:
        raise EnvironmentProblem(f"{dev.name}: the copies of {', '.join(bad)} on the device do not have the "
                                 "hash of the files sent (SHA-256).",
                                 hint="check the device's disk (full? read-only?) and run again",
                                 details=proc.stderr.decode(errors="replace")[-1000:] or None)
    return expected


# The run on the device. The runner runs in the background; a watchdog reads ssh's stdin, which
# edgekit keeps open: when the connection ends (dropped, ssh killed, Ctrl-C), the watchdog sees
# end-of-file, stops the runner and removes the folder. HUP/INT/TERM do the same. (sh gives a
# background job /dev/null as stdin unless it is redirected explicitly: hence fd 3.)
RUN = r"""
d="$1"; shift
cd "$d" || exit 96
cleanup() { kill "$p" 2>/dev/null; rm -rf -- "$d"; exit 130; }
trap cleanup HUP INT TERM PIPE
exec 3<&0
"$@" </dev/null 3<&- &
p=$!
( cat <&3 >/dev/null 2>&1; kill "$p" 2>/dev/null; sleep 1; rm -rf -- "$d" ) >/dev/null 2>&1 &
w=$!
exec 3<&-
wait "$p"; rc=$?
kill "$w" 2>/dev/null
exit $rc
"""


def run_runner(dev: Device, folder: str, args: list[str], *, timeout: float | None,
               on_progress: Callable[[str], None] | None = None) -> tuple[int, str]:
    """Run `python device_runner.py ARGS` in the folder; returns (exit code, stderr tail).
    The runner's progress lines are relayed."""
    import threading
    import time

    script = _with_args(RUN, folder, dev.python, *args)
    try:
        p = subprocess.Popen(command(dev, script), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, preexec_fn=_preexec())
    except FileNotFoundError:
        raise EnvironmentProblem("the OpenSSH client (ssh) is not installed; --device needs it.") from None
    tail: deque[str] = deque(maxlen=60)

    def read():
        for raw in p.stderr:
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            if line.startswith("edgekit-device: ") and on_progress:
                on_progress(line[len("edgekit-device: "):])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    start = time.monotonic()
    try:
        while p.poll() is None:
            if timeout and time.monotonic() - start > timeout:
                p.kill()
                p.wait()
                raise EnvironmentProblem(f"{dev.name}: the device run took more than {timeout:g} s; stopped.")
            time.sleep(0.1)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        try:
            p.stdin.close()
        except OSError:
            pass
        reader.join(timeout=5)
    text = "\n".join(tail)
    if p.returncode == SSH_FAILED:
        raise connection_error(dev, text, "running the model on the device")
    if "No space left on device" in text:
        raise disk_full(dev, "running the model", text)
    return p.returncode, text


def download(dev: Device, folder: str, name: str, dest: Path) -> bool:
    """Copy one file back from the device's folder; False when it is not there."""
    proc = run(dev, f"cat -- {shlex.quote(folder + '/' + name)}", timeout=None, what=f"copying {name} back")
    if proc.returncode != 0:
        return False
    dest.write_bytes(proc.stdout)
    return True


# ----------------------------------------------------------------------------- what a device needs
def host_versions() -> dict[str, str | None]:
    """The host's versions of what the device runner imports (its pins for the device)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("numpy", "onnxruntime", "ai-edge-litert"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def missing(info: dict, runtimes=("litert", "onnxruntime")) -> list[str]:
    """Distributions the device lacks for these runtimes (numpy always)."""
    have = info.get("packages") or {}
    need = ["numpy"] + [RUNTIMES[r][1] for r in runtimes if r in RUNTIMES]
    return [d for d in need if not have.get(d)]


def pip_line(dev: Device, dists: list[str]) -> str:
    """`python -m pip install 'dist==host version' …` for the device (pinned to the host's versions)."""
    pins = host_versions()
    spec = " ".join(shlex.quote(f"{d}=={pins[d]}" if pins.get(d) else d) for d in dists)
    return f"{dev.python} -m pip install {spec}"


def require_runtime(dev: Device, info: dict, runtime: str) -> None:
    """Exit 4 with the pip line when the device cannot run this runtime."""
    lack = missing(info, (runtime,))
    if lack:
        raise EnvironmentProblem(
            f"{dev.name}: the device's Python ({info.get('python_path') or dev.python}, {info.get('machine')}) has "
            f"no {', '.join(lack)}, which running this artifact there needs.",
            hint=f"on the device, run: {pip_line(dev, lack)}   (versions pinned to this host's; "
                 f"'edgekit device check ssh://{dev.name}' lists everything)")


def check_folder_space(dev: Device, info: dict, needed_bytes: int) -> None:
    free = info.get("tmp_free_mb")
    if info.get("tmp_error"):
        raise EnvironmentProblem(f"{dev.name}: the device's temp folder {info.get('tmpdir')} is not usable: "
                                 f"{info['tmp_error']}.", hint="--device ssh://…?tmpdir=/writable/path")
    if free is not None and free * 2 ** 20 < needed_bytes:
        raise disk_full(dev, f"preparing to copy {needed_bytes / 2 ** 20:.1f} MB into {info.get('tmpdir')} "
                             f"({free} MB free)")
