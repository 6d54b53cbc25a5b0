"""TensorFlow sources: SavedModel folders (signatures) and legacy .h5, plus the code scan
that refuses Lambda layers and unsafe-deserialization calls in .h5 and .keras files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from conftest import assert_user_error, run_cli

pytestmark = [pytest.mark.tf]

BUILD = textwrap.dedent('''
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras, numpy as np, tensorflow as tf
    out = sys.argv[1]
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), name="features")
    h = keras.layers.Dense(16, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="probs")(h))
    model.save(out + "/plain.h5")
    model.save(out + "/plain.keras")
    arch = keras.export.ExportArchive()
    arch.track(model)
    spec = [tf.TensorSpec((None, 6), tf.float32, name="features")]
    arch.add_endpoint("serving_default", lambda features: {"probs": model(features)}, input_signature=spec)
    arch.add_endpoint("logits_x2", lambda features: {"twice": 2.0 * model(features)}, input_signature=spec)
    arch.write_out(out + "/saved", verbose=False)
    lam = keras.Input((6,), name="features")
    lam_model = keras.Model(lam, keras.layers.Lambda(lambda t: t * 2.0, name="sneaky")(lam))
    lam_model.save(out + "/lambda.h5")
    lam_model.save(out + "/lambda.keras")
    np.savez(out + "/val.npz", features=np.random.default_rng(0).random((40, 6), dtype=np.float32))
''')


@pytest.fixture(scope="module")
def tfm(tmp_path_factory):
    out = tmp_path_factory.mktemp("tf")
    subprocess.run([sys.executable, "-c", BUILD, str(out)], check=True, capture_output=True)
    # a .keras whose config turns safe mode off through a function reference
    with zipfile.ZipFile(out / "plain.keras") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    cfg = json.loads(members["config.json"])
    dense = next(layer for layer in cfg["config"]["layers"] if layer["class_name"] == "Dense")
    dense["config"]["activation"] = {"module": "keras.config", "class_name": "function",
                                     "config": "enable_unsafe_deserialization", "registered_name": "function"}
    members["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(out / "unsafe.keras", "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tflite", "onnx"])
def test_savedmodel_converts_with_its_signature_names(tfm, tmp_path, target):
    res = run_cli("convert", tfm / "saved", "--target", target, "--inputs", tfm / "val.npz",
                  "-o", tmp_path / f"m.{target}", "--json")
    assert res.code == 0, res
    r = res.json["result"]
    assert r["source_format"] == "savedmodel" and r["details"]["signature"] == "serving_default"
    assert [i["name"] for i in r["signature"]["inputs"]] == ["features"]
    assert [o["name"] for o in r["signature"]["outputs"]] == ["probs"]
    assert r["parity"]["passed"]


@pytest.mark.slow
def test_savedmodel_other_signature_and_unknown_signature(tfm, tmp_path):
    res = run_cli("convert", tfm / "saved", "--target", "tflite", "--signature", "logits_x2",
                  "--inputs", tfm / "val.npz", "-o", tmp_path / "x2.tflite", "--json")
    assert res.code == 0, res
    assert [o["name"] for o in res.json["result"]["signature"]["outputs"]] == ["twice"]
    bad = run_cli("convert", tfm / "saved", "--target", "tflite", "--signature", "nope", "-o", tmp_path / "n.tflite")
    assert_user_error(bad, 2, "no signature 'nope'", "serving_default", "logits_x2")


@pytest.mark.slow
def test_legacy_h5_converts(tfm, tmp_path):
    res = run_cli("convert", tfm / "plain.h5", "--target", "tflite", "--quantize", "dynamic",
                  "--inputs", tfm / "val.npz", "-o", tmp_path / "h5.tflite")
    assert res.code == 0, res


@pytest.mark.parametrize("name, words", [
    ("lambda.h5", ("Lambda layer 'sneaky'", "--trust-code")),
    ("lambda.keras", ("Lambda layer 'sneaky'", "--trust-code")),
    ("unsafe.keras", ("enable_unsafe_deserialization", "--trust-code")),
])
def test_code_in_keras_configs_is_refused(tfm, tmp_path, name, words):
    res = run_cli("convert", tfm / name, "--target", "tflite", "-o", tmp_path / "x.tflite")
    assert_user_error(res, 2, *words)
    assert not (tmp_path / "x.tflite").exists()
