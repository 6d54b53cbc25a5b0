"""One interface for every runtime: load an artifact, read its signature, infer.

A runner's `infer` takes one batch as the model accepts it; `predict` takes a whole data
set (leading sample axis), splits it into batches the model can take, and joins the
outputs. Runners adapt data written for the *source* model: a quantized input is
quantized from float with the file's own scale and zero point, and a quantized output is
dequantized, so parity always compares real values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.tensors import Signature, TensorSpec


class Runner:
    runtime: str = ""  # key in edgekit.validators.runners.RUNNERS
    extra: str = ""  # the pip extra that provides the runtime

    def __init__(self, path: str | Path, *, threads: int | None = None, options: dict | None = None):
        self.path = Path(path)
        self.threads = threads
        self.options = dict(options or {})
        self.signature: Signature | None = None
        self.native = None  # the framework object (model, interpreter, session)
        self.notes: list[str] = []  # what the runner had to adapt, for reports

    # -- to implement -------------------------------------------------------------------
    @classmethod
    def import_runtime(cls) -> None:
        """Import the runtime's modules (paid once per process, before any load); lets
        latency report the import apart from the time to load a model."""

    def load(self) -> "Runner":
        raise NotImplementedError

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch. Keys are this runner's input names; returns outputs by name."""
        raise NotImplementedError

    def bind(self, feeds: dict[str, np.ndarray]) -> "Bound":
        """Bind one batch of inputs once and return the minimal call that runs it.

        `bound.run()` does set inputs -> invoke -> read outputs and nothing else: the input
        conversions `infer` does per call (dtypes, quantization, tensor wrapping, name
        lookups) are done here once, and outputs are returned as the runtime produced them
        (dequantizing and renaming are left to `bound.outputs()`). It runs the whole
        inference every call; `latency.measure` times it, `infer` stays the checked path.
        Valid until the runner is next used with inputs of another shape.
        The default (for runtimes with nothing better) runs `infer`.
        """
        return Bound(lambda: self.infer(feeds))

    def version(self) -> str:
        return ""

    def op_counts(self) -> dict[str, int]:
        """Operator (or layer) counts, for `inspect`."""
        return {}

    def precision(self) -> str:
        """Best guess of the file's precision (fp32/fp16/dynamic/int8), for tolerance presets."""
        return "fp32"

    # -- shared -------------------------------------------------------------------------
    def batch_size(self) -> int | None:
        """The batch the model accepts: an int if fixed, None if the batch axis is dynamic."""
        from edgekit.tensors import batch_axes

        sizes = set()
        axes = batch_axes(self.signature.inputs)
        for s in self.signature.inputs:
            axis = axes.get(s.name, 0)
            if axis is not None and s.shape:
                sizes.add(s.shape[axis])
        if len(sizes) == 1:
            size = sizes.pop()
            return None if size is None else int(size)
        return None

    def predict(self, arrays: dict[str, np.ndarray], max_batch: int = 256,
                axes: dict | None = None) -> dict[str, np.ndarray]:
        """Infer a whole data set (leading sample axis) in batches the model accepts.

        `axes` (edgekit.tensors.Dataset.axes) say which inputs the model batches on another
        axis or takes as scalars; outputs batched on another axis come back sample-first."""
        from edgekit.tensors import batch_axes, from_model_layout, to_model_layout

        axes = {**batch_axes(self.signature.inputs), **(axes or {})}
        out_axes = batch_axes(self.signature.outputs)
        n = len(next(iter(arrays.values())))
        fixed = self.batch_size()
        step = fixed or max_batch
        if any(a is None and k in arrays and np.unique(arrays[k]).size > 1 for k, a in axes.items()):
            step = 1  # a scalar input that changes between samples: one sample per call
        chunks: list[dict[str, np.ndarray]] = []
        for start in range(0, n, step):
            feeds = {k: v[start:start + step] for k, v in arrays.items()}
            real = len(next(iter(feeds.values())))
            if fixed and real < fixed:  # pad the last batch of a fixed-batch model, then trim
                feeds = {k: np.concatenate([v] + [v[-1:]] * (fixed - real)) for k, v in feeds.items()}
            out = from_model_layout(self.infer(to_model_layout(feeds, axes)), out_axes)
            chunks.append({k: np.asarray(v)[:real] for k, v in out.items()})
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def close(self) -> None:
        self.native = None


class Bound:
    """One batch bound to a runner: `run()` infers it (what latency times); `outputs()`
    runs it once and returns the outputs as `infer` names and converts them."""

    __slots__ = ("run", "_convert")

    def __init__(self, run: Callable[[], Any], convert: Callable[[Any], dict] | None = None):
        self.run = run
        self._convert = convert

    def outputs(self) -> dict[str, np.ndarray]:
        raw = self.run()
        return self._convert(raw) if self._convert else raw


def quantize_array(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float data -> the integer representation a quantized input expects."""
    q = spec.quantization or {}
    scale = np.asarray(q.get("scale") or [1.0], dtype=np.float64)
    zero = np.asarray(q.get("zero_point") or [0], dtype=np.float64)
    info = np.iinfo(np.dtype(spec.dtype))
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(spec.dtype)


def dequantize_array(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    q = spec.quantization or {}
    scale = np.asarray(q.get("scale") or [1.0], dtype=np.float32)
    zero = np.asarray(q.get("zero_point") or [0], dtype=np.float32)
    return ((x.astype(np.float32) - zero) * scale).astype(np.float32)
