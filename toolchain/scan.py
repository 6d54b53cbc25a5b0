"""Content scans that decide, before any framework reads a file, whether loading it could
run code: torch.export archives (.pt2) member by member, and TensorFlow graphs op by op.

The same functions back the loader's policy (`edgekit.loading.check_policy`) and
`edgekit inspect --security`, so what inspect reports is what the loader enforces. Nothing
here imports torch or tensorflow at module level; the .pt2 scan needs neither.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import BadInput, UnsafeModel
from edgekit.formats import ZIP_READ_ERRORS, check_zip_limits, pickle_globals, read_member

MAX_MEMBER_BYTES = 256 * 1024 * 1024  # JSON / pickle members read for scanning


@dataclass(frozen=True)
class Finding:
    """One thing in a file that would run code when loaded, and the flag that allows it."""

    member: str  # archive member or graph location
    what: str  # what the framework would do with it
    needs: str  # "pickle" (--trust-pickle) or "code" (--trust-code)

    def allowed(self, trust) -> bool:
        return bool(trust.pickle if self.needs == "pickle" else trust.code)

    def __str__(self) -> str:
        return f"{self.member}: {self.what}"


def refuse(path, findings: list[Finding], trust, alternative: str) -> list[Finding]:
    """Raise UnsafeModel naming every finding the trust flags do not cover; return the rest."""
    refused = [f for f in findings if not f.allowed(trust)]
    if refused:
        flags = sorted({f"--trust-{f.needs}" for f in refused})
        shown = "; ".join(str(f) for f in refused[:5]) + (f" (and {len(refused) - 5} more)" if len(refused) > 5 else "")
        raise UnsafeModel(f"{path}: loading it would run code: {shown}. edgekit refuses it by default.",
                          hint=f"{alternative}; or, if you trust the file's origin, pass {' '.join(flags)}")
    return findings


# ---------------------------------------------------------------------------------------
# torch.export archives
# ---------------------------------------------------------------------------------------

# What torch's weights-only unpickler needs for tensors, tuples and dicts of tensors.
SAFE_TENSOR_GLOBALS = {
    "collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter",
    "torch._utils _rebuild_tensor", "torch.storage UntypedStorage", "torch.storage TypedStorage",
    "torch._utils _rebuild_parameter_with_state", "torch._tensor _rebuild_from_type_v2",
    "torch Size", "torch device", "builtins set", "builtins frozenset",
} | {f"torch {t}Storage" for t in ("Float", "Double", "Half", "Long", "Int", "Short", "Char", "Byte", "Bool",
                                     "BFloat16", "ComplexFloat", "ComplexDouble")} \
  | {f"torch {d}" for d in ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
                             "uint8", "bool", "complex64", "complex128")}

PT2_ALTERNATIVE = ("save the program again with torch.export.save from a model whose weights and constants are "
                   "plain tensors (no pickled objects, no AOTInductor packages)")

# Call targets a deserialized graph may hold. torch resolves any other "torch.<a>.<b>"
# string by getattr (torch.serialization.os.system is reachable that way) and calls it
# when the program runs.
_OP_TARGET = re.compile(r"\Atorch\.ops\.(aten|prims|quantized_decomposed|quantized|higher_order)"
                        r"\.[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?\Z")
_SAFE_TARGETS = {f"_operator.{n}" for n in (
    "getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs", "eq", "ne", "lt",
    "le", "gt", "ge", "and_", "or_", "xor", "not_", "invert", "lshift", "rshift", "matmul")} \
    | {f"math.{n}" for n in ("sqrt", "floor", "ceil", "trunc", "exp", "log", "sin", "cos", "tanh", "isnan", "isinf")} \
    | {f"torch.{n}" for n in ("sym_int", "sym_float", "sym_max", "sym_min", "sym_not", "sym_ite", "sym_sqrt",
                              "sym_sum", "_sym_sqrt", "_assert", "_assert_async", "_check", "_check_is_size",
                              "_assert_scalar", "_assert_tensor_metadata", "_functional_assert_scalar")}
_UNSAFE_ATEN = {"from_file", "save", "_print"}  # ATen ops that read or write files / print

# sympy.sympify evaluates its input as Python: torch parses symbolic shapes (expr_str) with
# it. Only the names torch's own printer (sympy.srepr) writes are let through.
_SYMPY_NAMES = {
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs", "floor", "ceiling",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan",
    "Equality", "Unequality", "And", "Or", "Not", "true", "false", "True", "False", "oo", "zoo", "nan", "Infinity",
    "NegativeInfinity", "NaN", "One", "Zero", "NegativeOne", "Half", "IntInfinity", "NegativeIntInfinity",
    "Piecewise", "ExprCondPair", "BooleanTrue", "BooleanFalse", "Tuple", "integer", "positive", "negative",
    "real", "nonnegative", "nonpositive", "finite", "infinite", "zero", "nonzero", "even", "odd", "rational",
    "commutative", "precision", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt",
    "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat",
    "Identity",
}
_SYMBOL = re.compile(r"\A[a-z]{1,4}\d{1,9}\Z")  # s0, u12, ps3: the symbols torch creates
_SAFE_OPS = {"(", ")", ",", "=", "+", "-", "*", "/", "**", "//", "%", "<", ">", "<=", ">=", "==", "!="}


def unsafe_expression(text: str) -> str | None:
    """Why `text` is not a plain sympy expression of torch's printer (None if it is)."""
    if not isinstance(text, str) or len(text) > 100_000:
        return "not a short string"
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError) as exc:
        return f"does not tokenize ({exc})"
    for tok in tokens:
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.NUMBER):
            continue
        if tok.type == tokenize.NAME and (tok.string in _SYMPY_NAMES or _SYMBOL.match(tok.string)):
            continue
        if tok.type == tokenize.STRING and re.fullmatch(r"'[A-Za-z0-9_.+\-]{0,64}'", tok.string):
            continue
        if tok.type == tokenize.OP and tok.string in _SAFE_OPS:
            continue
        return f"contains {tok.string[:40]!r}"
    return None


