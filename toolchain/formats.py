"""Format detection by content, never by extension alone.

`detect(path)` reads a few bytes (and, for zip files, the member names) and returns the
`FormatSpec` of what the file really is. Nothing here imports a framework or executes
anything from the file. A file whose content does not match any known format is refused
with a message that says what it looks like instead.
"""

from __future__ import annotations

import os
import pickletools
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import BadInput


@dataclass(frozen=True)
class FormatSpec:
    """One file format: what framework produced it and which runtime runs it."""

    name: str
    description: str
    framework: str  # the source framework family converters register under
    runtime: str | None  # runner that executes it (None: not runnable, e.g. data)
    extensions: tuple[str, ...]
    pickle_based: bool = False  # loading it can execute code


# formats that are only sources (or data); every target's format comes from its declaration
# (edgekit.targets), added below
FORMATS: dict[str, FormatSpec] = {f.name: f for f in (
    FormatSpec("keras", "Keras v3 archive (.keras)", "keras", "keras", (".keras",)),
    FormatSpec("hdf5", "HDF5 file (legacy Keras .h5)", "keras", "keras", (".h5", ".hdf5")),
    FormatSpec("savedmodel", "TensorFlow SavedModel folder", "tensorflow", "tensorflow", ("",)),
    FormatSpec("torch_export", "torch.export ExportedProgram (.pt2)", "torch", "torch_export", (".pt2",)),
    FormatSpec("torch_pickle", "torch.save pickle archive", "torch", "torch_eager", (".pt", ".pth", ".bin"),
               pickle_based=True),
    FormatSpec("torch_state_dict", "torch.save state_dict (weights only)", "torch", None,
               (".pt", ".pth", ".bin")),
    FormatSpec("safetensors", "safetensors weights", "torch", None, (".safetensors",)),
    FormatSpec("skops", "skops archive (scikit-learn)", "sklearn", "sklearn", (".skops",)),
    FormatSpec("pickle", "Python pickle / joblib file", "sklearn", "sklearn", (".pkl", ".joblib", ".pickle"),
               pickle_based=True),
    FormatSpec("xgboost_json", "XGBoost model (JSON)", "xgboost", "sklearn", (".json",)),
    FormatSpec("xgboost_ubj", "XGBoost model (UBJSON)", "xgboost", "sklearn", (".ubj",)),
    FormatSpec("lightgbm_txt", "LightGBM model (text)", "lightgbm", "sklearn", (".txt",)),
    FormatSpec("npz", "NumPy .npz archive", "data", None, (".npz",)),
    FormatSpec("csv", "CSV table (header = column names)", "data", None, (".csv",)),
    FormatSpec("npy", "NumPy .npy array", "data", None, (".npy",)),
)}

_MAX_PICKLE_SCAN = 64 * 1024 * 1024  # opcodes of larger pickles are not scanned


@dataclass(frozen=True)
class Detected:
    """The result of detection: the format plus what was seen (for messages and inspect)."""

    spec: FormatSpec
    path: Path
    evidence: str

    @property
    def name(self) -> str:
        return self.spec.name


# Pre-parse limits for zip-based formats (zip bombs): checked from the central directory,
# before any member is decompressed.
MAX_ZIP_MEMBERS = 100_000
MAX_ZIP_UNCOMPRESSED = 16 * 1024 ** 3
MAX_ZIP_RATIO = 200  # uncompressed / compressed, per member (weights compress ~1-3x)
MAX_FILE_BYTES = 64 * 1024 ** 3


def check_zip_limits(path: Path, zf: zipfile.ZipFile) -> None:
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise BadInput(f"{path}: the archive has {len(infos)} members, over the limit of {MAX_ZIP_MEMBERS}.")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise BadInput(f"{path}: the archive has two members named '{dup[:120]}'; readers disagree on which one "
                       "counts, so edgekit refuses it.", hint="export the file again")
    total = sum(i.file_size for i in infos)
    if total > MAX_ZIP_UNCOMPRESSED:
        raise BadInput(f"{path}: the archive would unpack to {total / 1024 ** 3:.1f} GiB, over the limit of "
                       f"{MAX_ZIP_UNCOMPRESSED / 1024 ** 3:.0f} GiB (a zip bomb?).")
    for i in infos:
        if i.file_size > 1024 ** 2 and i.file_size > MAX_ZIP_RATIO * max(i.compress_size, 1):
            raise BadInput(f"{path}: member '{i.filename}' expands {i.file_size // max(i.compress_size, 1)}x "
                           f"({i.compress_size} -> {i.file_size} bytes); edgekit refuses archives that look "
                           "like zip bombs.")


ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError,
                   ValueError, UnicodeDecodeError)


