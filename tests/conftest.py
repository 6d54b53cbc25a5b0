"""Shared test helpers: run the real CLI in a subprocess, and build small real models once.

Tests run the installed `edgekit` exactly as a user would (python -m edgekit), so exit
codes, stdout/stderr separation and child-process isolation are all exercised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


class CliResult:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def json(self) -> dict:
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"<exit {self.code}>\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


def run_cli(*args, cwd: str | Path | None = None, env: dict | None = None, timeout: float = 900) -> CliResult:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)
    return CliResult(proc)


@pytest.fixture
def cli():
    return run_cli


def assert_user_error(res: CliResult, code: int, *needles: str) -> None:
    """A clean user error: the exit code, the words (found with rich's line wrapping undone:
    long messages wrap), and no Python traceback."""
    assert res.code == code, res
    assert "Traceback" not in res.stderr, res
    flat = " ".join(res.stderr.split()).lower()
    for n in needles:
        assert " ".join(n.split()).lower() in flat, (n, res)


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory) -> Path:
    """The bundled samples, built once per test session into a temporary folder."""
    out = tmp_path_factory.mktemp("samples")
    env = {**os.environ, "EDGEKIT_SAMPLES_DIR": str(out)}
    subprocess.run([sys.executable, str(SAMPLES / "make_samples.py"), "digits_keras"], check=True, env=env)
    return out


# the Keras digits sample's conversions that several test files check (converted once per session)
DIGITS_CONVERSIONS = {"tflite-fp32": ("tflite", "none"), "tflite-int8": ("tflite", "int8"),
                      "onnx-fp32": ("onnx", "none"), "onnx-int8": ("onnx", "int8")}


class ConvertedDigits:
    """`digits[name]` is the artifact of DIGITS_CONVERSIONS[name], converted on first use with the
    validation set as --inputs (and the calibration set for int8); `digits.doc(name)` is that
    convert's JSON document. Each artifact is alone with its report in a folder of its own."""

    def __init__(self, samples: Path, root: Path):
        self.samples, self.root, self._done = samples, root, {}
        self.source = samples / "digits_keras.keras"
        self.val = samples / "digits_keras_val.npz"
        self.calib = samples / "digits_keras_calib.npz"

    def convert(self, name: str) -> tuple[Path, dict]:
        if name not in self._done:
            target, quantize = DIGITS_CONVERSIONS[name]
            folder = self.root / name
            folder.mkdir()
            out = folder / f"digits.{name}.{target}"
            calib = ["--calibration", self.calib] if quantize != "none" else []
            res = run_cli("convert", self.source, "--target", target, "--quantize", quantize, *calib,
                          "--inputs", self.val, "-o", out, "--json")
            assert res.code == 0, res
            self._done[name] = (out, res.json)
        return self._done[name]

    def __getitem__(self, name: str) -> Path:
        return self.convert(name)[0]

    def doc(self, name: str) -> dict:
        return self.convert(name)[1]


@pytest.fixture(scope="session")
def digits_converted(samples_dir, tmp_path_factory) -> ConvertedDigits:
    return ConvertedDigits(samples_dir, tmp_path_factory.mktemp("digits_converted"))


@pytest.fixture(scope="session")
def tiny_torch():
    """tests/tiny_torch.py's models exported once per session: lstm.pt2 (TinyLSTM, dynamic batch)
    with lstm_val.npz / lstm_calib.npz, and cummax.pt2 (an operator no target converts)."""
    import shutil
    import tempfile

    import numpy as np

    torch = pytest.importorskip("torch")
    import tiny_torch as tiny

    # a folder of our own: pytest's numbered temp folders can be rotated away by another session
    out = Path(tempfile.mkdtemp(prefix="edgekit-tiny-torch-"))
    torch.manual_seed(0)
    batch = torch.export.Dim("batch", min=1, max=256)
    torch.export.save(torch.export.export(tiny.TinyLSTM().eval(), (torch.randn(2, 6, 3),),
                                          dynamic_shapes=({0: batch},)), out / "lstm.pt2")
    rng = np.random.default_rng(0)
    np.savez(out / "lstm_val.npz", window=rng.standard_normal((64, 6, 3)).astype("float32"))
    np.savez(out / "lstm_calib.npz", window=rng.standard_normal((64, 6, 3)).astype("float32"))
    torch.export.save(torch.export.export(tiny.CumMax().eval(), (torch.randn(1, 16),)), out / "cummax.pt2")
    yield out
    shutil.rmtree(out, ignore_errors=True)