def _walk_json(node, visit, key: str = "") -> None:
    if isinstance(node, dict):
        visit(key, node)
        for k, v in node.items():
            _walk_json(v, visit, k)
    elif isinstance(node, list):
        for v in node:
            _walk_json(v, visit, key)


def _target_problem(target: str) -> str | None:
    if not isinstance(target, str):
        return "a non-string call target"
    m = _OP_TARGET.match(target)
    if m:
        op = target.split(".")[3]
        return f"calls {target} (file I/O)" if m.group(1) == "aten" and op in _UNSAFE_ATEN else None
    if target in _SAFE_TARGETS:
        return None
    if target.startswith(("torch", "_operator", "math", "#")):
        return f"calls {target[:120]!r}, which torch resolves to a Python function"
    return None  # torch keeps any other string as a plain name: nothing is called


def _scan_program_json(member: str, data: bytes, findings: list[Finding]) -> None:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadInput(f"{member}: the serialized program is not valid JSON ({str(exc)[:120]}).") from None
    seen: set[str] = set()

    def add(what: str, needs: str = "code") -> None:
        if what not in seen and len(seen) < 50:
            seen.add(what)
            findings.append(Finding(member, what, needs))

    def visit(key: str, node: dict) -> None:
        if "target" in node and "inputs" in node:
            problem = _target_problem(node["target"])
            if problem:
                add(f"graph node {problem}")
        if "expr_str" in node:
            why = unsafe_expression(node["expr_str"])
            if why:
                add(f"symbolic expression {str(node['expr_str'])[:80]!r} {why} (torch evaluates it with "
                    "sympy.sympify, i.e. Python eval)")
        for spec in ("in_spec", "out_spec"):
            text = node.get(spec)
            if isinstance(text, str) and ("__enum__" in text or "default_factory_module" in text):
                add(f"{spec} names a Python module that torch would import")

    try:
        _walk_json(doc, visit)
    except RecursionError:
        raise BadInput(f"{member}: the serialized program is nested too deeply.") from None
    guards = doc.get("guards_code") if isinstance(doc, dict) else None
    if guards:
        # shape guards of the one plain form torch writes for tied dynamic dims (e.g. input_ids and
        # attention_mask sharing a sequence Dim) are data, not code; anything else is refused
        odd = [g for g in guards if not (isinstance(g, str) and _SIZE_GUARD.fullmatch(g))]
        if odd:
            add(f"guards_code ({len(odd)} line(s)) that torch compiles with exec() when the program runs")


