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
