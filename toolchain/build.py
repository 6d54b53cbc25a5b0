"""`edgekit build`: config -> plan (model x target jobs) -> cached conversions ->
validation -> staged outputs -> atomic publish -> manifest -> reports.

The published output folder is the cache: `manifest.json` records each artifact's cache
key (hash of source and data files, options, and the versions of edgekit and the libraries
involved). A job whose key and file hash match is skipped. A build assembles the complete
new folder beside the old one (unchanged artifacts hard-linked, manifest written last) and
swaps the two in one atomic step, so a build killed at any moment leaves the previous
artifacts and manifest intact and consistent. A lock file stops two builds writing one
output folder at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from edgekit import __version__
from edgekit.config import BuildConfig, ModelSpec, TargetSpec, key_line
from edgekit.errors import BadInput, CheckFailed, ConversionFailed, EdgekitError, EnvironmentProblem
from edgekit.fsutil import (check_name_length, is_no_space, is_plain_file, link_or_copy, open_lock_file,
                            replace_dir, write_text_atomic)

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1
# written into every output folder edgekit publishes: the proof that edgekit created it and
# may replace it whole (a folder without it is someone's work and is never touched)
MARKER = ".edgekit-out"
REPORT_FILES = ("report.json", "junit.xml", "summary.md", "report.html")
RESERVED_NAMES = (MANIFEST, MARKER, *REPORT_FILES)

# packages whose versions go into a job's cache key, per converter extra; the target's own
# packages (its declaration, edgekit.targets) are added to them
_EXTRA_PACKAGES = {
    "core": ["numpy", "onnx", "onnxruntime", "onnxconverter-common"],
    "tf": ["tensorflow-cpu", "keras", "tf2onnx", "ai-edge-litert"],
    "torch": ["torch", "torchao", "executorch", "litert-torch", "onnxscript", "ai-edge-litert"],
    "sklearn": ["scikit-learn", "skl2onnx", "onnxmltools", "skops", "xgboost", "lightgbm"],
}


@dataclass
class Job:
    model: ModelSpec
    spec: TargetSpec
    index: tuple[int, int]  # (model index, target index) in the config, for error lines
    output: str  # file name inside the output folder
    extra: str = "core"
    key: str = ""
    inputs_digest: dict = field(default_factory=dict)
    # the model's input_shape/model_class/model_args, checked as the CLI checks them
    # (edgekit.sources.source_options), for every stage that opens the source
    source_options: dict = field(default_factory=dict)
    devices: tuple = ()  # edgekit.validators.device.Device for each of the target's `devices`

    @property
    def id(self) -> str:
        return f"{self.model.name}/{self.spec.target}-{self.spec.precision}"

    def request(self):
        """The stages' request for this job (edgekit.request.SourceRequest), as the CLI builds it."""
        from edgekit.request import SourceRequest

        return SourceRequest.from_model(self.model, self.spec, self.source_options)


