"""Converters, one module per source framework family.

Each module registers its (source, target) paths with `@register` at import time and
imports its heavy framework only inside the converter functions. Adding a path: write the
function in its family's module (or a new module listed in `MODULES`).
"""

MODULES = (
    "edgekit.converters.keras",
    "edgekit.converters.tensorflow",
    "edgekit.converters.sklearn",
    "edgekit.converters.onnx_source",
    "edgekit.converters.torch",
)