_SIZE = r"L\['[A-Za-z_][A-Za-z0-9_]{0,99}'\]\.size\(\)\[\d{1,2}\]"
_SIZE_GUARD = re.compile(rf"{_SIZE} (?:==|!=|<=|>=|<|>) (?:{_SIZE}|\d{{1,12}})")


def _scan_torch_save(member: str, data: bytes, findings: list[Finding], what: str) -> None:
    """A torch.save blob inside the archive: torch would load it with weights_only=False
    (directly, or as the fallback after weights_only=True fails). It passes only if every
    global its pickle imports is one the weights-only unpickler allows."""
    if data[:4] != b"PK\x03\x04":
        findings.append(Finding(member, f"{what}: a raw pickle, which torch would load with weights_only=False",
                                "pickle"))
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            check_zip_limits(Path(member), zf)
            pkl = [i for i in zf.infolist() if i.filename.endswith("data.pkl")]
            if len(pkl) != 1 or pkl[0].file_size > MAX_MEMBER_BYTES:
                raise zipfile.BadZipFile("no single data.pkl")
            imports = pickle_globals(zf.read(pkl[0]))
    except (BadInput, *ZIP_READ_ERRORS) as exc:
        findings.append(Finding(member, f"{what}: not a readable torch.save archive ({exc}); torch would retry "
                                        "with weights_only=False", "pickle"))
        return
    bad = sorted({g for g in imports if g not in SAFE_TENSOR_GLOBALS})
    if bad:
        findings.append(Finding(member, f"{what}: its pickle imports {', '.join(bad[:4])}, which torch would "
                                        "load with weights_only=False", "pickle"))


def _read(zf: zipfile.ZipFile, name: str) -> bytes:
    return read_member(getattr(zf, "filename", None) or "archive", zf, name, MAX_MEMBER_BYTES)