def file_digest(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents, in sorted order)."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0")
            h.update(file_digest(f).encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def semantic_digest(path: Path) -> str:
    """A hash of what a model computes, not of how its archive was written: for zip-based
    artifacts (TorchScript) the members' names and contents minus per-save noise (torch writes
    a random serialization id into every archive). Equal to the sha256 for other formats,
    whose converters are byte-deterministic (tested)."""
    import zipfile

    if path.is_dir() or not zipfile.is_zipfile(path):
        return file_digest(path)
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as zf:
        for name in sorted(zf.namelist()):
            inner = name.split("/", 1)[-1]  # the top folder is the file's own name
            if inner.endswith(".data/serialization_id"):
                continue
            h.update(inner.encode() + b"\0")
            h.update(hashlib.sha256(zf.read(name)).digest())
    return h.hexdigest()


def library_versions(extra: str, target: str | None = None) -> dict[str, str]:
    from edgekit.targets import TARGETS

    out = {"edgekit": __version__}
    names = _EXTRA_PACKAGES["core"] + _EXTRA_PACKAGES.get(extra, [])
    names += [p for p in (TARGETS[target].packages if target else ()) if p not in names]
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


# ----------------------------------------------------------------------------- plan
def plan(cfg: BuildConfig, only: tuple[str, ...] = (), shard: tuple[int, int] | None = None) -> list[Job]:
    """Every model x target job, checked before anything runs (paths, paths' support, names)."""
    from edgekit.converters.registry import lookup
    from edgekit.formats import detect
    from edgekit.targets import TARGETS

    unknown = set(only) - {m.name for m in cfg.models}
    if unknown:
        raise BadInput(f"--only: no model named {', '.join(sorted(unknown))} in {cfg.path}.",
                       hint=f"models: {', '.join(m.name for m in cfg.models)}")
    jobs: list[Job] = []
    outputs: dict[str, str] = {}
    for i, model in enumerate(cfg.models):
        where = key_line(cfg.path, f"models[{i}].source")
        if not model.source.exists():
            raise BadInput(f"{where}: model '{model.name}': source {model.source} does not exist.")
        for key, p in (("inputs", model.inputs), ("calibration", model.calibration), ("tokenizer", model.tokenizer)):
            if p is not None and not p.is_file():
                raise BadInput(f"{key_line(cfg.path, f'models[{i}].{key}')}: model '{model.name}': "
                               f"{key} file {p} does not exist.")
        found = detect(model.source)
        src_options = model_source_options(cfg, i, model, found)
        for j, spec in enumerate(model.targets):
            twhere = key_line(cfg.path, f"models[{i}].targets[{j}].target")
            try:
                conv = lookup(found.spec.framework, spec.target, spec.quantize)
            except BadInput as exc:
                raise BadInput(f"{twhere}: model '{model.name}': {exc.message}", hint=exc.hint) from None
            if spec.quantize in conv.needs_calibration and model.calibration is None:
                raise BadInput(f"{twhere}: model '{model.name}': quantize = \"{spec.quantize}\" needs "
                               "'calibration' (a .npz of representative inputs) on the model.")
            if "arm64" in spec.arches:
                _require_arm(twhere)
            if {"browser", "node"} & set(spec.arches):
                _require_web(twhere, browser="browser" in spec.arches)
            ext = TARGETS[spec.target].extension
            name = spec.output or f"{model.name}{'' if spec.precision == 'fp32' else '.' + spec.precision}{ext}"
            if not plain_name(name):
                raise BadInput(f"{twhere}: output name '{name}' must be a plain file name.")
            check_name_length(cfg.out / name)
            job = Job(model, spec, (i, j), name, conv.extra, source_options=src_options,
                      devices=plan_devices(cfg, spec, key_line(cfg.path, f"models[{i}].targets[{j}].devices")))
            if name in outputs:
                raise BadInput(f"{twhere}: duplicate output name '{name}' (also used by {outputs[name]}).",
                               hint="set a distinct 'output' on one of the targets")
            outputs[name] = job.id
            jobs.append(job)
    if only:
        jobs = [j for j in jobs if j.model.name in only]
    if shard:
        index, count = shard
        jobs = [j for k, j in enumerate(sorted(jobs, key=lambda j: j.id)) if k % count == index - 1]
    return jobs


def model_source_options(cfg: BuildConfig, i: int, model: ModelSpec, found) -> dict:
    """The source options of models[i] (input_shape, model_class, model_args), checked as the
    CLI checks --input-shape/--model-class/--model-args, with the config line on errors."""
    from edgekit.sources import source_options

    try:
        return source_options(found, model.input_shape, model.model_class, model.model_args or None)
    except BadInput as exc:
        raise BadInput(f"{key_line(cfg.path, f'models[{i}].source')}: model '{model.name}': {exc.message}",
                       hint=exc.hint) from None


def plan_devices(cfg: BuildConfig, spec, where: str) -> tuple:
    """A target's `devices` as Device objects (with [build] ssh_config), or BadInput naming the line."""
    if not spec.devices:
        return ()
    from edgekit.validators.device import parse_device

    try:
        return tuple(parse_device(u, ssh_config=str(cfg.ssh_config) if cfg.ssh_config else None)
                     for u in dict.fromkeys(spec.devices))
    except BadInput as exc:
        raise BadInput(f"{where}: {exc.message}", hint=exc.hint) from None


def _require_arm(where: str) -> None:
    from edgekit.validators.arm import provision

    if not provision.is_complete():
        raise EnvironmentProblem(f"{where}: arches = [\"arm64\"] needs the emulated ARM runtime, which is not "
                                 "provisioned.", hint="run 'edgekit arm setup' (make setup does it)")


def _require_web(where: str, browser: bool) -> None:
    from edgekit.validators.web.provision import require

    try:
        require(browser=browser)
    except EnvironmentProblem as exc:
        raise EnvironmentProblem(f"{where}: arches = [\"{'browser' if browser else 'node'}\"]: {exc.message}",
                                 hint="run 'edgekit web setup' (make setup does it)") from None


WEB_ARCHES = ("browser", "node")


def data_files(m: ModelSpec) -> list[tuple[str, Path]]:
    """The files a model's jobs read, as (key, path); "tokenizer" only when the model has one
    (so the cache keys of other models stay as they were)."""
    files = [("source", m.source), ("inputs", m.inputs), ("calibration", m.calibration)]
    return files + ([("tokenizer", m.tokenizer)] if m.tokenizer is not None else [])


# A failure with these exit codes (a check failed, the conversion failed, bad input) comes back
# with the same inputs and versions, so it is kept like an artifact until they change (or
# --force); any other (a missing runtime, a time limit, a crash) is tried again on the next build.
DETERMINISTIC_EXITS = (1, 2, 3)


def cache_key(job: Job) -> str:
    """The job's cache key; also records in `job.inputs_digest` the hashes of its source and
    data files as they are now, before any stage reads them (see `check_inputs_unchanged`)."""
    m, s = job.model, job.spec
    job.inputs_digest = {k: file_digest(p) if p else None for k, p in data_files(m)}
    doc = {
        **job.inputs_digest,
        "model_options": {"input_shape": m.input_shape, "model_class": m.model_class, "model_args": m.model_args,
                          "signature": m.signature, "trust_pickle": m.trust_pickle, "trust_code": m.trust_code,
                          "trust_types": m.trust_types, "label_column": m.label_column,
                          # only when set, so existing builds keep their cache keys
                          **{k: v for k, v in (("output_kinds", m.output_kinds), ("batch_axis", m.batch_axis))
                             if v},
                          **({"text_column": m.text_column, "lengths": m.lengths} if m.tokenizer else {})},
        "target": {k: v for k, v in vars(s).items()
                   if not (k == "keep_float" and v is None) and not (k == "devices" and not v)},
        "output": job.output,
        "versions": library_versions(job.extra, job.spec.target),
    }
    if set(WEB_ARCHES) & set(s.arches):  # only then, so other builds keep their cache keys
        from edgekit.validators.web.provision import recipe_version

        doc["web_runtime"] = recipe_version()
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------- lock
class OutputLock:
    """An flock beside the output folder: one build per output folder at a time."""

    def __init__(self, out: Path):
        self.path = out.parent / f".{out.name}.lock"
        self.fh = None

    def __enter__(self):
        self.fh = open_lock_file(self.path)
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another process"
            self.fh.close()
            raise BadInput(f"{self.path.parent / self.path.name[1:-5]}: another edgekit build is writing this "
                           f"output folder ({holder}).", hint="wait for it to finish, or use another --out") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()}")
        self.fh.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


