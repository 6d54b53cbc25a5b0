"""`edgekit build`: real builds of a small config — incremental, atomic, checkable, shardable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from conftest import assert_user_error, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.tf]

TINY = """
import os, sys; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np
keras.utils.set_random_seed(int(sys.argv[2]))
m = keras.Sequential([keras.Input((6,), name="x"), keras.layers.Dense(8, activation="relu"),
                      keras.layers.Dense(3, activation="softmax", name="p")])
m.save(sys.argv[1])
"""


def make_tiny(path: Path, seed: int) -> None:
    subprocess.run([sys.executable, "-c", TINY, str(path), str(seed)], check=True, capture_output=True)


def write_config(folder: Path, samples_dir: Path, extra: str = "") -> Path:
    cfg = folder / "edgekit.toml"
    cfg.write_text(textwrap.dedent(f"""
        [build]
        out = "out"
        jobs = 2

        [[models]]
        name = "digits"
        source = "{samples_dir / 'digits_keras.keras'}"
        inputs = "{samples_dir / 'digits_keras_val.npz'}"
        labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]

          [[models.targets]]
          target = "onnx"

        [[models]]
        name = "tiny"
        source = "tiny.keras"

          [[models.targets]]
          target = "onnx"

          [[models.targets]]
          target = "tflite"
        """) + extra)
    return cfg


def manifest(folder: Path) -> dict:
    return json.loads((folder / "out" / "manifest.json").read_text())


def consistent(folder: Path) -> None:
    """Every artifact in the manifest exists and has the manifest's hash."""
    from edgekit.build import file_digest

    man = manifest(folder)
    for a in man["artifacts"]:
        assert file_digest(folder / "out" / a["file"]) == a["sha256"], a["file"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, samples_dir) -> Path:
    folder = tmp_path_factory.mktemp("project")
    make_tiny(folder / "tiny.keras", 1)
    write_config(folder, samples_dir)
    res = run_cli("build", "--json", cwd=folder)
    assert res.code == 0, res
    return folder


def test_first_build_produces_everything(project):
    out = project / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([".edgekit-out", "digits.onnx", "tiny.onnx", "tiny.tflite", "manifest.json", "junit.xml",
                            "summary.md", "report.json", "report.html"])
    man = manifest(project)
    assert man["schema_version"] == 1 and not man["failures"]
    a = {x["id"]: x for x in man["artifacts"]}
    d = a["digits/onnx-fp32"]
    assert d["labels"][3] == "3" and d["parity"]["host"]["passed"] and d["latency"]["host"]["median_ms"] > 0
    assert d["inputs"][0]["name"] == "image" and d["outputs"][0]["shape"] == [None, 10]
    assert len(d["sha256"]) == 64 and d["versions"]["edgekit"] and d["source"]["sha256"]
    consistent(project)
    junit = ET.parse(out / "junit.xml").getroot()
    assert junit.get("tests") == "3" and junit.get("failures") == "0"
    assert len(junit.findall(".//testcase")) == 3
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 2 and "tiny/tflite-fp32" in html


def test_second_build_is_a_noop(project):
    before = (project / "out" / "manifest.json").read_bytes()
    res = run_cli("build", cwd=project)
    assert res.code == 0, res
    assert "up to date" in res.stderr and "3 cached" in res.stderr
    assert (project / "out" / "manifest.json").read_bytes() == before


def test_touching_one_source_rebuilds_only_its_jobs(project):
    make_tiny(project / "tiny.keras", 2)
    res = run_cli("build", "--json", cwd=project)
    assert res.code == 0, res
    status = {j["id"]: j["status"] for j in res.json["jobs"]}
    assert status == {"digits/onnx-fp32": "cached", "tiny/onnx-fp32": "built", "tiny/tflite-fp32": "built"}
    consistent(project)


def test_check_passes_then_fails_after_an_artifact_is_altered(project, tmp_path):
    res = run_cli("build", "--check", cwd=project)
    assert res.code == 0, res
    target = project / "out" / "tiny.onnx"
    saved = target.read_bytes()
    try:
        data = bytearray(saved)
        data[-50] ^= 0xFF
        target.write_bytes(bytes(data))
        res = run_cli("build", "--check", "--reports", tmp_path / "rep", cwd=project)
        assert_user_error(res, 1, "tiny/onnx-fp32")
        assert "sha256" in res.stdout
        junit = ET.parse(tmp_path / "rep" / "junit.xml").getroot()
        assert junit.get("failures") == "1" and junit.get("tests") == "3"
    finally:
        target.write_bytes(saved)


def _wait_for(pred, timeout=120.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_build_leaves_previous_outputs_intact(project, sig):
    before = (project / "out" / "manifest.json").read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "build", "--force", "-q"], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staged = lambda: list(project.glob(".out.staging-*"))  # noqa: E731
    assert _wait_for(lambda: staged() or proc.poll() is not None)
    time.sleep(3)  # let the child stages get going
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert (project / "out" / "manifest.json").read_bytes() == before
    consistent(project)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Traceback" not in err
        assert not staged()
    # a later build cleans whatever a SIGKILL left and is still a no-op
    res = run_cli("build", cwd=project)
    assert res.code == 0 and "up to date" in res.stderr, res
    assert not staged()


