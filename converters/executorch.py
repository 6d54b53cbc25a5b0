"""Target `executorch`: ExecuTorch programs with the XNNPACK delegate (its declaration; see
edgekit.targets). Its converters live in edgekit.converters.torch."""

from edgekit.target_decl import Target

TARGET = Target(
    "executorch", ".pte", "executorch", "executorch", ("fp32", "dynamic", "int8"),
    "ExecuTorch program with the XNNPACK delegate",
    runner="edgekit.validators.runners.executorch:ExecuTorchRunner",
    format_description="ExecuTorch program (.pte)", framework="executorch", magic=rb"ET\d\d",
    no_device_runtime="ExecuTorch is not available under emulation (no aarch64 ExecuTorch Python runtime in "
                      "the emulated arm64 environment), so this .pte cannot be checked on arm64.",
    capability="a flatbuffer program of ExecuTorch operators, no code",
    extra="torch", packages=("executorch",), doctor=(("executorch", "ExecuTorch .pte (XNNPACK)"),),
)