_OUT_HINT = "choose a folder of its own for the outputs: [build] out in the config or --out (e.g. build/edgekit)"


def config_paths(cfg: BuildConfig) -> list[tuple[str, Path]]:
    """What an output folder must never be or contain: the config's folder and every file it names."""
    paths = [("the config's folder", cfg.path.parent)]
    for m in cfg.models:
        paths += [(f"the {k} of model '{m.name}'", p) for k, p in data_files(m) if p is not None]
    return paths


def check_out_dir(out: Path, protected: list[tuple[str, Path]] = ()) -> Path:
    """Check `out` before any work and return it as an absolute path (symbolic links not
    resolved). edgekit replaces its output folder whole, so `out` must be a real folder (not a
    link), must not be or contain the current folder or any `protected` path, and must be a
    folder edgekit created (its marker file) or an empty one (adopted)."""
    out = Path(os.path.abspath(out))
    if out.is_symlink():
        raise BadInput(f"{out}: the output folder is a symbolic link; edgekit does not write through links.",
                       hint=_OUT_HINT)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: the output folder is a file.", hint="choose another --out")
    real = Path(os.path.realpath(out.parent)) / out.name
    for what, p in [("the current folder", Path.cwd()), *protected]:
        rp = Path(os.path.realpath(p))
        if rp == real or rp.is_relative_to(real):
            raise BadInput(f"{out}: the output folder {'is' if rp == real else 'contains'} {what} ({p}); edgekit "
                           "replaces its output folder whole, so building there would delete it.", hint=_OUT_HINT)
    parent = out.parent
    if not parent.exists():
        parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK | os.X_OK)):
        raise BadInput(f"{out}: the output folder is not writable.", hint="choose another --out")
    if out.is_dir() and not _edgekit_owns(out):
        raise BadInput(f"{out}: this folder exists and was not created by edgekit (it has no {MARKER} file). "
                       "edgekit replaces its output folder whole, so it will not build over a folder that may "
                       "hold your work.", hint=f"{_OUT_HINT}; or empty this folder first (an empty folder is used)")
    return out


def _edgekit_owns(out: Path) -> bool:
    """edgekit's marker is there, or the folder is empty, or (an output folder written before
    the marker existed) it holds nothing but a manifest of edgekit's, its artifacts and reports."""
    if is_plain_file(out / MARKER):
        return True
    names = set(os.listdir(out))
    if not names:
        return True
    if MANIFEST not in names:
        return False
    try:
        doc = read_manifest(out)
    except BadInput:
        return False
    return doc.get("tool") == "edgekit" and names <= {*RESERVED_NAMES, *(a["file"] for a in doc["artifacts"])}


def remove_stale_staging(out: Path) -> None:
    """Remove what a killed build left beside `out` (run under the lock). A link of that name is
    removed, never followed, so the next staging folder is always a new folder of edgekit's."""
    for stale in out.parent.glob(f".{out.name}.staging-*"):
        if stale.is_symlink() or not stale.is_dir():
            stale.unlink(missing_ok=True)
        else:
            shutil.rmtree(stale, ignore_errors=True)


def write_marker(folder: Path) -> None:
    write_text_atomic(folder / MARKER, json.dumps({
        "tool": "edgekit", "edgekit_version": __version__,
        "note": "created by edgekit: each build replaces this folder whole; do not keep other files here"}) + "\n")


