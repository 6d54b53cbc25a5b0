"""Targets and tolerance presets, kept as data (not `if` branches).

A target is an output format: its file extension, the format detection will see, the
runtime that runs it and the precisions it can hold (library versions are pinned in
setup.cfg, reported by `edgekit doctor` and part of build's cache key). A
tolerance preset says when a candidate's outputs match the reference for a precision.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, replace

from edgekit.errors import BadInput
from edgekit.target_decl import Target, TargetOption  # noqa: F401 (the declaration's types)


# Every target is declared by a module of its own: its `TARGET` (a Target, plain data) and,
# optionally, `register_converters(register, registered)` adding converters (the built-in
# targets' converters live in their source family's module). Adding a target adds one module
# and one line here.
TARGET_MODULES = (
    "edgekit.converters.tflite",
    "edgekit.converters.onnx",
    "edgekit.converters.torchscript",
    "edgekit.converters.executorch",
    "edgekit.converters.ort",
    "edgekit.converters.tfjs",
)


def declared_targets() -> list[Target]:
    """The `TARGET` declarations of TARGET_MODULES (their modules import nothing heavy)."""
    out = []
    for m in TARGET_MODULES:
        t = importlib.import_module(m).TARGET
        if isinstance(t, dict):  # a declaration written as a dict of the same fields
            t = Target(**t)
        out.append(replace(t, module=m))
    return out


TARGETS: dict[str, Target] = {t.name: t for t in declared_targets()}


def target_options() -> list[tuple[Target, TargetOption]]:
    """Every convert option a target adds, with its target (the CLI's generic options)."""
    return [(t, o) for t in TARGETS.values() for o in t.options]


QUANTIZE_MODES = ("none", "fp16", "dynamic", "int8", "auto")
# what an output computes, so parity judges it by what matters (edgekit.validators.parity)
OUTPUT_KINDS = ("classification", "regression", "embedding", "detection", "sequence")  # auto: chosen by measurement (converters/auto.py)


def precision_of(quantize: str) -> str:
    """The precision name (tolerance preset key) of a --quantize mode."""
    return "fp32" if quantize in ("none", None) else quantize


@dataclass(frozen=True)
class Tolerance:
    """When do outputs match? Every criterion that is not None must hold; NaN/Inf never pass.

    atol/rtol: elementwise |cand - ref| <= atol + rtol * |ref| (as numpy.allclose).
    min_cosine / min_snr_db: whole-output similarity, for quantized outputs where
    elementwise bounds are meaningless. min_top1: agreement of argmax over the last axis
    for classifier-shaped outputs, and the agreement of label outputs (integer or string).
    max_accuracy_drop: when labels are given. min_rows_close: judge atol/rtol per sample
    (row) and pass when at least this fraction of rows is within them.
    """

    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    min_snr_db: float | None = None
    min_top1: float | None = None
    max_accuracy_drop: float | None = None
    min_rows_close: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def override(self, **values) -> "Tolerance":
        return replace(self, **{k: v for k, v in values.items() if v is not None})


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3, min_top1=0.99),
    # fp16 keeps ~3 significant digits of the tensor's scale, not of each element: an element
    # near 0 next to logits of 15 may move by 1e-2. So fp16 is judged on the whole output.
    "fp16": Tolerance(min_cosine=0.9995, min_snr_db=40.0, min_top1=0.98),
    "dynamic": Tolerance(min_cosine=0.99, min_snr_db=15.0, min_top1=0.95, max_accuracy_drop=0.01),
    "int8": Tolerance(min_cosine=0.98, min_snr_db=12.0, min_top1=0.90, max_accuracy_drop=0.01),
}


# Source families whose reference computes differently from any float32 runtime get their
# own fp32 preset. scikit-learn preprocesses in float64 and compares float32 features with
# float64 split thresholds; the ONNX model does both in float32, so a row that lands within
# float32 rounding of a split takes the other branch (measured: 3 of 500 loan rows, max
# probability change 0.05, labels unchanged). The preset bounds how many rows may do that.
SOURCE_TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "sklearn": {"fp32": Tolerance(atol=1e-4, rtol=1e-3, min_rows_close=0.99, min_cosine=0.999, min_top1=0.99)},
}


def tolerance_preset(precision: str, source_runtime: str | None = None) -> Tolerance:
    """The tolerance preset for a precision, specialised for the source's runtime if it has one."""
    special = SOURCE_TOLERANCES.get(source_runtime or "", {})
    return special.get(precision) or TOLERANCES.get(precision, TOLERANCES["fp32"])


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise BadInput(f"unknown target '{name}'.",
                       hint=f"choose one of: {', '.join(TARGETS)}") from None

