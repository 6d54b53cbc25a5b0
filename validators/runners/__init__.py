"""Runners, one per runtime, all with the interface of `base.Runner`.

The table maps a runtime name (as used by `edgekit.formats.FORMATS` and
`edgekit.targets.TARGETS`) to its class, imported only when needed.
"""

from __future__ import annotations

import importlib

RUNNERS = {
    "keras": "edgekit.validators.runners.keras:KerasRunner",
    "litert": "edgekit.validators.runners.litert:LiteRTRunner",
    "onnxruntime": "edgekit.validators.runners.onnxrt:OnnxRuntimeRunner",
    "sklearn": "edgekit.validators.runners.sklearn:SklearnRunner",
    "tensorflow": "edgekit.validators.runners.tfsaved:SavedModelRunner",
    "arm64": "edgekit.validators.arm.runner:ArmRunner",  # .tflite/.onnx on emulated aarch64
    "web": "edgekit.validators.web.runner:WebRunner",  # .onnx/TF.js in headless Chromium or Node.js
    "torch_export": "edgekit.validators.runners.torch:TorchExportRunner",
    "torch_eager": "edgekit.validators.runners.torch:TorchEagerRunner",
    "torchscript": "edgekit.validators.runners.torch:TorchScriptRunner",
    "executorch": "edgekit.validators.runners.executorch:ExecuTorchRunner",
}



def _declared_runners() -> dict[str, str]:
    from edgekit.targets import declared_targets

    return {d["runtime"]: d["runner"] for d in declared_targets()}


RUNNERS.update(_declared_runners())  # runners of targets declared in their own module


def runner_class(runtime: str):
    from edgekit.errors import BadInput

    try:
        module, _, name = RUNNERS[runtime].partition(":")
    except KeyError:
        raise BadInput(f"edgekit has no runner for the '{runtime}' runtime yet.",
                       hint=f"runners available: {', '.join(RUNNERS)}") from None
    return getattr(importlib.import_module(module), name)