def plain_name(name) -> bool:
    """A file name edgekit may create or reuse inside its output folder: no folders, no
    hidden or reserved names, nothing that leaves the folder."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name
            and not name.startswith(".") and name not in RESERVED_NAMES)


def _valid_entry(a, artifact: bool) -> bool:
    """The old manifest is untrusted input: keep only entries with the fields edgekit relies on."""
    if not isinstance(a, dict) or not isinstance(a.get("id"), str) or not isinstance(a.get("cache_key"), str):
        return False
    if not artifact:
        return isinstance(a.get("error"), dict)
    if not (plain_name(a.get("file")) and isinstance(a.get("sha256"), str) and isinstance(a.get("precision"), str)
            and isinstance(a.get("size_bytes", 0), int) and not isinstance(a.get("size_bytes"), bool)
            and all(isinstance(a.get(k) or {}, dict) for k in ("parity", "latency"))):
        return False
    # a cached entry is copied into the new manifest and rendered in the reports: it must render
    from edgekit.report import build_row, failure_line

    try:
        rec = build_row({"id": a["id"], "status": "cached", "manifest": a})
        float(rec["latency"]["median_ms"]) if rec["latency"] else None
        for parity in (a.get("parity") or {}).values():
            if parity is not None and not parity["passed"]:
                failure_line(parity)
    except Exception:  # any shape the reports cannot use: the entry is dropped and the job rebuilt
        return False
    return True


def read_manifest(out: Path) -> dict:
    """The manifest of an output folder, with every entry that is not well-formed dropped."""
    p = out / MANIFEST
    if not is_plain_file(p):
        return {"artifacts": [], "failures": []}
    try:
        doc = json.loads(p.read_text())
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise BadInput(f"{p}: the manifest is not valid JSON; it was edited or damaged.",
                       hint="delete the output folder and build again")
    for key, artifact in (("artifacts", True), ("failures", False)):
        entries = doc.get(key)
        doc[key] = [a for a in entries if _valid_entry(a, artifact)] if isinstance(entries, list) else []
    return doc


def reusable(out: Path, entry: dict) -> bool:
    """An old manifest entry whose file is a plain file in `out` with the recorded sha256."""
    p = out / entry["file"]
    return (is_plain_file(p) or _plain_folder(p)) and file_digest(p) == entry["sha256"]


def _plain_folder(path: Path) -> bool:
    """A folder artifact (a TF.js model) of plain files only, no links: what a rebuild may reuse."""
    return path.is_dir() and not path.is_symlink() and all(is_plain_file(f) for f in path.iterdir())


# ----------------------------------------------------------------------------- run one job
def job_request(job: Job, folder: Path, length: int | None = None):
    """The job's request and its tokenizer record (None without one): a model with a tokenizer
    has its CSVs of texts tokenized into `folder` (at `length` tokens, if given) first."""
    req = job.request()
    if job.model.tokenizer is None:
        return req, None
    from edgekit.text import tokenized_request

    folder.mkdir(exist_ok=True)
    return tokenized_request(req, job.model.tokenizer, job.model.text_column, folder, length)


def run_job(job: Job, staging: Path, *, timeout: float, verbose: bool, on_progress) -> dict:
    """Convert, check parity, and time one job (each stage in its own child process). A model
    with `lengths` is converted and checked at the longest, then checked and timed at each."""
    from edgekit import isolation
    from edgekit.text import relabel

    s = job.spec
    staged = staging / job.output
    text_dir = staging / f".{job.output}.text"
    lengths = job.model.lengths or [None]
    t0 = time.perf_counter()
    req, text = job_request(job, text_dir, lengths[-1])
    on_progress("converting")
    conv = isolation.run("convert", "edgekit.pipeline:convert_stage", req, s.target, s.quantize,
                         str(staged), validate=True, options={"int8_io": s.int8_io, "keep_float": s.keep_float},
                         timeout=timeout, verbose=verbose, on_progress=on_progress)
    if text:
        conv["parity"] = relabel(conv["parity"], req.inputs, text)
    t1 = time.perf_counter()
    # where a job's time goes (BENCHMARKS.md, cold demo): the convert stage's child process
    # start, framework import + source load, conversion, parity; then host timing and arm64
    load = conv.get("load_seconds", 0.0)
    stages = {"spawn": (t1 - t0) - conv["total_seconds"], "import_load": load, "convert": conv["convert_seconds"],
              "parity": conv["total_seconds"] - conv["convert_seconds"] - load}
    entry = {"parity": {"host": conv["parity"]}, "latency": {}, "conversion": conv, "stage_seconds": stages}
    if text:
        entry["tokenizer"] = text
    if conv["parity"]["passed"]:
        on_progress("timing on the host")
        entry["latency"]["host"] = host_latency(job, staged, req, lengths[-1], timeout=timeout, verbose=verbose,
                                                on_progress=on_progress)
        if text:
            entry["latency"]["host"] = relabel(entry["latency"]["host"], req.inputs, text)
        if lengths[0] is not None:
            entry["lengths"] = {str(lengths[-1]): {"parity": conv["parity"], "latency": entry["latency"]["host"]}}
            for n in lengths[:-1]:
                entry["lengths"][str(n)] = length_check(job, staged, conv["precision"], text_dir, n,
                                                        timeout=timeout, verbose=verbose, on_progress=on_progress)
        t2 = time.perf_counter()
        stages["host_latency"] = t2 - t1
        if "arm64" in s.arches:
            entry.update(arm_check(job, staged, conv["precision"], req, timeout=timeout, verbose=verbose,
                                   on_progress=on_progress))
            stages["arm64"] = time.perf_counter() - t2
        web = tuple(a for a in s.arches if a in WEB_ARCHES)
        if web:
            t3 = time.perf_counter()
            entry.update(web_check(job, staged, conv["precision"], web, req, timeout=timeout, verbose=verbose,
                                   on_progress=on_progress))
            stages["web"] = time.perf_counter() - t3
        for dev in job.devices:
            t3 = time.perf_counter()
            res = device_check(job, dev, staged, conv["precision"], req, timeout=timeout, verbose=verbose,
                               on_progress=on_progress)
            entry["parity"][f"ssh://{dev.name}"] = res["parity"]
            entry["latency"][f"ssh://{dev.name}"] = res["device"]  # measured there; never mixed with arm64's
            stages[f"ssh://{dev.name}"] = time.perf_counter() - t3
    if "parity_arm64" in entry:
        entry["parity"]["arm64"] = entry.pop("parity_arm64")
        entry["latency"]["arm64"] = entry.pop("latency_arm64")
    for key, (parity, latency) in entry.pop("web_results", {}).items():
        entry["parity"][key] = parity
        entry["latency"][key] = latency
    check_inputs_unchanged(job)
    entry["build_seconds"] = time.perf_counter() - t0
    return entry


def length_check(job: Job, artifact: Path, precision: str, text_dir: Path, length: int, *, timeout: float,
                 verbose: bool, on_progress) -> dict:
    """Parity and batch-1 latency of a dynamic-length artifact on the texts tokenized at `length`
    tokens (short reports padded, long ones truncated)."""
    from edgekit import isolation
    from edgekit.text import relabel

    req, text = job_request(job, text_dir, length)
    on_progress(f"checking at {length} tokens")
    res = isolation.run("validate", "edgekit.pipeline:validate_stage", req, str(artifact), precision=precision,
                        timeout=timeout, verbose=verbose, on_progress=on_progress, crash_exit_code=2)
    out = {"parity": res["parity"]}
    if res["parity"]["passed"]:
        out["latency"] = host_latency(job, artifact, req, length, timeout=timeout, verbose=verbose,
                                      on_progress=on_progress)
    return relabel(out, req.inputs, text)


def host_latency(job: Job, artifact: Path, req=None, length: int | None = None, *, timeout: float, verbose: bool,
                 on_progress) -> dict:
    """Batch-1 latency of the artifact on the host: on seeded random inputs, or, when those
    cannot stand in (an artifact with dynamic non-batch axes, as a TorchScript source given an
    input_shape yields), on the request's `inputs` samples. A model with `lengths` is timed on
    its texts tokenized at `length` tokens (a dynamic axis has no size of its own)."""
    from edgekit import isolation

    req = req or job.request()

    def run(inputs):
        return isolation.run("bench", "edgekit.validators.latency:measure", str(artifact),
                             trust=req.trust, threads=None, warmup=10, iterations=100, inputs=inputs,
                             timeout=timeout, verbose=verbose, on_progress=on_progress)

    if length is not None:
        return {**run(req.inputs), "sequence_length": length}  # edgekit.text.relabel names the data
    try:
        return run(None)
    except BadInput:
        if req.inputs is None:
            raise
        return run(req.inputs)


def check_inputs_unchanged(job: Job) -> None:
    """Fail the job if its source or data files changed while its stages ran: the manifest
    records the hashes taken before the stages read them, which must be what was converted."""
    m = job.model
    for key, p in data_files(m):
        if p is not None and file_digest(p) != job.inputs_digest.get(key):
            raise BadInput(f"{p}: the {key} file of model '{m.name}' changed while it was being built; the "
                           "artifact is not published (it may not match either version).",
                           hint="build again once the file is no longer being written")


def arm_check(job: Job, artifact: Path, precision: str, req=None, *, timeout: float, verbose: bool,
              on_progress) -> dict:
    """Parity, emulated latency and instructions per inference on arm64 (QEMU); `req` is the
    job's request with its texts tokenized (job_request), if it has a tokenizer."""
    from edgekit import isolation

    on_progress("checking on emulated arm64")
    out = isolation.run("validate", "edgekit.pipeline:validate_stage", req or job.request(), str(artifact),
                        arches=("arm64",), precision=precision, timeout=timeout, verbose=verbose,
                        on_progress=on_progress, crash_exit_code=2)
    res = out["results"][0]
    return {"parity_arm64": res["parity"], "latency_arm64": res.get("arm"),
            "arm_instructions": (res.get("arm") or {}).get("instructions_per_inference")}


