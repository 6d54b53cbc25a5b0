"""Text in, ids out: a CSV of texts tokenized with the model's own tokenizer (Hugging Face
`tokenizers`, a tokenizer.json) into the model's int64 inputs, so parity and accuracy run on
real reports (`--tokenizer`, `--text-column`).

The tokenizer's own padding and truncation decide the length (a model with fixed 1xL inputs
needs a tokenizer that pads to L); the summary of what was done goes into the report so an
app can reproduce the ids exactly.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from edgekit.errors import BadInput


def _load(path: Path):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise BadInput("--tokenizer needs the 'tokenizers' library.",
                       hint="pip install 'edgekit[torch]'") from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure of the user's file is bad input
        raise BadInput(f"{path}: not a tokenizers tokenizer.json ({' '.join(str(exc).split())[:200]}).",
                       hint="save it with tokenizer.save('tokenizer.json') (Hugging Face tokenizers)") from None


DEFAULT_LABEL_COLUMN = "label"  # read as the labels when no label column is named and the CSV has one


def tokenize_table(csv_path: str | Path, tokenizer_path: str | Path, text_column: str,
                   label_column: str | None, out_npz: Path, model_path: str | Path | None = None,
                   length: int | None = None) -> dict:
    """Tokenize `text_column` of the CSV into out_npz (input_ids, attention_mask, and '_labels'
    from label_column, which must hold class indices; with no label column named, a 'label'
    column if the CSV has one, else no labels: parity only). `length` pads and truncates to
    that many tokens instead of the tokenizer's own padding (a dynamic-length model checked at
    several lengths). Returns the tokenizer record for the report and the manifest."""
    from edgekit.tensors import LABELS_KEY, read_csv

    tpath = Path(tokenizer_path)
    if not tpath.is_file():
        raise BadInput(f"--tokenizer {tpath}: no such file.")
    tok = _load(tpath)
    columns = read_csv(csv_path)
    if text_column not in columns:
        raise BadInput(f"{csv_path}: no column '{text_column}' (the text to tokenize, --text-column); the table has "
                       f"{', '.join(columns)}.", hint="pass --text-column NAME")
    if label_column is None and DEFAULT_LABEL_COLUMN in columns:
        label_column = DEFAULT_LABEL_COLUMN
    if length is not None:
        if tok.padding is None:
            raise BadInput(f"{tpath}: the tokenizer has no padding set, so its pad token is unknown.",
                           hint="tokenizer.enable_padding(pad_id=..., pad_token=...), then save it")
        tok.enable_padding(**{**_padding_args(tok.padding), "length": int(length)})
        tok.enable_truncation(**{**_truncation_args(tok.truncation), "max_length": int(length)})
    pad, trunc = tok.padding, tok.truncation
    length = (pad or {}).get("length")
    if not length:
        raise BadInput(f"{tpath}: the tokenizer does not pad to a fixed length, so the ids would not fit the "
                       "model's fixed sequence length.",
                       hint="tokenizer.enable_padding(length=L) and enable_truncation(max_length=L), then save it")
    enc = tok.encode_batch([str(t) for t in columns[text_column]])
    arrays = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
              "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}
    vocab = tok.get_vocab_size()
    if model_path is not None:
        check_ids(model_path, arrays, str(csv_path), vocab)
    if label_column is not None:
        if label_column not in columns:
            raise BadInput(f"{csv_path}: no column '{label_column}' (given by --label-column); the table has "
                           f"{', '.join(columns)}.")
        try:
            arrays[LABELS_KEY] = np.array([int(v) for v in columns[label_column]], dtype=np.int64)
        except ValueError:
            raise BadInput(f"{csv_path}: column '{label_column}' must hold class indices (0, 1, ...) to be "
                           "compared with the model's scores.") from None
    np.savez(out_npz, **arrays)
    specials = {t: tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<pad>", "<s>",
                                                  "</s>", "<unk>") if tok.token_to_id(t) is not None}
    return {"file": tpath.name, "sha256": hashlib.sha256(tpath.read_bytes()).hexdigest(), "vocab_size": vocab,
            "max_length": int(length), "padding": {"length": int(length), "side": pad.get("direction"),
                                                   "pad_id": pad.get("pad_id")},
            "truncation": {"max_length": (trunc or {}).get("max_length"),
                           "strategy": (trunc or {}).get("strategy")} if trunc else None,
            "special_tokens": specials, "text_column": text_column, "label_column": label_column,
            "rows": len(enc), "csv": Path(csv_path).name}


def _padding_args(pad: dict) -> dict:
    """Tokenizer.padding (a dict) -> enable_padding's keyword arguments."""
    return {"direction": pad.get("direction", "right"), "pad_id": pad.get("pad_id", 0),
            "pad_type_id": pad.get("pad_type_id", 0), "pad_token": pad.get("pad_token", "[PAD]"),
            "pad_to_multiple_of": pad.get("pad_to_multiple_of")}


def _truncation_args(trunc: dict | None) -> dict:
    t = trunc or {}
    return {"stride": t.get("stride", 0), "strategy": t.get("strategy", "longest_first"),
            "direction": t.get("direction", "right")}


def tokenized_request(req, tokenizer: str | Path, text_column: str, folder: Path, length: int | None = None):
    """The request (edgekit.request.SourceRequest) with its CSV --inputs (and a CSV --calibration)
    tokenized into .npz files in `folder`, and the tokenizer record. One place for convert,
    validate, build and build --check, so they all feed the model the same ids."""
    import dataclasses

    if not req.inputs or not str(req.inputs).endswith(".csv"):
        raise BadInput("--tokenizer needs --inputs: a CSV with a text column (and the labels, optionally).",
                       hint="e.g. --inputs reports.csv --text-column text --label-column label")
    suffix = f".len{length}" if length else ""
    ids_file = folder / f"{Path(req.inputs).stem}{suffix}.tokenized.npz"
    record = tokenize_table(req.inputs, tokenizer, text_column, req.label_column, ids_file, req.source, length)
    changes = {"inputs": str(ids_file), "label_column": None}
    if req.calibration and str(req.calibration).endswith(".csv"):
        calib_file = folder / f"{Path(req.calibration).stem}{suffix}.calibration.npz"
        tokenize_table(req.calibration, tokenizer, text_column, None, calib_file, req.source, length)
        changes["calibration"] = str(calib_file)
    return dataclasses.replace(req, **changes), record


def relabel(doc, tokenized: str, record: dict):
    """`doc` (a stage's result: parity, latency) with the temporary tokenized file's path, where
    it names the data, replaced by what it stands for: the CSV, tokenized to its length."""
    if isinstance(doc, dict):
        return {k: relabel(v, tokenized, record) for k, v in doc.items()}
    if isinstance(doc, list):
        return [relabel(v, tokenized, record) for v in doc]
    if doc == tokenized:
        return f"{record['csv']} (column '{record['text_column']}', {record['max_length']} tokens)"
    return doc


def tokenizer_note(record: dict) -> str:
    """One line on what the ids came from, for the notes under a parity table."""
    labels = (f"labels from '{record['label_column']}'" if record.get("label_column") else
              "no label column: parity only, no accuracy")
    return (f"{record['rows']} texts from column '{record['text_column']}' tokenized with {record['file']} "
            f"(padded/truncated to {record['max_length']}); {labels}")


def embedding_rows(model_path: str | Path) -> dict[str, int]:
    """{input name: rows of the embedding table it indexes} for the inputs that feed a token
    embedding directly (aten.embedding in a .pt2; Gather on an initializer in an ONNX file).
    Read from the file's metadata only (nothing is run); {} when it cannot tell."""
    p = Path(model_path)
    try:
        if p.suffix == ".pt2":
            return _pt2_embedding_rows(p)
        if p.suffix == ".onnx":
            return _onnx_embedding_rows(p)
        if p.suffix == ".keras":
            return _keras_embedding_rows(p)
    except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile):
        pass
    return {}


def _pt2_embedding_rows(p: Path) -> dict[str, int]:
    from edgekit.formats import check_zip_limits, read_member

    with zipfile.ZipFile(p) as zf:
        check_zip_limits(p, zf)
        member = next(n for n in zf.namelist() if n.endswith("models/model.json"))
        doc = json.loads(read_member(p, zf, member, limit=256 << 20))
    graph = doc["graph_module"]["graph"]
    users = {s["user_input"]["arg"]["as_tensor"]["name"] for s in doc["graph_module"]["signature"]["input_specs"]
             if "user_input" in s and "as_tensor" in s["user_input"]["arg"]}
    rows = {}
    for node in graph["nodes"]:
        if node.get("target") != "torch.ops.aten.embedding.default":
            continue
        args = {a["name"]: a["arg"] for a in node["inputs"]}
        idx = args["indices"].get("as_tensor", {}).get("name")
        weight = args["weight"].get("as_tensor", {}).get("name")
        if idx in users and weight in graph["tensor_values"]:
            rows[idx] = int(graph["tensor_values"][weight]["sizes"][0]["as_int"])
    return rows


def _keras_embedding_rows(p: Path) -> dict[str, int]:
    """Embedding layers of a functional .keras model called directly on one of its inputs."""
    from edgekit.formats import check_zip_limits, read_member

    with zipfile.ZipFile(p) as zf:
        check_zip_limits(p, zf)
        config = json.loads(read_member(p, zf, "config.json", limit=64 << 20))["config"]
    layers = config["layers"]
    inputs = {layer["name"] for layer in layers if layer["class_name"] == "InputLayer"}
    rows = {}
    for layer in layers:
        if layer["class_name"] != "Embedding":
            continue
        for node in layer.get("inbound_nodes") or []:
            arg = (node.get("args") or [None])[0]
            source = arg.get("config", {}).get("keras_history", [None])[0] if isinstance(arg, dict) else None
            if source in inputs:
                rows[source] = int(layer["config"]["input_dim"])
    return rows


def _onnx_embedding_rows(p: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(p), load_external_data=False)
    inits = {i.name: i for i in model.graph.initializer}
    inputs = {i.name for i in model.graph.input}
    return {n.input[1]: int(inits[n.input[0]].dims[0]) for n in model.graph.node
            if n.op_type == "Gather" and len(n.input) == 2 and n.input[0] in inits and n.input[1] in inputs}


def check_ids(model_path: str | Path, arrays: dict[str, np.ndarray], what: str, vocab: int | None = None) -> None:
    """Token ids must index the model's embedding table (an id past it reads out of bounds in a
    mobile runtime); a tokenizer whose vocabulary differs from the table is the wrong one."""
    for name, rows in embedding_rows(model_path).items():
        if vocab is not None and vocab != rows:
            raise BadInput(f"the tokenizer has {vocab} tokens but the model's embedding for '{name}' has {rows} "
                           "rows: it is not this model's tokenizer.",
                           hint="pass the tokenizer.json saved with the model")
        ids = arrays.get(name)
        if ids is not None and ids.size and np.issubdtype(ids.dtype, np.integer) and (ids.min() < 0 or ids.max() >= rows):
            raise BadInput(f"{what}: '{name}' holds ids from {int(ids.min())} to {int(ids.max())}, but the model's "
                           f"embedding has {rows} rows (ids 0..{rows - 1}).",
                           hint="tokenize with the model's own tokenizer")
