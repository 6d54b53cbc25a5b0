"""Emulated 64-bit ARM (aarch64): run .tflite/.onnx artifacts under qemu-user.

- `provision`: `edgekit arm setup` / `status` — a cached, versioned aarch64 runtime
  (qemu-aarch64, a Debian arm64 sysroot with Python 3.11, aarch64 wheels of numpy,
  onnxruntime and ai-edge-litert, and an instruction-counting TCG plugin).
- `device_runner`: the standalone script that runs inside the emulator (numpy + the
  runtime only; no edgekit import), and later on real boards.
- `runner.ArmRunner`: the `Runner` that drives it from the host, so parity on ARM uses
  the same `edgekit.validators.parity` metrics and presets as on the host.
- `stages`: the child-process stages behind `validate/bench/convert --arch arm64`.

Importing this package is cheap (stdlib only): the CLI imports it to declare options.
"""

ARCHES = ("host", "arm64")
CPUS = ("neoverse-n1", "cortex-a76")  # `-cpu max` gives wrong LiteRT int8 results on qemu 7.2
DEFAULT_CPU = "neoverse-n1"
EMULATED_LABEL = "emulated — relative only, not device speed"