def device_check(job: Job, dev, artifact: Path, precision: str, req=None, *, timeout: float, verbose: bool,
                 on_progress) -> dict:
    """Parity and measured latency on a real board over SSH; the device folder is removed here
    (this process), whatever happens to the stage."""
    from edgekit import isolation
    from edgekit.validators.device.ssh import device_folder

    on_progress(f"checking on {dev.name}")
    with device_folder(dev) as folder:
        return isolation.run("validate", "edgekit.validators.device.stages:validate_stage", req or job.request(),
                             str(artifact), dev, folder, precision=precision, timeout=timeout, verbose=verbose,
                             on_progress=on_progress, crash_exit_code=2)


def web_check(job: Job, artifact: Path, precision: str, arches: tuple, req=None, *, timeout: float, verbose: bool,
              on_progress) -> dict:
    """Parity and in-page latency in the browser / Node.js, one result per JS runtime, keyed
    'arch:runtime' (browser:onnxruntime-web, node:onnxruntime-web, and TF.js's wasm and cpu runtimes)."""
    from edgekit import isolation

    on_progress(f"checking in {' + '.join(arches)}")
    out = isolation.run("validate", "edgekit.pipeline:validate_stage", req or job.request(), str(artifact),
                        arches=arches, precision=precision, timeout=timeout, verbose=verbose,
                        on_progress=on_progress, crash_exit_code=2)
    return {"web_results": {f"{r['arch']}:{r['runtime']}": (r["parity"], r.get("web")) for r in out["results"]}}


def verdict(job: Job, entry: dict) -> list[str]:
    """Every check that failed for a job, as readable lines (empty = passed)."""
    problems = []
    for arch, parity in entry.get("parity", {}).items():
        if not parity["passed"]:
            from edgekit.report import failure_line

            problems.append(f"parity on {arch}: {failure_line(parity)}")
    for n, at in (entry.get("lengths") or {}).items():
        if not at["parity"]["passed"]:
            from edgekit.report import failure_line

            problems.append(f"parity at {n} tokens: {failure_line(at['parity'])}")
    lat = entry.get("latency", {}).get("host")
    if job.spec.max_latency_ms is not None and lat and lat["median_ms"] > job.spec.max_latency_ms:
        problems.append(f"latency on host: median {lat['median_ms']:.3f} ms > budget {job.spec.max_latency_ms:g} ms")
    insns = entry.get("arm_instructions")
    if job.spec.max_arm_instructions is not None and insns and insns > job.spec.max_arm_instructions:
        problems.append(f"arm64: {insns:,.0f} instructions/inference > budget {job.spec.max_arm_instructions:,.0f}")
    return problems