def read_member(path, zf: zipfile.ZipFile, name, limit: int | None = None) -> bytes:
    """One member's bytes, with a clean BadInput for a corrupt archive (bad CRC, broken
    deflate stream, unsupported compression, encryption) or a member over `limit` bytes."""
    try:
        info = name if isinstance(name, zipfile.ZipInfo) else zf.getinfo(name)
        if limit is not None and info.file_size > limit:
            raise BadInput(f"{path}: member '{info.filename}' is {info.file_size} bytes, over the {limit} byte "
                           "limit for it.")
        return zf.read(info)
    except KeyError:
        raise BadInput(f"{path}: the archive has no member '{name}'.") from None
    except ZIP_READ_ERRORS as exc:
        raise BadInput(f"{path}: the archive is corrupt: member '{getattr(name, 'filename', name)}' cannot be "
                       f"read ({type(exc).__name__}: {str(exc)[:120]}).",
                       hint="the file is probably truncated or corrupt; export it again") from None


def _zip_kind(path: Path) -> tuple[str, str]:
    try:
        with zipfile.ZipFile(path) as zf:
            check_zip_limits(path, zf)
            names = zf.namelist()
    except ZIP_READ_ERRORS as exc:
        raise BadInput(f"{path}: looks like a zip file but cannot be read as one ({exc}).",
                       hint="the file is probably truncated or corrupt; export it again") from None
    base = {n.split("/", 1)[-1] if "/" in n else n for n in names}
    if {"config.json", "metadata.json"} <= set(names):
        return "keras", "zip with config.json + metadata.json"
    if "schema.json" in names:
        return "skops", "zip with schema.json"
    if "archive_format" in base and any(n.endswith(".json") and "/models/" in f"/{n}" for n in names):
        return "torch_export", "zip with archive_format + models/*.json"
    if "data.pkl" in base and any("/code/" in f"/{n}" for n in names):
        return "torchscript", "zip with data.pkl + code/"
    if "data.pkl" in base:
        pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        with zipfile.ZipFile(path) as zf:
            data = [read_member(path, zf, n) if zf.getinfo(n).file_size <= _MAX_PICKLE_SCAN else b"" for n in pkls]
        if all(data) and all(_pickle_is_weights_only(d) for d in data):
            return "torch_state_dict", "zip with data.pkl referencing only tensors"
        return "torch_pickle", "zip with data.pkl referencing Python classes"
    if names and all(n.endswith(".npy") for n in names):
        return "npz", "zip of .npy members"
    raise BadInput(f"{path}: a zip archive that is not a known model format "
                   f"(members: {', '.join(names[:5])}{'…' if len(names) > 5 else ''}).",
                   hint="edgekit reads .keras, .pt2, TorchScript, torch.save, skops and .npz archives")


# Globals a plain weights-only torch pickle may reference (what torch's own weights-only
# unpickler allows for a state_dict). Anything else means classes would be imported.
_WEIGHTS_ONLY_GLOBALS = {
    "collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter",
    "torch FloatStorage", "torch DoubleStorage", "torch HalfStorage", "torch LongStorage",
    "torch IntStorage", "torch ShortStorage", "torch CharStorage", "torch ByteStorage",
    "torch BoolStorage", "torch BFloat16Storage", "torch.storage UntypedStorage",
    "torch float32", "torch float16", "torch int64", "torch bfloat16", "torch._utils _rebuild_tensor",
}


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "STRING", "BINSTRING",
               "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}


def pickle_globals(data: bytes) -> list[str]:
    """The `module name` pairs a pickle would import, read from its opcodes without running it.

    The stack and the memo are followed symbolically, so STACK_GLOBAL finds its two strings
    even when they were memoized (PUT/BINPUT/LONG_BINPUT/MEMOIZE) and fetched back
    (GET/BINGET/LONG_BINGET), or pushed long before. GLOBAL, INST and STACK_GLOBAL are
    reported; extension-registry codes (EXT1/2/4) and unresolvable STACK_GLOBALs are
    reported as '<...>' entries, which no allowlist accepts.
    """
    found: list[str] = []
    stack: list = []
    marks: list[int] = []
    memo: dict = {}
    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name in ("GLOBAL", "INST"):
                found.append(str(arg).replace("\n", " "))
            elif name.startswith("EXT"):
                found.append(f"<extension registry code {arg}>")
            if name == "MARK":
                marks.append(len(stack))
                continue
            if name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1] if stack else None
                continue
            if name == "MEMOIZE":
                memo[len(memo)] = stack[-1] if stack else None
                continue
            if name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(arg))
                continue
            if name == "DUP":
                stack.append(stack[-1] if stack else None)
                continue
            if name == "STACK_GLOBAL":
                mod, attr = (stack[-2], stack[-1]) if len(stack) >= 2 else (None, None)
                if isinstance(mod, str) and isinstance(attr, str):
                    found.append(f"{mod} {attr}")
                else:
                    found.append("<STACK_GLOBAL of a computed name>")
                del stack[-2:]
                stack.append(None)
                continue
            before = op.stack_before
            if pickletools.markobject in before:
                del stack[marks.pop() if marks else 0:]
            else:
                del stack[max(0, len(stack) - len(before)):]
            if name in _STRING_OPS:
                stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
            else:
                stack.extend(None for a in op.stack_after if a is not pickletools.markobject)
    except Exception:  # a malformed pickle: report what was seen so far
        found.append("<unparseable>")
    return found


