"""What the benchmark runs in child processes: the baselines (the frameworks' own inference
and the conversions a user would do by hand), the hardware peak, FLOP counts and accuracy.

Every function here runs inside a child started by `edgekit.isolation.run` (or as
`python -m benchmarks.workers hand ...` when the parent times a whole process), so heavy
imports stay inside functions and each measurement gets a fresh interpreter.
Baseline timings follow `edgekit.validators.latency.measure`'s protocol exactly: load,
one first inference, `warmup` untimed runs, then `iterations` timed single-batch runs,
summarised by the same `stats_ms`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def _first(npz: str, key: str | None = None) -> np.ndarray:
    data = np.load(npz)
    k = key or next(k for k in data.files if not k.startswith("_"))
    return np.ascontiguousarray(data[k][:1])


def _timed_loop(call, warmup: int, iterations: int) -> dict:
    from edgekit.validators.latency import stats_ms

    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    out = stats_ms(samples)
    out["first_inference_ms"] = first * 1000.0
    out["warmup"] = warmup
    return out


def _torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(int(threads))


# ----------------------------------------------------------------------------- models
def torch_module(name: str):
    """The sample's nn.Module with the weights of its .pt2 (eager torch, as its author runs it)."""
    import torch

    sys.path.insert(0, str(SAMPLES))
    ep = torch.export.load(str(Path(os.environ.get("EDGEKIT_SAMPLES_DIR", SAMPLES / "build")) / f"{name}.pt2"))
    if name == "mobilenet_torch":
        from mobilenet_torch import MobileNetV2 as cls
    elif name == "digits_torch":
        from digits_torch import DigitsCNN as cls
    elif name == "lstm_torch":
        from lstm_torch import LSTMAttention as cls
    else:
        raise ValueError(name)
    model = cls()
    state = dict(ep.state_dict)
    state.update({k: v for k, v in ep.constants.items() if isinstance(v, torch.Tensor)})
    model.load_state_dict(state, strict=False)
    missing = set(model.state_dict()) - set(state)
    if missing:  # never benchmark a half-loaded model silently
        raise RuntimeError(f"{name}: weights missing from the .pt2: {sorted(missing)[:5]}")
    return model.eval(), ep


def build_keras_mobilenet(out_dir: str, seed: int = 0) -> dict:
    """keras.applications.MobileNetV2 at 224x224, random init with a fixed seed (no download),
    plus NHWC validation/calibration images. The Keras counterpart of samples/mobilenet_torch."""
    import keras

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None, classes=1000,
                                           classifier_activation=None)
    # The first layer's input name is 'input_layer'; give it the sample's name.
    inp = keras.Input((224, 224, 3), batch_size=1, name="image")
    model = keras.Model(inp, model(inp), name="mobilenet_keras")
    rng = np.random.default_rng(seed)

    def images(n):
        low = rng.random((n, 14, 14, 3), dtype=np.float32)
        return np.repeat(np.repeat(low, 16, axis=1), 16, axis=2) * 2 - 1

    path = out / "mobilenet_keras.keras"
    model.save(path)
    np.savez(out / "mobilenet_keras_val.npz", image=images(8))
    np.savez(out / "mobilenet_keras_calib.npz", image=images(32))
    return {"path": str(path), "params": int(model.count_params())}


# ----------------------------------------------------------------------------- the hardware
def peak_flops(threads: int, n: int = 2048, repeats: int = 7) -> dict:
    """Peak float32 FLOP/s from a large matrix product (numpy/OpenBLAS and torch), `threads` threads."""
    from threadpoolctl import threadpool_limits

    results = {}
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flop = 2.0 * n ** 3

    def best(fn):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return {"gflops_best": flop / min(times) / 1e9, "gflops_median": flop / float(np.median(times)) / 1e9}

    with threadpool_limits(limits=threads):
        results["numpy"] = best(lambda: a @ b)
    try:
        import torch

        torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        results["torch"] = best(lambda: torch.mm(ta, tb))
    except ImportError:
        pass
    winner = max(results, key=lambda k: results[k]["gflops_best"])
    return {"threads": threads, "n": n, "by_library": results, "library": winner,
            "gflops": results[winner]["gflops_best"]}


