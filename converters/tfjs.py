"""Target `tfjs`: a TensorFlow.js graph model, everything about it in one module.

The artifact is a FOLDER: `model.json` (the graph, its signature, the weights manifest) and
binary weight shards. It is made from Keras (.keras, .h5; exported to a SavedModel with the
same serving signature as the TFLite path) and SavedModel sources by the TensorFlow.js
converter's SavedModel path (`tensorflowjs.converters.tf_saved_model_conversion_v2`):
freeze, check every op against TF.js's op list (unsupported ops: exit 3 naming them), grappler
passes, then write the weights, quantized as asked.

Precisions: fp32; fp16 (float16 weights); dynamic = uint8 affine weight quantization
(`--tfjs-weights uint16` keeps 16 bits instead); TF.js dequantizes weights when it loads the
model, so compute is float32 in every case; `auto` picks the smallest that passes parity.

Why the converter is not a pip dependency: tensorflowjs 4.22's pins (tensorflow, not
tensorflow-cpu; tf-keras, tensorflow-decision-forests, tensorflow-hub, jax, flax) fight
edgekit's tensorflow-cpu 2.21 / keras 3. The two modules used here need only TensorFlow, so
`edgekit web setup` installs the wheel --no-deps (hash-checked) into edgekit's web cache and
this module imports them from there, without the package's __init__ (which imports the Keras
and JAX converters) and with the two optional imports (TF Hub modules, Decision Forests ops)
stubbed so that using them fails loudly.

There is no Python TF.js runtime: parity runs the folder in Node.js (host) or in headless
Chromium (`--arch browser`), through edgekit.validators.web.
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path

from edgekit.target_decl import Target, TargetOption

TFJS_WEIGHTS = ("uint8", "uint16")

TARGET = Target(
    "tfjs", "_tfjs", "tfjs", "web", ("fp32", "fp16", "dynamic"),
    "TensorFlow.js graph model (a folder: model.json + weight shards), run by TF.js",
    runner="edgekit.validators.web.runner:WebRunner",
    format_description="TensorFlow.js graph model folder (model.json + weight shards)", framework="tfjs",
    folder_file="model.json",  # how edgekit.formats detects it: a folder holding model.json
    device_runtime=None,  # not run on emulated arm64: --arch browser / node (edgekit.validators.web)
    capability="a JSON graph of TF.js ops and binary weights, no code",
    extra="tf",
    options=(TargetOption("--tfjs-weights", "tfjs_weights", "--target tfjs --quantize dynamic: weight quantization "
                          "width (default: uint8).", choices=TFJS_WEIGHTS),),
)


def _optional_stub(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)

    def missing(attr):
        raise ImportError(f"{name} is not installed (edgekit converts plain SavedModels to TF.js)")

    mod.__getattr__ = missing
    return mod


def converter_module():
    """tensorflowjs's SavedModel converter, imported from edgekit's web cache (see above)."""
    from edgekit.validators.web.provision import require

    if "tensorflowjs.converters.tf_saved_model_conversion_v2" in sys.modules:
        return sys.modules["tensorflowjs.converters.tf_saved_model_conversion_v2"]
    py = require(browser=False) / "py"
    for name, path in (("tensorflowjs", py / "tensorflowjs"), ("tensorflowjs.converters", py / "tensorflowjs/converters")):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(path)]
            sys.modules[name] = pkg
    for name in ("tensorflow_decision_forests", "tensorflow_hub"):
        sys.modules.setdefault(name, _optional_stub(name))
    import importlib

    return importlib.import_module("tensorflowjs.converters.tf_saved_model_conversion_v2")


def convert_saved_model(saved: Path, out_dir: Path, quantize: str, weights: str | None = None,
                        signature: str = "serving_default") -> dict:
    """The TF.js converter on one SavedModel signature: writes `out_dir` (model.json + shards)."""
    import contextlib
    import io

    from edgekit.errors import BadInput, ConversionFailed, upstream

    weights = weights or "uint8"
    if weights not in TFJS_WEIGHTS:
        raise BadInput(f"--tfjs-weights {weights!r}: expected one of {', '.join(TFJS_WEIGHTS)}.")
    dtype_map = {"none": None, "fp16": {"float16": True}, "dynamic": {weights: True}}[quantize]
    conv = converter_module()
    chatter = io.StringIO()

    def failure(exc):
        text = str(exc).strip()
        if "Unsupported Ops" in text:
            ops = text.split("\n", 1)[-1].strip()
            return ConversionFailed(f"TensorFlow.js does not support these ops of the model: {ops}.",
                                    hint="TF.js runs a subset of TensorFlow's ops; change those layers, or use "
                                         "--target onnx (ONNX Runtime Web runs it in the browser too)")
        return ConversionFailed(f"the TensorFlow.js converter failed: {text[:300]}")

    with upstream("tensorflowjs", "convert_tf_saved_model", error=failure):
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            conv.convert_tf_saved_model(str(saved), str(out_dir), signature_def=signature,
                                        quantization_dtype_map=dtype_map,
                                        weight_shard_size_bytes=4 * 1024 * 1024)
    if not (out_dir / "model.json").is_file():
        raise ConversionFailed("the TensorFlow.js converter wrote no model.json.", details=chatter.getvalue()[-2000:])
    shards = sorted(p.name for p in out_dir.iterdir() if p.suffix == ".bin")
    return {"tfjs_weights": {"none": "float32", "fp16": "float16", "dynamic": weights}[quantize],
            "tfjs_shards": shards, "tensorflowjs": "4.22.0"}


def _result(request, out_path: Path, details: dict):
    from edgekit.converters.registry import ConvertResult
    from edgekit.targets import precision_of

    return ConvertResult(out_path, precision_of(request.quantize),
                         notes=[f"TF.js graph model: model.json + {len(details['tfjs_shards'])} weight shard(s), "
                                f"{details['tfjs_weights']} weights (TF.js computes in float32)"],
                         details=details)


def register_converters(register, registered: dict) -> None:
    quantize = ("none", "fp16", "dynamic")

    @register("keras", "tfjs", quantize=quantize, options=("tfjs_weights",), extra="tf",
              library="tensorflowjs (SavedModel converter)")
    def keras_to_tfjs(model, request, out_path: Path):
        from edgekit.converters.keras import export_saved_model
        from edgekit.progress import progress

        with tempfile.TemporaryDirectory(prefix="edgekit-tfjs-", dir=out_path.parent) as tmp:
            saved = Path(tmp) / "saved_model"
            progress("exporting the Keras model to a SavedModel (serving signature)")
            export_saved_model(model.native, model.signature, saved)
            progress("converting to a TF.js graph model (tensorflowjs)")
            details = convert_saved_model(saved, out_path, request.quantize, request.options.get("tfjs_weights"))
        return _result(request, out_path, details)

    @register("tensorflow", "tfjs", quantize=quantize, options=("tfjs_weights",), extra="tf",
              library="tensorflowjs (SavedModel converter)")
    def savedmodel_to_tfjs(model, request, out_path: Path):
        from edgekit.progress import progress

        progress(f"converting signature '{model.signature_name}' to a TF.js graph model (tensorflowjs)")
        details = convert_saved_model(Path(model.path), out_path, request.quantize,
                                      request.options.get("tfjs_weights"), signature=model.signature_name)
        details["signature"] = model.signature_name
        return _result(request, out_path, details)
