"""Hostile output folders, links and manifests, run for real with the real CLI: `edgekit build`
never deletes or overwrites what it did not create, and a full disk, a too-long name or a
folder in the way is a clean error with nothing published.

Each case builds a tiny ONNX model to ONNX (no framework: about a second per build)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import assert_user_error, run_cli
from tiny_onnx import matmul_onnx, write_project


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder holding the config, the model and a file of the user's."""
    d = tmp_path / "project"
    d.mkdir()
    matmul_onnx(d / "m.onnx")
    write_project(d, "m.onnx")
    (d / "notes.txt").write_text("the user's work")
    return d


def snapshot(folder: Path) -> dict:
    """Every file under `folder` (links not followed) with its bytes: to prove nothing changed."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = "-> " + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(folder))] = p.read_bytes()
    return out


def set_out(project: Path, out: str) -> None:
    cfg = project / "edgekit.toml"
    cfg.write_text(cfg.read_text().replace('out = "out"', f'out = "{out}"'))


# ----------------------------------------------------------------------------- folders edgekit does not own
def test_a_folder_of_the_users_is_never_replaced(project):
    user = project / "out"
    user.mkdir()
    (user / "draft.txt").write_text("mine")
    before = snapshot(project.parent)
    res = run_cli("build", cwd=project)
    assert_user_error(res, 2, str(user), "not created by edgekit", ".edgekit-out", "choose")
    assert snapshot(project.parent) == before


@pytest.mark.parametrize("out", [".", "..", "./", "../project", "sub/..", "models"])
def test_out_that_is_or_holds_the_project_sources_or_cwd_is_refused(project, out):
    (project / "models").mkdir()
    (project / "m.onnx").rename(project / "models" / "m.onnx")
    cfg = project / "edgekit.toml"
    cfg.write_text(cfg.read_text().replace('source = "m.onnx"', 'source = "models/m.onnx"'))
    (project / "sub").mkdir()
    assert_user_error(run_cli("build", "--out", out, cwd=project), 2, "output folder", "would delete")
    set_out(project, out)
    before = snapshot(project.parent)
    assert_user_error(run_cli("build", cwd=project), 2, "output folder", "would delete")
    assert snapshot(project.parent) == before


def test_out_holding_the_config_is_refused_from_another_folder(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    set_out(project, ".")
    before = snapshot(project)
    assert_user_error(run_cli("build", project / "edgekit.toml", cwd=elsewhere), 2, "the config's folder")
    assert snapshot(project) == before


def test_out_as_a_symbolic_link_is_refused(project, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    (project / "out").symlink_to(victim)
    assert_user_error(run_cli("build", cwd=project), 2, "symbolic link")
    assert snapshot(victim) == {"precious.txt": b"keep"} and (project / "out").is_symlink()


def test_lock_file_as_a_symbolic_link_is_refused_and_its_target_kept(project, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (project / ".out.lock").symlink_to(victim)
    assert_user_error(run_cli("build", cwd=project), 2, "lock file", "symbolic link")
    assert victim.read_text() == "keep" and not (project / "out").exists()


def test_an_empty_folder_is_adopted_and_marked(project):
    (project / "out").mkdir()
    res = run_cli("build", cwd=project)
    assert res.code == 0, res
    marker = json.loads((project / "out" / ".edgekit-out").read_text())
    assert marker["tool"] == "edgekit"
    assert (project / "out" / "m.onnx").is_file() and (project / "notes.txt").read_text() == "the user's work"
    res = run_cli("build", "--force", cwd=project)  # edgekit's own folder: replaced again
    assert res.code == 0, res


# ----------------------------------------------------------------------------- the old manifest is untrusted
@pytest.fixture
def built(project) -> Path:
    res = run_cli("build", cwd=project)
    assert res.code == 0, res
    return project


def hostile_entry(built: Path, **fields) -> dict:
    entry = json.loads((built / "out" / "manifest.json").read_text())["artifacts"][0]
    return {**entry, **fields}


def test_hostile_manifest_entries_never_write_outside_the_folder(built, tmp_path):
    important = built.parent / "IMPORTANT.txt"
    important.write_text("do not touch")
    absolute = tmp_path / "absolute.txt"
    absolute.write_text("do not touch either")
    man_path = built / "out" / "manifest.json"
    man = json.loads(man_path.read_text())
    good = man["artifacts"][0]
    (built / "out" / "old.onnx").write_bytes((built / "out" / "m.onnx").read_bytes())
    man["artifacts"] += [
        hostile_entry(built, id="gone/onnx-fp32", model="gone", file="../../IMPORTANT.txt"),
        hostile_entry(built, id="gone2/onnx-fp32", model="gone2", file=str(absolute)),
        hostile_entry(built, id="gone3/onnx-fp32", model="gone3", file="old.onnx"),  # model no longer configured
        {"id": 7, "file": None},
        "not an entry",
    ]
    man["failures"] = [{"id": good["id"], "cache_key": good["cache_key"], "error": "not a table"}, 42]
    man_path.write_text(json.dumps(man))
    for args in (("build",), ("build", "--force"), ("build", "--check")):
        res = run_cli(*args, cwd=built)
        assert res.code in (0, 1) and "Traceback" not in res.stderr, res
    assert important.read_text() == "do not touch" and absolute.read_text() == "do not touch either"
    new = json.loads(man_path.read_text())
    assert [a["id"] for a in new["artifacts"]] == ["m/onnx-fp32"] and new["failures"] == []
    assert sorted(p.name for p in (built / "out").iterdir()) == sorted(
        [".edgekit-out", "m.onnx", "manifest.json", "junit.xml", "summary.md", "report.json", "report.html"])


def test_a_cached_entry_is_reused_only_if_its_file_matches_its_hash(built):
    artifact = built / "out" / "m.onnx"
    good = artifact.read_bytes()
    artifact.write_bytes(good + b"tampered")
    res = run_cli("build", "--json", cwd=built)
    assert res.code == 0, res
    assert res.json["jobs"][0]["status"] == "built" and artifact.read_bytes() == good
    # a link in place of the artifact is not followed, even when the target has the right bytes
    outside = built.parent / "copy.onnx"
    outside.write_bytes(good)
    artifact.unlink()
    artifact.symlink_to(outside)
    res = run_cli("build", "--json", cwd=built)
    assert res.code == 0 and res.json["jobs"][0]["status"] == "built", res
    assert not artifact.is_symlink() and outside.read_bytes() == good


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", '"a string"'])
def test_a_manifest_that_is_not_an_object_is_a_clean_error(built, text):
    (built / "out" / "manifest.json").write_text(text)
    assert_user_error(run_cli("build", cwd=built), 2, "manifest")


# ----------------------------------------------------------------------------- source hash = what was converted
def test_manifest_records_the_hash_of_the_source_that_was_converted(built):
    man = json.loads((built / "out" / "manifest.json").read_text())
    assert man["artifacts"][0]["source"]["sha256"] == hashlib.sha256((built / "m.onnx").read_bytes()).hexdigest()


def test_a_source_changed_during_the_build_fails_the_job(project):
    from edgekit import config
    from edgekit.build import cache_key, check_inputs_unchanged, plan
    from edgekit.errors import BadInput

    job = plan(config.load(project / "edgekit.toml"))[0]
    cache_key(job)  # hashes the source, as the build does before the stages start
    check_inputs_unchanged(job)
    matmul_onnx(project / "m.onnx", size=5)  # the file is rewritten while the job runs
    with pytest.raises(BadInput, match="changed while it was being built"):
        check_inputs_unchanged(job)


# ----------------------------------------------------------------------------- clean errors, nothing published
LONG = "a" * 251 + ".onnx"  # 256 bytes


def test_a_256_character_output_name_is_a_usage_error(project, tmp_path):
    assert_user_error(run_cli("convert", project / "m.onnx", "--target", "onnx", "-o", tmp_path / LONG), 2,
                      "too long")
    write_project(project, "m.onnx", extra_target=f'  output = "{LONG}"\n')
    assert_user_error(run_cli("build", cwd=project), 2, "output name", "bytes")
    assert not (project / "out").exists() and list(tmp_path.iterdir()) == [project]


def test_report_path_taken_by_a_folder_publishes_nothing(project, tmp_path):
    (tmp_path / "a.onnx.report.json").mkdir()
    res = run_cli("convert", project / "m.onnx", "--target", "onnx", "-o", tmp_path / "a.onnx")
    assert_user_error(res, 2, "a.onnx.report.json")
    assert not (tmp_path / "a.onnx").exists() and not list(tmp_path.glob(".edgekit-*"))


@pytest.fixture
def full_disk(tmp_path):
    """A 32 KB tmpfs (needs root and mount rights; skipped otherwise)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_full_disk_is_an_environment_error_and_publishes_nothing(project, full_disk):
    big = matmul_onnx(project / "big.onnx", size=128)  # ~64 KB: does not fit
    res = run_cli("convert", big, "--target", "onnx", "-o", full_disk / "a.onnx")
    assert_user_error(res, 4, "no space left", "free some disk space")
    assert list(full_disk.iterdir()) == []
    write_project(project, "big.onnx", out=str(full_disk / "out"))
    res = run_cli("build", cwd=project)
    assert_user_error(res, 4, "no space left", "nothing was published")
    assert [p.name for p in full_disk.iterdir()] == [".out.lock"]


