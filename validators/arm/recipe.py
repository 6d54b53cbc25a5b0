"""What the emulated arm64 runtime is built from, and where it is cached.

Shared by `provision` (which builds it, and checks it by running the emulator) and
`emulator` (which runs it): neither imports the other for these. Stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN_SOURCE = HERE / "insn_count.c"
REQUIREMENTS = HERE / "requirements-arm64.txt"
DEVICE_RUNNER = HERE / "device_runner.py"
RECIPE = "2"  # bump on a change of the steps below that the hashed inputs do not show

# Debian bookworm arm64 packages for a working python3.11 (+ ctypes, ssl, sqlite3, ...)
# and the C/C++ runtime the wheels need. Listed explicitly: `apt-cache depends --recurse`
# would also pull perl, dpkg and tar.
SUITE = "bookworm"
PYTHON = "python3.11"
DEBS = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "media-types",
    "libc6", "libgcc-s1", "libstdc++6", "libgomp1", "gcc-12-base",
    "zlib1g", "libffi8", "libssl3", "libexpat1", "libbz2-1.0", "liblzma5", "libzstd1", "libsqlite3-0",
    "libncursesw6", "libtinfo6", "libreadline8", "readline-common", "libuuid1", "libcrypt1",
    "libnsl2", "libtirpc3", "libtirpc-common", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3",
    "libkrb5support0", "libcom-err2", "libkeyutils1", "libdb5.3", "libgdbm6", "libgdbm-compat4",
)
# ai-edge-litert 2.3.0 ships only manylinux_2_27 wheels, and pip does not expand an explicit
# --platform to older glibc tags, so every tag up to bookworm's glibc 2.36 is listed.
PLATFORMS = ("manylinux2014_aarch64",) + tuple(f"manylinux_2_{v}_aarch64" for v in (17, 27, 28, 31, 34, 35, 36))
HOST_TOOLS = {"qemu-aarch64": "qemu-user", "gcc": "gcc"}  # binary -> Debian package
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEBIAN_CODENAMES = {"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
                    "oldstable", "stable", "testing", "unstable"}


def arm_root() -> Path:
    """Where runtimes are cached: $EDGEKIT_ARM_HOME, else $XDG_CACHE_HOME/edgekit/arm."""
    if os.environ.get("EDGEKIT_ARM_HOME"):
        return Path(os.environ["EDGEKIT_ARM_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "edgekit" / "arm"


def recipe_version() -> str:
    """A name that changes whenever anything the runtime is built from changes."""
    h = hashlib.sha256()
    for part in (RECIPE, SUITE, PYTHON, " ".join(DEBS), " ".join(PLATFORMS)):
        h.update(part.encode() + b"\0")
    for f in (REQUIREMENTS, PLUGIN_SOURCE):
        h.update(f.read_bytes())
    return f"r{RECIPE}-{h.hexdigest()[:10]}"


def runtime_dir() -> Path:
    return arm_root() / recipe_version()


REQUIRED = ("manifest.json", f"sysroot/usr/bin/{PYTHON}", "sysroot/tmp", "sysroot/mnt/model", "site/numpy",
            "site/onnxruntime", "site/ai_edge_litert", "libinsn.so")


def read_manifest(path: Path) -> dict | None:
    """The manifest of a complete runtime folder, or None (missing, partial or stale)."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("recipe") != path.name or manifest.get("recipe") != recipe_version():
        return None
    if not all((path / p).exists() for p in REQUIRED):
        return None
    return manifest
