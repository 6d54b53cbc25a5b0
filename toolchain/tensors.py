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

    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str  # the file it came from, or "random (seed N)"

    @property
    def n(self) -> int:
        return len(next(iter(self.arrays.values())))

    def take(self, count: int) -> "Dataset":
        labels = None if self.labels is None else self.labels[:count]
        return Dataset({k: v[:count] for k, v in self.arrays.items()}, labels, self.source)


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
                 what: str = "--inputs") -> Dataset:
    """Map data arrays onto the model's inputs by name, check dtype and shape, cast safely."""
    labels = arrays.get(LABELS_KEY)
    data = {k: v for k, v in arrays.items() if k != LABELS_KEY}
    specs = signature.inputs
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
    out: dict[str, np.ndarray] = {}
    problems = []
    for s in specs:
        arr = data[s.name]
        if not _kind_compatible(arr.dtype, s.dtype):
            problems.append(f"'{s.name}' dtype: expected {s.dtype}, given {arr.dtype}")
            continue
        if s.shape and not _sample_shape_ok(arr.shape, tuple(s.shape)):
            problems.append(f"'{s.name}' shape: expected [N, {', '.join('?' if d is None else str(d) for d in s.shape[1:])}]"
                            f" (model {s.shape_str()}), given {list(arr.shape)}")
            continue
        out[s.name] = arr.astype(s.dtype, copy=False) if s.dtype not in ("str", "string") else arr
    if problems:
        raise BadInput(f"{source}: the data does not fit the model: " + "; ".join(problems) + ".",
                       hint="expected inputs: " + "; ".join(s.describe() for s in specs))
    counts = {len(v) for v in out.values()}
    if len(counts) != 1:
        raise BadInput(f"{source}: inputs have different sample counts {sorted(counts)}.")
    if 0 in counts:
        raise BadInput(f"{source}: the data holds zero samples.", hint=f"{what} needs at least one sample")
    if labels is not None and len(labels) != counts.pop():
        raise BadInput(f"{source}: '{LABELS_KEY}' has {len(labels)} entries but the inputs have a different count.")
    return Dataset(out, labels, source)


def load_dataset(path: str | Path, signature: Signature, what: str = "--inputs") -> Dataset:
    return match_inputs(read_npz(path), signature, str(path), what)


def random_dataset(signature: Signature, n: int = 16, seed: int = 0) -> Dataset:
    """Seeded random inputs shaped by the signature (dynamic axes become n / 1)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for s in signature.inputs:
        shape = [n] + [1 if d is None else int(d) for d in s.shape[1:]]
        dt = np.dtype(s.dtype) if s.dtype not in ("str", "string") else None
        if dt is None:
            arrays[s.name] = np.array([f"text {i}" for i in range(n)]).reshape(shape)
        elif dt.kind == "f":
            arrays[s.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            arrays[s.name] = rng.integers(0, 2, shape).astype(dt)
        else:
            arrays[s.name] = rng.integers(0, 10, shape).astype(dt)
    return Dataset(arrays, None, f"random (seed {seed})")