def test_shards_cover_all_jobs_once_and_merge(project, samples_dir):
    from edgekit import config
    from edgekit.build import plan

    cfg = config.load(project / "edgekit.toml")
    everything = sorted(j.id for j in plan(cfg))
    one = [j.id for j in plan(cfg, shard=(1, 2))]
    two = [j.id for j in plan(cfg, shard=(2, 2))]
    assert sorted(one + two) == everything and not set(one) & set(two)
    for i in (1, 2):
        res = run_cli("build", "--shard", f"{i}/2", "--out", f"shard{i}", cwd=project)
        assert res.code == 0, res
    res = run_cli("merge-reports", "shard1", "shard2", "--out", "merged", cwd=project)
    assert res.code == 0, res
    merged = json.loads((project / "merged" / "manifest.json").read_text())
    assert sorted(a["id"] for a in merged["artifacts"]) == everything
    assert ET.parse(project / "merged" / "junit.xml").getroot().get("tests") == "3"


# ----------------------------------------------------------------------------- bad input
def test_malformed_toml_names_line_and_column(tmp_path):
    (tmp_path / "edgekit.toml").write_text("[build\nout = 1\n")
    assert_user_error(run_cli("build", cwd=tmp_path), 2, "line 1", "column")


def test_unknown_key_and_wrong_type_name_key_and_line(project, tmp_path, samples_dir):
    cfg = write_config(tmp_path, samples_dir).read_text()
    (tmp_path / "edgekit.toml").write_text(cfg.replace('target = "tflite"', 'target = "tflite"\n  quantise = "int8"'))
    assert_user_error(run_cli("build", cwd=tmp_path), 2, "edgekit.toml:24", "quantise", "unknown key")
    (tmp_path / "edgekit.toml").write_text(cfg.replace("jobs = 2", 'jobs = "two"'))
    assert_user_error(run_cli("build", cwd=tmp_path), 2, "edgekit.toml:4", "build.jobs", "expected an integer")


def test_missing_model_path(tmp_path, samples_dir):
    write_config(tmp_path, samples_dir)  # tiny.keras is not there
    assert_user_error(run_cli("build", cwd=tmp_path), 2, "tiny", "does not exist", "edgekit.toml:")


def test_unsupported_target_for_source(tmp_path, samples_dir):
    make_tiny(tmp_path / "tiny.keras", 1)
    write_config(tmp_path, samples_dir, '\n  [[models.targets]]\n  target = "executorch"\n')
    assert_user_error(run_cli("build", cwd=tmp_path), 2, "not supported", "tiny", "edgekit.toml:")


def test_duplicate_output_names(tmp_path, samples_dir):
    make_tiny(tmp_path / "tiny.keras", 1)
    write_config(tmp_path, samples_dir, '\n  [[models.targets]]\n  target = "onnx"\n  output = "tiny.tflite"\n')
    assert_user_error(run_cli("build", cwd=tmp_path), 2, "duplicate output name 'tiny.tflite'")


def test_output_folder_is_a_file(tmp_path, samples_dir):
    make_tiny(tmp_path / "tiny.keras", 1)
    write_config(tmp_path, samples_dir)
    (tmp_path / "out").write_text("not a folder")
    assert_user_error(run_cli("build", cwd=tmp_path), 2, "is a file")


@pytest.mark.parametrize("spec", ["3/2", "0/2", "x", "1/0"])
def test_bad_shard_spec(tmp_path, samples_dir, spec):
    make_tiny(tmp_path / "tiny.keras", 1)
    write_config(tmp_path, samples_dir)
    assert_user_error(run_cli("build", "--shard", spec, cwd=tmp_path), 2, "--shard")


def test_second_build_on_the_same_folder_is_refused_while_locked(project):
    import fcntl

    with open(project / ".out.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        res = run_cli("build", cwd=project)
        fcntl.flock(fh, fcntl.LOCK_UN)
    assert_user_error(res, 2, "another edgekit build")


def test_a_failure_is_kept_only_when_it_would_fail_again(tmp_path):
    """A job that failed its check (exit 1) fails again with the same inputs and versions: the
    next build keeps the failure and says so. A time limit is not the model's fault: tried again."""
    make_tiny(tmp_path / "tiny.keras", 0)
    body = textwrap.dedent("""
        [[models]]
        name = "tiny"
        source = "tiny.keras"

          [[models.targets]]
          target = "onnx"
          max_latency_ms = 1e-9
        """)

    def build(name: str, head: str) -> tuple[int, str]:
        cfg = tmp_path / name
        cfg.write_text(head + body)
        res = run_cli("build", cfg, cwd=tmp_path)
        assert "Traceback" not in res.stderr, res
        return res.code, " ".join((res.stdout + res.stderr).split())

    first = build("e.toml", '[build]\nout = "out"\njobs = 1\n')
    assert first[0] == 1 and "tiny/onnx-fp32 failed (CheckFailed)" in first[1] and "from the last build" not in first[1]
    again = build("e.toml", '[build]\nout = "out"\njobs = 1\n')
    assert again[0] == 1 and "tiny/onnx-fp32 failed (CheckFailed): " in again[1], again
    assert "· from the last build (same inputs and versions" in again[1], again
    assert "--force retries" in again[1]

    for _ in range(2):  # timed out both times: run both times
        code, text = build("slow.toml", '[build]\nout = "out-slow"\njobs = 1\ntimeout = 0.5\n')
        assert code != 0 and "tiny/onnx-fp32 failed" in text and "from the last build" not in text, text