def unmet_expectation(job: Job) -> list[str]:
    """A job configured with expect = "refused" that converted and passed its checks fails
    (one that failed a check reports that check instead)."""
    if job.spec.expect == "refused":
        return [f"expected edgekit to refuse this conversion (expect = \"refused\" in the config), but it was "
                f"built and passed its checks: remove 'expect' from the target to publish it"]
    return []


def manifest_entry(job: Job, entry: dict, out_file: Path) -> dict:
    from edgekit.validators.latency import file_size  # a folder artifact (tfjs): all its files

    conv = entry["conversion"]
    sig = conv.get("signature") or conv["source_signature"]
    return {
        "id": job.id, "model": job.model.name, "file": job.output, "sha256": file_digest(out_file),
        "semantic_sha256": semantic_digest(out_file),
        "size_bytes": file_size(out_file), "target": job.spec.target, "precision": conv["precision"],
        "quantize": job.spec.quantize, "inputs": sig["inputs"], "outputs": sig["outputs"],
        "labels": job.model.labels, "parity": entry["parity"],
        "latency": entry["latency"], "arm_instructions_per_inference": entry.get("arm_instructions"),
        "notes": conv.get("notes", []),
        **({"keep_float": (conv.get("details") or {}).get("keep_float", {}).get("nodes", [])}
           if job.spec.keep_float else {}),
        # what turns text into the inputs (an app reproduces the ids with it), and the per-length checks
        **({"tokenizer": entry["tokenizer"]} if entry.get("tokenizer") else {}),
        **({"lengths": entry["lengths"]} if entry.get("lengths") else {}),
        "source": {"path": str(job.model.source), "sha256": job.inputs_digest["source"],
                   "format": conv["source_format"]},
        "converter": conv["converter"], "versions": library_versions(job.extra, job.spec.target),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": entry["build_seconds"], "stage_seconds": entry.get("stage_seconds"), "cache_key": job.key,
    }


# ----------------------------------------------------------------------------- build
@dataclass
class BuildResult:
    out: Path
    manifest: dict
    rows: list[dict]  # one per planned job: {"job", "status": built|cached|failed, "entry"|"error"}
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r["status"] != "failed" for r in self.rows)


def build(cfg: BuildConfig, jobs: list[Job], *, workers: int, force: bool = False, verbose: bool = False,
          ui_progress=None) -> BuildResult:
    """Run what changed, publish atomically, write manifest and reports."""
    from edgekit import isolation

    out = check_out_dir(cfg.out, config_paths(cfg))
    isolation.memory_limit_mb()  # a bad EDGEKIT_MEMORY_MB is a usage error, not one failure per job
    t0 = time.perf_counter()
    with OutputLock(out):
        remove_stale_staging(out)
        check_out_dir(out, config_paths(cfg))  # again, now that no other build can change it
        old = read_manifest(out)
        old_by_id = {a["id"]: a for a in old.get("artifacts", [])}
        old_fail = {f["id"]: f for f in old.get("failures", [])}
        old_refused = {f["id"]: f for f in old.get("expected_refusals", [])}
        rows: list[dict] = []
        todo: list[Job] = []
        for job in jobs:
            job.key = cache_key(job)
            prev = old_by_id.get(job.id)
            if not force and prev and prev["cache_key"] == job.key and prev["file"] == job.output \
                    and reusable(out, prev):
                rows.append({"job": job, "status": "cached", "manifest": prev})
            elif not force and job.id in old_fail and old_fail[job.id]["cache_key"] == job.key \
                    and old_fail[job.id]["error"].get("exit_code") in DETERMINISTIC_EXITS:
                rows.append({"job": job, "status": "failed", "error": old_fail[job.id]["error"], "cached": True})
            elif not force and job.id in old_refused and old_refused[job.id]["cache_key"] == job.key:
                rows.append({"job": job, "status": "refused", "error": old_refused[job.id]["error"], "cached": True})
            else:
                todo.append(job)
        if not todo:
            for r in rows:
                r["id"] = r["job"].id
            return BuildResult(out, old, rows, time.perf_counter() - t0)

        staging = out.parent / f".{out.name}.staging-{os.getpid()}"
        staging.mkdir()  # never an existing folder or link: remove_stale_staging cleared the name
        work = staging / ".work"
        work.mkdir()
        try:
            todo = longest_first(todo, old_by_id)
            results = _parallel(todo, lambda job, cb: run_job(job, work, timeout=cfg.timeout, verbose=verbose,
                                                                on_progress=cb), workers, ui_progress)
            tree = staging / "tree"
            tree.mkdir()
            artifacts, failures, refused = [], [], []
            planned_ids = {j.id for j in jobs}
            for row in rows:
                if row["status"] == "cached":
                    link_or_copy(out / row["manifest"]["file"], tree / row["manifest"]["file"])
                    artifacts.append(row["manifest"])
                elif row["status"] == "refused":
                    refused.append(old_refused[row["job"].id])
                else:
                    failures.append(old_fail[row["job"].id])
            # artifacts of jobs not planned this time (--only, --shard) stay as they were, if
            # they are still configured and their files are intact
            configured = {f"{m.name}/{s.target}-{s.precision}" for m in cfg.models for s in m.targets}
            taken = {j.output for j in jobs}
            for a in old.get("artifacts", []):
                if a["id"] not in planned_ids and a["id"] in configured and a["file"] not in taken \
                        and reusable(out, a):
                    link_or_copy(out / a["file"], tree / a["file"])
                    taken.add(a["file"])
                    artifacts.append(a)
            for res in results:  # a full disk is not the job's fault: stop, publish nothing, cache nothing
                if isinstance(res, EdgekitError) and is_no_space(res):
                    raise res
            for job, res in zip(todo, results):
                if isinstance(res, EdgekitError):
                    err = {**res.to_dict(), "stage": "convert"}
                    if job.spec.expect == "refused" and isinstance(res, ConversionFailed):
                        refused.append({"id": job.id, "cache_key": job.key, "error": err})
                        rows.append({"job": job, "status": "refused", "error": err})
                        continue
                    failures.append({"id": job.id, "cache_key": job.key, "error": err})
                    rows.append({"job": job, "status": "failed", "error": err})
                    continue
                problems = verdict(job, res) or unmet_expectation(job)
                if problems:
                    err = {"type": "CheckFailed", "message": "; ".join(problems), "exit_code": 1, "stage": "check"}
                    failures.append({"id": job.id, "cache_key": job.key, "error": err, "parity": res["parity"],
                                     "latency": res["latency"]})
                    rows.append({"job": job, "status": "failed", "error": err, "entry": res})
                    continue
                os.replace(work / job.output, tree / job.output)
                entry = manifest_entry(job, res, tree / job.output)
                artifacts.append(entry)
                rows.append({"job": job, "status": "built", "manifest": entry})
            order = {j.id: k for k, j in enumerate(jobs)}
            rows.sort(key=lambda r: order[r["job"].id])
            for r in rows:
                r["id"] = r["job"].id
            artifacts.sort(key=lambda a: (order.get(a["id"], 1 << 30), a["id"]))
            manifest = {
                "schema_version": MANIFEST_SCHEMA, "tool": "edgekit", "edgekit_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config": str(cfg.path),
                "artifacts": artifacts, "failures": failures, "expected_refusals": refused,
            }
            result = BuildResult(out, manifest, rows, time.perf_counter() - t0)
            from edgekit.report import write_build_reports

            write_build_reports(tree, result)
            write_marker(tree)
            write_text_atomic(tree / MANIFEST, json.dumps(manifest, indent=2, default=str))  # last
            replace_dir(tree, out)
            return result
        except BaseException:
            isolation.kill_all()
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# relative cost of a job by converter extra and target when no earlier build timed it (from
# the demo's cold build: torch -> ExecuTorch/TFLite lowering dominates, scikit-learn is quick)
_COST = {("torch", "executorch"): 6.0, ("torch", "tflite"): 4.0, ("torch", "torchscript"): 2.0,
         ("torch", "onnx"): 2.0, ("tf", "tflite"): 1.0, ("tf", "onnx"): 1.0}


