"""Fuzzing: mutated artifacts never produce a Python traceback, a hang or a payload.

Valid seed files (TFLite, ONNX, ExecuTorch .pte, torch.export .pt2, Keras .keras, plus a
.pt2 carrying a pickle payload) get bit flips, truncations, splices and zeroed runs; zip
archives also get their members mutated and re-zipped (a flipped byte in a deflated zip
only breaks its CRC). Every mutant must end in exit 0, 2 or 3, within a time limit, and
the payload's marker file must never appear.

Two tests share the mutator:
- `test_mutants_in_process`: EDGEKIT_FUZZ_EXAMPLES mutants *per format* through a
  long-lived worker (tests/toolchain/fuzz_worker.py) that runs what `edgekit inspect` and
  `inspect --security` run, frameworks imported once; each case has a timeout, a crash
  restarts the worker. It prints (and writes to EDGEKIT_FUZZ_REPORT) the outcome counts.
- `test_mutants_through_the_cli`: a sample (EDGEKIT_FUZZ_CLI_EXAMPLES) through the real CLI.
`make fuzz` runs 1,000 per format; CI keeps the small defaults.
"""

from __future__ import annotations

import io
import json
import os
import random
import select
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli

EXAMPLES = int(os.environ.get("EDGEKIT_FUZZ_EXAMPLES", "12"))
CLI_EXAMPLES = int(os.environ.get("EDGEKIT_FUZZ_CLI_EXAMPLES", str(min(EXAMPLES, 8))))
CASE_TIMEOUT = float(os.environ.get("EDGEKIT_FUZZ_TIMEOUT", "120"))
RANDOM = bool(os.environ.get("EDGEKIT_FUZZ_RANDOM"))
ALLOWED = {0, 2, 3}  # what a mutant may end in: valid, refused, or not convertible
DOCUMENTED = {0, 1, 2, 3, 124}
KINDS = ("tflite", "onnx", "pte", "pt2", "keras", "pt2-payload")
OPS = ("flip", "truncate", "splice", "zero-run", "member")
MARKER = "FUZZ_PAYLOAD_RAN"
WORKER = Path(__file__).with_name("fuzz_worker.py")

SEED_PT2 = r"""
import sys, torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c = torch.nn.Conv2d(1, 2, 3)
        self.l = torch.nn.Linear(2, 3)
    def forward(self, x):
        return self.l(self.c(x).relu().mean((2, 3)))
batch = torch.export.Dim("batch", min=1, max=32)
ep = torch.export.export(M(), (torch.randn(2, 1, 8, 8),), dynamic_shapes=({0: batch},))
torch.export.save(ep, sys.argv[1])
"""