# ----------------------------------------------------------------------------- FLOPs
def _dims(vi) -> list:
    return [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]


def onnx_flops(path: str) -> dict:
    """Multiply-accumulates of the compute ops in a float ONNX graph (Conv, ConvTranspose,
    Gemm, MatMul, LSTM, GRU; dynamic axes counted as 1), and FLOPs = 2 x MACs. Element-wise
    ops (activations, adds, pooling) are left out: they are a few percent and memory-bound."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(path)
    model = shape_inference.infer_shapes(model)
    g = model.graph
    shapes = {vi.name: _dims(vi) for vi in list(g.input) + list(g.value_info) + list(g.output)}
    shapes.update({t.name: list(t.dims) for t in g.initializer})
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    by_op: dict[str, int] = {}

    def add(op, macs):
        by_op[op] = by_op.get(op, 0) + int(macs)

    unknown = []
    for node in g.node:
        op = node.op_type
        if op in ("Conv", "ConvTranspose"):
            w, y = shapes.get(node.input[1]), shapes.get(node.output[0])
            if not w or not y:
                unknown.append(node.name)
                continue
            if op == "Conv":  # out elements x (Cin/groups x kH x kW)
                add(op, np.prod(y) * np.prod(w[1:]))
            else:
                x = shapes.get(node.input[0])
                add(op, np.prod(x) * np.prod(w[1:]))
        elif op in ("Gemm", "MatMul"):
            a, y = shapes.get(node.input[0]), shapes.get(node.output[0])
            if not a or not y:
                unknown.append(node.name)
                continue
            add(op, np.prod(y) * a[-1])
        elif op in ("LSTM", "GRU"):
            x = shapes.get(node.input[0])
            w = shapes.get(node.input[1])  # [dirs, gates*H, I]
            r = shapes.get(node.input[2])  # [dirs, gates*H, H]
            if not x or not w or not r:
                unknown.append(node.name)
                continue
            steps_batch = x[0] * x[1]
            add(op, steps_batch * w[0] * (w[1] * w[2] + r[1] * r[2]))
        elif op in ("Loop", "Scan", "If"):
            unknown.append(f"{node.name} ({op})")
    macs = sum(by_op.values())
    del consts
    return {"macs": macs, "flops": 2 * macs, "by_op": by_op, "uncounted": unknown}


def torch_flops(name: str) -> dict:
    """FLOPs of the sample's eager module at batch 1, by torch's own FlopCounterMode (cross-check)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model, ep = torch_module(name)
    args = tuple(torch.zeros([1 if isinstance(d, torch.SymInt) or i == 0 else int(d)
                              for i, d in enumerate(n.meta["val"].shape)])
                 for n in ep.graph.nodes if n.op == "placeholder" and n.name in ep.graph_signature.user_inputs)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*args)
    return {"flops": int(counter.get_total_flops())}


