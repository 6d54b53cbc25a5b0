"""Target `torchscript`: frozen TorchScript archives (its declaration; see edgekit.targets).

Its converters (trace or script, then freeze) live in edgekit.converters.torch. The format
is a zip with data.pkl and code/ (detected in edgekit.formats).
"""

from edgekit.target_decl import Target, TargetOption

TARGET = Target(
    "torchscript", ".pt", "torchscript", "torchscript", ("fp32",),
    "TorchScript archive (frozen)",
    runner="edgekit.validators.runners.torch:TorchScriptRunner",
    format_description="TorchScript archive", framework="torchscript", extensions=(".pt", ".ptl", ".pth"),
    capability="runs TorchScript code (torch operators only, no Python) when executed",
    extra="torch", packages=("torch",), doctor=(("torch", "TorchScript"),),
    options=(TargetOption("--script", "script", "TorchScript target: torch.jit.script instead of trace.",
                          is_flag=True, applies="--target torchscript from PyTorch sources"),),
)
