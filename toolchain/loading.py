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
from edgekit.formats import FORMATS, ZIP_READ_ERRORS, Detected, detect, pickle_globals, read_member

MAX_CONFIG_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Trust:
    """What the user explicitly allowed. Everything defaults to refusing."""

    pickle: bool = False  # --trust-pickle: load pickle-based files (runs code)
    code: bool = False  # --trust-code: Keras Lambda layers / custom code
    types: tuple[str, ...] = field(default_factory=tuple)  # --trust-type for skops


def check_policy(found: Detected, trust: Trust) -> list:
    """Raise UnsafeModel if loading `found` could run code the user did not allow; return
    the findings the trust flags allowed (empty for a file with nothing to allow)."""
    spec = found.spec
    if spec.pickle_based and not trust.pickle:
        alt = {"torch_pickle": "re-save it with torch.export.save (a .pt2), or save the state_dict "
                               "and pass --model-class",
               "pickle": "save it with skops (skops.io.dump) instead"}.get(spec.name, "use a non-pickle format")
        imports = [g.replace(" ", ".") for g in _pickle_globals_of(found) if g][:6]
        seen = f" It would import: {', '.join(imports)}." if imports else ""
        raise UnsafeModel(f"{found.path}: is a {spec.description}; loading it runs arbitrary Python code, "
                          f"so edgekit refuses it by default.{seen}",
                          hint=f"{alt}; or, if you trust the file's origin, pass --trust-pickle")
    if spec.name in ("keras", "hdf5") and not trust.code:
        scan_keras_config(found)
    if spec.name == "skops":
        skops_trusted_types(found, trust)
    from edgekit.scan import refuse

    findings, alternative = content_findings(found)
    return refuse(found.path, findings, trust, alternative)


def content_findings(found: Detected) -> tuple[list, str]:
    """What the content scans find that the framework's loader would unpickle, evaluate or
    run beyond plain pickles: every member of a .pt2 that torch.export.load would unpickle
    or eval, and the file/Python/process ops of a TensorFlow graph; plus what to do instead.
    `check_policy` refuses from these; inspect --security lists them."""
    from edgekit import scan

    if found.spec.name == "torch_export":
        return scan.scan_pt2(found.path), scan.PT2_ALTERNATIVE
    if found.spec.name == "savedmodel":
        return scan.scan_tf_graph(found.path), ("export the model without file, Python or process ops in its "
                                                "graph (tf.saved_model.save of the model alone)")
    return [], ""


# Types skops does not trust by default that edgekit allows: they are rebuilt from plain
# data (arrays, numbers) by skops' own loaders and run no user code. Anything else must be
# named with --trust-type.
SKOPS_ALLOWED_TYPES = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn._loss.link.IdentityLink", "sklearn._loss.link.LogitLink", "sklearn._loss.link.LogLink",
    "sklearn._loss.link.MultinomialLogit", "sklearn._loss.link.Interval",
    "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError", "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.HalfPoissonLoss", "sklearn._loss.loss.PinballLoss", "sklearn._loss.loss.HuberLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError", "sklearn._loss._loss.CyAbsoluteError",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.utils._bunch.Bunch",
)


def skops_trusted_types(found: Detected, trust: Trust) -> list[str]:
    """The types to pass to skops.io.load: every type the file needs, once each is allowed.

    skops lists the types it would not load by default; edgekit accepts those on its own
    allowlist and those the user named with --trust-type, and refuses the file otherwise,
    naming every type that is missing, before anything is loaded.
    """
    from edgekit.errors import require

    sio = require("skops.io", "sklearn")
    try:
        untrusted = list(sio.get_untrusted_types(file=found.path))
    except Exception as exc:  # a damaged archive: skops could not read its schema
        raise BadInput(f"{found.path}: skops cannot read this archive ({str(exc).strip()[:200]}).",
                       hint="save the model again with skops.io.dump") from None
    allowed = set(SKOPS_ALLOWED_TYPES) | set(trust.types)
    refused = sorted(t for t in untrusted if t not in allowed)
    if refused:
        flags = " ".join(f"--trust-type {t}" for t in refused[:6])
        raise UnsafeModel(f"{found.path}: the skops file needs type(s) that are not trusted: {', '.join(refused)}. "
                          "Loading an untrusted type can run its code.",
                          hint=f"if you trust the file and these types, pass {flags}")
    return untrusted


