"""`edgekit doctor`: what is installed, what is missing, and how to get it.

Reads package metadata only (importlib.metadata): it never imports a framework, so it is
fast and works even when a framework is broken.
"""

from __future__ import annotations

import platform
import re
from importlib import metadata

from edgekit.targets import TARGETS

_BASE_PURPOSE = {
    "numpy": "arrays", "click": "command line", "rich": "terminal output", "tensorflow-cpu": "Keras/TF sources, "
    "TFLite converter", "keras": "Keras sources", "tf2onnx": "Keras/TF → ONNX", "h5py": "legacy Keras .h5",
    "torch": "PyTorch sources", "torchao": "PT2E int8 quantization", "litert-torch": "PyTorch → TFLite",
    "onnxscript": "PyTorch → ONNX", "safetensors": "safetensors weights", "scikit-learn": "scikit-learn sources",
    "skl2onnx": "scikit-learn → ONNX", "onnxmltools": "XGBoost/LightGBM → ONNX", "skops": "safe sklearn files",
    "xgboost": "XGBoost sources", "lightgbm": "LightGBM sources", "pytest": "tests", "hypothesis": "fuzz tests",
}


def _purposes() -> dict[str, str]:
    """What each package is for: edgekit's own lines, plus each target's from its declaration."""
    out = dict(_BASE_PURPOSE)
    for t in TARGETS.values():
        for package, line in t.doctor:
            out[package] = f"{out[package]}, {line}" if package in out else line
    return out


PURPOSE = _purposes()


def _pins() -> list[tuple[str, str, str]]:
    """(package, pinned version, extra) from edgekit's own installed metadata."""
    try:
        reqs = metadata.requires("edgekit") or []
    except metadata.PackageNotFoundError:
        return [(p, "?", "?") for p in PURPOSE]
    pins = {}
    for req in reqs:
        m = re.match(r"([A-Za-z0-9_.\-]+)\s*==\s*([^;\s]+)\s*(?:;\s*extra\s*==\s*['\"](\w+)['\"])?", req)
        if m:
            name, version, extra = m.group(1), m.group(2), m.group(3) or "core"
            if name not in pins or pins[name][2] == "all":
                pins[name] = (name, version, extra)
    return list(pins.values())


def collect() -> dict:
    from edgekit.converters.registry import paths

    packages = []
    missing_extras = set()
    core_ok = True
    for name, pinned, extra in _pins():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
            if extra == "core":
                core_ok = False
            else:
                missing_extras.add(extra)
        packages.append({"package": name, "extra": extra, "installed": installed, "pinned": pinned,
                         "purpose": PURPOSE.get(name, "")})
    have = {p["package"] for p in packages if p["installed"]}
    available = []
    for conv in paths():
        needed = [p["package"] for p in packages if p["extra"] == conv.extra]
        if all(n in have for n in needed):
            available.append((conv.source, conv.target))
    hints = []
    if not core_ok:
        hints.append("reinstall edgekit: pip install edgekit")
    for extra in sorted(missing_extras - {"dev"}):
        hints.append(f"the '{extra}' extra is incomplete: pip install 'edgekit[{extra}]'")
    web = web_runtimes()
    if web["missing_host_packages"] or not web["complete"]:
        hints.append("the browser/Node.js runtimes (--arch browser/node, TF.js targets) are not provisioned "
                     f"({', '.join(web['missing_host_packages']) or 'npm packages'}): run edgekit web setup")
    return {"ok": core_ok, "python": platform.python_version(), "machine": platform.machine(),
            "packages": packages, "paths_available": available, "hints": hints, "web": web}


def web_runtimes() -> dict:
    """What `edgekit web setup` provisioned (file checks only: nothing is started)."""
    import shutil

    from edgekit.validators.web.provision import missing_host_tools, read_manifest, runtime_dir

    manifest = read_manifest()
    return {"path": str(runtime_dir()), "complete": manifest is not None, "chromium": shutil.which("chromium"),
            "node": shutil.which("node"), "missing_host_packages": missing_host_tools(),
            "npm": (manifest or {}).get("npm")}