def _relu_onnx(path: Path, shape: list[int]) -> Path:
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.mark.parametrize("shapes, needles", [
    (([1, 4], [1, 2, 2]), ("input 'x'", "[1, 2, 2] (rank 3)", "[1, 4] (rank 2)")),
    (([1, 2, 2], [1, 4]), ("input 'x'", "[1, 4] (rank 2)", "[1, 2, 2] (rank 3)")),
    (([1, 4], [1, 5]), ("'x' [1, 4]", "expected: 5")),  # same rank: onnxruntime's InvalidArgument, mapped
])
def test_validate_of_onnx_files_with_other_input_shapes_is_bad_input(tmp_path, shapes, needles):
    src, art = (_relu_onnx(tmp_path / f"{n}.onnx", s) for n, s in zip(("src", "art"), shapes))
    assert_user_error(run_cli("validate", src, art), 2, "art.onnx", *needles)


# ----------------------------------------------------------------------------- hostile names in reports and on the terminal
HOSTILE = "ev\x1b[31mil\x07\x1b]0;title\x07<img src=x onerror=alert(1)>[bold]x[red].onnx"


def _unknown_op_onnx(path: Path) -> Path:
    """A well-formed ONNX file that onnxruntime refuses (an operator nobody registered): the
    build's job fails with a message that names the file."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_hostile_file_names_are_escaped_in_reports_and_on_the_terminal(project):
    from xml.etree import ElementTree as ET

    _unknown_op_onnx(project / HOSTILE)
    toml_name = HOSTILE.replace("\x1b", "\\u001b").replace("\x07", "\\u0007")
    write_project(project, toml_name)
    res = run_cli("build", cwd=project)
    assert_user_error(res, 1, "m/onnx-fp32")
    assert "NoSuchOp" in (project / "out" / "report.json").read_text()  # the failure names the file and op
    for stream in (res.stdout, res.stderr):
        assert "\x1b" not in stream and "\x07" not in stream, stream
    junit = ET.parse(project / "out" / "junit.xml").getroot()  # well-formed
    message = junit.find(".//failure").get("message")
    assert "<img src=x" in message and "\x1b" not in message
    summary = (project / "out" / "summary.md").read_text()
    assert "<img" not in summary and "&lt;img" in summary and "\x1b" not in summary and "\x07" not in summary
    assert "\\[bold\\]" in summary  # Markdown syntax in a name is escaped


def test_control_characters_in_arguments_never_reach_the_terminal(tmp_path):
    res = run_cli("inspect", tmp_path / "x\x1b[2J\x1b]8;;http://evil\x07y[/]z.onnx")
    assert_user_error(res, 2, "no such file")
    assert "\x1b" not in res.stderr and "\x07" not in res.stderr and "[/]z.onnx" in res.stderr


@pytest.mark.parametrize("fields", [
    {"parity": {"host": {"passed": True}}},  # no outputs
    {"parity": {"host": "passed"}}, {"latency": {"host": {"p90": 1}}}, {"size_bytes": "big"},
    {"parity": [1]}, {"precision": None}, {"sha256": 5},
])
def test_malformed_cached_entries_are_rebuilt_not_a_crash(built, fields):
    man_path = built / "out" / "manifest.json"
    man = json.loads(man_path.read_text())
    man["artifacts"][0].update(fields)
    man_path.write_text(json.dumps(man))
    res = run_cli("build", "--json", cwd=built)
    assert res.code == 0 and res.json["jobs"][0]["status"] == "built", res


def test_a_planted_staging_link_is_removed_not_followed(project, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    planted = [project / f".out.staging-{pid}" for pid in (1, os.getpid() + 1, 4194304)]
    for link in planted:
        link.symlink_to(victim)
    res = run_cli("build", cwd=project)
    assert res.code == 0, res
    assert snapshot(victim) == {"precious.txt": b"keep"}
    assert not any(p.is_symlink() for p in planted)


def test_an_output_folder_from_before_the_marker_is_adopted_only_if_all_its_files_are_edgekits(built):
    out = built / "out"
    (out / ".edgekit-out").unlink()  # as written by an edgekit without the marker
    res = run_cli("build", "--force", cwd=built)
    assert res.code == 0 and (out / ".edgekit-out").is_file(), res
    (out / ".edgekit-out").unlink()
    (out / "mine.txt").write_text("not edgekit's")
    assert_user_error(run_cli("build", "--force", cwd=built), 2, "not created by edgekit")
    assert (out / "mine.txt").read_text() == "not edgekit's"
