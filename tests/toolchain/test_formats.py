"""Format detection by content, for every format, including files whose extension lies."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import BadInput
from edgekit.formats import detect

MAKE_TORCH = r"""
import sys, torch
out = sys.argv[1]
m = torch.nn.Sequential(torch.nn.Linear(4, 2))
x = torch.randn(1, 4)
torch.jit.save(torch.jit.trace(m, x), f"{out}/ts.pt")
torch.export.save(torch.export.export(m, (x,)), f"{out}/m.pt2")
torch.save(m, f"{out}/full.pt")
torch.save(m.state_dict(), f"{out}/sd.pt")
from safetensors.torch import save_file
save_file(m.state_dict(), f"{out}/w.safetensors")
"""

MAKE_TF = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras, tensorflow as tf
out = sys.argv[1]
m = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(2)])
m.save(f"{out}/m.keras")
m.save(f"{out}/m.h5")
tf.saved_model.save(tf.Module(), f"{out}/saved")
conv = tf.lite.TFLiteConverter.from_keras_model(m)
open(f"{out}/m.tflite", "wb").write(conv.convert())
"""


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """One real file of every format, made by the real libraries."""
    d = tmp_path_factory.mktemp("zoo")
    subprocess.run([sys.executable, "-c", MAKE_TORCH, str(d)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", MAKE_TF, str(d)], check=True, capture_output=True)
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), d / "m.onnx")
    from sklearn.linear_model import LogisticRegression
    import skops.io as sio

    clf = LogisticRegression().fit(np.random.default_rng(0).normal(size=(20, 3)), [0, 1] * 10)
    sio.dump(clf, d / "m.skops")
    import joblib

    joblib.dump(clf, d / "m.joblib")
    joblib.dump(clf, d / "mz.joblib", compress=3)
    (d / "p0.bin").write_bytes(pickle.dumps({"a": 1}, protocol=0))
    np.savez(d / "a.npz", x=np.zeros(3))
    np.save(d / "a.npy", np.zeros(3))
    return d


@pytest.mark.slow
@pytest.mark.parametrize("name,fmt", [
    ("ts.pt", "torchscript"), ("m.pt2", "torch_export"), ("full.pt", "torch_pickle"),
    ("sd.pt", "torch_state_dict"), ("w.safetensors", "safetensors"), ("m.keras", "keras"), ("m.h5", "hdf5"),
    ("saved", "savedmodel"), ("m.tflite", "tflite"), ("m.onnx", "onnx"), ("m.skops", "skops"),
    ("m.joblib", "pickle"), ("mz.joblib", "pickle"), ("p0.bin", "pickle"), ("a.npz", "npz"), ("a.npy", "npy"),
])
def test_detects_every_format(zoo, name, fmt):
    assert detect(zoo / name).name == fmt


@pytest.mark.slow
@pytest.mark.parametrize("name,lie,fmt", [
    ("m.onnx", "model.tflite", "onnx"), ("m.tflite", "model.onnx", "tflite"), ("m.keras", "model.pt", "keras"),
    ("ts.pt", "model.keras", "torchscript"), ("m.pt2", "model.onnx", "torch_export"),
    ("full.pt", "model.pt2", "torch_pickle"), ("m.skops", "model.keras", "skops"), ("a.npz", "model.onnx", "npz"),
])
def test_lying_extension_is_detected_by_content(zoo, tmp_path, name, lie, fmt):
    shutil.copy(zoo / name, tmp_path / lie)
    assert detect(tmp_path / lie).name == fmt


def test_text_file_named_keras_is_refused(tmp_path):
    p = tmp_path / "model.keras"
    p.write_text("this is not a model\n")
    with pytest.raises(BadInput, match="text file"):
        detect(p)


def test_empty_file_and_folder_and_missing(tmp_path):
    (tmp_path / "e.onnx").write_bytes(b"")
    with pytest.raises(BadInput, match="empty"):
        detect(tmp_path / "e.onnx")
    with pytest.raises(BadInput, match="folder"):
        detect(tmp_path)
    with pytest.raises(BadInput, match="no such file"):
        detect(tmp_path / "missing.onnx")


def test_unknown_zip_is_refused(tmp_path):
    p = tmp_path / "x.keras"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(BadInput, match="not a known model format"):
        detect(p)


def test_truncated_onnx_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    data = helper.make_model(g).SerializeToString()
    p = tmp_path / "t.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput):
        detect(p)


def test_torch_pickle_globals_are_read_without_running(tmp_path):
    from edgekit.formats import pickle_globals

    class Boom:
        def __reduce__(self):
            return (print, ("boom",))

    assert "builtins print" in pickle_globals(pickle.dumps(Boom()))
    assert json.dumps(pickle_globals(b"not a pickle"))  # never raises
