"""Runner.bind: the minimal call latency times must compute what infer() computes.

Every runner's bound call (set inputs -> invoke -> read outputs, inputs converted once)
is checked against the checked path `infer` on the same batch, twice in a row (a bound
call is reusable), with tiny models built here. `measure` is checked to time the bound
call and to report the runtime import apart from the model's load. Nothing is timed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.loading import Trust, open_model
from edgekit.tensors import random_dataset


def _first_batch(runner, n: int = 3, data=None) -> dict:
    data = data or random_dataset(runner.signature, n=n, seed=1)
    batch = runner.batch_size() or n
    return {k: v[:batch] for k, v in data.arrays.items()}


def assert_bound_matches_infer(runner, feeds: dict, exact: bool = True) -> dict:
    want = runner.infer(feeds)
    bound = runner.bind(feeds)
    assert bound.run() is not None  # the call produces the outputs every time
    for _ in range(2):
        got = bound.outputs()
        assert list(got) == list(want), (list(got), list(want))
        for k in want:
            a, b = np.asarray(got[k]), np.asarray(want[k])
            assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, b.shape, a.dtype, b.dtype)
            if a.dtype.kind in "OUS" or exact:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # and infer still works after bind (the runner is not left in a bound-only state)
    again = runner.infer(feeds)
    for k in want:
        np.testing.assert_array_equal(np.asarray(again[k]), np.asarray(want[k]))
    return want


# ----------------------------------------------------------------------------- onnxruntime
def _onnx_model(path, with_strings: bool = False):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("ArgMax", ["y"], ["label"], axis=1)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3]),
               helper.make_tensor_value_info("label", TensorProto.INT64, [None, 1])]
    if with_strings:
        nodes.append(helper.make_node("Identity", ["s"], ["s_out"]))
        inputs.append(helper.make_tensor_value_info("s", TensorProto.STRING, [None, 1]))
        outputs.append(helper.make_tensor_value_info("s_out", TensorProto.STRING, [None, 1]))
    graph = helper.make_graph(nodes, "g", inputs, outputs, [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_onnxruntime_bound_call_matches_infer(tmp_path):
    runner = open_model(_onnx_model(tmp_path / "m.onnx", with_strings=True))
    feeds = _first_batch(runner)
    out = assert_bound_matches_infer(runner, feeds)
    assert out["label"].dtype == np.int64 and out["s_out"].shape == (3, 1)


def test_measure_times_the_bound_call_and_reports_the_import_apart(tmp_path):
    from edgekit.validators.latency import measure

    res = measure(str(_onnx_model(tmp_path / "m.onnx")), warmup=1, iterations=5)
    assert res["iterations"] == 5 and res["timed"] == "bind"
    assert res["runtime_import_ms"] is not None and res["runtime_import_ms"] >= 0
    assert res["load_ms"] > 0 and res["first_inference_ms"] > 0


# ----------------------------------------------------------------------------- TensorFlow / LiteRT / Keras
@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    """A tiny Keras model saved as .keras and as a SavedModel, plus fp32 and int8 (int8 I/O) TFLite."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    out = tmp_path_factory.mktemp("keras_bind")
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inp)
    model = keras.Model(inp, [keras.layers.Dense(3, name="logits")(hidden),
                              keras.layers.Dense(1, name="score")(hidden)])
    model.save(out / "m.keras")
    model.export(str(out / "saved"), verbose=False)
    (out / "m.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: ([rng.standard_normal((1, 6)).astype(np.float32)] for _ in range(16))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (out / "m_int8.tflite").write_bytes(conv.convert())
    return out


@pytest.mark.tf
@pytest.mark.parametrize("name", ["m.tflite", "m_int8.tflite"])
def test_litert_bound_call_matches_infer(keras_files, name):
    runner = open_model(keras_files / name)
    feeds = _first_batch(runner)
    out = assert_bound_matches_infer(runner, feeds)
    # quantized outputs come back dequantized through bound.outputs(), as from infer()
    assert all(v.dtype == np.float32 for v in out.values())
    if "int8" in name:
        assert runner.signature.inputs[0].dtype == "int8"


@pytest.mark.tf
def test_litert_bind_resizes_once_for_another_batch(keras_files):
    runner = open_model(keras_files / "m.tflite")
    one = _first_batch(runner, n=1)
    four = _first_batch(runner, n=4)
    if runner.batch_size() is None:  # a dynamic batch: bind resizes, then infer of batch 1 still works
        assert_bound_matches_infer(runner, four)
    assert_bound_matches_infer(runner, one)


@pytest.mark.tf
@pytest.mark.parametrize("name", ["m.keras", "saved"])
def test_keras_and_savedmodel_bound_call_matches_infer(keras_files, name):
    runner = open_model(keras_files / name)
    assert_bound_matches_infer(runner, _first_batch(runner), exact=False)


# ----------------------------------------------------------------------------- PyTorch
class _Net:
    @staticmethod
    def build():
        import torch

        torch.manual_seed(0)

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
                self.fc = torch.nn.Linear(4 * 6 * 6, 5)

            def forward(self, image):
                h = torch.relu(self.conv(image))
                return self.fc(h.flatten(1)), h.mean(dim=(2, 3))

        return Net().eval(), (torch.randn(1, 1, 6, 6),)


@pytest.mark.torch
def test_torch_export_and_torchscript_bound_call_matches_infer(tmp_path):
    import torch

    from edgekit.validators.runners.torch import TS_METADATA

    model, args = _Net.build()
    torch.export.save(torch.export.export(model, args), str(tmp_path / "m.pt2"))
    runner = open_model(tmp_path / "m.pt2")
    assert_bound_matches_infer(runner, _first_batch(runner))

    with torch.no_grad():
        ts = torch.jit.freeze(torch.jit.trace(model, args))
    meta = {"inputs": [{"name": "image", "dtype": "float32", "shape": [1, 1, 6, 6]}],
            "outputs": [{"name": "output_0", "dtype": "float32", "shape": [1, 5]},
                        {"name": "output_1", "dtype": "float32", "shape": [1, 4]}]}
    torch.jit.save(ts, str(tmp_path / "m.pt"), _extra_files={TS_METADATA: json.dumps(meta)})
    runner = open_model(tmp_path / "m.pt", threads=1)
    out = assert_bound_matches_infer(runner, _first_batch(runner))
    assert list(out) == ["output_0", "output_1"]
    # the optimize_for_inference copy (kept for big models) computes what the archive does
    fast = open_model(tmp_path / "m.pt", threads=1, options={"optimize": "always"})
    assert fast._run_module is not None, fast.notes
    got = assert_bound_matches_infer(fast, _first_batch(fast))
    for k in out:
        np.testing.assert_allclose(got[k], out[k], rtol=1e-4, atol=1e-5)
    plain = open_model(tmp_path / "m.pt", threads=1, options={"optimize": False})
    assert plain._run_module is None


@pytest.mark.torch
@pytest.mark.slow
def test_executorch_bound_call_matches_infer(tmp_path):
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model, args = _Net.build()
    prog = to_edge_transform_and_lower(torch.export.export(model, args),
                                       partitioner=[XnnpackPartitioner()]).to_executorch()
    (tmp_path / "m.pte").write_bytes(prog.buffer)
    runner = open_model(tmp_path / "m.pte", threads=1)
    assert_bound_matches_infer(runner, _first_batch(runner))


# ----------------------------------------------------------------------------- scikit-learn
@pytest.mark.sklearn
def test_sklearn_bound_call_matches_infer_for_a_table_with_string_columns(tmp_path):
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from skops.io import dump

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.standard_normal(60), "city": rng.choice(["a", "b", "c"], 60)})
    y = (frame["amount"] > 0).astype(int)
    model = Pipeline([("prep", ColumnTransformer([("num", StandardScaler(), ["amount"]),
                                                  ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"])])),
                      ("clf", LogisticRegression())]).fit(frame, y)
    dump(model, tmp_path / "m.skops")
    runner = open_model(tmp_path / "m.skops", trust=Trust())
    out = assert_bound_matches_infer(runner, _first_batch(runner, data=runner.random_dataset(n=3)))
    assert set(out) == {"label", "probabilities"}
