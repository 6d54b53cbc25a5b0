"""The converter registry: (source framework, target) -> converter function.

Converters declare the precisions (quantization modes) and options they support; a
lookup miss lists every registered path, so an unsupported request is answered with what
*is* possible.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.converters import auto
from edgekit.converters.base import ConvertRequest, ConvertResult  # noqa: F401 (converters import them from here)
from edgekit.errors import BadInput
from edgekit.targets import QUANTIZE_MODES, get_target, precision_of


@dataclass(frozen=True)
class Converter:
    source: str
    target: str
    impl: Callable  # the registered function: one concrete precision per call
    quantize: tuple[str, ...]
    needs_calibration: tuple[str, ...]
    options: tuple[str, ...]
    extra: str
    library: str  # the upstream library doing the work, for reports

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.target)

    def func(self, model, request: ConvertRequest, out_path: Path) -> ConvertResult:
        """Convert; --quantize auto runs the shared chooser (edgekit.converters.auto) over `impl`."""
        if request.quantize == "auto":
            return auto.convert(self, model, request, out_path)
        return self.impl(model, request, out_path)


_REGISTRY: dict[tuple[str, str], Converter] = {}
_loaded = False


def register(source: str, target: str, *, quantize: tuple[str, ...] = ("none",),
             needs_calibration: tuple[str, ...] = ("int8",), options: tuple[str, ...] = (),
             extra: str, library: str):
    """Decorator: register `func(model, request, out_path) -> ConvertResult` for a path.

    `func` handles each precision in `quantize` (never "auto"); a path with more than one
    precision also gets `--quantize auto`, run by edgekit.converters.auto over `func`."""
    tgt = get_target(target)  # a typo in a registration fails at import, loudly
    unknown = set(quantize) - set(QUANTIZE_MODES)
    if unknown:
        raise ValueError(f"unknown quantize modes {unknown} for {source}->{target}")
    beyond = {precision_of(q) for q in quantize if q != "auto"} - set(tgt.precisions)
    if beyond:
        raise ValueError(f"{source}->{target}: {target} holds no {', '.join(sorted(beyond))} (Target.precisions)")

    if "auto" in quantize:
        raise ValueError(f"{source}->{target}: 'auto' is added by the registry, do not declare it")
    if len(quantize) > 1:  # more than one precision: let measurement choose among them
        quantize = tuple(quantize) + ("auto",)

    def deco(func: Callable) -> Callable:
        key = (source, target)
        if key in _REGISTRY:
            raise ValueError(f"converter {source}->{target} registered twice")
        _REGISTRY[key] = Converter(source, target, func, tuple(quantize),
                                   tuple(q for q in needs_calibration if q in quantize),
                                   tuple(options), extra, library)
        return func

    return deco


def load_all() -> dict[tuple[str, str], Converter]:
    """Import every converter module (cheap: they import frameworks lazily)."""
    global _loaded
    if not _loaded:
        from edgekit.converters import MODULES

        for mod in MODULES:
            importlib.import_module(mod)
        from edgekit.targets import TARGET_MODULES

        for mod in TARGET_MODULES:  # a target's own module may add paths (e.g. from the sources' ones)
            add = getattr(importlib.import_module(mod), "register_converters", None)
            if add is not None:
                add(register, dict(_REGISTRY))
        _loaded = True
    return _REGISTRY


def paths() -> list[Converter]:
    return sorted(load_all().values(), key=lambda c: c.key)


def lookup(source: str, target: str, quantize: str = "none") -> Converter:
    """The converter for a path, or a BadInput listing what is registered."""
    get_target(target)
    reg = load_all()
    conv = reg.get((source, target))
    if conv is None:
        from_source = sorted(t for s, t in reg if s == source)
        lines = ", ".join(f"{s}→{t}" for s, t in sorted(reg))
        hint = (f"from {source} edgekit can make: {', '.join(from_source)}" if from_source
                else f"edgekit has no converter from {source} models yet")
        raise BadInput(f"converting a {source} model to {target} is not supported.",
                       hint=f"{hint}. Registered paths: {lines}")
    if quantize not in conv.quantize:
        raise BadInput(f"{source}→{target} does not support --quantize {quantize}.",
                       hint=f"supported: {', '.join(conv.quantize)}")
    return conv
