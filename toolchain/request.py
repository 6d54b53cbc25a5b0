"""The request every stage receives: which source model, how to open it, which data to read
and how to judge parity. Built in ONE place, from the CLI's options (`from_cli`) or from an
edgekit.toml model and target (`from_model`), so `edgekit convert/validate/bench` and
`edgekit build` (and their arm64 paths) cannot drift apart. Frozen, plain data (no numpy):
it crosses the process boundary to the stage's child process as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgekit.loading import Trust


@dataclass(frozen=True)
class SourceRequest:
    source: str
    trust: Trust = Trust()
    # --input-shape/--model-class/--model-args (edgekit.toml: input_shape, model_class,
    # model_args), checked by edgekit.sources.source_options; the source's runner reads them
    source_options: dict = field(default_factory=dict)
    signature: str | None = None  # --signature (a SavedModel's serving signature)
    inputs: str | None = None  # parity (and timing) samples
    calibration: str | None = None
    label_column: str | None = None
    batch_axis: dict | None = None
    output_kinds: dict | None = None
    tolerance: dict | None = None  # {"atol": ..., "rtol": ...} overrides of the precision's preset
    seed: int = 0

    def open_options(self) -> dict:
        """The options `edgekit.loading.open_model` takes for the source."""
        return {"trust": self.trust, "signature": self.signature, **self.source_options}

    @classmethod
    def from_cli(cls, source, found, *, input_shapes=(), model_class=None, model_args=None,
                 trust: Trust = Trust(), **rest) -> SourceRequest:
        """From a command's options; `found` is the detected source (edgekit.formats.detect)."""
        from edgekit.sources import source_options

        return cls(str(source), trust, source_options(found, input_shapes, model_class, model_args), **rest)

    @classmethod
    def from_model(cls, m, spec=None, source_options: dict | None = None) -> SourceRequest:
        """From an edgekit.toml model (edgekit.config.ModelSpec) and one of its targets
        (TargetSpec, for the tolerance); `source_options` as edgekit.build checked them at plan time."""
        return cls(str(m.source), Trust(pickle=m.trust_pickle, code=m.trust_code, types=tuple(m.trust_types)),
                   dict(source_options or {}), m.signature, str(m.inputs) if m.inputs else None,
                   str(m.calibration) if m.calibration else None, m.label_column, m.batch_axis or None,
                   m.output_kinds or None, {"atol": spec.atol, "rtol": spec.rtol} if spec is not None else None)
