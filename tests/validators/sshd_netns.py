"""A real OpenSSH server for the --device tests: Debian's sshd in a network namespace of its own
(loopback only), with a throwaway host key, user key, known_hosts file and ssh config.

The "devices" behind it are this machine (the project venv's Python) and the aarch64 sysroot
under qemu-user (a `python` wrapper, as validators/arm runs it). The CLI runs inside the same
namespace (`ip netns exec`), so `ssh://localhost:PORT` reaches the test server and nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PORT = 2222
SSHD = "/usr/sbin/sshd"


def _sh(*cmd, check=True, **kw):
    return subprocess.run([str(c) for c in cmd], check=check, capture_output=True, text=True, **kw)


def install_openssh_server() -> None:
    """CI is root: install Debian's openssh-server when it is missing."""
    if Path(SSHD).exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if _sh("apt-get", "install", "-y", "-qq", "openssh-server", check=False, env=env).returncode != 0:
        _sh("apt-get", "update", "-qq", env=env)
        _sh("apt-get", "install", "-y", "-qq", "openssh-server", env=env)


class Server:
    def __init__(self, root: Path):
        self.root = root
        self.ns = f"edgekit-ssh-{os.getpid()}"
        self.proc: subprocess.Popen | None = None

    # -- set-up ---------------------------------------------------------------------------
    def start(self) -> "Server":
        r = self.root
        for name in ("host_key", "user_key", "other_host_key"):
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"edgekit-test-{name}", "-f", r / name)
        (r / "authorized_keys").write_text((r / "user_key.pub").read_text())
        host_pub = " ".join((r / "host_key.pub").read_text().split()[:2])
        other_pub = " ".join((r / "other_host_key.pub").read_text().split()[:2])
        (r / "known_hosts").write_text(f"[localhost]:{PORT} {host_pub}\n")
        (r / "wrong_known_hosts").write_text(f"[localhost]:{PORT} {other_pub}\n")
        (r / "sshd_config").write_text(
            f"Port {PORT}\nListenAddress 127.0.0.1\nHostKey {r / 'host_key'}\nPidFile {r / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {r / 'authorized_keys'}\nStrictModes no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\nX11Forwarding no\n"
            "AllowTcpForwarding no\nPrintMotd no\nLogLevel ERROR\n")
        for name, known in (("ssh_config", "known_hosts"), ("ssh_config_wrong_key", "wrong_known_hosts")):
            (r / name).write_text(
                f"Host localhost\n  User root\n  IdentityFile {r / 'user_key'}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {r / known}\n  GlobalKnownHostsFile /dev/null\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
        _sh("ip", "netns", "add", self.ns)
        _sh("ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, SSHD, "-D", "-e", "-f", str(r / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(r / "sshd.log", "w"))
        deadline = time.monotonic() + 20
        while self.ssh("true").returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"sshd did not start: {(r / 'sshd.log').read_text()}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        _sh("ip", "netns", "del", self.ns, check=False)

    # -- use ------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "ssh_config"

    def url(self, **query) -> str:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return f"ssh://localhost:{PORT}" + (f"?{q}" if q else "")

    def ssh(self, command: str, config: Path | None = None) -> subprocess.CompletedProcess:
        return _sh("ip", "netns", "exec", self.ns, "ssh", "-F", config or self.config, "-p", PORT,
                   "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "localhost", command, check=False)

    def cli_command(self, *args) -> list[str]:
        """`python -m edgekit ARGS` inside the namespace."""
        return ["ip", "netns", "exec", self.ns, sys.executable, "-m", "edgekit", *map(str, args)]

    def session_pids(self) -> list[int]:
        """The sshd processes serving connections (the listener's sshd descendants: [priv] and @notty)."""
        parents, names = {}, {}
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    stat = (p / "stat").read_text()
                except OSError:
                    continue
                names[int(p.name)] = stat[stat.index("(") + 1:stat.rindex(")")]
                parents[int(p.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, todo = [], [self.listener_pid()]
        while todo:
            parent = todo.pop()
            for pid, ppid in parents.items():
                if ppid == parent and names.get(pid) == "sshd":
                    found.append(pid)
                    todo.append(pid)
        return found

    def listener_pid(self) -> int:
        return int((self.root / "sshd.pid").read_text().split()[0])


def qemu_python(root: Path) -> Path | None:
    """A `python` for the aarch64 sysroot: the sysroot's python3.11 under qemu-aarch64 with the
    provisioned wheels (what validators/arm runs, without the counting plugin)."""
    qemu = shutil.which("qemu-aarch64")
    base = Path(os.environ.get("EDGEKIT_ARM_HOME") or Path.home() / ".cache/edgekit/arm")
    runtimes = sorted(p for p in base.glob("r*-*") if (p / "manifest.json").exists()) if base.is_dir() else []
    if not qemu or not runtimes:
        return None
    rt = runtimes[-1]
    from edgekit.validators.arm.emulator import cpuinfo_text

    # onnxruntime and LiteRT read /proc/cpuinfo: give them an ARM core's, as validators/arm does
    (root / "cpuinfo").write_text(cpuinfo_text("neoverse-n1"))
    wrapper = root / "aarch64-python"
    run = (f"mount --bind {root / 'cpuinfo'} /proc/cpuinfo || exit 97; PYTHONPATH={rt / 'site'} PYTHONNOUSERSITE=1 "
           f"PYTHONDONTWRITEBYTECODE=1 exec {qemu} -L {rt / 'sysroot'} -cpu neoverse-n1 "
           f"{rt / 'sysroot/usr/bin/python3.11'} -s \"$@\"")
    wrapper.write_text(f"#!/bin/sh\nexec unshare -m sh -c '{run}' aarch64-python \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper
