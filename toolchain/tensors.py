"""Tensor signatures and the data that feeds them.

A `Signature` lists a model's inputs and outputs (name, dtype, shape with None for a
dynamic axis, quantization parameters, layout). Data files (`.npz`) are matched against
it here, in one place, so every command reports a mismatch the same way: expected vs given.
"""

from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgekit.errors import BadInput

LABELS_KEY = "_labels"  # reserved .npz key: ground-truth labels for accuracy
BATCH_AXIS_KEY = "_batch_axis"  # reserved .npz key: strings "NAME=K", the batch axis of inputs not batched on 0
BATCH_AXIS_HELP = ("--batch-axis NAME=K (or a '_batch_axis' string array in the .npz, e.g. ['state=1']): "
                   "the axis of input NAME that holds the samples, when it is not the first")


@dataclass
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: float32, int8, int64, str, ...
    shape: tuple  # ints, or None for a dynamic axis
    quantization: dict | None = None  # {"scale": [...], "zero_point": [...], "axis": int}
    layout: str | None = None  # e.g. "NCHW" / "NHWC" where known

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return {k: v for k, v in d.items() if v is not None}

    def shape_str(self) -> str:
        return "x".join("?" if d is None else str(d) for d in self.shape) or "scalar"

    def describe(self) -> str:
        return f"{self.name}: {self.dtype}[{self.shape_str()}]"


@dataclass
class Signature:
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs]}

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]


@dataclass
class Dataset:
    """Named input arrays with a shared leading sample axis, plus optional labels."""

    arrays: dict[str, np.ndarray]  # always sample-first here, whatever the model's layout
    labels: np.ndarray | None
    source: str  # the file it came from, or "random (seed N)"
    axes: dict | None = None  # input name -> the model's batch axis where it is not 0; None = a scalar input

    @property
    def n(self) -> int:
        return len(next(iter(self.arrays.values())))

    def take(self, count: int) -> "Dataset":
        labels = None if self.labels is None else self.labels[:count]
        return Dataset({k: v[:count] for k, v in self.arrays.items()}, labels, self.source, self.axes)


# ----------------------------------------------------------------------------- batch axes and scalars
def inferred_batch_axis(spec: TensorSpec, shared_batch: bool = True):
    """Where a tensor holds its samples: None for a scalar (shape []), else axis 0, unless axis 0
    is fixed above 1 and exactly one other axis is dynamic while another tensor of the model has a
    dynamic axis 0 (`shared_batch`): a recurrent state [2, B, H] beside an input [B, T]."""
    shape = tuple(spec.shape)
    if spec.shape is not None and len(shape) == 0:
        return None
    dynamic = [i for i, d in enumerate(shape) if d is None]
    if shared_batch and shape and shape[0] is not None and shape[0] > 1 and len(dynamic) == 1:
        return dynamic[0]
    return 0


def batch_axes(specs, declared: dict | None = None) -> dict:
    """{name: axis} for the tensors not batched on axis 0 (None = scalar); declared axes win."""
    specs = list(specs)
    shared = any(s.shape and s.shape[0] is None for s in specs)
    out = {s.name: inferred_batch_axis(s, shared) for s in specs}
    out.update({k: v for k, v in (declared or {}).items() if k in out})
    return {k: v for k, v in out.items() if v != 0}


def parse_batch_axes(texts) -> dict[str, int]:
    """--batch-axis NAME=K values (or the .npz's '_batch_axis' strings) -> {name: K}."""
    out: dict[str, int] = {}
    for t in texts or ():
        name, sep, k = str(t).partition("=")
        if not sep or not name.strip() or not k.strip().isdigit():
            raise BadInput(f"--batch-axis {t!r}: expected NAME=K, e.g. state=1.", hint=BATCH_AXIS_HELP)
        out[name.strip()] = int(k)
    return out


