"""A small Keras CNN trained on scikit-learn's digits with a fixed seed (~10 s on 2 cores).

Writes samples/build/digits_keras.keras, digits_keras_val.npz (with labels),
digits_keras_calib.npz (200 training images for int8 calibration), and the same model as a
TensorFlow SavedModel folder, digits_savedmodel/ (signature serving_default: image -> probs).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from common import SEED, digits_split, out_dir, save_data  # noqa: E402


def export_savedmodel(model, path) -> None:
    """The model as a SavedModel whose serving_default signature keeps the Keras names."""
    import shutil

    import keras
    import tensorflow as tf

    spec = tf.TensorSpec((None, 8, 8, 1), tf.float32, name="image")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda image: {"probs": model(image, training=False)},
                         input_signature=[spec])
    shutil.rmtree(path, ignore_errors=True)
    archive.write_out(str(path), verbose=False)


def main() -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    x_tr, x_va, y_tr, y_va = digits_split("NHWC")

    inp = keras.Input(shape=(8, 8, 1), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    out = keras.layers.Dense(10, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out, name="digits_cnn")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x_tr, y_tr, epochs=15, batch_size=64, shuffle=True, verbose=0)
    acc = model.evaluate(x_va, y_va, verbose=0)[1]
    model.save(out_dir() / "digits_keras.keras")
    export_savedmodel(model, out_dir() / "digits_savedmodel")
    save_data("digits_keras", "image", x_va, y_va, x_tr[:200])
    print(f"digits_keras: trained in {time.perf_counter() - t0:.1f} s, validation accuracy {acc * 100:.1f}%")


if __name__ == "__main__":
    main()
