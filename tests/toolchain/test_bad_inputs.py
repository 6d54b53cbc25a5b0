"""The bad-input corpus: generated here at test time (no opaque blobs in the repository).

Every case asserts: the documented exit code, a message naming the file and the problem, no
Python traceback, no output file, no temp file left behind, and no side effect (a sentinel
file that a malicious payload would create does not exist).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

SENTINEL = "PWNED"

KERAS_LAMBDA = r"""
import os, sys; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
m = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Lambda(lambda t: t * 2, name="doubler"),
                      keras.layers.Dense(2)])
m.save(sys.argv[1] + "/lambda.keras")
m.save(sys.argv[1] + "/lambda.h5")
m2 = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(2, name="d")])
m2.set_weights([w * float("nan") for w in m2.get_weights()])
m2.save(sys.argv[1] + "/nan.keras")
"""

TORCH_MORE = r"""
import sys, torch
class Cummax(torch.nn.Module):
    def forward(self, x):
        return torch.cummax(x, dim=1).values
x = torch.randn(1, 6)
torch.export.save(torch.export.export(Cummax(), (x,)), sys.argv[1] + "/cummax.pt2")
torch.jit.save(torch.jit.trace(torch.nn.Linear(6, 2), x), sys.argv[1] + "/foreign.ts.pt")
torch.export.save(torch.export.export(torch.nn.Linear(6, 2), (x,)), sys.argv[1] + "/linear.pt2")
"""

NON_UTF8_NAME = os.fsdecode(b"bad\xffname.onnx")


def _onnx_functions(path: Path, depth: int, cycle: bool = False) -> None:
    """A model whose local functions call each other `depth` deep (or in a cycle)."""
    import onnx
    from onnx import TensorProto, helper

    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    funcs = []
    for i in range(depth):
        callee = f"f{i + 1}" if i + 1 < depth else ("f0" if cycle else None)
        node = helper.make_node(callee, ["x"], ["y"], domain="local") if callee else \
            helper.make_node("Identity", ["x"], ["y"])
        funcs.append(helper.make_function("local", f"f{i}", ["x"], ["y"], [node], opsets))
    graph = helper.make_graph([helper.make_node("f0", ["x"], ["y"], domain="local")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    onnx.save(helper.make_model(graph, functions=funcs, opset_imports=opsets), str(path))

TORCH_EVIL = r"""
import os, sys, torch
class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {sys.argv[1]}/PWNED",))
torch.save({"weights": torch.zeros(2), "payload": Evil()}, sys.argv[1] + "/evil.pt")
"""


def _onnx_model(init=None, nodes=None, inputs=None):
    from onnx import TensorProto, helper

    nodes = nodes or [helper.make_node("Add", ["x", "w"], ["y"])]
    return helper.make_model(helper.make_graph(
        nodes, "g", inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [init] if init is not None else []),
        opset_imports=[helper.make_opsetid("", 18)])


def _external(d: Path, name: str, loc: str, offset: int | None = None, length: int | None = None) -> Path:
    import onnx
    from onnx import TensorProto, helper

    t = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", loc), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    p = d / name
    onnx.save_model(_onnx_model(t), str(p))
    return p


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, samples_dir, digits_converted):
    """Build every bad file once; returns the folder."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d = tmp_path_factory.mktemp("corpus")
    subprocess.run([sys.executable, "-c", KERAS_LAMBDA, str(d)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", TORCH_EVIL, str(d)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", TORCH_MORE, str(d)], check=True, capture_output=True)
    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    sio.dump(make_pipeline(FunctionTransformer(print)).fit(np.ones((4, 2))), d / "untrusted.skops")
    assert not (d / SENTINEL).exists()
    for ext in ("onnx", "tflite", "keras", "pt2", "pte", "skops", "h5"):
        (d / f"empty.{ext}").write_bytes(b"")
    good = _onnx_model(numpy_helper.from_array(np.ones(4, np.float32), "w")).SerializeToString()
    (d / "truncated.onnx").write_bytes(good[: len(good) // 2])
    blob = digits_converted["tflite-fp32"].read_bytes()  # a good file (conftest's shared conversion)
    (d / "good.tflite").write_bytes(blob)
    (d / "truncated.tflite").write_bytes(blob[: len(blob) // 3])
    (d / "tiny.tflite").write_bytes(b"\x00\x00\x00\x00TFL3")
    with zipfile.ZipFile(d / "zip.onnx", "w") as zf:
        zf.writestr("model.bin", b"\x00" * 100)
    (d / "proto0.bin").write_bytes(pickle.dumps({"a": [1, 2]}, protocol=0))
    import joblib
    from sklearn.linear_model import LogisticRegression

    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), d / "model.joblib")
    # a Keras archive whose config turns on unsafe deserialization
    with zipfile.ZipFile(d / "unsafe.keras", "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": [
            {"module": "keras.config", "class_name": "function", "config": "enable_unsafe_deserialization",
             "registered_name": "function"}]}}))
        zf.writestr("model.weights.h5", b"")
    # a zip bomb named .keras: one member that expands ~1000x
    with zipfile.ZipFile(d / "bomb.keras", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.json", "{}")
        zf.writestr("config.json", "{}")
        zf.writestr("model.weights.h5", b"\x00" * (64 * 1024 * 1024))
    (d / "ext").mkdir()
    (d / "ext" / "w.bin").write_bytes(np.zeros(4, np.float32).tobytes())
    _external(d / "ext", "dotdot.onnx", "../../etc/passwd")
    _external(d / "ext", "absolute.onnx", "/etc/passwd")
    os.symlink("/etc/passwd", d / "ext" / "link.bin")
    _external(d / "ext", "symlink.onnx", "link.bin")
    _external(d / "ext", "offset.onnx", "w.bin", offset=4096, length=16)
    short = numpy_helper.from_array(np.ones(4, np.float32), "w")
    short.raw_data = short.raw_data[:8]
    onnx.save_model(_onnx_model(short), str(d / "short.onnx"))
    huge = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 62, 1 << 62])
    huge.raw_data = b""
    onnx.save_model(_onnx_model(huge), str(d / "overflow.onnx"))
    leaf = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "b", [],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    body = leaf
    for _ in range(24):  # If nodes nested 24 deep (only the then-branch nests: linear size)
        node = helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=leaf)
        body = helper.make_graph([node], "b", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    onnx.save_model(_onnx_model(nodes=list(body.node), inputs=[
        helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])]), str(d / "nested.onnx"))
    # tensor / program names that are not UTF-8 (a mutated name byte)
    i = blob.find(b"probs_1/MatMul")
    (d / "badname.tflite").write_bytes(blob[:i] + b"\xff" + blob[i + 1:])
    pte = subprocess.run([sys.executable, "-m", "edgekit", "convert", d / "linear.pt2", "--target", "executorch",
                          "-o", d / "good.pte", "-q", "--no-validate"], capture_output=True)
    assert pte.returncode == 0, pte.stderr
    prog = (d / "good.pte").read_bytes()
    i = prog.find(b"builtins.tuple")
    (d / "badname.pte").write_bytes(prog[:i] + b"\xff" + prog[i + 1:])
    (d / "good.pte").unlink()
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["Zbatch", 4])
    named = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["Zbatch", 4])],
                                                [y]))
    (d / "badname.onnx").write_bytes(named.SerializeToString().replace(b"Zbatch", b"\xf5batch"))
    _onnx_functions(d / "functions25.onnx", 25)
    _onnx_functions(d / "functions_cycle.onnx", 3, cycle=True)
    os.mkfifo(d / "pipe.onnx")
    os.mkfifo(d / "pipe.npz")
    (d / "wide.csv").write_text(",".join(f"column_{i}" for i in range(8000)) + "\n" + ",".join("1" * 8000) + "\n")
    (d / NON_UTF8_NAME).write_bytes((d / "functions25.onnx").read_bytes())
    np.savez(d / "wrong_shape.npz", image=np.zeros((5, 8, 8, 3), np.float32))
    np.savez(d / "empty_calib.npz", image=np.zeros((0, 8, 8, 1), np.float32))
    (d / "empty.npz").write_bytes(b"")
    (d / "notes.keras").write_text("just some text\n")
    (d / "readonly").mkdir()
    return d


