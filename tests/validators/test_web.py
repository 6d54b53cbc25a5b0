"""The browser and Node.js as runtimes (#17): edgekit web setup/status, --target tfjs, and parity
and latency in real headless Chromium (ONNX Runtime Web, TF.js wasm and cpu) and in Node.js.

These run the real browser: `edgekit web setup` (make setup; CI's .ci/run) provisions it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import assert_user_error, run_cli

pytestmark = [pytest.mark.browser]


def _web_ready() -> bool:
    from edgekit.validators.web.provision import missing_host_tools, read_manifest

    return not missing_host_tools() and read_manifest() is not None


needs_web = pytest.mark.skipif(not _web_ready() and not os.environ.get("CI"),
                               reason="run 'edgekit web setup' (CI always runs these)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small Keras classifier that is not a sample, its ONNX and TF.js conversions (made once)."""
    pytest.importorskip("keras")
    import numpy as np

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    d = tmp_path_factory.mktemp("web")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(96, 12)).astype("float32")
    y = (x[:, :4].sum(axis=1) > 0).astype("int64") + (x[:, 4] > 1).astype("int64")
    model = keras.Sequential([keras.Input((12,), name="features"), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax", name="probs")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, verbose=0)
    model.save(d / "tiny.keras")
    np.savez(d / "val.npz", features=x)
    onnx = run_cli("convert", d / "tiny.keras", "--target", "onnx", "-o", d / "tiny.onnx", "--inputs", d / "val.npz")
    assert onnx.code == 0, onnx.stderr
    tfjs = run_cli("convert", d / "tiny.keras", "--target", "tfjs", "-o", d / "tiny_tfjs", "--inputs", d / "val.npz",
                   "--validate-arch", "browser", "--json")
    return {"dir": d, "tfjs": tfjs}


def test_web_setup_is_idempotent_and_status_reports_the_runtimes():
    if not _web_ready() and not os.environ.get("CI"):
        pytest.skip("run 'edgekit web setup'")
    res = run_cli("web", "setup", "--json", timeout=1800)
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout)["result"]["action"] in ("none", "built")
    again = run_cli("web", "setup", "--json")
    assert json.loads(again.stdout)["result"]["action"] == "none"
    status = run_cli("web", "status", "--json")
    assert status.code == 0, status.stderr
    m = json.loads(status.stdout)["result"]["manifest"]
    assert set(m["npm"]) == {"onnxruntime-web", "@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "playwright-core"}
    assert m["probe"]["chromium"].startswith("Chromium")


def test_setup_without_chromium_and_not_root_prints_the_command(tmp_path):
    import shutil
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if shutil.which("apt-get"):
        (bin_dir / "apt-get").symlink_to(shutil.which("apt-get"))
    env = {**os.environ, "EDGEKIT_WEB_HOME": str(tmp_path / "web"), "PATH": str(bin_dir)}  # no chromium, no node
    cmd = [sys.executable, "-m", "edgekit", "web", "setup"]
    if os.geteuid() == 0:  # CI runs as root: an unmapped user namespace makes edgekit an ordinary user
        if shutil.which("unshare") is None:
            pytest.skip("unshare is not available")
        cmd = [shutil.which("unshare"), "--user", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 4, proc.stderr
    flat = " ".join(proc.stderr.split())  # rich wraps long lines
    assert "Traceback" not in proc.stderr and "not running as root" in flat
    if shutil.which("apt-get"):
        assert "sudo apt-get install -y --no-install-recommends chromium nodejs npm" in flat
    assert not (tmp_path / "web").exists() or not any((tmp_path / "web").iterdir())


def test_missing_node_and_browser_is_exit_4_with_the_setup_command(tmp_path):
    # PATH without node or chromium (the Python interpreter runs edgekit)
    res = run_cli("web", "status", env={"PATH": str(tmp_path)})
    assert_user_error(res, 4, "missing host packages", "chromium", "nodejs", "edgekit web setup")


@needs_web
@pytest.mark.tf
@pytest.mark.slow
def test_convert_keras_to_tfjs_checks_parity_in_the_browser_with_both_tfjs_backends(tiny):
    res = tiny["tfjs"]
    assert res.code == 0, res.stderr
    doc = json.loads(res.stdout)["result"]
    folder = tiny["dir"] / "tiny_tfjs"
    assert (folder / "model.json").is_file() and list(folder.glob("group1-shard*.bin"))
    assert doc["size_bytes"] == sum(f.stat().st_size for f in folder.iterdir())
    web = doc["web"]
    assert [(r["arch"], r["runtime"]) for r in web] == [("browser", "tfjs-wasm"), ("browser", "tfjs-cpu")]
    for r in web:
        assert r["parity"]["passed"], r["parity"]
        assert r["web"]["engine"].startswith("Chromium") and r["web"]["median_ms"] > 0


@needs_web
@pytest.mark.tf
@pytest.mark.slow
def test_validate_onnx_in_onnx_runtime_web_in_chromium_and_node(tiny):
    d = tiny["dir"]
    res = run_cli("validate", d / "tiny.keras", d / "tiny.onnx", "--arch", "browser", "--arch", "node",
                  "--inputs", d / "val.npz", "--json")
    assert res.code == 0, res.stderr
    results = json.loads(res.stdout)["results"]
    assert [(r["arch"], r["runtime"]) for r in results] == [("browser", "onnxruntime-web"), ("node", "onnxruntime-web")]
    assert results[0]["web"]["engine"].startswith("Chromium")
    assert results[1]["web"]["engine"].startswith("Node.js")
    for r in results:
        assert r["parity"]["passed"] and r["parity"]["outputs"][0]["metrics"]["max_abs"] < 1e-4


@needs_web
@pytest.mark.tf
@pytest.mark.slow
def test_a_wrong_tfjs_model_fails_parity_in_the_browser(tiny):
    """The gate can fail: a TF.js folder whose weights were changed computes something else."""
    import shutil

    import numpy as np

    d = tiny["dir"]
    bad = d / "bad_tfjs"
    shutil.copytree(d / "tiny_tfjs", bad)
    shard = next(bad.glob("group1-shard*.bin"))
    w = np.fromfile(shard, dtype="<f4")
    (w * -1.5).astype("<f4").tofile(shard)
    res = run_cli("validate", d / "tiny.keras", bad, "--arch", "browser", "--inputs", d / "val.npz")
    assert_user_error(res, 1, "parity failed on browser")


@needs_web
@pytest.mark.tf
@pytest.mark.slow
def test_tfjs_bench_in_node_and_quantized_weights(tiny):
    d = tiny["dir"]
    res = run_cli("convert", d / "tiny.keras", "--target", "tfjs", "--quantize", "dynamic", "--tfjs-weights", "uint16",
                  "-o", d / "tiny_u16", "--inputs", d / "val.npz", "--json")
    assert res.code == 0, res.stderr
    doc = json.loads(res.stdout)["result"]
    assert doc["details"]["tfjs_weights"] == "uint16" and doc["parity"]["passed"]
    meta = json.loads((d / "tiny_u16" / "model.json").read_text())
    assert any(w.get("quantization", {}).get("dtype") == "uint16" for g in meta["weightsManifest"] for w in g["weights"])
    bench = run_cli("bench", d / "tiny_u16", "--arch", "node", "--iterations", "20", "--json")
    assert bench.code == 0, bench.stderr
    rows = json.loads(bench.stdout)["results"]
    assert [r["runtime"] for r in rows] == ["tfjs-wasm", "tfjs-cpu"] and all(r["median_ms"] > 0 for r in rows)


@needs_web
@pytest.mark.tf
@pytest.mark.slow
def test_ops_tfjs_lacks_are_exit_3_naming_them(tmp_path):
    import tensorflow as tf

    class Det(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3, 3], tf.float32, name="x")])
        def __call__(self, x):
            return {"det": tf.linalg.det(x)}

    m = Det()
    tf.saved_model.save(m, str(tmp_path / "det"), signatures={"serving_default": m.__call__})
    res = run_cli("convert", tmp_path / "det", "--target", "tfjs", "-o", tmp_path / "det_tfjs")
    assert_user_error(res, 3, "TensorFlow.js does not support", "MatrixDeterminant")
    assert not (tmp_path / "det_tfjs").exists()


