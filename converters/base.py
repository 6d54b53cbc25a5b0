"""What a converter gets and returns (edgekit.converters.registry re-exports both)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ConvertRequest:
    """Everything a converter gets besides the loaded model."""

    target: str
    quantize: str = "none"
    calibration: Any = None  # edgekit.tensors.Dataset or None
    options: dict = field(default_factory=dict)
    # real samples (--inputs, else --calibration) that timing and auto's parity gate run on,
    # so that they see the shapes the model really gets (a dynamic H/W is never invented)
    samples: Any = None


@dataclass
class ConvertResult:
    path: Path
    precision: str
    notes: list[str] = field(default_factory=list)  # e.g. layout changes, delegation summary
    details: dict = field(default_factory=dict)