def _case(args, code, *needles, out=None):
    return {"args": args, "code": code, "needles": needles, "out": out}


DIGITS = "@samples/digits_keras.keras"

CASES = {
    "empty onnx": _case(["inspect", "empty.onnx"], 2, "empty.onnx", "empty"),
    "empty tflite": _case(["inspect", "empty.tflite"], 2, "empty.tflite", "empty"),
    "empty keras": _case(["convert", "empty.keras", "--target", "tflite", "-o", "o.tflite"], 2, "empty", out="o.tflite"),
    "empty pt2": _case(["inspect", "empty.pt2"], 2, "empty.pt2", "empty"),
    "empty pte": _case(["inspect", "empty.pte"], 2, "empty.pte", "empty"),
    "empty skops": _case(["inspect", "empty.skops"], 2, "empty.skops", "empty"),
    "empty h5": _case(["inspect", "empty.h5"], 2, "empty.h5", "empty"),
    "empty npz as inputs": _case(["validate", DIGITS, "good.tflite", "--inputs", "empty.npz"], 2, "empty.npz", "empty"),
    "truncated onnx": _case(["inspect", "truncated.onnx"], 2, "truncated.onnx"),
    "truncated tflite": _case(["inspect", "truncated.tflite"], 2, "truncated.tflite"),
    "8-byte TFL3": _case(["inspect", "tiny.tflite"], 2, "tiny.tflite"),
    "zip named onnx": _case(["inspect", "zip.onnx"], 2, "zip.onnx", "zip archive"),
    "torch pickle with os.system": _case(["convert", "evil.pt", "--target", "onnx", "-o", "o.onnx"], 2, "evil.pt",
                                         "runs arbitrary python code", "system", out="o.onnx"),
    "protocol-0 pickle as .bin": _case(["inspect", "proto0.bin"], 2, "proto0.bin", "pickle", "--trust-pickle"),
    "joblib sklearn model": _case(["convert", "model.joblib", "--target", "onnx", "-o", "o.onnx"], 2,
                                  "model.joblib", "skops", out="o.onnx"),
    "skops with an untrusted type": _case(["convert", "untrusted.skops", "--target", "onnx", "-o", "o.onnx"], 2,
                                          "untrusted.skops", "not trusted", "builtins.print", out="o.onnx"),
    "unsupported operator": _case(["convert", "cummax.pt2", "--target", "tflite", "-o", "o.tflite"], 3,
                                  "cummax", "tflite", out="o.tflite"),
    "no --input-shape for a source without one": _case(["convert", "foreign.ts.pt", "--target", "onnx",
                                                        "-o", "o.onnx"], 2, "foreign.ts.pt", "--input-shape",
                                                       out="o.onnx"),
    "keras lambda": _case(["convert", "lambda.keras", "--target", "tflite", "-o", "o.tflite"], 2,
                          "lambda.keras", "Lambda layer 'doubler'", "--trust-code", out="o.tflite"),
    "h5 lambda": _case(["inspect", "lambda.h5"], 2, "lambda.h5", "Lambda layer 'doubler'"),
    "keras unsafe deserialization": _case(["inspect", "unsafe.keras"], 2, "unsafe.keras",
                                          "enable_unsafe_deserialization"),
    "zip bomb named keras": _case(["inspect", "bomb.keras"], 2, "bomb.keras", "zip bomb"),
    "external data ../": _case(["inspect", "ext/dotdot.onnx"], 2, "dotdot.onnx", "leaves the model's folder"),
    "external data absolute": _case(["inspect", "ext/absolute.onnx"], 2, "absolute.onnx", "absolute path"),
    "external data symlink": _case(["inspect", "ext/symlink.onnx"], 2, "symlink.onnx", "symbolic link"),
    "external data past end": _case(["inspect", "ext/offset.onnx"], 2, "offset.onnx", "past the end"),
    "raw data shorter than dims": _case(["inspect", "short.onnx"], 2, "short.onnx", "holds 8 bytes"),
    "dims overflow": _case(["inspect", "overflow.onnx"], 2, "overflow.onnx", "elements"),
    "deeply nested subgraphs": _case(["inspect", "nested.onnx"], 2, "nested.onnx", "nested more than"),
    "model-local functions 25 deep": _case(["inspect", "functions25.onnx"], 2, "functions25.onnx",
                                           "model-local functions nested more than 16"),
    "model-local function cycle": _case(["inspect", "functions_cycle.onnx"], 2, "calls itself"),
    "tflite tensor name not UTF-8": _case(["inspect", "badname.tflite"], 2, "badname.tflite", "not valid UTF-8"),
    "onnx dim name not UTF-8": _case(["inspect", "badname.onnx"], 2, "badname.onnx", "not valid UTF-8"),
    "pte name not UTF-8": _case(["inspect", "badname.pte"], 2, "badname.pte", "not valid UTF-8"),
    "FIFO as model": _case(["inspect", "pipe.onnx", "--timeout", "60"], 2, "pipe.onnx", "named pipe"),
    "FIFO as --inputs": _case(["validate", DIGITS, "good.tflite", "--inputs", "pipe.npz", "--timeout", "60"], 2,
                              "pipe.npz", "named pipe"),
    "FIFO as --calibration": _case(["convert", DIGITS, "--target", "tflite", "--quantize", "int8", "--calibration",
                                    "pipe.npz", "-o", "o.tflite"], 2, "pipe.npz", "named pipe", out="o.tflite"),
    "CSV header over 64 KiB": _case(["validate", DIGITS, "good.tflite", "--inputs", "wide.csv"], 2, "wide.csv",
                                    "header line is longer than 64 KiB"),
    "file name not UTF-8": _case(["inspect", NON_UTF8_NAME], 2, "not valid UTF-8", "rename"),
    "NaN weights": _case(["convert", "nan.keras", "--target", "onnx", "-o", "o.onnx"], 1, "NaN or Inf",
                         out="o.onnx"),
    "input shape mismatch": _case(["validate", DIGITS, "good.tflite", "--inputs", "wrong_shape.npz"], 2,
                                  "wrong_shape.npz", "expected [N, 8, 8, 1]"),
    "empty calibration set": _case(["convert", DIGITS, "--target", "tflite", "--quantize", "int8", "--calibration",
                                    "empty_calib.npz", "-o", "o.tflite"], 2, "empty_calib.npz", "zero samples",
                                   out="o.tflite"),
    "stage that hangs past --timeout": _case(["convert", DIGITS, "--target", "onnx", "--timeout", "1",
                                              "-o", "o.onnx"], 124, "time limit", out="o.onnx"),
    "text file named keras": _case(["inspect", "notes.keras"], 2, "notes.keras", "text file"),
    "folder as model": _case(["inspect", "readonly"], 2, "readonly", "is a folder"),
    "unwritable output folder": _case(["convert", DIGITS, "--target", "onnx", "-o", "/proc/o.onnx"], 2, "/proc"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, corpus, samples_dir, tmp_path):
    case = CASES[name]
    args = [str(samples_dir / a[len("@samples/"):]) if a.startswith("@samples/") else a for a in case["args"]]
    before = {p for p in corpus.rglob("*")}
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    res = run_cli(*args, cwd=corpus, timeout=300, env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "TMPDIR": str(private_tmp)})
    assert res.code == case["code"], res
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res
    low = res.stderr.lower()
    for needle in case["needles"]:
        assert needle.lower() in low, (needle, res)
    if case["out"]:
        assert not (corpus / case["out"]).exists()
    after = {p for p in corpus.rglob("*")}
    assert after == before, after - before  # no output, no staging folder, no temp file
    # edgekit's own temp files are gone too (onnxruntime leaves a '.ses' session file: not ours)
    assert [p.name for p in private_tmp.iterdir() if "edgekit" in p.name] == []
    assert not (corpus / SENTINEL).exists()