@needs_web
@pytest.mark.tf
@pytest.mark.slow
def test_a_browser_run_past_its_time_limit_is_124_and_leaves_no_browser(tiny):
    d = tiny["dir"]
    res = run_cli("bench", d / "tiny.onnx", "--arch", "browser", "--iterations", "1000000000", "--timeout", "8")
    assert_user_error(res, 124, "time limit")
    import time

    time.sleep(2)  # the killed stage's driver and Chromium go down with it (PDEATHSIG, closed pipe)
    left = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
                status = (p / "status").read_text()
            except OSError:
                continue
            if b"edgekit-web-" in cmd and "State:\tZ" not in status:
                left.append(cmd[:120])
    assert not left


@needs_web
@pytest.mark.tf
@pytest.mark.slow
def test_build_with_browser_arch_publishes_a_tfjs_folder_and_checks_it(tiny, tmp_path):
    import shutil

    d = tiny["dir"]
    shutil.copy(d / "tiny.keras", tmp_path / "tiny.keras")
    shutil.copy(d / "val.npz", tmp_path / "val.npz")
    (tmp_path / "edgekit.toml").write_text('[build]\nout = "out"\n\n[[models]]\nname = "tiny"\n'
                                           'source = "tiny.keras"\ninputs = "val.npz"\n\n'
                                           '  [[models.targets]]\n  target = "tfjs"\n  arches = ["host", "browser"]\n')
    res = run_cli("build", tmp_path / "edgekit.toml")
    assert res.code == 0, res
    out = tmp_path / "out"
    entry = json.loads((out / "manifest.json").read_text())["artifacts"][0]
    folder = out / entry["file"]
    assert (folder / "model.json").is_file()
    assert entry["size_bytes"] == sum(f.stat().st_size for f in folder.iterdir())
    assert set(entry["parity"]) == {"host", "browser:tfjs-wasm", "browser:tfjs-cpu"}
    assert entry["latency"]["browser:tfjs-wasm"]["median_ms"] > 0
    junit = (out / "junit.xml").read_text()
    assert "tfjs-fp32 [browser:tfjs-cpu]" in junit
    assert run_cli("build", tmp_path / "edgekit.toml", "--json").code == 0  # cached: the folder is reused
    assert run_cli("build", tmp_path / "edgekit.toml", "--check").code == 0
    (folder / "model.json").write_text((folder / "model.json").read_text() + " ")
    assert_user_error(run_cli("build", tmp_path / "edgekit.toml", "--check"), 1, "tfjs")