def scan_pt2(source) -> list[Finding]:
    """Everything in a .pt2 archive that torch.export.load would unpickle or evaluate.

    `source` is a path or the archive's bytes. Reads every member itself; imports no torch.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except ZIP_READ_ERRORS as exc:
        raise BadInput(f"{source if not isinstance(source, bytes) else 'archive'}: not a readable .pt2 archive "
                       f"({exc}).") from None
    findings: list[Finding] = []
    with zf:
        check_zip_limits(Path(str(getattr(zf, "filename", "") or "archive")), zf)
        full = zf.namelist()
        tops = {n.split("/", 1)[0] for n in full}
        if len(tops) != 1 or any("/" not in n for n in full):
            raise BadInput(f"{getattr(zf, 'filename', None) or 'archive'}: a .pt2 keeps every member in one top "
                           f"folder; this one has {len(tops)} ({', '.join(sorted(tops)[:3])}), so torch and "
                           "edgekit could read different members.", hint="save the program again with torch.export.save")
        rel = {n.split("/", 1)[1]: n for n in full}
        if "archive_format" not in rel:
            findings.append(Finding("version", "an old (torch 2.7) archive layout that torch reads with "
                                               "weights_only=False", "pickle"))
        models = [r[len("models/"):-len(".json")] for r in rel if r.startswith("models/") and r.endswith(".json")]
        for r, name in rel.items():
            if r.startswith("data/aotinductor/") or r.startswith("data/executorch/") or r.startswith("data/mtia"):
                findings.append(Finding(name, "compiled native code (AOTInductor package) that torch.export.load "
                                              "would load", "code"))
                break
        for r, name in rel.items():
            if r.startswith("models/") and r.endswith(".json"):
                _scan_program_json(name, _read(zf, name), findings)
        for model in models:
            for legacy in (f"data/weights/{model}.pt", f"data/constants/{model}.pt",
                           f"data/sample_inputs/{model}.pt"):
                if legacy in rel:
                    _scan_torch_save(rel[legacy], _read(zf, rel[legacy]), findings,
                                     "sample inputs" if "sample_inputs" in legacy else "legacy weights/constants")
            for kind in ("weights", "constants"):
                cfg_name = f"data/{kind}/{model}_{kind}_config.json"
                if cfg_name not in rel:
                    continue
                try:
                    cfg = json.loads(_read(zf, rel[cfg_name]))
                    entries = cfg["config"].items()
                except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError, RecursionError):
                    raise BadInput(f"{rel[cfg_name]}: not a valid payload config.") from None
                for fqn, meta in entries:
                    if not isinstance(meta, dict):
                        raise BadInput(f"{rel[cfg_name]}: entry '{str(fqn)[:80]}' is not an object.")
                    path_name = str(meta.get("path_name", ""))
                    member = f"{rel[cfg_name].rsplit('/', 1)[0]}/{path_name}"
                    if path_name.startswith("opaque_obj_"):
                        findings.append(Finding(member, f"constant '{fqn}' is an opaque object torch would load "
                                                        "with pickle.loads", "pickle"))
                    elif path_name.startswith("custom_obj_"):
                        findings.append(Finding(member, f"constant '{fqn}' is a TorchScript object torch would "
                                                        "unpickle with its TorchScript loader", "pickle"))
                    elif meta.get("use_pickle") is not False:
                        findings.append(Finding(member, f"{kind[:-1]} '{fqn}' is marked use_pickle: torch would "
                                                        "load it with weights_only=False", "pickle"))
    return findings


def load_pt2(path, trust):
    """torch.export.load, without its unsafe paths: the archive is read once, scanned, and
    then deserialized by torch's own pieces with every pickle loaded weights_only=True.
    Anything the scan flags is refused unless the trust flags cover it (then torch's own
    loader runs, as the user asked)."""
    import torch

    data = Path(path).read_bytes()
    findings = refuse(path, scan_pt2(data), trust, PT2_ALTERNATIVE)
    if findings:  # every finding is covered by the user's flags
        return torch.export.load(io.BytesIO(data))
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _bytes_to_dataclass
    from torch.export.pt2_archive._package import PT2ArchiveReader, _load_constants, _load_state_dict

    def weights_only(name: str):
        try:
            return torch.load(io.BytesIO(reader.read_bytes(name)), weights_only=True, map_location="cpu")
        except Exception as exc:
            raise UnsafeModel(f"{path}: member '{name}' cannot be read by torch's weights-only loader "
                              f"({str(exc).strip().splitlines()[0][:200]}); edgekit does not retry it as a "
                              "full pickle.", hint=f"{PT2_ALTERNATIVE}; or, if you trust the file's origin, "
                                                   "pass --trust-pickle") from None

    with PT2ArchiveReader(io.BytesIO(data)) as reader:
        names = set(reader.get_file_names())
        version = reader.read_string("archive_version")
        if version != "0":
            raise BadInput(f"{path}: archive version {version!r} is not one this torch reads.",
                           hint="save it again with torch.export.save (with the same torch version)")
        if "models/model.json" not in names:
            raise BadInput(f"{path}: the archive holds no program named 'model'.")
        program = _bytes_to_dataclass(schema.ExportedProgram, reader.read_bytes("models/model.json"))
        state = (weights_only("data/weights/model.pt") if "data/weights/model.pt" in names
                 else _load_state_dict(reader, "model"))
        constants = (weights_only("data/constants/model.pt") if "data/constants/model.pt" in names
                     else _load_constants(reader, "model"))
        samples = weights_only("data/sample_inputs/model.pt") if "data/sample_inputs/model.pt" in names else None
    return ExportedProgramDeserializer().deserialize(program, state, constants, samples)


# ---------------------------------------------------------------------------------------
# TensorFlow graphs (SavedModel, GraphDef)
# ---------------------------------------------------------------------------------------

# Ops that read or write files, call Python, start processes or reach outside the graph.
# The list follows what model scanners refuse (ModelScan's unsafe TF ops: ReadFile,
# WriteFile, MergeV2Checkpoints, Save, SaveV2, PyFunc, EagerPyFunc, PyFuncStateless) plus
# their siblings. Save/Restore ops are allowed inside the SavedModel's own saver function
# (every tf.saved_model.save writes one), never in a serving graph.
UNSAFE_TF_OPS = {
    "ReadFile": "reads a file", "WriteFile": "writes a file", "MatchingFiles": "lists files",
    "MergeV2Checkpoints": "moves checkpoint files", "Save": "writes a checkpoint", "SaveV2": "writes a checkpoint",
    "SaveSlices": "writes a checkpoint", "Restore": "reads a checkpoint", "RestoreV2": "reads a checkpoint",
    "RestoreSlice": "reads a checkpoint", "ShardedFilename": "builds checkpoint file names",
    "ShardedFilespec": "builds checkpoint file names", "DeleteFile": "deletes a file",
    "PyFunc": "calls Python", "PyFuncStateless": "calls Python", "EagerPyFunc": "calls Python",
    "ImmutableConst": "maps a file into memory", "DebugIdentity": "writes debug dumps",
    "DebugIdentityV2": "writes debug dumps", "DebugIdentityV3": "writes debug dumps",
    "DebugNanCount": "writes debug dumps", "DebugNumericSummary": "writes debug dumps",
    "DebugNumericSummaryV2": "writes debug dumps", "PrintV2": "writes to a file or stream",
    "Print": "writes to stderr", "WriteAudioSummary": "writes summaries", "WriteGraphSummary": "writes summaries",
    "WriteHistogramSummary": "writes summaries", "WriteImageSummary": "writes summaries",
    "WriteRawProtoSummary": "writes summaries", "WriteScalarSummary": "writes summaries",
    "WriteSummary": "writes summaries", "CreateSummaryFileWriter": "writes summary files",
    "CreateSummaryDbWriter": "writes a database", "FlushSummaryWriter": "writes summaries",
    "FixedLengthRecordReader": "reads files", "FixedLengthRecordReaderV2": "reads files",
    "TextLineReader": "reads files", "TextLineReaderV2": "reads files", "TFRecordReader": "reads files",
    "TFRecordReaderV2": "reads files", "WholeFileReader": "reads files", "WholeFileReaderV2": "reads files",
    "IdentityReader": "reads files", "IdentityReaderV2": "reads files", "LMDBReader": "reads files",
    "FixedLengthRecordDataset": "reads files", "FixedLengthRecordDatasetV2": "reads files",
    "TextLineDataset": "reads files", "TFRecordDataset": "reads files", "TFRecordDatasetV2": "reads files",
    "DatasetToTFRecord": "writes files", "SaveDataset": "writes files", "SaveDatasetV2": "writes files",
    "LoadDataset": "reads files", "SnapshotDataset": "writes files", "SnapshotDatasetV2": "writes files",
    "CacheDatasetV2": "writes cache files", "InitializeTableFromTextFile": "reads a file",
    "InitializeTableFromTextFileV2": "reads a file", "SqlDataset": "opens a database",
    "ExperimentalSqlDataset": "opens a database", "LoadAndRemapMatrix": "reads a checkpoint",
    "GenerateVocabRemapping": "reads files", "DecodeProtoV2": "loads protobuf descriptors from files",
    "EncodeProto": "loads protobuf descriptors from files", "DecodeProto": "loads protobuf descriptors from files",
    "RemoteCall": "calls another device or host", "RpcCall": "calls a remote server", "Rpc": "calls a remote server",
    "TryRpc": "calls a remote server", "RpcClient": "connects to a remote server",
}


CHECKPOINT_OPS = {"Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
                  "ShardedFilename", "ShardedFilespec"}


def _called(nodes) -> set[str]:
    return {attr.func.name for node in nodes for attr in node.attr.values() if attr.HasField("func")}


def _closure(roots: set[str], by_name: dict) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        fn = stack.pop()
        if fn in seen or fn not in by_name:
            continue
        seen.add(fn)
        stack.extend(_called(by_name[fn].node_def))
    return seen


def _saver_parts(meta_graph) -> tuple[set[str], set[str]]:
    """The saver's graph nodes (its name scope) and the functions only the saver calls.

    tf.saved_model.save writes a saver: nodes named in saver_def (StatefulPartitionedCall_1/_2
    calling __inference__traced_save/_restore functions in TF2, a 'save/' scope in TF1).
    Only functions reachable from those nodes and from no other node count as the saver's,
    so a serving function cannot be passed off as one by naming it in saver_def."""
    saver = meta_graph.saver_def
    names = {t.split(":")[0] for t in (saver.save_tensor_name, saver.restore_op_name) if t}
    scopes = {n.split("/")[0] for n in names if "/" in n}
    graph = meta_graph.graph_def
    by_name = {f.signature.name: f for f in graph.library.function}
    saver_nodes = [n for n in graph.node if n.name in names or n.name.split("/")[0] in scopes]
    others = [n for n in graph.node if n not in saver_nodes]
    only_saver = _closure(_called(saver_nodes), by_name) - _closure(_called(others), by_name)
    return {n.name for n in saver_nodes}, only_saver


def scan_tf_graph(path) -> list[Finding]:
    """Ops in a SavedModel (or frozen GraphDef) that touch files, call Python or reach the
    network, in the graph and every function-library body, outside the saver's functions."""
    p = Path(path)
    pb = p / "saved_model.pb" if p.is_dir() else p
    try:
        from tensorflow.core.protobuf import saved_model_pb2
        from tensorflow.core.framework import graph_pb2
    except ImportError:
        from edgekit.errors import missing_extra

        raise missing_extra("tensorflow", "tf") from None
    if not pb.is_file():
        if (p / "saved_model.pbtxt").is_file():
            raise BadInput(f"{p}: text SavedModels (saved_model.pbtxt) are not scanned; edgekit reads "
                           "saved_model.pb only.", hint="save the model with tf.saved_model.save")
        raise BadInput(f"{p}: no saved_model.pb inside.")
    data = pb.read_bytes()
    graphs = []
    try:
        if p.is_dir():
            sm = saved_model_pb2.SavedModel()
            sm.ParseFromString(data)
            graphs = [(mg.graph_def, *_saver_parts(mg)) for mg in sm.meta_graphs]
        else:
            gd = graph_pb2.GraphDef()
            gd.ParseFromString(data)
            graphs = [(gd, set(), set())]
    except Exception as exc:  # protobuf DecodeError and friends
        raise BadInput(f"{pb}: not a readable TensorFlow graph ({str(exc)[:160]}).") from None
    findings: list[Finding] = []
    for graph, saver_nodes, saver_fns in graphs:
        for node in graph.node:
            if node.op in UNSAFE_TF_OPS and not (node.op in CHECKPOINT_OPS and node.name in saver_nodes):
                findings.append(Finding(f"graph node '{node.name}'", f"op {node.op} {UNSAFE_TF_OPS[node.op]}", "code"))
        for fn in graph.library.function:
            for node in fn.node_def:
                if node.op in UNSAFE_TF_OPS and not (node.op in CHECKPOINT_OPS and fn.signature.name in saver_fns):
                    findings.append(Finding(f"function '{fn.signature.name}' node '{node.name}'",
                                            f"op {node.op} {UNSAFE_TF_OPS[node.op]}", "code"))
    return findings
