"""The browser and Node.js as edge runtimes: `--arch browser` / `--arch node`, `edgekit web`.

- `provision`: `edgekit web setup` / `status` — Debian's `chromium`, and pinned npm packages
  (onnxruntime-web, @tensorflow/tfjs, @tensorflow/tfjs-backend-wasm, playwright-core; locked
  by `package-lock.json` here) plus the TensorFlow.js converter (Python, no dependencies of its
  own) in edgekit's cache, versioned by what they are built from, built aside and renamed in.
- `harness.js`: the in-page/in-Node code: load the model in ONNX Runtime Web or TF.js, run
  every batch, then warm-up and timed runs with performance.now(); tensors cross as binary.
- `driver.js`: Node entry point; `--mode node` runs the harness in Node, `--mode browser`
  drives the system Chromium with playwright-core against edgekit's loopback server.
- `runner.WebRunner`: the `Runner` interface over one driver run (parity, latency).

Importing this package is cheap (stdlib only): the CLI imports it to declare options.
"""

ARCHES = ("browser", "node")
# what runs each artifact kind, per arch: the first is the default, the others are extra runtimes
RUNTIMES = {"onnx": ("onnxruntime-web",), "tfjs": ("tfjs-wasm", "tfjs-cpu")}
LATENCY_LABEL = "headless Chromium on this machine, wasm/JS, 1 thread"
NODE_LATENCY_LABEL = "Node.js on this machine, wasm/JS, 1 thread"
