"""`edgekit arm setup` / `edgekit arm status`: the cached, versioned aarch64 runtime.

What gets provisioned (about 220 MB, about a minute on a fresh machine):
- `qemu-aarch64` from Debian's `qemu-user` (installed with apt-get when running as root;
  otherwise the user gets the exact command), and gcc to build the plugin;
- a Debian bookworm arm64 sysroot with Python 3.11: the .debs are fetched with
  `apt-get download` under a private apt configuration (arm64 only, private lists and
  cache, the machine's own mirrors; the machine's apt state is never touched) and
  unpacked with `dpkg -x`;
- pinned, hash-checked aarch64 wheels (numpy, onnxruntime, ai-edge-litert and their
  needs) unpacked into a site folder, byte-compiled so the emulator does not recompile
  them on every run;
- the instruction-counting TCG plugin, compiled from `insn_count.c` with gcc.

The runtime lives in `<root>/<version>/` where root is `$EDGEKIT_ARM_HOME`, else
`$XDG_CACHE_HOME/edgekit/arm` (default `~/.cache/edgekit/arm`), and version is derived
from the recipe itself, so changing the recipe (packages, wheels, plugin) rebuilds it.
Everything is built in a temporary folder next to it; `manifest.json` is written last and
the folder is renamed into place, so an interrupted set-up never looks complete.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from edgekit.errors import EnvironmentProblem

# where the runtime lives and what it is built from (shared with the emulator that runs it)
from edgekit.validators.arm.recipe import (DEBIAN_CODENAMES, DEBIAN_KEYRING, DEBS, DEVICE_RUNNER, HERE,  # noqa: F401
                                          HOST_TOOLS, PLATFORMS, PLUGIN_SOURCE, PYTHON, RECIPE, REQUIRED,
                                          REQUIREMENTS, SUITE, arm_root, read_manifest, recipe_version, runtime_dir)
from edgekit.validators.arm.emulator import Runtime

Say = Callable[[str], None]


def is_complete(path: Path | None = None) -> bool:
    return read_manifest(path or runtime_dir()) is not None


# ----------------------------------------------------------------------------- helpers
def run_tool(cmd: list[str], what: str, *, cwd: Path | None = None, env: dict | None = None,
         hint: str | None = None, timeout: float = 1800) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise EnvironmentProblem(f"{what}: '{cmd[0]}' is not installed.", hint=hint) from None
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(f"{what}: timed out after {timeout:g} s.", hint=hint) from None
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        raise EnvironmentProblem(f"{what} failed (exit {proc.returncode}).", hint=hint, details=out[-3000:] or None)
    return proc.stdout


def _is_root() -> bool:
    return os.geteuid() == 0


def install_command(packages: list[str]) -> str:
    return (f"sudo apt-get update && sudo apt-get install -y --no-install-recommends {' '.join(packages)}"
            if packages else "")


def missing_host_tools() -> list[str]:
    """Debian packages for the host tools that are not on PATH."""
    missing = [pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None]
    if "gcc" in missing:
        missing.append("libc6-dev")  # the plugin includes <stdio.h>
    return missing


def ensure_host_tools(say: Say) -> list[str]:
    """qemu-user and gcc: install them when root, else exit 4 with the exact command."""
    missing = missing_host_tools()
    if not missing:
        return []
    manual = ("install qemu-user (qemu-aarch64 7.2 with TCG plugin support) and gcc with your system's package "
              "manager, then run: edgekit arm setup")
    if not _is_root():
        raise EnvironmentProblem(f"the ARM emulation needs {' '.join(missing)}, which are not installed, and "
                                 "edgekit is not running as root, so it cannot install them.",
                                 hint=f"run: {install_command(missing)}   then: edgekit arm setup"
                                 if shutil.which("apt-get") else manual)
    if shutil.which("apt-get") is None:
        raise EnvironmentProblem(f"the ARM emulation needs {' '.join(missing)}, and this machine has no apt-get.",
                                 hint=manual)
    say(f"installing {' '.join(missing)} with apt-get (root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_tool(["apt-get", "update", "-qq"], "apt-get update", env=env)
    run_tool(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], "apt-get install", env=env)
    still = missing_host_tools()
    if still:
        raise EnvironmentProblem(f"apt-get installed {' '.join(missing)}, but {', '.join(still)} is still missing.")
    return missing


def qemu_version() -> str:
    out = run_tool(["qemu-aarch64", "--version"], "qemu-aarch64 --version")
    return out.splitlines()[0].strip() if out else "?"


# ----------------------------------------------------------------------------- apt sources
def _split_suite(suite: str) -> tuple[str, str] | None:
    base, sep, suffix = suite.partition("-")
    if base not in DEBIAN_CODENAMES:
        return None
    return base, (sep + suffix)


def debian_sources(etc: str | Path = "/etc/apt") -> list[str]:
    """The machine's own Debian mirrors as one-line arm64 sources for bookworm.

    Reads sources.list and sources.list.d (*.list and deb822 *.sources). Mirrors are
    reused as they are (never a hard-coded host); only the suite is set to bookworm, which
    the sysroot recipe is written for, keeping '-updates'/'-security'.
    """
    etc = Path(etc)
    entries: list[tuple[str, str, str]] = []  # (uri, suite, signed-by)

    def add(uri: str, suite: str, key: str | None) -> None:
        split = _split_suite(suite)
        if split is None or split[1] not in ("", "-updates", "-security"):
            return
        entries.append((uri.rstrip("/"), SUITE + split[1], key or DEBIAN_KEYRING))

    files = ([etc / "sources.list"] if (etc / "sources.list").exists() else []) + \
        sorted(Path(p) for p in glob.glob(str(etc / "sources.list.d" / "*")))
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                last = None
                for line in stanza.splitlines():
                    if line.startswith("#") or not line.strip():
                        continue
                    if line[0] in " \t" and last:
                        fields[last] += " " + line.strip()
                    elif ":" in line:
                        k, v = line.split(":", 1)
                        last = k.strip().lower()
                        fields[last] = v.strip()
                if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                    continue
                key = fields.get("signed-by", "")
                key = key if key.startswith("/") else None  # an inline key block: use the archive keyring
                for uri in fields.get("uris", "").split():
                    for suite in fields.get("suites", "").split():
                        add(uri, suite, key)
        elif path.name == "sources.list" or path.suffix == ".list":
            for raw in text.splitlines():
                raw = raw.split("#", 1)[0].strip()
                if not raw.startswith("deb "):
                    continue
                opts: dict[str, str] = {}
                rest = raw[4:].strip()
                m = re.match(r"\[([^\]]*)\]\s+(.*)", rest)
                if m:
                    opts = dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv)
                    rest = m.group(2)
                parts = rest.split()
                if len(parts) >= 3:
                    add(parts[0], parts[1], opts.get("signed-by"))
    lines = []
    for uri, suite, key in entries:
        line = f"deb [arch=arm64 signed-by={key}] {uri} {suite} main"
        if line not in lines:
            lines.append(line)
    return lines


def _apt_options(apt: Path) -> list[str]:
    opts = {
        "APT::Architecture": "arm64", "APT::Architectures": "arm64",
        "Dir::Etc::SourceList": apt / "etc/sources.list",
        # without SourceParts apt would also read the machine's sources.list.d as arm64
        "Dir::Etc::SourceParts": apt / "etc/sources.list.d",
        "Dir::Etc::Preferences": apt / "etc/preferences", "Dir::Etc::PreferencesParts": apt / "etc/preferences.d",
        "Dir::State": apt / "state", "Dir::State::Lists": apt / "lists", "Dir::State::status": apt / "state/status",
        "Dir::Cache": apt / "cache",
    }
    if _is_root():
        opts["APT::Sandbox::User"] = "root"  # the private folders are root's; _apt could not write them
    return [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]


# ----------------------------------------------------------------------------- build steps
def _build_sysroot(work: Path, say: Say) -> list[str]:
    apt = work / "apt"
    for d in ("etc/sources.list.d", "etc/preferences.d", "lists/partial", "cache/archives/partial", "state"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    (apt / "state/status").write_text("")
    sources = debian_sources()
    if not sources:
        raise EnvironmentProblem("found no Debian mirror in /etc/apt (sources.list, sources.list.d) to fetch the "
                                 "arm64 packages from.",
                                 hint="edgekit reuses the machine's own Debian mirrors; add one "
                                      "(e.g. a 'deb' line for your Debian mirror) and run edgekit arm setup again")
    (apt / "etc/sources.list").write_text("\n".join(sources) + "\n")
    mirrors = sorted({s.split("] ", 1)[1].split()[0] for s in sources})
    say(f"fetching the arm64 package lists from {', '.join(mirrors)}")
    hint = "check the network connection (or the proxy settings) to the Debian mirror, then run edgekit arm setup again"
    run_tool(["apt-get", *_apt_options(apt), "-qq", "update"], "apt-get update (private arm64 lists)", hint=hint)
    debs = work / "debs"
    debs.mkdir()
    say(f"downloading {len(DEBS)} arm64 .deb packages (Python 3.11 and the C/C++ runtime)")
    run_tool(["apt-get", *_apt_options(apt), "-qq", "download", *DEBS], "apt-get download (arm64 packages)",
         cwd=debs, hint=hint)
    sysroot = work / "sysroot"
    sysroot.mkdir()
    names = sorted(p.name for p in debs.glob("*.deb"))
    say(f"unpacking {len(names)} packages into the sysroot (dpkg -x)")
    for name in names:
        run_tool(["dpkg", "-x", str(debs / name), str(sysroot)], f"dpkg -x {name}")
    for mountpoint in ("tmp", "mnt/model"):  # where each run's folders are bind-mounted (emulator.py)
        (sysroot / mountpoint).mkdir(parents=True, exist_ok=True)
    shutil.rmtree(apt)
    shutil.rmtree(debs)
    return names


def _pip() -> list[str]:
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    return [sys.executable, "-m", "pip"] if probe.returncode == 0 else ["python3", "-m", "pip"]


def _build_site(work: Path, say: Say) -> dict[str, str]:
    wheels = work / "wheels"
    site = work / "site"
    wheels.mkdir()
    site.mkdir()
    pins = {ln.split("==")[0]: ln.split("==")[1].split()[0] for ln in REQUIREMENTS.read_text().splitlines()
            if "==" in ln and not ln.startswith("#")}
    say(f"downloading {len(pins)} aarch64 wheels for Python 3.11 (pinned, hash-checked)")
    cmd = [*_pip(), "download", "-q", "--disable-pip-version-check", "--no-deps", "--require-hashes",
           "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
           *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(wheels), "-r", str(REQUIREMENTS)]
    run_tool(cmd, "pip download (aarch64 wheels)",
         hint="check the network connection to the package index, then run edgekit arm setup again")
    say("unpacking the wheels into the site folder")
    for whl in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(whl) as zf:
            zf.extractall(site)
    for data in site.glob("*.data"):  # none of the pinned wheels has one today; be correct anyway
        for sub in ("purelib", "platlib"):
            for child in (data / sub).glob("*") if (data / sub).is_dir() else []:
                shutil.move(str(child), site / child.name)
        shutil.rmtree(data)
    shutil.rmtree(wheels)
    if sys.version_info[:2] == (3, 11):
        # .pyc files are the same for every 3.11.x (one magic number): compiling them here takes
        # seconds, while the emulated interpreter would recompile every import on every run.
        say("byte-compiling the sysroot's standard library and the wheels")
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0",
                        str(site), str(work / "sysroot/usr/lib/python3.11")], capture_output=True)
    return pins


def _build_plugin(work: Path, say: Say) -> None:
    say("compiling the instruction-counting QEMU plugin (gcc)")
    run_tool(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(work / "libinsn.so"), str(PLUGIN_SOURCE)],
         "gcc (the QEMU plugin)", hint="install gcc and libc6-dev, then run edgekit arm setup again")


def _probe(work: Path, say: Say) -> dict:
    """Run the device runner's self-test inside the emulator: imports, versions, plugin."""
    say("checking the runtime under qemu-aarch64 (imports numpy, onnxruntime, LiteRT; counts instructions)")
    rt = Runtime(work, manifest={})
    return rt.probe()