def _pickle_globals_of(found: Detected) -> list[str]:
    try:
        if zipfile.is_zipfile(found.path):
            with zipfile.ZipFile(found.path) as zf:
                name = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = read_member(found.path, zf, name, MAX_CONFIG_BYTES) if name else b""
        else:
            with open(found.path, "rb") as fh:
                data = fh.read(MAX_CONFIG_BYTES)
        return sorted(set(pickle_globals(data)))
    except (OSError, BadInput, *ZIP_READ_ERRORS):
        return ["<unreadable>"]


def _keras_config(found: Detected) -> dict | None:
    if found.spec.name == "keras":
        with zipfile.ZipFile(found.path) as zf:
            text = read_member(found.path, zf, "config.json", MAX_CONFIG_BYTES)
    else:
        from edgekit.errors import require

        h5py = require("h5py", "tf")
        with h5py.File(found.path, "r") as fh:
            text = fh.attrs.get("model_config")
        if text is None:
            return None  # weights-only .h5: no config, nothing to deserialize
    try:
        return json.loads(text)
    except RecursionError:
        raise BadInput(f"{found.path}: the model config is nested too deeply to read.") from None
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


def _dedupe_layers(hits: list[str]) -> list[str]:
    """Keras 3 nests a '__lambda__' function inside each Lambda layer: name each layer once."""
    named = {h.split("'")[1] for h in hits if h.startswith("Lambda layer '")}
    return [h for h in hits if not (h.startswith("__lambda__ layer '") and h.split("'")[1] in named)]


def scan_keras_config(found: Detected) -> None:
    """Refuse Keras configs that carry code (Lambda layers, unsafe deserialization)."""
    config = _keras_config(found)
    hits: list[str] = []
    try:
        _walk_config(config, "", hits)
    except RecursionError:
        raise BadInput(f"{found.path}: the model config is nested too deeply to read.") from None
    hits = list(dict.fromkeys(_dedupe_layers(hits)))
    if hits:
        raise UnsafeModel(f"{found.path}: the model contains code that would run when loaded: "
                          f"{'; '.join(hits[:5])}.",
                          hint="replace Lambda layers with registered custom layers, or, if you trust "
                               "the file's origin, pass --trust-code")


MAX_ELEMENTS = 1 << 34  # 16 Gi elements in one tensor: beyond any edge model
MAX_GRAPH_DEPTH = 16  # nested subgraphs (If/Loop/Scan bodies); real models nest 1-3 deep


def _tensor_elements(t) -> int:
    n = 1
    for d in t.dims:
        if d < 0:
            raise ValueError(f"negative dimension {d}")
        n *= d
        if n > MAX_ELEMENTS:
            raise ValueError(f"dims {list(t.dims)} declare more than {MAX_ELEMENTS} elements")
    return n


def _all_tensors(graph, depth: int = 0):
    """Initializers and constant tensors of a graph and its subgraphs, depth-limited."""
    if depth > MAX_GRAPH_DEPTH:
        raise ValueError(f"subgraphs nested more than {MAX_GRAPH_DEPTH} deep")
    yield from graph.initializer
    yield from _node_tensors(graph.node, depth)


def _node_tensors(nodes, depth: int):
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g, depth + 1)
            for g in attr.graphs:
                yield from _all_tensors(g, depth + 1)


