"""Bad input: a clear message, the documented exit code, no traceback, nothing written."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_user_error


def _no_outputs(folder):
    leftovers = [p.name for p in folder.iterdir() if p.suffix in (".tflite", ".onnx", ".json") or
                 p.name.startswith(".edgekit")]
    assert leftovers == [], leftovers


def test_missing_file(cli, tmp_path):
    res = cli("convert", tmp_path / "nope.keras", "--target", "tflite", "-o", tmp_path / "o.tflite")
    assert_user_error(res, 2, "no such file")
    _no_outputs(tmp_path)


def test_empty_file(cli, tmp_path):
    (tmp_path / "m.keras").write_bytes(b"")
    res = cli("convert", tmp_path / "m.keras", "--target", "tflite", "-o", tmp_path / "o.tflite")
    assert_user_error(res, 2, "empty", "m.keras")
    _no_outputs(tmp_path)


def test_directory_instead_of_file(cli, tmp_path):
    res = cli("convert", tmp_path, "--target", "tflite", "-o", tmp_path / "o.tflite")
    assert_user_error(res, 2, "is a folder")
    _no_outputs(tmp_path)


def test_text_file_named_keras(cli, tmp_path):
    (tmp_path / "model.keras").write_text("hello, I am not a model\n")
    res = cli("convert", tmp_path / "model.keras", "--target", "tflite", "-o", tmp_path / "o.tflite")
    assert_user_error(res, 2, "text file", "model.keras")
    _no_outputs(tmp_path)


def test_unknown_target(cli, samples_dir, tmp_path):
    res = cli("convert", samples_dir / "digits_keras.keras", "--target", "coreml", "-o", tmp_path / "o.x")
    assert_user_error(res, 2, "unknown target 'coreml'", "tflite")
    _no_outputs(tmp_path)


def test_unsupported_pair_lists_what_is(cli, samples_dir, tmp_path):
    res = cli("convert", samples_dir / "digits_keras.keras", "--target", "torchscript", "-o", tmp_path / "o.pt")
    assert_user_error(res, 2, "not supported", "keras→tflite")
    _no_outputs(tmp_path)


def test_int8_without_calibration(cli, samples_dir, tmp_path):
    res = cli("convert", samples_dir / "digits_keras.keras", "--target", "tflite", "--quantize", "int8",
              "-o", tmp_path / "o.tflite")
    assert_user_error(res, 2, "--calibration")
    _no_outputs(tmp_path)


@pytest.mark.parametrize("arrays,needle", [
    ({"pixels": np.zeros((4, 8, 8, 1), "float32"), "other": np.zeros((4, 2), "float32")}, "none is named 'image'"),
    ({"image": np.zeros((4, 8, 8, 1), "U3")}, "expected float32, given <U3"),
    ({"image": np.zeros((4, 8, 8, 3), "float32")}, "shape: expected [N, 8, 8, 1]"),
    ({"image": np.zeros((4, 64), "float32")}, "given [4, 64]"),
])
def test_inputs_that_do_not_fit(cli, samples_dir, tmp_path, arrays, needle):
    np.savez(tmp_path / "bad.npz", **arrays)
    res = cli("convert", samples_dir / "digits_keras.keras", "--target", "tflite", "--inputs", tmp_path / "bad.npz",
              "-o", tmp_path / "o.tflite")
    assert_user_error(res, 2, needle, "bad.npz")
    _no_outputs(tmp_path)


def test_calibration_that_does_not_fit(cli, samples_dir, tmp_path):
    np.savez(tmp_path / "cal.npz", image=np.zeros((4, 3, 8, 8), "float32"))
    res = cli("convert", samples_dir / "digits_keras.keras", "--target", "onnx", "--quantize", "int8",
              "--calibration", tmp_path / "cal.npz", "-o", tmp_path / "o.onnx")
    assert_user_error(res, 2, "cal.npz", "shape")
    _no_outputs(tmp_path)


def test_output_folder_missing(cli, samples_dir, tmp_path):
    res = cli("convert", samples_dir / "digits_keras.keras", "--target", "tflite",
              "-o", tmp_path / "no" / "such" / "o.tflite")
    assert_user_error(res, 2, "output folder does not exist")
    assert not (tmp_path / "no").exists()


def test_output_folder_not_writable(cli, samples_dir, tmp_path):
    # /proc refuses new files even for root, so this holds in CI (which runs as root)
    res = cli("convert", samples_dir / "digits_keras.keras", "--target", "tflite", "-o", "/proc/edgekit-o.tflite")
    assert_user_error(res, 2, "/proc")


def test_output_parent_is_a_file(cli, samples_dir, tmp_path):
    (tmp_path / "f").write_text("x")
    res = cli("convert", samples_dir / "digits_keras.keras", "--target", "tflite", "-o", tmp_path / "f" / "o.tflite")
    assert_user_error(res, 2, "not a folder")


def test_output_through_symlink_is_refused(cli, samples_dir, tmp_path):
    (tmp_path / "real.tflite").write_text("keep me")
    (tmp_path / "link.tflite").symlink_to(tmp_path / "real.tflite")
    res = cli("convert", samples_dir / "digits_keras.keras", "--target", "tflite", "-o", tmp_path / "link.tflite")
    assert_user_error(res, 2, "symbolic link")
    assert (tmp_path / "real.tflite").read_text() == "keep me"


def test_json_errors_stay_machine_readable(cli, tmp_path):
    res = cli("convert", tmp_path / "nope.keras", "--target", "tflite", "--json")
    assert res.code == 2
    doc = res.json
    assert doc["ok"] is False and doc["error"]["exit_code"] == 2 and "no such file" in doc["error"]["message"]


def test_inputs_file_that_is_not_npz(cli, samples_dir, tmp_path):
    res = cli("validate", samples_dir / "digits_keras.keras", samples_dir / "digits_keras.keras",
              "--inputs", samples_dir / "digits_keras.keras")
    assert_user_error(res, 2, "not a .npz")


def test_pickled_npz_is_refused(cli, samples_dir, tmp_path):
    np.savez(tmp_path / "obj.npz", image=np.array([{"a": 1}], dtype=object))
    res = cli("convert", samples_dir / "digits_keras.keras", "--target", "onnx", "--inputs", tmp_path / "obj.npz",
              "-o", tmp_path / "o.onnx")
    assert_user_error(res, 2, "Python objects")