# ----------------------------------------------------------------------------- setup / status
def lock_root(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    fh = open(root / ".lock", "w")
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def setup(say: Say = print, *, force: bool = False) -> dict:
    """Provision the runtime if it is not there yet. Returns what was done."""
    t0 = time.monotonic()
    installed = ensure_host_tools(say)

    def build(work: Path) -> dict:
        debs = _build_sysroot(work, say)
        wheels = _build_site(work, say)
        _build_plugin(work, say)
        manifest = {"recipe": runtime_dir().name, "qemu": qemu_version(), "qemu_path": shutil.which("qemu-aarch64"),
                    "debs": debs, "wheels": wheels}
        manifest["probe"] = _probe(work, say)
        return manifest

    return build_cached(arm_root(), runtime_dir(), read_manifest, build, say, force=force, t0=t0,
                        installed=installed)


def build_cached(root: Path, target: Path, read: Callable[[Path], dict | None], build: Callable[[Path], dict],
                 say: Say, *, force: bool, t0: float, installed: list[str]) -> dict:
    """The cached-runtime protocol shared by `arm setup` and `web setup`: under a lock, nothing to
    do when `read(target)` finds a complete manifest; otherwise `build(work)` fills a temporary
    folder beside it and returns its manifest, which is written last (the completion stamp)
    before the folder is renamed into place; older recipe folders are removed."""
    lock = lock_root(root)
    try:
        # holding the lock, no other set-up is running: leftovers are from interrupted runs
        for stale in list(root.glob(".build-*")) + list(root.glob(".trash-*")):
            shutil.rmtree(stale, ignore_errors=True)
        manifest = read(target)
        if manifest and not force:
            return {"action": "none", "path": str(target), "seconds": time.monotonic() - t0,
                    "installed": installed, "manifest": manifest}
        if target.exists():
            say(f"{target} is incomplete or stale: rebuilding it")
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
        work.chmod(0o755)
        try:
            manifest = build(work)
            manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            manifest["build_seconds"] = round(time.monotonic() - t0, 1)
            manifest["size_bytes"] = dir_size(work)
            # the manifest is the completion stamp: written last, then the folder is renamed in
            tmp = work / "manifest.json.tmp"
            tmp.write_text(json.dumps(manifest, indent=2))
            os.replace(tmp, work / "manifest.json")
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=".trash-", dir=root))
                os.replace(target, old / target.name)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(work, target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        removed = []
        for other in root.iterdir():
            if other.is_dir() and re.fullmatch(r"r\d+-[0-9a-f]{10}", other.name) and other.name != target.name:
                shutil.rmtree(other, ignore_errors=True)
                removed.append(other.name)
        return {"action": "built", "path": str(target), "seconds": time.monotonic() - t0,
                "installed": installed, "removed_old": removed, "manifest": manifest}
    finally:
        lock.close()


def status() -> dict:
    """What is provisioned where (never changes anything)."""
    root = arm_root()
    target = runtime_dir()
    manifest = read_manifest(target)
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != target.name) if root.is_dir() else []
    qemu = shutil.which("qemu-aarch64")
    return {
        "root": str(root), "version": target.name, "path": str(target), "complete": manifest is not None,
        "present": target.exists(), "other_folders": others,
        "size_bytes": dir_size(target) if target.exists() else 0,
        "qemu_path": qemu, "qemu": qemu_version() if qemu else None, "gcc": shutil.which("gcc"),
        "missing_host_packages": missing_host_tools(), "manifest": manifest,
    }
