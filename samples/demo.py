"""`make demo`: convert every sample to its targets, check parity, time it, print one table.

It drives the real CLI (`edgekit convert … --json`, `edgekit bench … --json`) so what you
see is what a user gets; each command is printed before it runs.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import out_dir  # noqa: E402

# (sample, source file, target, quantize): every row is converted, validated and benched.
JOBS = [
    ("digits_keras", "digits_keras.keras", "tflite", "none"),
    ("digits_keras", "digits_keras.keras", "tflite", "int8"),
    ("digits_keras", "digits_keras.keras", "onnx", "none"),
    ("digits_keras", "digits_keras.keras", "onnx", "int8"),
]

EDGEKIT = [sys.executable, "-m", "edgekit"]


def run(args: list[str]) -> tuple[int, dict | None, str]:
    print("$ edgekit " + " ".join(shlex.quote(a) for a in args), flush=True)
    proc = subprocess.run(EDGEKIT + args + ["--json", "--quiet"], capture_output=True, text=True)
    try:
        doc = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        doc = None
    return proc.returncode, doc, proc.stderr


def arm_cells(arm: dict) -> list[str]:
    """arm64 parity mark, emulated median ms, instructions per inference (or dashes)."""
    from edgekit.report import parity_cells
    from edgekit.validators.arm.cli import fmt_count

    if not arm:
        return ["-", "-", "-"]
    info = arm.get("arm") or {}
    ms = info.get("median_ms")
    return [parity_cells(arm["parity"])[0], f"{ms:.3f}" if ms is not None else "-",
            fmt_count(info.get("instructions_per_inference"))]


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    src_dir = out_dir()
    build = Path("build") / "demo"
    build.mkdir(parents=True, exist_ok=True)
    rows, failures = [], []
    t_start = time.perf_counter()
    for sample, source, target, quantize in JOBS:
        src = src_dir / source
        args = ["convert", str(src), "--target", target, "--inputs", str(src_dir / f"{sample}_val.npz")]
        if target in ("tflite", "onnx"):  # also parity + counted timing on emulated arm64 (QEMU)
            args += ["--validate-arch", "arm64"]
        if quantize != "none":
            args += ["--quantize", quantize, "--calibration", str(src_dir / f"{sample}_calib.npz")]
        stem = source.split(".")[0]
        artifact = build / f"{stem}{'' if quantize == 'none' else '.' + quantize}.{target if target != 'torchscript' else 'pt'}"
        from edgekit.targets import TARGETS

        artifact = artifact.with_suffix(TARGETS[target].extension)
        args += ["-o", str(artifact)]
        code, doc, err = run(args)
        result = (doc or {}).get("result") or {}
        parity = result.get("parity")
        bench = {}
        if code == 0:
            bcode, bdoc, berr = run(["bench", str(artifact), "--threads", "2", "--iterations", "200"])
            bench = (bdoc or {}).get("results", [{}])[0] if bcode == 0 else {}
            if bcode != 0:
                failures.append(f"bench {artifact}: {berr.strip().splitlines()[-1] if berr.strip() else bcode}")
        else:
            msg = (doc or {}).get("error", {}).get("message") or (err.strip().splitlines() or ["?"])[-1]
            failures.append(f"{source} → {target} ({quantize}): exit {code}: {msg}")
        rows.append((sample, target, result.get("precision", quantize), result, parity, bench, code))

    from edgekit.report import parity_cells
    from edgekit.ui import human_bytes

    table = Table(title="edgekit demo: every sample × target, checked for parity and timed on this CPU",
                  title_justify="left")
    for col in ("sample", "target", "precision", "size", "convert s", "parity", "max abs", "cosine", "top-1",
                "acc Δ pts", "host ms (median)", "p90 ms", "arm64 parity", "arm64 ms (emulated)", "arm64 instr/inf"):
        table.add_column(col)
    for sample, target, precision, result, parity, bench, code in rows:
        arm = (result or {}).get("arm64") or {}
        table.add_row(sample, target, precision, human_bytes(result.get("size_bytes")),
                      f"{result['convert_seconds']:.1f}" if result else "-", *parity_cells(parity),
                      f"{bench['median_ms']:.3f}" if bench else "-", f"{bench['p90_ms']:.3f}" if bench else "-",
                      *arm_cells(arm))
    console = Console(width=None if sys.stdout.isatty() else 180)
    console.print(table)
    console.print(f"{len(rows)} artifacts in {build}/ · {time.perf_counter() - t_start:.0f} s · "
                  f"latency: batch 1, 2 threads, 200 iterations after 10 warm-up · arm64: QEMU "
                  f"neoverse-n1, 1 thread, 10 iterations (emulated ms are relative only, not device speed)")
    for f in failures:
        console.print(f"[bold red]✗[/] {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "180")
    sys.exit(main())
