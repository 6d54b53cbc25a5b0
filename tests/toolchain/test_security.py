"""Untrusted model files never run code (issue 12).

Hostile files are built at test time from real archives (a real torch.export.save .pt2, a
real torch.save zip, a real SavedModel), then edited member by member, the way an attacker
would. Each payload would create a marker file: the tests check that edgekit refuses the
file (exit 2, no traceback, naming what it found) and that the marker does not exist.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import assert_user_error, run_cli

MARKER = "PAYLOAD_RAN"

BASE_PT2 = r"""
import sys, torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l = torch.nn.Linear(4, 3)
    def forward(self, x):
        return self.l(x).relu()
batch = torch.export.Dim("batch", min=1, max=64)
ep = torch.export.export(M(), (torch.randn(2, 4),), dynamic_shapes=({0: batch},))
torch.export.save(ep, sys.argv[1] + "/good.pt2")
torch.save(M().state_dict(), sys.argv[1] + "/state.pt")
"""


def payload_pickle(marker: Path) -> bytes:
    """A pickle that runs `touch marker`, with `posix system` hidden behind memo opcodes:
    the strings are memoized first and fetched back with BINGET before STACK_GLOBAL."""
    cmd = f"touch {marker}".encode()
    return (b"\x80\x04" + b"\x8c\x05posix\x94" + b"\x8c\x06system\x94" + b"\x8c\x03pad\x94" + b"0"
            + b"h\x00h\x01\x93" + b"\x8c" + bytes([len(cmd)]) + cmd + b"\x85R.")


def _edit_zip(src: Path, dst: Path, edits: dict, add: dict | None = None) -> None:
    """Copy a zip, replacing members by their name relative to the archive's top folder."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        top = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            rel = info.filename.split("/", 1)[1]
            data = zin.read(info)
            if rel in edits:
                data = edits[rel](data) if callable(edits[rel]) else edits[rel]
            zout.writestr(info.filename, data)
        for rel, data in (add or {}).items():
            zout.writestr(f"{top}/{rel}", data)


