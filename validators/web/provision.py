"""`edgekit web setup` / `edgekit web status`: the browser and Node.js runtimes, cached and versioned.

What gets provisioned (measured in BENCHMARKS.md/README):
- Debian's `chromium` (installed with apt-get when running as root; otherwise the user gets
  the exact command) and Node.js (`nodejs`, same rule);
- the npm packages of `package.json` at the exact versions of `package-lock.json` (both in
  this folder), installed with `npm ci --ignore-scripts` (no package downloads a browser);
- the TensorFlow.js converter (`tensorflowjs`, pure Python), installed with `pip --no-deps
  --require-hashes` into a folder of its own: its declared pins (tensorflow, not
  tensorflow-cpu; tf-keras, tensorflow-decision-forests, jax, flax) fight edgekit's
  tensorflow-cpu 2.21 / keras 3, while the two modules edgekit uses (the SavedModel graph
  converter and the weight writer) need only TensorFlow (see converters/tfjs.py).

The runtime lives in `<root>/<version>/`, root = `$EDGEKIT_WEB_HOME`, else
`$XDG_CACHE_HOME/edgekit/web` (default `~/.cache/edgekit/web`); version is a hash of the
recipe (the lock file, the converter pin), so a change rebuilds it. Built in a temporary folder
next to it; `manifest.json` is written last and the folder renamed into place: an interrupted
set-up never looks complete. A lock file keeps two set-ups from building at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edgekit.errors import EnvironmentProblem
from edgekit.validators.arm.provision import Say, build_cached, dir_size, install_command, run_tool

HERE = Path(__file__).resolve().parent
PACKAGE_JSON = HERE / "package.json"
PACKAGE_LOCK = HERE / "package-lock.json"
RECIPE = "1"  # bump on a change of the steps below that the hashed inputs do not show
TFJS_CONVERTER = ("tensorflowjs", "4.22.0",
                  "bd4deb1e7feab538ee7f2625fe85446742bb4765bebab345b534688ab41e3e1c")
HOST_TOOLS = {"chromium": "chromium", "node": "nodejs", "npm": "npm"}  # binary -> Debian package
NODE_MIN = 18
REQUIRED = ("manifest.json", "node_modules/onnxruntime-web/dist", "node_modules/@tensorflow/tfjs/dist",
            "node_modules/@tensorflow/tfjs-backend-wasm/dist", "node_modules/playwright-core",
            "py/tensorflowjs/converters/tf_saved_model_conversion_v2.py")


def web_root() -> Path:
    """Where runtimes are cached: $EDGEKIT_WEB_HOME, else $XDG_CACHE_HOME/edgekit/web."""
    if os.environ.get("EDGEKIT_WEB_HOME"):
        return Path(os.environ["EDGEKIT_WEB_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "edgekit" / "web"


def recipe_version() -> str:
    h = hashlib.sha256()
    for part in (RECIPE, *TFJS_CONVERTER):
        h.update(part.encode() + b"\0")
    for f in (PACKAGE_JSON, PACKAGE_LOCK):
        h.update(f.read_bytes())
    return f"r{RECIPE}-{h.hexdigest()[:10]}"


def runtime_dir() -> Path:
    return web_root() / recipe_version()


def read_manifest(path: Path | None = None) -> dict | None:
    """The manifest of a complete runtime folder, or None (missing, partial or stale)."""
    path = path or runtime_dir()
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("recipe") != path.name or manifest.get("recipe") != recipe_version():
        return None
    if not all((path / p).exists() for p in REQUIRED):
        return None
    return manifest


def missing_host_tools(need_browser: bool = True) -> list[str]:
    """Debian packages for the host tools that are not on PATH (or too old: Node.js < 18)."""
    missing = [pkg for tool, pkg in HOST_TOOLS.items()
               if (need_browser or tool != "chromium") and shutil.which(tool) is None]
    if "nodejs" not in missing and (node_major() or 0) < NODE_MIN:
        missing.append("nodejs")
    return missing


def node_major() -> int | None:
    node = shutil.which("node")
    if not node:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def tool_version(tool: str) -> str | None:
    path = shutil.which(tool)
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else None


def ensure_host_tools(say: Say) -> list[str]:
    """chromium and Node.js: install them when root, else exit 4 with the exact command."""
    missing = missing_host_tools()
    if not missing:
        return []
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            f"the browser runtimes need {' '.join(missing)}, which are not installed, and edgekit is not "
            "running as root, so it cannot install them.",
            hint=f"run: {install_command(missing)}   then: edgekit web setup" if shutil.which("apt-get") else
            f"install {', '.join(missing)} (Node.js >= {NODE_MIN}) with your system's package manager, then run: "
            "edgekit web setup")
    if shutil.which("apt-get") is None:
        raise EnvironmentProblem(f"the browser runtimes need {' '.join(missing)}, and this machine has no apt-get.",
                                 hint=f"install them (Node.js >= {NODE_MIN}), then run: edgekit web setup")
    say(f"installing {' '.join(missing)} with apt-get (root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_tool(["apt-get", "update", "-qq"], "apt-get update", env=env)
    run_tool(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], "apt-get install", env=env)
    still = missing_host_tools()
    if still:
        raise EnvironmentProblem(f"apt-get installed {' '.join(missing)}, but {', '.join(still)} is still missing "
                                 f"(Node.js must be >= {NODE_MIN}).")
    return missing


def _npm_install(work: Path, say: Say) -> dict[str, str]:
    shutil.copy(PACKAGE_JSON, work / "package.json")
    shutil.copy(PACKAGE_LOCK, work / "package-lock.json")
    say("installing the pinned npm packages (npm ci: onnxruntime-web, @tensorflow/tfjs, tfjs-backend-wasm, "
        "playwright-core)")
    # a private npm cache: nothing of the user's npm state is read or written
    run_tool(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error",
          f"--cache={work / '.npm-cache'}"], "npm ci", cwd=work,
         hint="check the connection to the npm registry, then run edgekit web setup again")
    shutil.rmtree(work / ".npm-cache", ignore_errors=True)
    wanted = json.loads(PACKAGE_JSON.read_text())["dependencies"]
    return {name: json.loads((work / "node_modules" / name / "package.json").read_text())["version"]
            for name in wanted}


def _pip_converter(work: Path, say: Say) -> str:
    name, version, sha = TFJS_CONVERTER
    say(f"installing the TensorFlow.js converter ({name} {version}, no dependencies, hash-checked)")
    req = work / "requirements.txt"
    req.write_text(f"{name}=={version} --hash=sha256:{sha}\n")
    run_tool([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
          "--require-hashes", "--only-binary=:all:", "--no-compile", "--target", str(work / "py"), "-r", str(req)],
         f"pip install {name}", hint="check the connection to the package index, then run edgekit web setup again")
    req.unlink()
    return version


def _probe(work: Path, say: Say) -> dict:
    """Load both runtimes in Node (the browser is checked by its version and by the tests)."""
    say("checking the runtimes in Node.js (onnxruntime-web, TF.js) and the browser's version")
    script = ("const onnxruntimeWeb=require('onnxruntime-web');const tf=require('@tensorflow/tfjs');"
              "const v=onnxruntimeWeb.env.versions;"
              "console.log(JSON.stringify({'onnxruntime-web':v.web||v.common,'@tensorflow/tfjs':tf.version.tfjs}))")
    out = run_tool(["node", "-e", script], "node (loading the runtimes)", cwd=work, timeout=120)
    probe = json.loads(out.strip().splitlines()[-1])
    probe["chromium"] = tool_version("chromium")
    probe["node"] = tool_version("node")
    return probe


def setup(say: Say = print, *, force: bool = False) -> dict:
    """Provision the web runtime if it is not there yet. Returns what was done."""
    t0 = time.monotonic()
    installed = ensure_host_tools(say)

    def build(work: Path) -> dict:
        packages = _npm_install(work, say)
        converter = _pip_converter(work, say)
        manifest = {"recipe": runtime_dir().name, "npm": packages, "tensorflowjs": converter,
                    "chromium_path": shutil.which("chromium"), "node_path": shutil.which("node")}
        manifest["probe"] = _probe(work, say)
        return manifest

    return build_cached(web_root(), runtime_dir(), read_manifest, build, say, force=force, t0=t0,
                        installed=installed)


def status() -> dict:
    """What is provisioned where (never changes anything)."""
    root = web_root()
    target = runtime_dir()
    manifest = read_manifest(target)
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != target.name) if root.is_dir() else []
    return {"root": str(root), "version": target.name, "path": str(target), "complete": manifest is not None,
            "present": target.exists(), "other_folders": others,
            "size_bytes": dir_size(target) if target.exists() else 0,
            "chromium": tool_version("chromium"), "node": tool_version("node"),
            "missing_host_packages": missing_host_tools(), "manifest": manifest}


def require(*, browser: bool) -> Path:
    """The complete runtime folder, or exit 4 with the set-up command (a missing browser or Node too)."""
    missing = missing_host_tools(need_browser=browser)
    if missing:
        raise EnvironmentProblem(f"{'the browser' if browser else 'Node.js'} runtime needs {' '.join(missing)}, "
                                 "which is not installed.",
                                 hint=f"run: edgekit web setup   (as root; or: {install_command(missing)})")
    target = runtime_dir()
    if read_manifest(target) is None:
        raise EnvironmentProblem("the web runtimes (onnxruntime-web, TF.js, the TF.js converter) are not "
                                 f"provisioned in {web_root()}.", hint="run: edgekit web setup")
    return target
