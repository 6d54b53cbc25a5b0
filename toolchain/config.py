"""`edgekit.toml`: the build configuration, read with tomllib and checked key by key.

Every error names the key and, where it can be found, the line: unknown keys, wrong
types and bad values are caught here, before any work starts.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import BadInput
from edgekit.targets import OUTPUT_KINDS, QUANTIZE_MODES, TARGETS

KEEP_FLOAT_TARGETS = ("onnx", "executorch", "tflite")  # int8 paths that can keep layers float (--keep-float)

ARCHES = ("host", "arm64", "browser", "node")  # browser/node: edgekit.validators.web


@dataclass
class TargetSpec:
    target: str
    quantize: str = "none"
    output: str | None = None
    atol: float | None = None
    rtol: float | None = None
    arches: list[str] = field(default_factory=lambda: ["host"])
    max_latency_ms: float | None = None
    max_arm_instructions: float | None = None
    int8_io: bool = False
    expect: str | None = None  # "refused": the job passes only when edgekit refuses it (exit 3)
    keep_float: list[str] | None = None  # int8 ONNX/ExecuTorch/TFLite: layers kept float, or ["auto"] (--keep-float)
    devices: list[str] = field(default_factory=list)  # ssh://… boards it is also checked on (--device)

    @property
    def precision(self) -> str:
        return "fp32" if self.quantize == "none" else self.quantize


@dataclass
class ModelSpec:
    name: str
    source: Path
    targets: list[TargetSpec]
    inputs: Path | None = None
    calibration: Path | None = None
    labels: list[str] | None = None
    input_shape: list[str] = field(default_factory=list)
    model_class: str | None = None
    model_args: dict = field(default_factory=dict)
    signature: str | None = None
    trust_pickle: bool = False
    trust_code: bool = False
    trust_types: list[str] = field(default_factory=list)
    label_column: str | None = None
    output_kinds: dict = field(default_factory=dict)  # output name -> kind (edgekit.validators.parity.OUTPUT_KINDS)
    batch_axis: dict = field(default_factory=dict)  # input name -> the axis holding the samples, when not 0
    # text in: `inputs` (and a CSV `calibration`) are CSVs of texts tokenized with this tokenizer.json
    tokenizer: Path | None = None
    text_column: str = "text"
    # a dynamic-length text model: parity and latency at each of these sequence lengths (tokens)
    lengths: list[int] = field(default_factory=list)


@dataclass
class BuildConfig:
    path: Path
    out: Path
    jobs: int | None
    timeout: float
    models: list[ModelSpec]
    ssh_config: Path | None = None  # [build] ssh_config: ssh -F for the targets' devices (--ssh-config)


# key -> (accepted python types, description) for each table
_BUILD_KEYS = {"out": (str,), "jobs": (int,), "timeout": (int, float), "ssh_config": (str,)}
_MODEL_KEYS = {
    "name": (str,), "source": (str,), "inputs": (str,), "calibration": (str,), "labels": (list,),
    "input_shape": (list, str), "model_class": (str,), "model_args": (dict,), "signature": (str,),
    "trust_pickle": (bool,), "trust_code": (bool,), "trust_types": (list,), "label_column": (str,),
    "targets": (list,), "output_kinds": (dict,), "batch_axis": (dict,), "tokenizer": (str,), "text_column": (str,),
    "lengths": (list,),
}
_TARGET_KEYS = {
    "target": (str,), "quantize": (str,), "output": (str,), "atol": (int, float), "rtol": (int, float),
    "arches": (list,), "max_latency_ms": (int, float), "max_arm_instructions": (int, float), "int8_io": (bool,),
    "expect": (str,), "keep_float": (str, list), "devices": (list,),
}
EXPECT_VALUES = ("refused",)


class _Lines:
    """Finds the line of a key in the TOML text, for error messages (tomllib has no positions)."""

    _header = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
    _key = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str):
        self.index: dict[str, int] = {}
        counters: dict[str, int] = {}
        table = ""
        for no, line in enumerate(text.splitlines(), 1):
            m = self._header.match(line)
            if m:
                name = m.group(2)
                if m.group(1) == "[[":
                    parent = name.rsplit(".", 1)[0] if "." in name else ""
                    parent_path = self._resolve(parent, counters) if parent else ""
                    leaf = name.rsplit(".", 1)[-1]
                    base = f"{parent_path}.{leaf}" if parent_path else leaf
                    counters[base] = counters.get(base, -1) + 1
                    table = f"{base}[{counters[base]}]"
                else:
                    table = name
                self.index.setdefault(table, no)
                continue
            m = self._key.match(line)
            if m:
                self.index.setdefault(f"{table}.{m.group(1)}" if table else m.group(1), no)

    @staticmethod
    def _resolve(name: str, counters: dict[str, int]) -> str:
        parts, path = name.split("."), ""
        for part in parts:
            base = f"{path}.{part}" if path else part
            path = f"{base}[{counters[base]}]" if base in counters else base
        return path

    def of(self, key_path: str) -> int | None:
        while key_path:
            if key_path in self.index:
                return self.index[key_path]
            key_path = key_path.rsplit(".", 1)[0] if "." in key_path else ""
        return None


class _Checker:
    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = _Lines(text)

    def fail(self, key_path: str, message: str, hint: str | None = None):
        line = self.lines.of(key_path)
        where = f"{self.path}:{line}" if line else str(self.path)
        raise BadInput(f"{where}: {key_path}: {message}", hint=hint)

    def table(self, data: dict, allowed: dict, prefix: str) -> None:
        for key, value in data.items():
            kp = f"{prefix}.{key}" if prefix else key
            if key not in allowed:
                self.fail(kp, "unknown key.", hint=f"allowed here: {', '.join(sorted(allowed))}")
            types = allowed[key]
            if isinstance(value, bool) and bool not in types:
                self.fail(kp, f"expected {self._names(types)}, got a boolean.")
            if not isinstance(value, types):
                self.fail(kp, f"expected {self._names(types)}, got {type(value).__name__} ({value!r:.40}).")

    @staticmethod
    def _names(types) -> str:
        if set(types) == {int, float}:
            return "a number"
        names = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
                 dict: "a table"}
        return " or ".join(names[t] for t in types)


def load(path: str | Path, out: str | Path | None = None) -> BuildConfig:
    """Read and check `edgekit.toml`. Paths in it are relative to its folder."""
    p = Path(path)
    if p.is_dir():
        p = p / "edgekit.toml"
    if not p.is_file():
        raise BadInput(f"{p}: no such build configuration.", hint="create edgekit.toml (see README, 'edgekit build')")
    text = p.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{p}: not valid TOML: {exc}.") from None
    chk = _Checker(p, text)
    base = p.resolve().parent
    chk.table(data, {"build": (dict,), "models": (list,)}, "")
    build = data.get("build", {})
    chk.table(build, _BUILD_KEYS, "build")
    if "jobs" in build and build["jobs"] < 1:
        chk.fail("build.jobs", "must be at least 1.")
    models_raw = data.get("models")
    if not models_raw:
        chk.fail("models", "no models: add at least one [[models]] table.")
    models: list[ModelSpec] = []
    names = set()
    for i, m in enumerate(models_raw):
        kp = f"models[{i}]"
        if not isinstance(m, dict):
            chk.fail(kp, "each model must be a table ([[models]]).")
        chk.table(m, _MODEL_KEYS, kp)
        for req in ("name", "source", "targets"):
            if req not in m:
                chk.fail(kp, f"missing required key '{req}'.")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", m["name"]):
            chk.fail(f"{kp}.name", f"'{m['name']}' may use only letters, digits, '_', '-' and '.'.")
        if m["name"] in names:
            chk.fail(f"{kp}.name", f"duplicate model name '{m['name']}'.")
        names.add(m["name"])
        targets = []
        for j, t in enumerate(m["targets"]):
            tp = f"{kp}.targets[{j}]"
            if not isinstance(t, dict):
                chk.fail(tp, "each target must be a table ([[models.targets]]).")
            chk.table(t, _TARGET_KEYS, tp)
            if "target" not in t:
                chk.fail(tp, "missing required key 'target'.")
            if t["target"] not in TARGETS:
                chk.fail(f"{tp}.target", f"unknown target '{t['target']}'.", hint=f"choose one of: {', '.join(TARGETS)}")
            q = t.get("quantize", "none")
            if q not in QUANTIZE_MODES:
                chk.fail(f"{tp}.quantize", f"unknown mode '{q}'.", hint=f"choose one of: {', '.join(QUANTIZE_MODES)}")
            arches = t.get("arches", ["host"])
            bad = [a for a in arches if a not in ARCHES]
            if bad or not arches:
                chk.fail(f"{tp}.arches", f"unknown arch {bad or '[]'}.", hint=f"choose from: {', '.join(ARCHES)}")
            if t.get("expect", "refused") not in EXPECT_VALUES:
                chk.fail(f"{tp}.expect", f"unknown expectation '{t['expect']}'.",
                         hint="expect = \"refused\" is the only value: the job passes when edgekit refuses it")
            keep = t.get("keep_float")
            keep = [keep] if isinstance(keep, str) else keep
            if keep is not None and (q != "int8" or t["target"] not in KEEP_FLOAT_TARGETS or not keep
                                     or not all(isinstance(k, str) and k for k in keep)):
                chk.fail(f"{tp}.keep_float", "keep_float applies to target = \"onnx\", \"executorch\" or \"tflite\" "
                         "with quantize = \"int8\", as \"auto\" or a list of layer names.",
                         hint='e.g. keep_float = "auto" or ["fc3", "relu3"]')
            devices = t.get("devices", [])
            if not all(isinstance(d, str) and d.startswith("ssh://") for d in devices):
                chk.fail(f"{tp}.devices", "devices is a list of ssh:// addresses.",
                         hint='e.g. devices = ["ssh://pi@raspberrypi.local"]')
            targets.append(TargetSpec(t["target"], q, t.get("output"), t.get("atol"), t.get("rtol"), list(arches),
                                      t.get("max_latency_ms"), t.get("max_arm_instructions"), t.get("int8_io", False),
                                      t.get("expect"), keep, list(devices)))
        if not targets:
            chk.fail(f"{kp}.targets", "no targets: add at least one [[models.targets]] table.")
        shapes = m.get("input_shape", [])
        for name, kind in m.get("output_kinds", {}).items():
            if kind not in OUTPUT_KINDS:
                chk.fail(f"{kp}.output_kinds.{name}", f"unknown kind '{kind}'.", hint=f"kinds: {', '.join(OUTPUT_KINDS)}")
        for name, axis in m.get("batch_axis", {}).items():
            if not isinstance(axis, int) or isinstance(axis, bool) or axis < 0:
                chk.fail(f"{kp}.batch_axis.{name}", "expected a non-negative integer axis, e.g. batch_axis = {state = 1}.")
        if ("text_column" in m or "lengths" in m) and "tokenizer" not in m:
            chk.fail(f"{kp}.{'text_column' if 'text_column' in m else 'lengths'}", "needs 'tokenizer' on the model "
                     "(the tokenizer.json that turns the inputs' texts into ids).")
        if "tokenizer" in m and not str(m.get("inputs", "")).endswith(".csv"):
            chk.fail(f"{kp}.tokenizer", "needs 'inputs' to be a .csv of texts (the column named by text_column).")
        lengths = m.get("lengths", [])
        if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in lengths) \
                or len(set(lengths)) != len(lengths):
            chk.fail(f"{kp}.lengths", "expected distinct positive integers (sequence lengths in tokens), "
                     "e.g. lengths = [16, 64].")
        models.append(ModelSpec(
            m["name"], base / m["source"], targets,
            inputs=base / m["inputs"] if "inputs" in m else None,
            calibration=base / m["calibration"] if "calibration" in m else None,
            labels=[str(x) for x in m["labels"]] if "labels" in m else None,
            input_shape=[shapes] if isinstance(shapes, str) else list(shapes),
            model_class=m.get("model_class"), model_args=m.get("model_args", {}), signature=m.get("signature"),
            trust_pickle=m.get("trust_pickle", False), trust_code=m.get("trust_code", False),
            trust_types=[str(t) for t in m.get("trust_types", [])], label_column=m.get("label_column"),
            output_kinds=dict(m.get("output_kinds", {})), batch_axis=dict(m.get("batch_axis", {})),
            tokenizer=base / m["tokenizer"] if "tokenizer" in m else None, text_column=m.get("text_column", "text"),
            lengths=sorted(lengths)))
    # absolute, but symbolic links not resolved: a link given as `out` must be seen (and refused)
    out_dir = Path(os.path.abspath(out if out else base / build.get("out", "build/edgekit")))
    timeout = build.get("timeout", 1800)
    if not math.isfinite(timeout) or timeout <= 0:
        chk.fail("build.timeout", f"must be a finite number of seconds > 0, got {timeout}.")
    ssh_config = base / build["ssh_config"] if "ssh_config" in build else None
    if ssh_config is not None and not ssh_config.is_file():
        chk.fail("build.ssh_config", f"{ssh_config}: no such file.")
    return BuildConfig(p, out_dir, build.get("jobs"), float(timeout), models, ssh_config)


def key_line(cfg_path: Path, key_path: str) -> str:
    """'file:line' for a key path like models[1].source (for plan-time errors)."""
    line = _Lines(cfg_path.read_text()).of(key_path)
    return f"{cfg_path}:{line}" if line else str(cfg_path)
