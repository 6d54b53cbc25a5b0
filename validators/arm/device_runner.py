#!/usr/bin/env python3
"""edgekit device runner: run a .tflite or .onnx artifact on this machine and report.

Self-contained on purpose: it needs only Python 3, numpy and the runtime
(ai_edge_litert for .tflite, onnxruntime for .onnx) — not edgekit, torch or tensorflow —
so it runs inside the aarch64 emulator and can be copied to a real board as is.

    python3 device_runner.py MODEL --inputs in.npz --outputs out.npz --report report.json \
        [--warmup 5] [--iterations 20] [--threads 1]

- `--inputs`: arrays keyed by input name with a leading sample axis (a single-input model
  takes any one key). With `--outputs`, every sample is run (in batches the model accepts,
  the last fixed-size batch padded and trimmed) and the outputs are saved keyed by name.
- Quantized I/O is adapted like edgekit's host runners: float data is quantized with the
  file's own scale/zero point, quantized outputs are dequantized to float.
- `--iterations N`: after `--warmup` untimed runs, N timed single-batch inferences on the
  first batch of the inputs. When run under edgekit's QEMU plugin, markers around an
  empty baseline loop (1..2) and the timed loop (3..4) let the host compute executed
  instructions per inference = ((m4 - m3) - (m2 - m1)) / N. Elsewhere they are no-ops.
- The report (JSON) has versions, load time, first-inference time and per-iteration
  seconds. Errors are reported there too ({"error": {...}}) with exit code 3.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time

RUNNER_VERSION = "2"  # 2: timed loops run bind()'s call; string inputs/outputs
MARKER_FD = -7771
EXIT_ERROR = 3


def marker(tag: int) -> None:
    """A syscall the QEMU plugin recognises (lseek on an impossible fd); EBADF otherwise."""
    try:
        os.lseek(MARKER_FD, tag, 0)
    except OSError:
        pass


def progress(msg: str) -> None:
    sys.stderr.write(f"edgekit-device: {msg}\n")
    sys.stderr.flush()


class DeviceError(Exception):
    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage
        self.message = message


# ----------------------------------------------------------------------------- quantized I/O
def quantize(x, spec):
    import numpy as np

    scale = np.asarray(spec["quant"]["scale"] or [1.0], dtype=np.float64)
    zero = np.asarray(spec["quant"]["zero_point"] or [0], dtype=np.float64)
    info = np.iinfo(np.dtype(spec["dtype"]))
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(spec["dtype"])


def dequantize(y, spec):
    import numpy as np

    scale = np.asarray(spec["quant"]["scale"] or [1.0], dtype=np.float32)
    zero = np.asarray(spec["quant"]["zero_point"] or [0], dtype=np.float32)
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def prepare(x, spec):
    """Feed `x` as the model's input: quantized if it is, else cast to its numeric/bool
    dtype; string inputs (ONNX tensor(string)) are handed over as numpy text arrays."""
    import numpy as np

    if spec["dtype"] in ("str", "string"):
        return x if x.dtype.kind in "UO" else x.astype(str)
    dt = np.dtype(spec["dtype"])
    if spec.get("quant") and dt.kind in "iu" and x.dtype.kind == "f":
        return quantize(x, spec)
    return x if x.dtype == dt or dt.kind not in "fiub" else x.astype(dt)


def storable(y):
    """An output as an array np.savez stores without pickling (text as unicode, not object)."""
    import numpy as np

    y = np.asarray(y)
    if y.dtype.kind == "O":
        y = y.astype(str)
    return y


# ----------------------------------------------------------------------------- runtimes
class TFLiteModel:
    runtime = "litert"

    def __init__(self, path: str, threads: int):
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=path, num_threads=threads)
        self.interp.allocate_tensors()
        sigs = self.interp.get_signature_list()
        self.sig_runner = None
        if len(sigs) == 1:  # the same choice as edgekit's host LiteRT runner (names from the signature)
            key = next(iter(sigs))
            self.sig_runner = self.interp.get_signature_runner(key)
            ins, outs = self.sig_runner.get_input_details(), self.sig_runner.get_output_details()
            self.inputs = [self._spec(n, ins[n], np) for n in sigs[key]["inputs"]]
            self.outputs = [self._spec(n, outs[n], np) for n in sigs[key]["outputs"]]
        else:
            self.inputs = [self._spec(d["name"], d, np) for d in self.interp.get_input_details()]
            self.outputs = [self._spec(d["name"], d, np) for d in self.interp.get_output_details()]

    @staticmethod
    def _spec(name, d, np):
        sig = d.get("shape_signature")
        dims = sig if sig is not None and len(sig) else d["shape"]
        qp = d.get("quantization_parameters") or {}
        quant = None
        if len(qp.get("scales", [])):
            quant = {"scale": [float(s) for s in qp["scales"]], "zero_point": [int(z) for z in qp["zero_points"]]}
        return {"name": name, "dtype": np.dtype(d["dtype"]).name,
                "shape": [None if int(x) < 0 else int(x) for x in dims], "quant": quant}

    def infer(self, feeds):
        import numpy as np

        specs = {s["name"]: s for s in self.inputs}
        feeds = {k: prepare(v, specs[k]) for k, v in feeds.items()}
        if self.sig_runner is not None:
            raw = self.sig_runner(**feeds)
        else:
            interp = self.interp
            for d in interp.get_input_details():
                x = feeds[d["name"]]
                if tuple(d["shape"]) != x.shape:
                    interp.resize_tensor_input(d["index"], list(x.shape), strict=False)
                    interp.allocate_tensors()
            for d in interp.get_input_details():
                interp.set_tensor(d["index"], feeds[d["name"]])
            interp.invoke()
            raw = {d["name"]: interp.get_tensor(d["index"]) for d in interp.get_output_details()}
        out = {}
        for s in self.outputs:
            y = np.asarray(raw[s["name"]])
            out[s["name"]] = dequantize(y, s) if s["quant"] and y.dtype.kind in "iu" else y.copy()
        return out

    def bind(self, feeds):
        """One batch bound once: SetTensor -> Invoke -> GetTensor, as edgekit's host runner
        times it (inputs quantized once; outputs read, not dequantized)."""
        specs = {s["name"]: s for s in self.inputs}
        feeds = {k: prepare(v, specs[k]) for k, v in feeds.items()}
        sr = self.sig_runner
        if sr is None or getattr(sr, "_subgraph_index", None) != 0 or not hasattr(sr, "_interpreter_wrapper"):
            return lambda: self.infer(feeds)
        sr(**feeds)  # resizes and allocates for this batch once
        ins = sr.get_input_details()
        outs = sr.get_output_details()
        w = sr._interpreter_wrapper
        set_tensor, invoke, get_tensor = w.SetTensor, w.Invoke, w.GetTensor
        pairs = [(int(ins[k]["index"]), v) for k, v in feeds.items()]
        out_idx = [int(outs[s["name"]]["index"]) for s in self.outputs]

        def run():
            for i, x in pairs:
                set_tensor(i, x, 0)
            invoke(0)
            return [get_tensor(j, 0) for j in out_idx]

        return run

    @staticmethod
    def version() -> str:
        from importlib.metadata import version

        return version("ai-edge-litert")


_ONNXRUNTIME_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
              "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
              "tensor(string)": "str"}


class OnnxModel:
    runtime = "onnxruntime"

    def __init__(self, path: str, threads: int):
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])

        def spec(a):
            shape = [d if isinstance(d, int) and d >= 0 else None for d in (a.shape or [])]
            return {"name": a.name, "dtype": _ONNXRUNTIME_TYPES.get(a.type, a.type), "shape": shape, "quant": None}

        self.inputs = [spec(a) for a in self.session.get_inputs()]
        self.outputs = [spec(a) for a in self.session.get_outputs()]

    def infer(self, feeds):
        specs = {s["name"]: s for s in self.inputs}
        feeds = {k: prepare(v, specs[k]) for k, v in feeds.items()}
        names = [o["name"] for o in self.outputs]
        return dict(zip(names, self.session.run(names, feeds)))

    def bind(self, feeds):
        """session.run(None, feeds) on feeds prepared once (as edgekit's host runner times it)."""
        specs = {s["name"]: s for s in self.inputs}
        feeds = {k: prepare(v, specs[k]) for k, v in feeds.items()}
        run_session = self.session.run
        return lambda: run_session(None, feeds)

    @staticmethod
    def version() -> str:
        import onnxruntime

        return onnxruntime.__version__


def open_artifact(path: str, threads: int, runtime: str | None = None):
    """The model, run by `runtime` (litert or onnxruntime: the caller says which), else by what
    the file looks like (a flatbuffer TFL3 is LiteRT's; onnxruntime reads the rest)."""
    if runtime:
        cls = {c.runtime: c for c in (TFLiteModel, OnnxModel)}.get(runtime)
        if cls is None:
            raise DeviceError("load", f"this device runner has no runtime '{runtime}'.")
        return _open(cls, path, threads)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[4:8] == b"TFL3":
        cls = TFLiteModel
    elif head[4:6] == b"ET":
        raise DeviceError("load", "ExecuTorch (.pte) is not available in this device runner (no aarch64 "
                                  "ExecuTorch Python runtime is installed here).")
    elif path.endswith(".onnx") or head[:1] == b"\x08":  # an ONNX protobuf
        cls = OnnxModel
    else:
        raise DeviceError("load", f"{path}: not a .tflite or .onnx file (give --runtime for other formats).")
    return _open(cls, path, threads)


def _open(cls, path: str, threads: int):
    try:
        return cls(path, threads)
    except Exception as exc:  # the runtimes raise their own types
        raise DeviceError("load", f"{cls.runtime} cannot load {os.path.basename(path)}: "
                                  f"{str(exc).strip()[:400]}") from None


# ----------------------------------------------------------------------------- batching
def batch_size(model):
    sizes = {s["shape"][0] if s["shape"] else None for s in model.inputs if s["shape"]}
    return sizes.pop() if len(sizes) == 1 else None


def load_inputs(path: str, model):
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "_labels"}
    names = [s["name"] for s in model.inputs]
    if len(names) == 1 and names[0] not in arrays and len(arrays) == 1:
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise DeviceError("inputs", f"no array for input(s) {', '.join(missing)}; the file holds "
                                    f"{', '.join(arrays) or 'nothing'}.")
    return {n: arrays[n] for n in names}