def _json_edit(fn):
    def edit(data: bytes) -> bytes:
        doc = json.loads(data)
        fn(doc)
        return json.dumps(doc).encode()
    return edit


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    subprocess.run([sys.executable, "-c", BASE_PT2, str(d)], check=True, capture_output=True)
    good = d / "good.pt2"
    evil = payload_pickle(d / MARKER)

    def use_pickle(doc):
        doc["config"]["l.weight"]["use_pickle"] = True

    def opaque(doc):
        doc["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                                 "tensor_meta": None}

    def guards(doc):
        doc["guards_code"] = [f"__import__('os').system('touch {d / MARKER}')"]

    _edit_zip(good, d / "sample_inputs.pt2", {"data/sample_inputs/model.pt": evil})
    _edit_zip(good, d / "use_pickle.pt2", {"data/weights/model_weights_config.json": _json_edit(use_pickle),
                                           "data/weights/weight_0": evil})
    _edit_zip(good, d / "opaque.pt2", {"data/constants/model_constants_config.json": _json_edit(opaque)},
              add={"data/constants/opaque_obj_0": evil})
    sym = f"__import__('os').system('touch {d / MARKER}')"
    _edit_zip(good, d / "sympy.pt2", {"models/model.json": lambda b: b.replace(
        b"Symbol('s77', positive=True, integer=True)", json.dumps(sym)[1:-1].encode())})
    _edit_zip(good, d / "guards.pt2", {"models/model.json": _json_edit(guards)})
    _edit_zip(good, d / "target.pt2", {"models/model.json": lambda b: b.replace(
        b"torch.ops.aten.relu.default", b"torch.serialization.os.system")})
    # a torch.save zip whose data.pkl hides posix.system behind the memo
    _edit_zip(d / "state.pt", d / "memo_state.pt", {"data.pkl": evil})
    (d / "memo.pkl").write_bytes(evil)
    return d


PT2_CASES = {
    "sample_inputs.pt2": ("data/sample_inputs/model.pt", "--trust-pickle"),
    "use_pickle.pt2": ("weight_0", "use_pickle"),
    "opaque.pt2": ("opaque_obj_0", "pickle.loads"),
    "sympy.pt2": ("sympy", "--trust-code"),
    "guards.pt2": ("guards_code", "--trust-code"),
    "target.pt2": ("torch.serialization.os.system", "--trust-code"),
}


def test_scan_names_every_hostile_member(hostile):
    from edgekit.scan import scan_pt2

    assert scan_pt2(hostile / "good.pt2") == []
    for name, (needle, _) in PT2_CASES.items():
        found = scan_pt2(hostile / name)
        assert found and any(needle in str(f) for f in found), (name, found)


def test_memo_hidden_global_is_named(hostile):
    from edgekit.formats import detect, pickle_globals

    assert pickle_globals((hostile / "memo.pkl").read_bytes()) == ["posix system"]
    assert detect(hostile / "state.pt").name == "torch_state_dict"
    assert detect(hostile / "memo_state.pt").name == "torch_pickle"


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("name", list(PT2_CASES))
def test_hostile_pt2_is_refused_before_torch(hostile, name):
    needle, hint = PT2_CASES[name]
    res = run_cli("inspect", hostile / name, cwd=hostile)
    assert_user_error(res, 2, name, needle, hint)
    assert not (hostile / MARKER).exists()
    sec = run_cli("inspect", "--security", "--json", hostile / name, cwd=hostile)
    assert sec.code == 0, sec
    rep = sec.json["result"]
    assert rep["allowed"] is False and needle in json.dumps(rep["findings"]), rep
    assert not (hostile / MARKER).exists()


@pytest.mark.slow
@pytest.mark.torch
def test_clean_pt2_still_loads_and_security_says_so(hostile):
    res = run_cli("inspect", hostile / "good.pt2")
    assert res.code == 0, res
    sec = run_cli("inspect", "--security", "--json", hostile / "good.pt2")
    assert sec.code == 0 and sec.json["result"]["allowed"] is True, sec


@pytest.mark.slow
@pytest.mark.torch
def test_torch_itself_would_run_the_sample_inputs_payload(hostile, tmp_path):
    """The attack is real: plain torch.export.load runs the payload (so the refusal above
    is what protects the user)."""
    marker = tmp_path / MARKER
    evil = tmp_path / "evil.pt2"
    _edit_zip(hostile / "good.pt2", evil, {"data/sample_inputs/model.pt": payload_pickle(marker)})
    subprocess.run([sys.executable, "-c", "import sys, torch; torch.export.load(sys.argv[1])", str(evil)],
                   capture_output=True)
    assert marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["memo_state.pt", "memo.pkl"])
def test_memo_hidden_global_refused_with_its_name(hostile, name):
    res = run_cli("inspect", hostile / name)
    assert_user_error(res, 2, name, "posix.system", "--trust-pickle")
    sec = run_cli("inspect", "--security", "--json", hostile / name)
    assert sec.code == 0 and sec.json["result"]["allowed"] is False, sec
    assert "posix.system" in json.dumps(sec.json["result"]["findings"])
    assert not (hostile / MARKER).exists()


WRITE_FILE_SAVEDMODEL = r"""
import os, sys; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
class M(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        tf.io.write_file(sys.argv[2], "written")
        return {"y": x * 2.0}
m = M()
tf.saved_model.save(m, sys.argv[1], signatures={"serving_default": m.serve})
"""


@pytest.mark.slow
@pytest.mark.tf
def test_savedmodel_with_write_file_is_refused(tmp_path, samples_dir):
    target = tmp_path / "written.txt"
    sm = tmp_path / "writer_savedmodel"
    subprocess.run([sys.executable, "-c", WRITE_FILE_SAVEDMODEL, str(sm), str(target)], check=True,
                   capture_output=True)
    target.unlink(missing_ok=True)  # tracing ran the op once, at save time
    res = run_cli("validate", sm, sm, cwd=tmp_path)
    assert_user_error(res, 2, "WriteFile", "--trust-code")
    assert not target.exists()
    sec = run_cli("inspect", "--security", "--json", sm)
    assert sec.code == 0 and sec.json["result"]["allowed"] is False, sec
    assert "WriteFile" in json.dumps(sec.json["result"]["findings"])
    # the bundled digits SavedModel (a Keras export with its saver) still loads
    good = run_cli("inspect", samples_dir / "digits_savedmodel")
    assert good.code == 0, good
    assert run_cli("inspect", "--security", "--json", samples_dir / "digits_savedmodel").json["result"]["allowed"]