@needs_web
@pytest.mark.tf
@pytest.mark.slow
def test_tfjs_without_web_setup_is_exit_4_with_the_command(tiny, tmp_path):
    d = tiny["dir"]
    res = run_cli("convert", d / "tiny.keras", "--target", "tfjs", "-o", tmp_path / "t_tfjs",
                  env={"EDGEKIT_WEB_HOME": str(tmp_path / "empty")})
    assert_user_error(res, 4, "not provisioned", "edgekit web setup")
    res = run_cli("validate", d / "tiny.keras", d / "tiny.onnx", "--arch", "node",
                  env={"EDGEKIT_WEB_HOME": str(tmp_path / "empty")})
    assert_user_error(res, 4, "edgekit web setup")


@needs_web
@pytest.mark.tf
@pytest.mark.slow
def test_a_model_the_page_cannot_run_is_exit_2_naming_the_browser_stage(tiny):
    """The runtime in the page fails (an op TF.js does not have): a clean error, not a hang."""
    import shutil

    d = tiny["dir"]
    bad = d / "unknown_op_tfjs"
    shutil.copytree(d / "tiny_tfjs", bad, dirs_exist_ok=True)
    meta = json.loads((bad / "model.json").read_text())
    node = next(n for n in meta["modelTopology"]["node"] if n.get("op") not in ("Placeholder", "Const"))
    node["op"] = "EdgekitNoSuchOp"
    (bad / "model.json").write_text(json.dumps(meta))
    res = run_cli("bench", bad, "--arch", "browser", "--iterations", "5")
    assert_user_error(res, 2, "the browser stage failed", "EdgekitNoSuchOp")
