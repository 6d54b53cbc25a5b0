"""Safe loading: the security policy for model files lives here, in one place.

`open_model` detects the format by content, applies the policy (refuse pickles unless
trusted, scan Keras configs for code, check ONNX external data before any read) and
returns a loaded runner: the model's signature plus `predict`. Call it only inside a
child process (see `edgekit.isolation`); the CLI process never loads a model.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import BadInput, UnsafeModel
from edgekit.formats import Detected, FORMATS, detect, pickle_globals

MAX_CONFIG_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Trust:
    """What the user explicitly allowed. Everything defaults to refusing."""

    pickle: bool = False  # --trust-pickle: load pickle-based files (runs code)
    code: bool = False  # --trust-code: Keras Lambda layers / custom code
    types: tuple[str, ...] = field(default_factory=tuple)  # --trust-type for skops


def check_policy(found: Detected, trust: Trust) -> None:
    """Raise UnsafeModel if loading `found` could run code the user did not allow."""
    spec = found.spec
    if spec.pickle_based and not trust.pickle:
        alt = {"torch_pickle": "re-save it with torch.export.save (a .pt2), or save the state_dict "
                               "and pass --model-class",
               "pickle": "save it with skops (skops.io.dump) instead"}.get(spec.name, "use a non-pickle format")
        imports = [g for g in _pickle_globals_of(found) if g][:6]
        seen = f" It would import: {', '.join(imports)}." if imports else ""
        raise UnsafeModel(f"{found.path}: is a {spec.description}; loading it runs arbitrary Python code, "
                          f"so edgekit refuses it by default.{seen}",
                          hint=f"{alt}; or, if you trust the file's origin, pass --trust-pickle")
    if spec.name in ("keras", "hdf5") and not trust.code:
        scan_keras_config(found)


def _pickle_globals_of(found: Detected) -> list[str]:
    try:
        if zipfile.is_zipfile(found.path):
            with zipfile.ZipFile(found.path) as zf:
                name = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = zf.read(name)[:MAX_CONFIG_BYTES] if name else b""
        else:
            data = found.path.read_bytes()[:MAX_CONFIG_BYTES]
        return sorted(set(pickle_globals(data)))
    except (OSError, zipfile.BadZipFile):
        return []


def _keras_config(found: Detected) -> dict | None:
    if found.spec.name == "keras":
        with zipfile.ZipFile(found.path) as zf:
            info = zf.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise BadInput(f"{found.path}: config.json is {info.file_size} bytes, over the "
                               f"{MAX_CONFIG_BYTES} byte limit.")
            text = zf.read(info)
    else:
        from edgekit.errors import require

        h5py = require("h5py", "tf")
        with h5py.File(found.path, "r") as fh:
            text = fh.attrs.get("model_config")
        if text is None:
            return None  # weights-only .h5: no config, nothing to deserialize
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadInput(f"{found.path}: the model config is not valid JSON ({exc}).") from None


_UNSAFE_CLASSES = {"Lambda", "__lambda__", "function", "TFOpLambda"}


def _walk_config(node, trail: str, hits: list[str]) -> None:
    if isinstance(node, dict):
        cls = node.get("class_name")
        if isinstance(cls, str) and cls in _UNSAFE_CLASSES:
            cfg = node.get("config") if isinstance(node.get("config"), dict) else {}
            hits.append(f"{cls} layer '{cfg.get('name', trail or '?')}'")
        for key, value in node.items():
            _walk_config(value, node.get("name", trail) if isinstance(node.get("name"), str) else trail, hits)
    elif isinstance(node, list):
        for item in node:
            _walk_config(item, trail, hits)
    elif isinstance(node, str) and "enable_unsafe_deserialization" in node:
        hits.append(f"a call to keras.config.enable_unsafe_deserialization (near '{trail}')")


def scan_keras_config(found: Detected) -> None:
    """Refuse Keras configs that carry code (Lambda layers, unsafe deserialization)."""
    config = _keras_config(found)
    hits: list[str] = []
    _walk_config(config, "", hits)
    if hits:
        raise UnsafeModel(f"{found.path}: the model contains code that would run when loaded: "
                          f"{'; '.join(hits[:5])}.",
                          hint="replace Lambda layers with registered custom layers, or, if you trust "
                               "the file's origin, pass --trust-code")


def check_onnx_file(path: str | os.PathLike) -> None:
    """Check every external-data location of an ONNX model before anything reads it."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    p = Path(path)
    model = onnx.load_model(str(p), load_external_data=False)
    base = p.resolve().parent
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
    for t in tensors:
        if not uses_external_data(t):
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        bad = None
        if not loc or os.path.isabs(loc) or loc.startswith(("/", "\\")):
            bad = "an absolute path"
        elif ".." in Path(loc).parts:
            bad = "a path that leaves the model's folder ('..')"
        else:
            target = base / loc
            if target.is_symlink():
                bad = "a symbolic link"
            elif not target.resolve().is_relative_to(base):
                bad = "a path that leaves the model's folder"
            elif not target.is_file():
                bad = "a file that does not exist"
            elif target.stat().st_nlink > 1:
                bad = "a hard-linked file"
            else:
                size = target.stat().st_size
                offset = int(info.get("offset", 0) or 0)
                length = info.get("length")
                if offset < 0 or offset > size or (length is not None and offset + int(length) > size):
                    bad = f"a byte range past the end of the {size}-byte file"
        if bad:
            raise UnsafeModel(f"{p}: tensor '{t.name}' keeps its data in '{loc}', {bad}; edgekit "
                              "refuses to read it.",
                              hint="keep external data files next to the model, referenced by plain relative names")


def open_model(path: str | os.PathLike, *, trust: Trust = Trust(), threads: int | None = None,
               options: dict | None = None, runtime: str | None = None):
    """Detect, apply the policy, and return a loaded `Runner` for the model.

    The returned runner also carries `.detected` (what the file is) for reports.
    """
    from edgekit.validators.runners import runner_class

    found = detect(path)
    if runtime is None and found.spec.framework == "torch" and (options or {}).get("model_class"):
        runtime = "torch_eager"  # weights (state_dict / safetensors) + the model's class
    if found.spec.runtime is None and runtime is None:
        raise BadInput(f"{found.path}: is a {found.spec.description}, which holds no runnable model.",
                       hint="pass a model file")
    check_policy(found, trust)
    cls = runner_class(runtime or found.spec.runtime)
    runner = cls(found.path, threads=threads, options=options)
    runner.detected = found
    return runner.load()


__all__ = ["Trust", "open_model", "check_policy", "check_onnx_file", "scan_keras_config", "FORMATS"]
