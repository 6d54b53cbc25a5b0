"""edgekit.converters.tflite_edit on real TFLite files, converted here from tiny TF functions
and run in LiteRT: float_io gives int8 I/O a float face that computes the same, and
float_depthwise_weights makes a hybrid depthwise op float with the int8 weights' exact values."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.converters.tflite_edit import float_depthwise_weights, float_io

pytestmark = [pytest.mark.tf]

tf = pytest.importorskip("tensorflow")


def _convert(module, **settings) -> bytes:
    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    for k, v in settings.items():
        setattr(conv, k, v)
    return conv.convert()


def _run(blob: bytes, x: np.ndarray) -> tuple[np.ndarray, dict, dict]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=blob)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interp.invoke()
    return interp.get_tensor(out["index"]), inp, out


class _MLP(tf.Module):
    def __init__(self):
        rng = np.random.default_rng(0)
        self.w1 = tf.constant(rng.standard_normal((16, 8)).astype("float32"))
        self.w2 = tf.constant(rng.standard_normal((8, 4)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32, name="x")])
    def __call__(self, x):
        return tf.matmul(tf.nn.relu(tf.matmul(x, self.w1)), self.w2)


class _Depthwise(tf.Module):
    def __init__(self):  # 3x3x128 weights: over the 1024 elements dynamic-range quantization needs
        self.f = tf.constant(np.random.default_rng(1).standard_normal((3, 3, 128, 1)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 128], tf.float32, name="x")])
    def __call__(self, x):
        return tf.nn.depthwise_conv2d(x, self.f, [1, 1, 1, 1], "SAME")


@pytest.fixture(scope="module")
def mlp():
    samples = np.random.default_rng(2).standard_normal((32, 1, 16)).astype("float32")
    module = _MLP()
    int8 = _convert(module, optimizations=[tf.lite.Optimize.DEFAULT],
                    representative_dataset=lambda: ([s] for s in samples),
                    target_spec=tf.lite.TargetSpec(supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8]),
                    inference_input_type=tf.int8, inference_output_type=tf.int8)
    return {"int8": int8, "float": _convert(module), "x": samples[0]}


def test_float_io_gives_int8_io_a_float_face_that_computes_the_same(mlp):
    q_out, q_in, q_det = _run(mlp["int8"], np.zeros((1, 16)))
    assert q_in["dtype"] == np.int8 and q_det["dtype"] == np.int8
    edited, changed = float_io(mlp["int8"])
    assert len(changed) == 2  # the input and the output
    y, inp, out = _run(edited, mlp["x"])
    assert inp["dtype"] == np.float32 and out["dtype"] == np.float32
    assert [inp["name"], out["name"]] == changed  # the float tensors keep the I/O names
    # the int8 file, fed the quantized input by hand and dequantized by hand
    (s_in, z_in), (s_out, z_out) = q_in["quantization"], q_det["quantization"]
    xq = np.clip(np.round(mlp["x"] / s_in) + z_in, -128, 127)
    yq, _, _ = _run(mlp["int8"], xq)
    np.testing.assert_allclose(y, (yq.astype(np.float32) - z_out) * s_out, atol=s_out * 1.01)


def test_float_io_leaves_a_float_file_alone(mlp):
    assert float_io(mlp["float"]) == (mlp["float"], [])
    edited, changed = float_io(mlp["int8"])
    assert float_io(edited) == (edited, [])  # done once: nothing left to change


def test_float_depthwise_weights_keeps_the_int8_values_in_float():
    module = _Depthwise()
    hybrid = _convert(module, optimizations=[tf.lite.Optimize.DEFAULT])  # dynamic range: int8 weights
    edited, changed = float_depthwise_weights(hybrid)
    assert changed == 1
    assert float_depthwise_weights(edited) == (edited, 0)
    x = np.random.default_rng(3).standard_normal((1, 8, 8, 128)).astype("float32")
    y_float, _, _ = _run(_convert(module), x)
    y_edit, _, _ = _run(edited, x)
    # the int8 codes in float: off from the float weights by at most half a step per weight
    step = np.abs(module.f.numpy()).max(axis=(0, 1)) / 127  # per channel, symmetric
    bound = np.abs(x).sum(axis=(1, 2)).max() * step.max() / 2  # loose: every pixel, the widest step
    assert 0 < np.abs(y_edit - y_float).max() <= bound
    from ai_edge_litert.interpreter import Interpreter

    dtypes = {d["dtype"] for d in Interpreter(model_content=edited).get_tensor_details()}
    assert np.int8 not in dtypes  # no int8 weights left