def _model_tensors(model):
    """Every tensor of an ONNX model: its graph, subgraphs and model-local functions, after
    checking that subgraphs and function calls together nest at most MAX_GRAPH_DEPTH deep
    (a function's body counts as one level, like a subgraph) and that no function calls itself."""
    funcs = {(f.domain, f.name): f for f in model.functions}
    memo: dict = {}

    def deepest(nodes, depth: int, active: tuple) -> int:
        if depth > MAX_GRAPH_DEPTH or len(active) > MAX_GRAPH_DEPTH:
            raise ValueError(f"subgraphs and model-local functions nested more than {MAX_GRAPH_DEPTH} deep")
        out = depth
        for node in nodes:
            for attr in node.attribute:
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    out = max(out, deepest(g.node, depth + 1, active))
            key = (node.domain, node.op_type)
            if key in funcs:
                if key in active:
                    raise ValueError(f"model-local function '{node.op_type}' calls itself")
                if key not in memo:
                    memo[key] = deepest(funcs[key].node, 0, active + (key,))
                out = max(out, depth + 1 + memo[key])
                if out > MAX_GRAPH_DEPTH:
                    raise ValueError(f"subgraphs and model-local functions nested more than {MAX_GRAPH_DEPTH} deep")
        return out

    deepest(model.graph.node, 0, ())
    yield from _all_tensors(model.graph)
    for f in funcs.values():
        yield from _node_tensors(f.node, 1)


def _non_utf8_name(model) -> bytes | None:
    """The first name the runtime would have to decode that is not UTF-8 (the onnx package
    returns such proto2 strings as bytes; onnxruntime raises UnicodeDecodeError on them)."""
    def values(graph):
        for v in list(graph.input) + list(graph.output) + list(graph.value_info):
            yield v.name
            for d in v.type.tensor_type.shape.dim:
                yield d.dim_param
        for n in graph.node:
            yield from (n.name, n.op_type, n.domain, *n.input, *n.output)
        for t in graph.initializer:
            yield t.name

    for value in values(model.graph):
        if isinstance(value, bytes):
            return value
    return None


def check_onnx_file(path: str | os.PathLike) -> None:
    """Check an ONNX model before any runtime reads it: every external-data location stays
    in the model's folder (no absolute paths, '..', symlinks or hard links) and lies within
    its file; declared tensor sizes are sane and match the bytes present."""
    import onnx
    from onnx import TensorProto, helper
    from onnx.external_data_helper import uses_external_data

    p = Path(path)
    try:
        model = onnx.load_model(str(p), load_external_data=False)
    except Exception as exc:
        raise BadInput(f"{p}: not a readable ONNX model ({str(exc).strip()[:200]}).") from None
    bad_name = _non_utf8_name(model)
    if bad_name is not None:
        raise BadInput(f"{p}: a name in the model is not valid UTF-8 ({bad_name[:40]!r}); the file is corrupt or "
                       "crafted.", hint="export the ONNX model again")
    base = p.resolve().parent
    try:
        tensors = list(_model_tensors(model))
    except ValueError as exc:
        raise BadInput(f"{p}: refused: {exc}.") from None
    for t in tensors:
        try:
            n = _tensor_elements(t)
        except ValueError as exc:
            raise BadInput(f"{p}: tensor '{t.name}': {exc}; edgekit refuses to allocate it.") from None
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        except Exception:
            itemsize = None
        if not uses_external_data(t):
            if t.HasField("raw_data") and itemsize and t.data_type != TensorProto.STRING \
                    and len(t.raw_data) != n * itemsize:
                raise BadInput(f"{p}: tensor '{t.name}' declares {n} elements ({n * itemsize} bytes) but holds "
                               f"{len(t.raw_data)} bytes of data; the file is corrupt or crafted.")
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
            if target.is_symlink() or any(parent.is_symlink() for parent in target.parents
                                          if parent != base and base in parent.parents):
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
                length = int(info["length"]) if info.get("length") else size - offset
                if offset < 0 or length < 0 or offset + length > size:
                    bad = f"a byte range ({offset}+{length}) past the end of the {size}-byte file"
                elif itemsize and length != n * itemsize:
                    bad = f"{length} bytes where its shape {list(t.dims)} needs {n * itemsize}"
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
    options = {**(options or {}), "trust": (options or {}).get("trust") or trust}  # runners re-check with it
    runner = cls(found.path, threads=threads, options=options)
    runner.detected = found
    return runner.load()