def _pickle_is_weights_only(data: bytes) -> bool:
    return all(g in _WEIGHTS_ONLY_GLOBALS for g in pickle_globals(data))


def _looks_like_pickle(head: bytes, path: Path) -> bool:
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    # protocol 0/1 pickles are text-ish: accept them only if their opcodes parse, reading at
    # most 1 MB (a text file fails within its first bytes)
    if head[:1] in (b"(", b"c", b"]", b"}", b"I", b"S", b"V", b"N", b"F", b"L"):
        limit = 1 << 20
        with open(path, "rb") as fh:
            data = fh.read(limit)
        pos = 0
        try:
            for op, _, pos in pickletools.genops(data):
                if op.name == "STOP":
                    return True
        except Exception:
            # a parse error only in the cut-off tail of a long file still looks like a pickle
            return len(data) == limit and pos > limit - 4096
    return False


def _is_compressed(head: bytes) -> bool:
    """zlib, gzip, bz2, xz/lzma or lz4 streams: what joblib writes with compress=…"""
    zlib = len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0
    return zlib or head[:3] in (b"\x1f\x8b\x08", b"BZh") or head[:6] == b"\xfd7zXZ\x00" \
        or head[:4] == b"\x04\x22\x4d\x18" or head[:3] == b"\x5d\x00\x00"


def _looks_like_onnx(path: Path, head: bytes) -> bool:
    # ModelProto starts with field 1 (ir_version, varint: tag 0x08) in every exporter we know
    if head[:1] != b"\x08":
        return False
    try:
        import onnx

        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:
        return False
    return len(model.graph.node) > 0 or len(model.graph.output) > 0


_XGB_JSON = re.compile(rb'\A\s*\{\s*"learner"\s*:')
# UBJSON object: '{', then the key length as an int marker (i/U/I/l/L) and the key "learner"
_XGB_UBJ = re.compile(rb"\A\{[iUIlL][\x00-\xff]{1,8}?learner")


def _looks_like_csv(path: Path) -> bool:
    """UTF-8 text whose header splits into named comma-separated fields (> 1, or one in a file named
    .csv: a column of texts for --tokenizer), like the first row."""
    import csv
    import io

    with open(path, "rb") as fh:
        chunk = fh.read(64 * 1024)
    if b"\x00" in chunk:
        return False
    truncated = len(chunk) == 64 * 1024
    if truncated and b"\n" not in chunk:
        head = chunk.decode("utf-8", "ignore")
        if head.count(",") >= 1 and sum(c.isprintable() for c in head[:4096]) > 0.95 * len(head[:4096]):
            raise BadInput(f"{path}: looks like a CSV table, but its header line is longer than 64 KiB "
                           "(edgekit reads CSV headers up to 64 KiB).",
                           hint="shorten the column names, or save the data as .npz")
        return False
    if truncated:
        chunk = chunk[:chunk.rfind(b"\n") + 1]  # the last line may be cut (even mid-character)
    try:
        text = chunk.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    lines = text.splitlines()
    rows = [r for r in csv.reader(io.StringIO("\n".join(lines[:50]))) if r]
    if not rows or len(rows[0]) < (1 if path.suffix.lower() == ".csv" else 2) or not all(h.strip() for h in rows[0]):
        return False
    if len(rows[0]) == 1 and len(rows) < 2:  # one column: only with data under its name, never a lone line
        return False
    return len(rows) == 1 or len(rows[1]) == len(rows[0])  # later ragged rows: the reader names them


def _describe_unknown(head: bytes) -> str:
    if not head:
        return "it is empty"
    sample = head[:64]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample) / len(sample)
    if printable > 0.95:
        text = sample.decode("ascii", "replace").splitlines()[0][:40]
        return f"it is a text file (starts with {text!r})"
    return f"unrecognised content (first bytes {sample[:8].hex(' ')})"


