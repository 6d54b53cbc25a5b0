"""Options that describe a source model beyond its file: --input-shape, --model-class,
--model-args. Checked here in the CLI process (cheap, no framework import) so mistakes fail
fast; the source's runner interprets them in the child process.
"""

from __future__ import annotations

import json

from edgekit.errors import BadInput
from edgekit.formats import Detected

SHAPE_SOURCES = ("torch", "torchscript")  # frameworks whose files may lack an input signature
WEIGHT_FORMATS = ("torch_state_dict", "safetensors")


def source_options(found: Detected, input_shapes=(), model_class: str | None = None,
                   model_args: str | dict | None = None) -> dict:
    """Validate the source-describing options for `found`; return them for the stage. The CLI
    and `edgekit build` (an edgekit.toml model's input_shape, model_class, model_args) both
    build them here, so a stage sees the same options from either. `model_args` is the
    --model-args JSON text, or the table edgekit.toml already parsed."""
    shapes = []
    if input_shapes:  # edgekit.tensors imports numpy: keep it out of the CLI process unless needed
        from edgekit.tensors import parse_input_shapes

        shapes = parse_input_shapes(input_shapes)
    # a source with its own signature takes --input-shape too: it pins the dynamic axes (checked
    # against the signature in the stage, edgekit.pipeline.pin_input_shapes)
    if model_class and found.name not in WEIGHT_FORMATS:
        raise BadInput(f"--model-class is for weights files (state_dict, .safetensors); {found.path} is a "
                       f"{found.spec.description}, which carries its own model.",
                       hint="drop --model-class")
    if found.name in WEIGHT_FORMATS and not model_class:
        raise BadInput(f"{found.path}: is a {found.spec.description}: only weights, no model code.",
                       hint="pass --model-class package.module:ClassOrFactory (with --model-args JSON if the "
                            "constructor needs arguments) and --input-shape, e.g. --input-shape 1x3x224x224")
    if model_class and (":" not in model_class or not all(model_class.partition(":")[::2])):
        raise BadInput(f"--model-class {model_class!r}: expected package.module:ClassOrFactory.",
                       hint="e.g. --model-class mypkg.nets:DigitsCNN")
    args = {}
    if model_args:
        if not model_class:
            raise BadInput("--model-args goes with --model-class.")
        try:
            args = json.loads(model_args) if isinstance(model_args, str) else model_args
        except ValueError as exc:
            raise BadInput(f"--model-args is not valid JSON ({exc}).",
                           hint="""e.g. --model-args '{"num_classes": 10}'""") from None
        if not isinstance(args, dict):
            raise BadInput("--model-args must be a JSON object of keyword arguments.",
                           hint="""e.g. --model-args '{"num_classes": 10}'""")
    out: dict = {}
    if shapes:
        out["input_shapes"] = shapes
    if model_class:
        out["model_class"] = model_class
        out["model_args"] = args
    return out