def test_zip_member_confusion_is_refused(hostile, tmp_path):
    """Two members with one name, or members in two top folders: zipfile and torch's reader
    could pick different ones, so what was scanned would not be what torch loads."""
    from edgekit.errors import BadInput
    from edgekit.formats import detect
    from edgekit.scan import scan_pt2

    evil = payload_pickle(hostile / MARKER)
    with zipfile.ZipFile(hostile / "good.pt2") as zin:
        members = [(i.filename, zin.read(i)) for i in zin.infolist()]
    top = members[0][0].split("/", 1)[0]
    dup, two = tmp_path / "dup.pt2", tmp_path / "two.pt2"
    with pytest.warns(UserWarning), zipfile.ZipFile(dup, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
        zf.writestr(f"{top}/data/sample_inputs/model.pt", evil)
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("aaa/data/sample_inputs/model.pt", evil)
        for name, data in members:
            zf.writestr(name, data)
    with pytest.raises(BadInput, match="two members named"):
        detect(dup)
    with pytest.raises(BadInput, match="one top folder"):
        scan_pt2(two)


@pytest.mark.tf
def test_op_scan_reads_function_bodies_and_is_not_fooled_by_saver_def(tmp_path):
    """Hand-built protos (no TensorFlow runtime): an op in a function-library body is found,
    checkpoint ops are allowed only in functions the saver alone calls, and naming the
    serving node in saver_def does not exempt it."""
    from tensorflow.core.framework import graph_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    from edgekit.scan import scan_tf_graph

    def library(graph, fname, ops):
        fn = graph.library.function.add()
        fn.signature.name = fname
        for i, op in enumerate(ops):
            node = fn.node_def.add()
            node.name, node.op = f"n{i}", op

    def call(graph, name, fname):
        node = graph.node.add()
        node.name, node.op = name, "StatefulPartitionedCall"
        node.attr["f"].func.name = fname

    sm = saved_model_pb2.SavedModel()
    mg = sm.meta_graphs.add()
    g = mg.graph_def
    library(g, "serve", ["MatMul", "PyFunc"])
    library(g, "traced_save", ["SaveV2", "MergeV2Checkpoints"])
    library(g, "traced_restore", ["RestoreV2", "WriteFile"])
    call(g, "StatefulPartitionedCall", "serve")
    call(g, "StatefulPartitionedCall_1", "traced_save")
    call(g, "StatefulPartitionedCall_2", "traced_restore")
    mg.saver_def.save_tensor_name = "StatefulPartitionedCall_1:0"
    mg.saver_def.restore_op_name = "StatefulPartitionedCall_2"
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(sm.SerializeToString())
    found = {(f.member, f.what.split()[1]) for f in scan_tf_graph(tmp_path / "sm")}
    assert found == {("function 'serve' node 'n1'", "PyFunc"), ("function 'traced_restore' node 'n1'", "WriteFile")}
    # the serving call named as the saver: its checkpoint ops are still refused
    library(g, "serve2", ["SaveV2"])
    call(g, "StatefulPartitionedCall_3", "serve2")
    call(g, "also_serving", "serve2")
    mg.saver_def.restore_op_name = "StatefulPartitionedCall_3"
    (tmp_path / "sm" / "saved_model.pb").write_bytes(sm.SerializeToString())
    assert ("function 'serve2' node 'n0'", "SaveV2") in {(f.member, f.what.split()[1])
                                                          for f in scan_tf_graph(tmp_path / "sm")}
    gd = graph_pb2.GraphDef()
    node = gd.node.add()
    node.name, node.op = "w", "WriteFile"
    (tmp_path / "frozen.pb").write_bytes(gd.SerializeToString())
    assert [f.what for f in scan_tf_graph(tmp_path / "frozen.pb")] == ["op WriteFile writes a file"]