def estimated_seconds(job: Job, previous: dict | None = None) -> float:
    """How long a job should take: its last build's time if the manifest has one, else a guess
    from its path, source size, precision and arches."""
    if previous and previous.get("build_seconds"):
        return float(previous["build_seconds"])
    cost = _COST.get((job.extra, job.spec.target), 0.5) * 5.0
    size_mb = job.model.source.stat().st_size / 1e6 if job.model.source.is_file() else 1.0
    cost *= 1.0 + min(size_mb, 50.0) / 10.0  # a 14 MB network converts slower than a 50 KB one
    if job.spec.quantize != "none":
        cost *= 1.3  # calibration and the latency comparison with fp32
    if "arm64" in job.spec.arches:
        cost += 3.0
    return cost


def longest_first(jobs: list[Job], previous: dict) -> list[Job]:
    """Start the slowest jobs first, so that the quick ones fill the workers at the end instead
    of one slow job running alone after everything else (the output order is unchanged)."""
    return sorted(jobs, key=lambda j: -estimated_seconds(j, previous.get(j.id)))


def _parallel(items: list, work, workers: int, ui_progress) -> list:
    """Run `work(item, on_progress)` for every item on a thread pool (each stage it starts is
    its own child process). An EdgekitError becomes that item's result; an interrupt stops
    every running stage and propagates."""
    def one(item):
        job = item[0] if isinstance(item, tuple) else item
        cb = ui_progress.start(job) if ui_progress else (lambda msg: None)
        try:
            res = work(item, cb)
        except EdgekitError as exc:
            if ui_progress:
                ui_progress.fail(job, exc)
            return exc
        if ui_progress:
            ui_progress.finish(job, res, verdict(job, res) or unmet_expectation(job))
        return res

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(one, item) for item in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            from edgekit import isolation

            isolation.kill_all()
            raise