@pytest.fixture(scope="module")
def seeds(samples_dir, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fuzz-seeds")
    out = {"keras": samples_dir / "digits_keras.keras"}
    subprocess.run([sys.executable, "-c", SEED_PT2, str(d / "good.pt2")], check=True, capture_output=True)
    out["pt2"] = d / "good.pt2"
    for target, src in (("onnx", out["keras"]), ("tflite", out["keras"]), ("pte", out["pt2"])):
        path = d / f"good.{target}"
        res = run_cli("convert", src, "--target", "executorch" if target == "pte" else target, "-o", path, "-q",
                      "--no-validate")
        assert res.code == 0, res
        out[target] = path
    # a .pt2 whose sample inputs are a pickle that would create the marker in the cwd
    cmd = f"touch {MARKER}".encode()
    payload = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94h\x00h\x01\x93\x8c" + bytes([len(cmd)]) + cmd + b"\x85R."
    with zipfile.ZipFile(out["pt2"]) as zin, zipfile.ZipFile(d / "payload.pt2", "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, payload if info.filename.endswith("sample_inputs/model.pt")
                          else zin.read(info))
    out["pt2-payload"] = d / "payload.pt2"
    return out


def _mutate_bytes(data: bytearray, op: str, rng: random.Random) -> bytearray:
    if not data:
        return data
    pos = rng.randrange(len(data))
    count = rng.randint(1, 64)
    if op == "flip":
        for _ in range(count):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif op == "truncate":
        data = data[:max(1, pos)]
    elif op == "splice":  # a chunk of the file copied over another place
        src = rng.randrange(len(data))
        chunk = data[src:src + count * 16]
        data[pos:pos + len(chunk)] = chunk
    else:  # zero-run
        data[pos:pos + count * 8] = bytes(min(count * 8, len(data) - pos))
    return data


def mutate(blob: bytes, op: str, seed: int) -> bytes:
    """One mutant of `blob`: byte-level, or (op 'member', zip files) one member mutated and re-zipped."""
    rng = random.Random(seed)
    if op == "member" and blob[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(blob)) as zin:
            infos = zin.infolist()
            victim = rng.choice(infos).filename
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
                for info in infos:
                    data = zin.read(info)
                    if info.filename == victim:
                        data = bytes(_mutate_bytes(bytearray(data), rng.choice(OPS[:4]), rng))
                    zout.writestr(info.filename, data)
        return buf.getvalue()
    return bytes(_mutate_bytes(bytearray(blob), op if op != "member" else "flip", rng))


class Worker:
    """tests/toolchain/fuzz_worker.py behind a line protocol, restarted after a crash or a hang."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.proc = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(WORKER.parent)}
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=self.cwd, env=env, text=True,
                                     start_new_session=True)
        assert json.loads(self._line(600)) == {"ready": True}

    def _line(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return self.proc.stdout.readline()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
        if self.proc:
            self.proc.wait()
        self.proc = None

    def run(self, path: Path) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        line = self._line(CASE_TIMEOUT)
        if line is None:
            self.stop()
            return {"code": "hang"}
        if not line:  # the worker died: a native crash, which the CLI's stage child reports as exit 2
            self.stop()
            return {"code": 2, "message": "native crash (the CLI reports it as a clean exit 2)"}
        return json.loads(line)


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.tf
def test_mutants_in_process(seeds, tmp_path):
    work = tmp_path / "cases"
    work.mkdir()
    worker = Worker(work)
    rng = random.Random(None if RANDOM else 12)
    outcomes: dict[str, Counter] = {k: Counter() for k in KINDS}
    bad = []
    started = time.monotonic()
    try:
        for kind in KINDS:
            blob = seeds[kind].read_bytes()
            suffix = ".pt2" if kind.startswith("pt2") else f".{kind}"
            for i in range(EXAMPLES):
                op, seed = rng.choice(OPS), rng.randrange(2 ** 32)
                path = work / f"{kind}-{i}{suffix}"
                path.write_bytes(mutate(blob, op, seed))
                res = worker.run(path)
                code = res["code"]
                outcomes[kind][str(code)] += 1
                if code not in ALLOWED or (work / MARKER).exists():
                    bad.append((kind, op, seed, res, (work / MARKER).exists()))
                    keep = tmp_path / "failures"
                    keep.mkdir(exist_ok=True)
                    path.rename(keep / path.name)
                else:
                    path.unlink()
    finally:
        worker.stop()
    summary = {"examples_per_format": EXAMPLES, "seconds": round(time.monotonic() - started),
               "outcomes": {k: dict(v) for k, v in outcomes.items()},
               "failures": [{"kind": k, "op": o, "seed": s, "result": r, "payload_ran": p} for k, o, s, r, p in bad]}
    print("\nfuzz outcomes (exit code: count):", json.dumps(summary["outcomes"], indent=1))
    if os.environ.get("EDGEKIT_FUZZ_REPORT"):
        Path(os.environ["EDGEKIT_FUZZ_REPORT"]).write_text(json.dumps(summary, indent=1))
    assert not (work / MARKER).exists()
    assert not bad, json.dumps(summary["failures"][:5], indent=1)


@st.composite
def mutations(draw):
    return draw(st.sampled_from(KINDS)), draw(st.sampled_from(OPS)), draw(st.integers(0, 2 ** 32 - 1))


@pytest.mark.slow
@settings(max_examples=CLI_EXAMPLES, deadline=None, derandomize=not RANDOM,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=mutations())
def test_mutants_through_the_cli(seeds, tmp_path_factory, case):
    kind, op, seed = case
    d = tmp_path_factory.mktemp("fuzz")
    suffix = ".pt2" if kind.startswith("pt2") else f".{kind}"
    bad = d / f"mutant{suffix}"
    bad.write_bytes(mutate(seeds[kind].read_bytes(), op, seed))
    commands = [["inspect", bad], ["inspect", "--security", bad]]
    if kind in ("onnx", "tflite"):
        commands.append(["validate", seeds[kind], bad])
    for args in commands:
        res = run_cli(*args, "--timeout", "60", cwd=d, timeout=180)
        assert res.code in (ALLOWED if args[0] == "inspect" else DOCUMENTED), (case, args[0], res)
        assert "Traceback" not in res.stderr and "internal error" not in res.stderr, (case, args[0], res)
        assert not (d / MARKER).exists(), (case, args[0])