_CAPABILITIES = {
    "pickle": "runs arbitrary Python code when loaded (pickle)",
    "torch_pickle": "runs arbitrary Python code when loaded (pickle inside a torch.save archive)",
    "torch_state_dict": "weights only: loaded with torch.load(weights_only=True), which rebuilds tensors only",
    "torch_export": "a torch.export graph of ATen operators; torch.export.load would also unpickle some members "
                    "and eval symbolic shapes and guards: edgekit checks every member and loads weights only",
    "keras": "a JSON config of layers plus weights; Lambda layers and unsafe deserialization would carry code",
    "hdf5": "legacy Keras: a JSON config plus weights; Keras ignores safe_mode here, so edgekit's scan is the guard",
    "savedmodel": "a TensorFlow graph: runs TF operators when executed; edgekit refuses file, Python and process "
                  "ops outside the saver unless --trust-code",
    "skops": "scikit-learn objects rebuilt by skops from an allowlist of types",
    "xgboost_json": "tree data only", "xgboost_ubj": "tree data only", "lightgbm_txt": "tree data only",
    "safetensors": "tensors only", "npz": "arrays (edgekit never unpickles object arrays)", "npy": "an array",
    "csv": "a table of values",
}


def _declared_capabilities() -> dict[str, str]:
    from edgekit.targets import TARGETS

    return {t.format: t.capability for t in TARGETS.values()}


_CAPABILITIES.update(_declared_capabilities())  # the targets' formats, from their declarations


def security_report(path: str | os.PathLike, trust: Trust = Trust()) -> dict:
    """What a file could do if loaded, what edgekit's policy decides, and why (no loading)."""
    found = detect(path)
    report = {"path": str(found.path), "format": found.name, "description": found.spec.description,
              "detected_by": found.evidence, "capability": _CAPABILITIES.get(found.name, ""),
              "pickle_based": found.spec.pickle_based, "findings": [], "allowed": True, "reason": "",
              "trust": {"pickle": trust.pickle, "code": trust.code, "types": list(trust.types)}}
    if zipfile.is_zipfile(found.path):
        with zipfile.ZipFile(found.path) as zf:
            infos = zf.infolist()
        report["findings"].append(f"zip archive: {len(infos)} members, "
                                  f"{sum(i.file_size for i in infos)} bytes uncompressed (limits checked)")
    if found.spec.pickle_based or found.name == "torch_state_dict":
        imports = [g.replace(" ", ".") for g in _pickle_globals_of(found)]
        report["findings"].append("pickle imports: " + (", ".join(imports) if imports else "none"))
    code, _ = content_findings(found)  # the same scans check_policy refuses from (below)
    report["findings"] += [f"would run code: {f} (needs --trust-{f.needs})" for f in code]
    if found.name in ("torch_export", "savedmodel") and not code:
        report["findings"].append("no member or op that would run code")
    if found.name == "onnx":
        import onnx
        from onnx.external_data_helper import uses_external_data

        model = onnx.load_model(str(found.path), load_external_data=False)
        try:
            tensors = list(_model_tensors(model))
        except ValueError:
            tensors = []  # check_onnx_file below refuses the file and says why
        locs = sorted({e.value for t in tensors if uses_external_data(t)
                       for e in t.external_data if e.key == "location"})
        report["findings"].append("external data: " + (", ".join(locs) if locs else "none"))
    try:
        check_policy(found, trust)
        if found.name == "onnx":
            check_onnx_file(found.path)
        report["reason"] = "allowed by the default policy" if trust == Trust() else "allowed (with the trust flags given)"
    except UnsafeModel as exc:
        report["allowed"] = False
        report["reason"] = exc.message
        report["hint"] = exc.hint
    return report


__all__ = ["Trust", "security_report", "open_model", "check_policy", "check_onnx_file", "scan_keras_config", "skops_trusted_types",
           "FORMATS"]