# ----------------------------------------------------------------------------- baselines
def baseline_latency(kind: str, path: str, threads: int, inputs: str, warmup: int = 10,
                     iterations: int = 100) -> dict:
    """Latency of a baseline: the source framework's own inference, or a hand-made artifact
    in its runtime with default settings except the thread count (as a user would set it)."""
    x = None if inputs.endswith(".csv") else _first(inputs)
    t_import = time.perf_counter()
    if kind in ("torch_eager", "torchscript", "executorch"):
        # the same OpenMP wait policy edgekit's torch runners use (set before torch's import):
        # both sides sleep rather than spin between parallel regions
        from edgekit.validators.runners.torch import passive_openmp

        passive_openmp()
    # load_ms = the model's load alone; the runtime's import is reported apart (as edgekit's
    # measure() does): each branch imports, then starts the load clock with t0 = ...
    if kind == "torch_eager":
        import torch

        t0 = time.perf_counter()
        _torch_threads(threads)
        model, _ = torch_module(Path(path).stem)
        tx = torch.from_numpy(x)
        load = time.perf_counter() - t0

        def call():
            with torch.inference_mode():
                return model(tx)
    elif kind.startswith("keras"):
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already set by an earlier variant in this child
            pass
        import keras

        t0 = time.perf_counter()
        model = keras.models.load_model(path, compile=False)
        tx = tf.constant(x)
        load = time.perf_counter() - t0
        if kind == "keras_predict_on_batch":
            def call():
                return model.predict_on_batch(x)
        else:  # a cached tf.function (graph mode), optionally XLA-compiled
            fn = tf.function(lambda t: model(t, training=False), jit_compile=kind == "keras_xla",
                             reduce_retracing=True)

            def call():
                return fn(tx).numpy()
    elif kind == "sklearn":
        import pandas as pd
        from skops.io import get_untrusted_types, load

        t0 = time.perf_counter()
        model = load(path, trusted=get_untrusted_types(file=path))
        frame = _table_row(inputs)
        load = time.perf_counter() - t0

        def call():
            return model.predict_proba(frame)
    elif kind == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        t0 = time.perf_counter()
        it = Interpreter(model_path=path, num_threads=threads)
        it.allocate_tensors()
        din, dout = it.get_input_details()[0], it.get_output_details()[0]
        if list(din["shape"]) != list(x.shape):
            x = np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))) if len(x.shape) == 4 else x
        load = time.perf_counter() - t0

        def call():
            it.set_tensor(din["index"], x)
            it.invoke()
            return it.get_tensor(dout["index"])
    elif kind == "onnx":
        import onnxruntime as ort

        t0 = time.perf_counter()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        feeds = _onnx_feeds(sess, x, inputs)
        load = time.perf_counter() - t0

        def call():
            return sess.run(None, feeds)
    elif kind == "executorch":
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        t0 = time.perf_counter()
        portable_lib._unsafe_reset_threadpool(threads)
        method = Runtime.get().load_program(path).load_method("forward")
        tx = torch.from_numpy(x)
        load = time.perf_counter() - t0

        def call():
            return method.execute([tx])
    elif kind == "torchscript":
        import torch

        t0 = time.perf_counter()
        _torch_threads(threads)
        model = torch.jit.load(path)
        tx = torch.from_numpy(x)
        load = time.perf_counter() - t0

        def call():
            with torch.inference_mode():
                return model(tx)
    else:
        raise ValueError(kind)
    out = _timed_loop(call, warmup, iterations)
    from edgekit.validators.latency import file_size

    out.update({"kind": kind, "artifact": path, "threads_requested": threads, "load_ms": load * 1000.0,
                "runtime_import_ms": (t0 - t_import) * 1000.0,
                "size_bytes": file_size(Path(path)), "os_threads": len(os.listdir("/proc/self/task"))})
    return out


def _table_row(csv_path: str):
    """The first complete row of a labelled CSV, as a one-row DataFrame (label dropped)."""
    import pandas as pd

    frame = pd.read_csv(csv_path)
    frame = frame.drop(columns=[c for c in ("default_flag", "target", "label") if c in frame])
    return frame.dropna().iloc[:1]


def latency_per_threads(who: str, path: str, threads_list: list[int], inputs: str, kind: str | None = None,
                        warmup: int = 10, iterations: int = 100) -> list[dict]:
    """One child, every thread count in turn (a fresh interpreter/session each): the runtime is
    imported once per artifact instead of once per thread count, which roughly halves the time
    `make bench` spends starting processes (ExecuTorch's import alone is ~4 s). edgekit files go
    through edgekit's own measure(), baselines through baseline_latency()."""
    rows = []
    for threads in threads_list:
        if who == "baseline":
            rows.append(baseline_latency(kind, path, threads, inputs, warmup=warmup, iterations=iterations))
        else:
            from edgekit.validators.latency import measure

            rows.append(measure(path, threads=threads, warmup=warmup, iterations=iterations, inputs=inputs))
    return rows


def keras_baselines(path: str, threads: int, inputs: str, kinds: list[str], warmup: int = 10,
                    iterations: int = 100) -> list[dict]:
    """Every Keras inference style in one child (TensorFlow's thread pools are fixed once
    created, so one child per thread count): one result per kind, load time = the first's."""
    rows = []
    for kind in kinds:
        rows.append(baseline_latency(kind, path, threads, inputs, warmup=warmup, iterations=iterations))
    return rows


