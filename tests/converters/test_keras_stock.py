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