def detect(path: str | os.PathLike, expected: tuple[str, ...] | None = None) -> Detected:
    """Detect what `path` holds, by content. Raises `BadInput` with a clear reason otherwise.

    `expected`, if given, lists the acceptable format names; anything else is refused with
    a message naming both what was found and what was expected.
    """
    p = Path(path)
    try:
        str(p).encode("utf-8")
    except UnicodeEncodeError:
        shown = str(p).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise BadInput(f"{shown}: the file name is not valid UTF-8 (its bytes are shown escaped); the model "
                       "runtimes edgekit drives take UTF-8 paths only.",
                       hint="rename the file (or a folder above it) to a UTF-8 name") from None
    if not p.exists():
        raise BadInput(f"{p}: no such file or folder.", hint="check the path")
    check_regular(p)
    found = _detect(p)
    if expected and found.name not in expected:
        want = ", ".join(FORMATS[e].description for e in expected)
        raise BadInput(f"{p}: is a {found.spec.description}, but a {want} is needed here.")
    return found


def check_regular(p: Path) -> None:
    """Refuse FIFOs, sockets and devices before anything opens them (opening a FIFO blocks)."""
    import stat

    mode = p.stat().st_mode  # stat, never open: a FIFO would block an open()
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "not a regular file")
    raise BadInput(f"{p}: is {kind}; edgekit reads models and data only from regular files.",
                   hint="copy the data to a regular file and pass that")


def _detect(p: Path) -> Detected:
    if p.is_dir():
        if (p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file():
            return Detected(FORMATS["savedmodel"], p, "folder with saved_model.pb")
        for t in _declared():  # a target whose artifact is a folder (its folder_file inside)
            if t.folder_file and (p / t.folder_file).is_file():
                return Detected(FORMATS[t.format], p, f"folder with {t.folder_file}")
        raise BadInput(f"{p}: is a folder, not a model file (and not a TensorFlow SavedModel: "
                       "no saved_model.pb inside).", hint="pass the model file itself")
    try:
        with open(p, "rb") as fh:
            head = fh.read(64)
    except PermissionError:
        raise BadInput(f"{p}: cannot be read (permission denied).") from None
    except OSError as exc:
        raise BadInput(f"{p}: cannot be read ({exc.strerror}).") from None
    if not head:
        raise BadInput(f"{p}: the file is empty.", hint="export or copy the model again")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise BadInput(f"{p}: {p.stat().st_size / 1024 ** 3:.1f} GiB is over edgekit's limit of "
                       f"{MAX_FILE_BYTES / 1024 ** 3:.0f} GiB for one file.")

    def found(name: str, evidence: str) -> Detected:
        return Detected(FORMATS[name], p, evidence)

    for t in _declared():  # flatbuffers: a target's file identifier at bytes 4..8
        if t.magic and re.fullmatch(t.magic, head[4:8]):
            return found(t.format, f"flatbuffer identifier {head[4:8].decode()}")
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return found("hdf5", "HDF5 signature")
    if head[:6] == b"\x93NUMPY":
        return found("npy", "NumPy magic")
    if head[:4] == b"PK\x03\x04":
        name, evidence = _zip_kind(p)
        return found(name, evidence)
    if len(head) >= 9:
        (hlen,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < hlen < p.stat().st_size:
            return found("safetensors", "safetensors JSON header")
    if _looks_like_onnx(p, head):
        return found("onnx", "parses as an ONNX ModelProto")
    if _XGB_JSON.match(head):
        return found("xgboost_json", 'JSON object with a "learner" key')
    if _XGB_UBJ.match(head):
        return found("xgboost_ubj", 'UBJSON object with a "learner" key')
    if head.startswith((b"tree\nversion=", b"tree\r\nversion=")):
        return found("lightgbm_txt", "text starting with tree / version=")
    if _is_compressed(head):
        return found("pickle", "compressed stream (joblib-style)")
    if _looks_like_pickle(head, p):
        return found("pickle", "pickle opcodes")
    if head[:1] == b"\x08" and p.suffix == ".onnx":
        raise BadInput(f"{p}: starts like an ONNX model but does not parse (truncated or corrupt).",
                       hint="export the ONNX model again")
    if _looks_like_csv(p):
        return found("csv", "text with a comma-separated header and rows")
    raise BadInput(f"{p}: not a model format edgekit knows: {_describe_unknown(head)}.",
                   hint="supported: " + ", ".join(s.description for s in FORMATS.values()))


def _declared():
    from edgekit.targets import TARGETS

    return list(TARGETS.values())


# the formats of the targets (edgekit.targets), declared in each target's module
FORMATS.update({t.format: FormatSpec(t.format, t.format_description, t.framework, t.runtime,
                                     t.extensions or (t.extension,)) for t in _declared()})
