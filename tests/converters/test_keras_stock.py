"""Stock Keras building blocks that used to break a conversion (issue #16): each converts,
or fails with the right code and an honest reason."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import run_cli

pytestmark = [pytest.mark.tf, pytest.mark.slow]

NORMALIZED = textwrap.dedent('''
    import sys
    import keras
    import numpy as np

    inp = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Normalization(axis=-1, mean=[0.485, 0.456, 0.406], variance=[0.052, 0.05, 0.051])(x)
    adapted = keras.layers.Normalization(axis=-1)  # as keras.applications.EfficientNet has
    adapted.adapt(np.random.default_rng(0).random((8, 16, 16, 3)).astype("float32"))
    x = adapted(keras.layers.Conv2D(3, 3, padding="same")(x))
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inp, out).save(sys.argv[1])
''')


def test_normalization_constants_are_frozen_for_onnx(tmp_path):
    """Was exit 5 (onnxruntime: 'Required inputs [.../normalization/Sub/y:0, .../Sqrt/x:0] are
    missing'): tf2onnx made the layer's captured mean/variance graph inputs. The function is now
    frozen first, and the ONNX file has only the model's own input."""
    import onnxruntime as ort

    src = tmp_path / "norm.keras"
    subprocess.run([sys.executable, "-c", NORMALIZED, str(src)], check=True, capture_output=True)
    out = tmp_path / "norm.onnx"
    res = run_cli("convert", src, "--target", "onnx", "-o", out)
    assert res.code == 0, res
    assert "frozen into the graph" in res.stdout + res.stderr
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert len(sess.get_inputs()) == 1
    y = sess.run(None, {sess.get_inputs()[0].name: np.full((1, 16, 16, 3), 128, np.float32)})[0]
    assert y.shape == (1, 3) and np.isfinite(y).all()


RECURRENT = textwrap.dedent('''
    import sys
    import keras
    import numpy as np

    inp = keras.Input((30, 8), name="x")
    h = keras.layers.GRU(16, return_sequences=True)(inp)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.LSTM(16)(h))
    keras.Model(inp, out).save(sys.argv[1])
    np.savez(sys.argv[2], x=np.random.default_rng(0).normal(size=(12, 30, 8)).astype("float32"))
''')


def test_stacked_gru_lstm_to_tflite_with_builtin_ops_only(tmp_path):
    """Was exit 3 (the converter's advice: enable SELECT_TF_OPS, i.e. the Flex delegate). At batch 1
    with frozen variables the loops lower to builtin ops: no custom (Flex) operator in the file, and
    parity passes on real sequences."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    src, data = tmp_path / "rnn.keras", tmp_path / "seq.npz"
    subprocess.run([sys.executable, "-c", RECURRENT, str(src), str(data)], check=True, capture_output=True)
    out = tmp_path / "rnn.tflite"
    res = run_cli("convert", src, "--target", "tflite", "--inputs", data, "-o", out)
    assert res.code == 0, res
    assert "builtin ops only" in " ".join(res.stderr.split()) + " ".join(res.stdout.split())
    model = fu.read_model(str(out))
    assert not any(c.customCode for c in model.operatorCodes)


GROUPED = textwrap.dedent('''
    import sys
    import keras

    inp = keras.Input((16, 16, 8))
    x = keras.layers.Conv2D(8, 7, padding="same", groups=8)(inp)  # ConvNeXt's depthwise 7x7, as Keras builds it
    keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))).save(sys.argv[1])
''')


def test_invalid_tf2onnx_output_is_the_converters_failure(tmp_path):
    """A stock ConvNeXt to ONNX was exit 2 ('may need a newer onnxruntime'): tf2onnx left the grouped
    convolution as a StatefulPartitionedCall node, an invalid ONNX graph. It is tf2onnx's failure:
    exit 3 naming it and the cause, and no file. TFLite still converts the same model."""
    from conftest import assert_user_error

    src = tmp_path / "grouped.keras"
    subprocess.run([sys.executable, "-c", GROUPED, str(src)], check=True, capture_output=True)
    res = run_cli("convert", src, "--target", "onnx", "-o", tmp_path / "g.onnx")
    assert_user_error(res, 3, "tf2onnx wrote an ONNX file that onnxruntime cannot load", "grouped convolutions")
    assert not (tmp_path / "g.onnx").exists()
    assert run_cli("convert", src, "--target", "tflite", "-o", tmp_path / "g.tflite").code == 0