def predict(model, arrays, max_batch: int = 256):
    """Every sample, in batches the model accepts (the same rule as edgekit's Runner.predict)."""
    import numpy as np

    n = len(next(iter(arrays.values())))
    fixed = batch_size(model)
    step = fixed or max_batch
    chunks = []
    for start in range(0, n, step):
        feeds = {k: v[start:start + step] for k, v in arrays.items()}
        real = len(next(iter(feeds.values())))
        if fixed and real < fixed:
            feeds = {k: np.concatenate([v] + [v[-1:]] * (fixed - real)) for k, v in feeds.items()}
        out = model.infer(feeds)
        chunks.append({k: storable(v)[:real] for k, v in out.items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def bench_feeds(model, arrays):
    import numpy as np

    batch = batch_size(model) or 1
    feeds = {k: v[:batch] for k, v in arrays.items()}
    if len(next(iter(feeds.values()))) < batch:
        feeds = {k: np.concatenate([v] * batch)[:batch] for k, v in feeds.items()}
    return feeds, batch


def _noop():
    return None


def bench(model, feeds, warmup: int, iterations: int) -> dict:
    """Warm-up, then a marked empty baseline loop and the marked timed loop. The first
    inference is the checked `infer`; the loops time `bind`'s call (the runtime's own
    set inputs -> invoke -> read outputs), as edgekit's host latency does."""
    clock = time.perf_counter
    t0 = clock()
    model.infer(feeds)
    first = clock() - t0
    run = model.bind(feeds)
    for _ in range(warmup):
        run()
    gc.collect()
    gc.disable()  # a collection inside the loop would make counts depend on allocation history
    try:
        base = []
        marker(1)
        for _ in range(iterations):
            t0 = clock()
            _noop()
            base.append(clock() - t0)
        marker(2)
        samples = []
        marker(3)
        for _ in range(iterations):
            t0 = clock()
            run()
            samples.append(clock() - t0)
        marker(4)
    finally:
        gc.enable()
    return {"first_inference_s": first, "warmup": warmup, "iterations": iterations, "samples_s": samples,
            "markers": {"baseline": [1, 2], "timed": [3, 4]}}


# ----------------------------------------------------------------------------- main
def resources() -> dict:
    """Peak resident memory (MB) and the threads the process has at the end (Linux)."""
    out = {}
    try:
        import resource

        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except (ImportError, OSError):
        pass
    try:
        with open("/proc/self/status") as fh:
            out["os_threads"] = next(int(ln.split()[1]) for ln in fh if ln.startswith("Threads:"))
    except (OSError, StopIteration, ValueError):
        pass
    return out


def probe() -> dict:
    import numpy as np

    info = {"machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__}
    progress("importing onnxruntime")
    info["onnxruntime"] = OnnxModel.version()
    progress("importing LiteRT")
    from ai_edge_litert.interpreter import Interpreter  # noqa: F401

    info["ai_edge_litert"] = TFLiteModel.version()
    a = np.arange(64 * 64, dtype=np.float32).reshape(64, 64) / 4096
    a @ a
    marker(1)
    for _ in range(3):
        a @ a
    marker(2)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Run a .tflite/.onnx artifact and report outputs and timings.")
    ap.add_argument("model", nargs="?")
    ap.add_argument("--inputs")
    ap.add_argument("--outputs")
    ap.add_argument("--report", required=True)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-batch", type=int, default=256)
    ap.add_argument("--runtime", choices=("litert", "onnxruntime"), help="the runtime (default: by the file)")
    ap.add_argument("--probe", action="store_true", help="self-test: import everything, print versions")
    args = ap.parse_args(argv)
    report = {"runner_version": RUNNER_VERSION, "machine": platform.machine(), "python": platform.python_version()}
    code = 0
    try:
        if args.probe:
            report.update(probe())
        else:
            if not args.model:
                ap.error("MODEL is required")
            progress(f"loading {os.path.basename(args.model)}")
            t0 = time.perf_counter()
            model = open_artifact(args.model, args.threads, args.runtime)
            report.update({"artifact": args.model, "runtime": model.runtime, "runtime_version": model.version(),
                           "load_s": time.perf_counter() - t0, "threads": args.threads,
                           "inputs": model.inputs, "outputs": model.outputs})
            import numpy as np

            report["numpy"] = np.__version__
            arrays = load_inputs(args.inputs, model) if args.inputs else None
            if args.outputs:
                if arrays is None:
                    raise DeviceError("inputs", "--outputs needs --inputs")
                n = len(next(iter(arrays.values())))
                progress(f"running {n} samples")
                t0 = time.perf_counter()
                try:
                    out = predict(model, arrays, args.max_batch)
                except DeviceError:
                    raise
                except Exception as exc:
                    raise DeviceError("infer", f"{model.runtime} failed: {str(exc).strip()[:400]}") from None
                report["predict"] = {"samples": n, "seconds": time.perf_counter() - t0}
                np.savez(args.outputs, **out)
            if args.iterations > 0:
                if arrays is None:
                    raise DeviceError("inputs", "--iterations needs --inputs (the first batch is timed)")
                feeds, batch = bench_feeds(model, arrays)
                progress(f"timing {args.iterations} inferences after {args.warmup} warm-up")
                try:
                    report["bench"] = {"batch": batch, **bench(model, feeds, args.warmup, args.iterations)}
                except Exception as exc:
                    raise DeviceError("infer", f"{model.runtime} failed: {str(exc).strip()[:400]}") from None
    except DeviceError as exc:
        report["error"] = {"stage": exc.stage, "message": exc.message}
        code = EXIT_ERROR
    report.update(resources())
    with open(args.report, "w") as fh:
        json.dump(report, fh, indent=1)
    return code


if __name__ == "__main__":
    sys.exit(main())