# ----------------------------------------------------------------------------- check
def check(cfg: BuildConfig, jobs: list[Job], *, workers: int, verbose: bool = False, ui_progress=None) -> BuildResult:
    """CI gate: rebuild nothing; every artifact must exist, match the manifest's hash and the
    current cache key, and pass its parity checks again."""
    from edgekit import isolation

    t0 = time.perf_counter()
    out = cfg.out
    isolation.memory_limit_mb()
    manifest = read_manifest(out)
    by_id = {a["id"]: a for a in manifest.get("artifacts", [])}
    refused = {f["id"]: f for f in manifest.get("expected_refusals", [])}
    rows, to_validate = [], []
    for job in jobs:
        job.key = cache_key(job)
        entry = by_id.get(job.id)
        problem = None
        if job.spec.expect == "refused" and entry is None and job.id in refused:
            if refused[job.id]["cache_key"] == job.key:
                rows.append({"job": job, "status": "refused", "error": refused[job.id]["error"]})
                continue
            problem = "stale: the source, data, options or library versions changed since the build"
        elif entry is None:
            problem = "not built (no entry in the manifest)"
        elif not (is_plain_file(out / entry["file"]) or _plain_folder(out / entry["file"])):
            problem = f"{entry['file']} is missing"
        elif file_digest(out / entry["file"]) != entry["sha256"]:
            problem = f"{entry['file']} does not match the sha256 in the manifest (altered after the build)"
        elif entry["cache_key"] != job.key:
            problem = "stale: the source, data, options or library versions changed since the build"
        if problem:
            rows.append({"job": job, "status": "failed", "error": {"type": "CheckFailed", "message": problem,
                                                                   "stage": "check", "exit_code": 1}})
        else:
            to_validate.append((job, entry))

    def revalidate(item, cb):
        job, entry = item
        with tempfile.TemporaryDirectory(prefix="edgekit-text-") as tmp:
            lengths = job.model.lengths or [None]
            req, _ = job_request(job, Path(tmp), lengths[-1])
            res = isolation.run("validate", "edgekit.pipeline:validate_stage", req, str(out / entry["file"]),
                                precision=entry["precision"], timeout=cfg.timeout, verbose=verbose, on_progress=cb,
                                crash_exit_code=2)
            checked = {"parity": {"host": res["parity"]}, "latency": entry.get("latency", {}),
                       "arm_instructions": entry.get("arm_instructions_per_inference")}
            for n in lengths[:-1]:  # a dynamic-length artifact: every length again (parity only)
                at, _ = job_request(job, Path(tmp), n)
                checked.setdefault("lengths", {})[str(n)] = {"parity": isolation.run(
                    "validate", "edgekit.pipeline:validate_stage", at, str(out / entry["file"]),
                    precision=entry["precision"], timeout=cfg.timeout, verbose=verbose, on_progress=cb,
                    crash_exit_code=2)["parity"]}
            if "arm64" in job.spec.arches:
                arm = arm_check(job, out / entry["file"], entry["precision"], req, timeout=cfg.timeout,
                                verbose=verbose, on_progress=cb)
                checked["parity"]["arm64"] = arm["parity_arm64"]
                checked["arm_instructions"] = arm["arm_instructions"]
            web = tuple(a for a in job.spec.arches if a in WEB_ARCHES)
            if web:
                for key, (parity, _lat) in web_check(job, out / entry["file"], entry["precision"], web, req,
                                                     timeout=cfg.timeout, verbose=verbose,
                                                     on_progress=cb)["web_results"].items():
                    checked["parity"][key] = parity
        return checked

    results = _parallel(to_validate, revalidate, workers, ui_progress)
    for (job, entry), res in zip(to_validate, results):
        if isinstance(res, EdgekitError):
            rows.append({"job": job, "status": "failed", "error": {**res.to_dict(), "stage": "validate"}})
            continue
        problems = verdict(job, res)
        merged = {**entry, "parity": res["parity"], "arm_instructions_per_inference": res.get("arm_instructions")}
        if problems:
            rows.append({"job": job, "status": "failed", "manifest": merged,
                         "error": {"type": "CheckFailed", "message": "; ".join(problems), "stage": "check",
                                   "exit_code": 1}, "entry": res})
        else:
            rows.append({"job": job, "status": "checked", "manifest": merged})
    order = {j.id: k for k, j in enumerate(jobs)}
    rows.sort(key=lambda r: order[r["job"].id])
    for r in rows:
        r["id"] = r["job"].id
    return BuildResult(out, manifest, rows, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- merge
def merge(out: Path, shard_dirs: list[Path]) -> dict:
    """Join the outputs of `--shard` builds into one folder with one manifest and reports."""
    out = check_out_dir(out, [(f"the shard folder {d}", d) for d in shard_dirs])
    with OutputLock(out):
        remove_stale_staging(out)
        staging = out.parent / f".{out.name}.staging-{os.getpid()}"
        staging.mkdir()
        tree = staging / "tree"
        tree.mkdir()
        try:
            artifacts, failures, seen, names = [], [], {}, set()
            for d in shard_dirs:
                man = read_manifest(d)
                if not (d / MANIFEST).is_file():
                    raise BadInput(f"{d}: no {MANIFEST}: not the output folder of an edgekit build.")
                for a in man["artifacts"]:
                    if a["id"] in seen:
                        raise BadInput(f"{a['id']} is in both {seen[a['id']]} and {d}: the shards overlap.")
                    seen[a["id"]] = d
                    src = d / a["file"]
                    if a["file"] in names or not reusable(d, a):
                        raise CheckFailed(f"{src}: missing, not a plain file, listed twice or not matching the "
                                          f"sha256 in {d / MANIFEST}.")
                    link_or_copy(src, tree / a["file"])
                    names.add(a["file"])
                    artifacts.append(a)
                failures += man.get("failures", [])
            manifest = {"schema_version": MANIFEST_SCHEMA, "tool": "edgekit", "edgekit_version": __version__,
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "merged_from": [str(d) for d in shard_dirs],
                        "artifacts": sorted(artifacts, key=lambda a: a["id"]), "failures": failures}
            from edgekit.report import write_build_reports

            rows = [{"id": a["id"], "status": "built", "manifest": a} for a in manifest["artifacts"]] + \
                   [{"id": f["id"], "status": "failed", "error": f["error"]} for f in failures]
            write_build_reports(tree, BuildResult(out, manifest, rows, 0.0))
            write_marker(tree)
            write_text_atomic(tree / MANIFEST, json.dumps(manifest, indent=2, default=str))
            replace_dir(tree, out)
            return manifest
        finally:
            shutil.rmtree(staging, ignore_errors=True)