def _onnx_feeds(sess, x, inputs: str) -> dict:
    ins = sess.get_inputs()
    if x is not None:
        return {ins[0].name: x}
    row = _table_row(inputs)
    dtypes = {"tensor(string)": object, "tensor(int64)": np.int64, "tensor(double)": np.float64}
    return {i.name: row[i.name].to_numpy().astype(dtypes.get(i.type, np.float32)).reshape(1, 1) for i in ins}


# ----------------------------------------------------------------------------- accuracy
def predictions(path: str, inputs: str) -> dict:
    """Top-1 predictions of an artifact or source on a labelled .npz, through edgekit's runners."""
    from edgekit.loading import open_model
    from edgekit.tensors import load_dataset

    runner = open_model(path)
    data = load_dataset(inputs, runner.signature)
    out = runner.predict(data.arrays)
    y = np.asarray(next(iter(out.values())))
    pred = y.reshape(len(y), -1).argmax(axis=1)
    acc = float((pred == data.labels).mean()) if data.labels is not None else None
    return {"pred": pred.tolist(), "accuracy": acc, "n": int(len(pred))}


# ----------------------------------------------------------------------------- hand conversions
def hand_convert(kind: str, source: str, out: str) -> float:
    """The conversion a user would write by hand, with the converter's defaults. Returns the
    seconds spent in the converter (imports and model loading excluded)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import warnings

    warnings.simplefilter("ignore")
    if kind.startswith("keras_"):
        import keras
        import tensorflow as tf

        model = keras.models.load_model(source, compile=False)
        t0 = time.perf_counter()
        if kind == "keras_tflite":
            Path(out).write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        elif kind == "keras_onnx":
            import tf2onnx

            spec = [tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), tf.float32, name="image")]
            fn = tf.function(lambda image: model(image, training=False), input_signature=spec)
            tf2onnx.convert.from_function(fn, input_signature=spec, opset=18, output_path=out)
        else:
            raise ValueError(kind)
        return time.perf_counter() - t0
    if kind == "sklearn_onnx":  # skl2onnx's documented one-liner: types inferred from a DataFrame
        import pandas as pd
        from skl2onnx import to_onnx
        from skops.io import get_untrusted_types, load

        t0 = time.perf_counter()
        model = load(source, trusted=get_untrusted_types(file=source))
        frame = pd.read_csv(Path(source).with_name("loan_risk_val.csv")).drop(columns=["default_flag"])
        t0 = time.perf_counter()
        Path(out).write_bytes(to_onnx(model, frame.iloc[:1]).SerializeToString())
        return time.perf_counter() - t0
    import torch

    ep = torch.export.load(source)
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in ep.graph_signature.user_inputs]
    args = tuple(torch.zeros([1 if not isinstance(d, int) else d for d in n.meta["val"].shape])
                 for n in placeholders)
    t0 = time.perf_counter()
    if kind == "torch_onnx":
        torch.onnx.export(ep, (), out, dynamo=True, external_data=False)
    elif kind == "torch_tflite":
        import litert_torch

        litert_torch.convert(ep.module(), args).export(out)
    elif kind == "torch_executorch":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        static = torch.export.export(ep.module(), args)
        prog = to_edge_transform_and_lower(static, partitioner=[XnnpackPartitioner()]).to_executorch()
        Path(out).write_bytes(prog.buffer)
    elif kind == "torch_torchscript":
        model, _ = torch_module(Path(source).stem)
        with torch.no_grad():
            # optimize_for_inference's MKLDNN rewrite does not survive save/load, so the saved
            # file a user ships is the frozen trace
            ts = torch.jit.freeze(torch.jit.trace(model, args))
        torch.jit.save(ts, out)
    else:
        raise ValueError(kind)
    return time.perf_counter() - t0


if __name__ == "__main__":  # python -m benchmarks.workers hand KIND SOURCE OUT
    if sys.argv[1] == "hand":
        print(f"{hand_convert(*sys.argv[2:5]):.3f}")