def to_model_layout(feeds: dict[str, np.ndarray], axes: dict | None) -> dict[str, np.ndarray]:
    """Sample-first batch -> what the model takes: the batch axis moved to its place, a scalar
    input as a 0-d array (the batch must then share one value)."""
    if not axes:
        return feeds
    out = {}
    for k, v in feeds.items():
        a = axes.get(k, 0)
        out[k] = np.asarray(v.reshape(-1)[0]) if a is None else (np.moveaxis(v, 0, a) if a else v)
    return out


def from_model_layout(outputs: dict[str, np.ndarray], axes: dict | None) -> dict[str, np.ndarray]:
    """The model's outputs -> sample-first (the inverse of to_model_layout, for outputs)."""
    if not axes:
        return outputs
    return {k: (np.moveaxis(np.asarray(v), axes[k], 0) if axes.get(k) else v) for k, v in outputs.items()}


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read an .npz without ever unpickling object arrays."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{p}: no such data file.", hint="check the path given to --inputs/--calibration")
    if p.stat().st_size == 0:
        raise BadInput(f"{p}: the data file is empty.")
    try:
        with np.load(p, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                return {"input": np.asarray(npz)}  # a plain .npy
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise BadInput(f"{p}: holds Python objects (pickled arrays), which edgekit does not load.",
                           hint="save plain numeric or string arrays with numpy.savez") from None
        raise BadInput(f"{p}: not a readable .npz/.npy file ({exc}).") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise BadInput(f"{p}: not a readable .npz/.npy file ({exc}).") from None
    if not arrays:
        raise BadInput(f"{p}: the .npz holds no arrays.")
    return arrays


def _kind_compatible(given: np.dtype, expected: str) -> bool:
    exp = np.dtype(expected) if expected not in ("str", "string") else np.dtype("U")
    if given.kind == exp.kind:
        return True
    # float64 data for a float32 input, or int32 for int64, is a safe cast users expect
    return {given.kind, exp.kind} <= {"i", "u"} or (given.kind in "iu" and exp.kind == "f")


def _sample_shape_ok(given: tuple, expected: tuple) -> bool:
    # The data's leading axis is the sample axis; the model's leading axis is its batch.
    if len(given) != len(expected):
        return False
    return all(e is None or g == e for g, e in zip(given[1:], expected[1:]))


def match_inputs(arrays: dict[str, np.ndarray], signature: Signature, source: str,
                 what: str = "--inputs", batch_axis: dict | None = None) -> Dataset:
    """Map data arrays onto the model's inputs by name, check dtype and shape, cast safely.

    Each array is in the model's own layout with the samples on the input's batch axis: axis 0,
    or the one given by --batch-axis / the file's '_batch_axis' entry, or the only dynamic axis
    of an input whose first axis is fixed. A scalar input takes a 0-d array (one value for every
    sample) or one value per sample. The data set keeps every array sample-first."""
    labels = arrays.get(LABELS_KEY)
    declared = dict(batch_axis or {})
    if BATCH_AXIS_KEY in arrays:
        declared = {**parse_batch_axes(np.asarray(arrays[BATCH_AXIS_KEY]).reshape(-1).tolist()), **declared}
    data = {k: v for k, v in arrays.items() if k not in (LABELS_KEY, BATCH_AXIS_KEY)}
    specs = signature.inputs
    unknown = sorted(set(declared) - {s.name for s in specs})
    if unknown:
        raise BadInput(f"{source}: batch axis given for {', '.join(unknown)}, which the model does not take.",
                       hint="model inputs: " + "; ".join(s.describe() for s in specs))
    if len(specs) == 1 and specs[0].name not in data:
        if len(data) != 1:
            raise BadInput(f"{source}: the model has one input '{specs[0].name}', but the file holds "
                           f"{len(data)} arrays ({', '.join(data)}) and none is named '{specs[0].name}'.",
                           hint=f"name the array '{specs[0].name}' or keep only one array in {what}")
        data = {specs[0].name: next(iter(data.values()))}
    missing = [s.name for s in specs if s.name not in data]
    if missing:
        raise BadInput(f"{source}: no array for model input(s) {', '.join(missing)}; "
                       f"the file holds {', '.join(data) or 'nothing'}.",
                       hint="expected: " + "; ".join(s.describe() for s in specs))
    axes = batch_axes(specs, declared)
    out: dict[str, np.ndarray] = {}
    scalars: dict[str, np.ndarray] = {}
    problems = []
    for s in specs:
        arr = np.asarray(data[s.name])
        axis = axes.get(s.name, 0)
        if arr.ndim == 1 and len(s.shape) == 2 and s.shape[1] == 1:
            arr = arr.reshape(-1, 1)  # a column of values for a [N, 1] input (one input per column)
        # float data for a quantized integer input: the runner quantizes it with the file's own
        # scale and zero point (int8 TFLite files from litert-torch have int8 inputs)
        quantized = bool(s.quantization) and arr.dtype.kind == "f" and s.dtype not in ("str", "string") \
            and np.dtype(s.dtype).kind in "iu"
        if not quantized and not _kind_compatible(arr.dtype, s.dtype):
            problems.append(f"'{s.name}' dtype: expected {s.dtype}, given {arr.dtype}")
            continue
        if axis is None:  # a scalar input
            if arr.ndim > 1:
                problems.append(f"'{s.name}' is a scalar: give a 0-d array (one value for every sample) or one "
                                f"value per sample, not {list(arr.shape)}")
                continue
            if arr.ndim == 0:
                scalars[s.name] = arr
                continue
        elif axis >= max(len(s.shape), 1) or (arr.ndim and axis >= arr.ndim):
            problems.append(f"'{s.name}': batch axis {axis} does not exist in model {s.shape_str()}")
            continue
        elif s.shape and not _sample_shape_ok(_axis_first(arr.shape, axis), _axis_first(tuple(s.shape), axis)):
            dims = ["?" if d is None else str(d) for d in s.shape]
            dims[axis] = "N"
            where = "" if axis == 0 else f", samples on axis {axis}"
            problems.append(f"'{s.name}' shape: expected [{', '.join(dims)}]"
                            f" (model {s.shape_str()}{where}), given {list(arr.shape)}")
            continue
        elif axis:
            arr = np.moveaxis(arr, axis, 0)
        out[s.name] = arr if quantized or s.dtype in ("str", "string") else arr.astype(s.dtype, copy=False)
    if problems:
        raise BadInput(f"{source}: the data does not fit the model: " + "; ".join(problems) + ".",
                       hint="expected inputs: " + "; ".join(s.describe() for s in specs) +
                            (f". Inputs batched on another axis: {BATCH_AXIS_HELP}" if axes or declared else ""))
    counts = {len(v) for v in out.values()}
    if not out and scalars:
        counts = {1}  # only scalars: one sample
    if len(counts) != 1:
        raise BadInput(f"{source}: inputs have different sample counts {sorted(counts)}.",
                       hint=f"every input holds the same samples; {BATCH_AXIS_HELP}")
    n = counts.pop()
    for name, arr in scalars.items():
        spec = next(t for t in specs if t.name == name)
        out[name] = np.full(n, arr, dtype=arr.dtype if spec.dtype in ("str", "string") else spec.dtype)
    out = {s.name: out[s.name] for s in specs}
    if n == 0:
        raise BadInput(f"{source}: the data holds zero samples.", hint=f"{what} needs at least one sample")
    if labels is not None and len(labels) != n:
        raise BadInput(f"{source}: '{LABELS_KEY}' has {len(labels)} entries but the inputs have a different count.")
    return Dataset(out, labels, source, axes or None)


def _axis_first(shape: tuple, axis: int) -> tuple:
    shape = tuple(shape)
    return (shape[axis],) + shape[:axis] + shape[axis + 1:] if 0 < axis < len(shape) else shape


MAX_CSV_BYTES = 512 * 1024 * 1024


def read_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Read a CSV table as raw string columns (header row = column names).

    Values stay strings here; `match_table` converts each column to the dtype of the model
    input it feeds, so the same file serves numeric and categorical inputs. Empty cells
    are missing values: NaN in numeric columns, the empty string in string columns.
    """
    import csv

    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{p}: no such data file.", hint="check the path given to --inputs/--calibration")
    if p.stat().st_size == 0:
        raise BadInput(f"{p}: the data file is empty.")
    if p.stat().st_size > MAX_CSV_BYTES:
        raise BadInput(f"{p}: the CSV is over {MAX_CSV_BYTES >> 20} MB; edgekit validates on a sample.",
                       hint="keep a few thousand representative rows")
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"{p}: not a readable CSV file ({exc}).", hint="save it as UTF-8 CSV") from None
    rows = [r for r in rows if r]
    if not rows:
        raise BadInput(f"{p}: the CSV holds no header row.")
    header = [h.strip() for h in rows[0]]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes or not all(header):
        raise BadInput(f"{p}: the header must name every column once "
                       f"({'duplicated: ' + ', '.join(dupes) if dupes else 'an empty column name'}).")
    body = rows[1:]
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise BadInput(f"{p}: line {i} has {len(r)} fields but the header has {len(header)}.")
    if not body:
        raise BadInput(f"{p}: the CSV has a header but no rows.", hint="at least one sample is needed")
    return {h: np.array([r[j] for r in body], dtype=str) for j, h in enumerate(header)}


def _to_number(col: np.ndarray, name: str, source: str) -> np.ndarray:
    """Strings -> float64; empty cells (and NA/NaN spellings) become NaN."""
    out = np.empty(len(col), dtype=np.float64)
    for i, v in enumerate(col):
        v = v.strip()
        if v == "" or v.lower() in ("nan", "na", "n/a", "null", "none"):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except ValueError:
            raise BadInput(f"{source}: column '{name}' must be numeric, but row {i + 1} holds {v!r}.",
                           hint="the model reads this column as a number") from None
    return out


def _labels_from(col: np.ndarray) -> np.ndarray:
    """Label column: integers if every value is one, else floats, else the strings."""
    try:
        vals = np.array([float(v) for v in col])
    except ValueError:
        return col
    return vals.astype(np.int64) if np.all(vals == np.round(vals)) else vals


def match_table(columns: dict[str, np.ndarray], signature: Signature, source: str,
                what: str = "--inputs", label_column: str | None = None) -> Dataset:
    """Map CSV columns onto the model's inputs.

    A model with one input per column (a scikit-learn ColumnTransformer pipeline converted
    by edgekit) gets each column by name; a model with one matrix input [N, F] gets the
    table's F non-label columns, in file order.
    """
    columns = dict(columns)
    labels = None
    if label_column is not None:
        if label_column not in columns:
            raise BadInput(f"{source}: no column '{label_column}' (given by --label-column); the table has "
                           f"{', '.join(columns)}.")
        labels = _labels_from(columns.pop(label_column))
    specs = signature.inputs
    arrays: dict[str, np.ndarray] = {}
    by_name = [s for s in specs if s.name in columns]
    if len(specs) == 1 and not by_name and len(specs[0].shape) == 2:
        s = specs[0]
        want = s.shape[1]
        if want is not None and len(columns) != want:
            raise BadInput(f"{source}: the model input '{s.name}' takes {want} feature columns, but the table has "
                           f"{len(columns)} ({', '.join(list(columns)[:8])}{'…' if len(columns) > 8 else ''}).",
                           hint="drop extra columns, and name the label column with --label-column")
        if s.dtype in ("str", "string"):
            arrays[s.name] = np.stack(list(columns.values()), axis=1)
        else:
            arrays[s.name] = np.stack([_to_number(v, k, source) for k, v in columns.items()], axis=1)
    else:
        missing = [s.name for s in specs if s.name not in columns]
        if missing:
            raise BadInput(f"{source}: the table has no column for model input(s) {', '.join(missing)}; "
                           f"its columns are {', '.join(columns)}.",
                           hint="the header must name every input: " + ", ".join(s.name for s in specs))
        for s in specs:
            col = columns[s.name]
            arrays[s.name] = col if s.dtype in ("str", "string") else _to_number(col, s.name, source)
    if labels is not None:
        arrays[LABELS_KEY] = labels
    return match_inputs(arrays, signature, source, what)


def load_dataset(path: str | Path, signature: Signature, what: str = "--inputs",
                 label_column: str | None = None, batch_axis: dict | None = None) -> Dataset:
    """The data set in `path` (.npz or CSV) matched to `signature`; see match_inputs/match_table."""
    p = Path(path)
    if p.is_file() and p.stat().st_size:
        from edgekit.formats import detect

        if detect(p).name == "csv":
            return match_table(read_csv(p), signature, str(path), what, label_column)
    arrays = read_npz(p)
    if label_column is not None:
        if label_column not in arrays:
            raise BadInput(f"{path}: no array '{label_column}' (given by --label-column); the file holds "
                           f"{', '.join(arrays)}.")
        arrays = {**{k: v for k, v in arrays.items() if k != label_column}, LABELS_KEY: arrays[label_column]}
    return match_inputs(arrays, signature, str(path), what, batch_axis)


def random_dataset(signature: Signature, n: int = 16, seed: int = 0, batch_axis: dict | None = None) -> Dataset:
    """Seeded random inputs shaped by the signature (the batch axis becomes n, other dynamic
    axes 1; a scalar input gets one value shared by every sample)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    axes = batch_axes(signature.inputs, batch_axis)
    for s in signature.inputs:
        axis = axes.get(s.name, 0)
        rest = () if axis is None else _axis_first(tuple(s.shape), axis)[1:]
        shape = [n] + [1 if d is None else int(d) for d in rest]
        dt = np.dtype(s.dtype) if s.dtype not in ("str", "string") else None
        if dt is None:
            arrays[s.name] = np.array([f"text {i}" for i in range(n)]).reshape(shape)
        elif dt.kind == "f":
            arrays[s.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            arrays[s.name] = rng.integers(0, 2, shape).astype(dt)
        else:
            arrays[s.name] = rng.integers(0, 10, shape).astype(dt)
        if axis is None:  # one value for all samples, so batches can share it
            arrays[s.name] = np.full(n, arrays[s.name].reshape(-1)[0], dtype=arrays[s.name].dtype)
    return Dataset(arrays, None, f"random (seed {seed})", axes or None)


# ----------------------------------------------------------------------------- --input-shape
DYNAMIC_DIM_MARKERS = ("N", "?", "-1")  # a dynamic batch axis in --input-shape
SHAPE_DTYPES = ("float32", "float16", "float64", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")
INPUT_SHAPE_HELP = ("--input-shape [NAME=]DIMS[:DTYPE], e.g. 1x3x224x224, x=1x16:int64, or Nx3x224x224 for a "
                    "dynamic batch; repeat it once per input")


@dataclass(frozen=True)
class ShapeArg:
    """One parsed --input-shape: an optional input name, dims (None = dynamic batch), dtype."""

    name: str | None
    shape: tuple
    dtype: str
    text: str

    def spec(self, name: str) -> TensorSpec:
        return TensorSpec(name, self.dtype, self.shape, layout="NCHW" if len(self.shape) == 4 else None)


def parse_input_shape(text: str) -> ShapeArg:
    """Parse one --input-shape value; BadInput (exit 2) says what is wrong and shows the syntax."""
    raw = text.strip()
    name, _, rest = raw.rpartition("=")
    name = name.strip() or None
    dims_text, _, dtype = rest.partition(":")
    dtype = (dtype.strip() or "float32").lower()
    dtype = {"float": "float32", "half": "float16", "double": "float64", "long": "int64", "int": "int32"}.get(dtype, dtype)
    if dtype not in SHAPE_DTYPES:
        raise BadInput(f"--input-shape {text!r}: unknown dtype '{dtype}'.",
                       hint=f"use one of {', '.join(SHAPE_DTYPES)}; syntax: {INPUT_SHAPE_HELP}")
    if name is not None and not name.replace("_", "a").replace(".", "a").isalnum():
        raise BadInput(f"--input-shape {text!r}: '{name}' is not a valid input name.", hint=INPUT_SHAPE_HELP)
    parts = [p.strip() for p in dims_text.lower().replace("*", "x").split("x")]
    dims: list = []
    for i, p in enumerate(parts):
        if p.upper() in DYNAMIC_DIM_MARKERS or p == "n":
            if i != 0:
                raise BadInput(f"--input-shape {text!r}: only the first (batch) dimension can be dynamic.",
                               hint=INPUT_SHAPE_HELP)
            dims.append(None)
        elif p.isdigit() and int(p) > 0:
            dims.append(int(p))
        else:
            raise BadInput(f"--input-shape {text!r}: '{p or '(empty)'}' is not a dimension (a positive integer, "
                           "or N for a dynamic batch).", hint=INPUT_SHAPE_HELP)
    return ShapeArg(name, tuple(dims), dtype, raw)


def parse_input_shapes(texts) -> list[ShapeArg]:
    """Parse every --input-shape; names are all given or all left out (then matched by position)."""
    shapes = [parse_input_shape(t) for t in texts or ()]
    named = [s.name is not None for s in shapes]
    if shapes and any(named) and not all(named):
        raise BadInput("--input-shape: name every input (x=1x3x8x8) or none of them, not a mix.",
                       hint=INPUT_SHAPE_HELP)
    names = [s.name for s in shapes if s.name]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise BadInput(f"--input-shape given twice for {', '.join(dup)}.", hint=INPUT_SHAPE_HELP)
    return shapes


def specs_from_shapes(shapes: list[ShapeArg], input_names: list[str], source: str) -> list[TensorSpec]:
    """Attach parsed --input-shape values to a model's input names (from its forward signature).

    Missing shapes are an exit-2 error that lists exactly what is needed.
    """
    needed = " ".join(f"--input-shape {n}=..." for n in input_names)
    if not shapes:
        raise BadInput(f"{source}: the model does not record its input shapes, so edgekit needs "
                       f"--input-shape for each input of forward({', '.join(input_names)}).",
                       hint=f"pass {needed} ({INPUT_SHAPE_HELP})")
    if shapes[0].name is None:
        if len(shapes) != len(input_names):
            raise BadInput(f"{source}: forward() takes {len(input_names)} input(s) ({', '.join(input_names)}) but "
                           f"{len(shapes)} --input-shape value(s) were given.", hint=f"pass {needed}")
        return [s.spec(n) for s, n in zip(shapes, input_names)]
    by_name = {s.name: s for s in shapes}
    unknown = [n for n in by_name if n not in input_names]
    missing = [n for n in input_names if n not in by_name]
    if unknown or missing:
        what = []
        if unknown:
            what.append(f"no input named {', '.join(unknown)}")
        if missing:
            what.append(f"no shape for {', '.join(missing)}")
        raise BadInput(f"{source}: --input-shape does not match forward({', '.join(input_names)}): "
                       f"{'; '.join(what)}.", hint=f"pass {needed}")
    return [by_name[n].spec(n) for n in input_names]


def check_shapes_against(shapes: list[ShapeArg], signature: Signature, source: str) -> None:
    """For a source that carries its own signature: given --input-shape must agree with it."""
    specs = signature.inputs
    pairs = list(zip(shapes, specs)) if shapes and shapes[0].name is None else \
        [(s, next((t for t in specs if t.name == s.name), None)) for s in shapes]
    problems = []
    if shapes and shapes[0].name is None and len(shapes) != len(specs):
        problems.append(f"{len(shapes)} shape(s) given for {len(specs)} input(s)")
    for given, spec in pairs:
        if spec is None:
            problems.append(f"no input named '{given.name}'")
            continue
        ok = len(given.shape) == len(spec.shape) and all(
            e is None or g is None or g == e for g, e in zip(given.shape, spec.shape)) and given.dtype == spec.dtype
        if not ok:
            gs = "x".join("N" if d is None else str(d) for d in given.shape)
            problems.append(f"'{spec.name}': expected {spec.dtype}[{spec.shape_str()}], given {given.dtype}[{gs}]")
    if problems:
        raise BadInput(f"{source}: --input-shape does not match the model's own signature: {'; '.join(problems)}.",
                       hint="this source records its input signature; drop --input-shape (expected: "
                            + "; ".join(s.describe() for s in specs) + ")")
