"""Tiny real ONNX models for the build-safety and signal tests (onnx -> onnx needs no framework:
a build of one takes about a second)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np


def matmul_onnx(path: Path, size: int = 4) -> Path:
    """y = x @ w with a (size x size) weight: 4 -> ~200 bytes, 128 -> ~64 KB."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size])],
                          [numpy_helper.from_array(w, "w")])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def endless_onnx(path: Path) -> Path:
    """y = x + (number of iterations), with a trip count of 2^62: running it never ends."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.ones((1, 4), np.float32), "one")])
    g = helper.make_graph(
        [helper.make_node("Loop", ["M", "cond", "x"], ["y"], body=body)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array(2 ** 62, np.int64), "M"), numpy_helper.from_array(np.array(True), "cond")])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def write_project(folder: Path, source: str, out: str = "out", extra_target: str = "") -> Path:
    """An edgekit.toml with one model (name 'm') built to ONNX into `out`."""
    (folder / "edgekit.toml").write_text(textwrap.dedent(f"""
        [build]
        out = "{out}"
        jobs = 1
        [[models]]
        name = "m"
        source = "{source}"
          [[models.targets]]
          target = "onnx"
        """) + extra_target)
    return folder / "edgekit.toml"
