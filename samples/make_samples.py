"""Build every sample model once (each in its own process); skip those already built.

A sample is rebuilt when its script changes (the stamp holds the script's hash).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import out_dir  # noqa: E402

SAMPLES = ["digits_keras", "loan_risk", "incident_router", "breast_cancer_xgb", "breast_cancer_lgbm",
           "sensor_anomaly", "digits_torch", "mobilenet_torch", "lstm_torch", "outlier_mlp", "incident_bert",
           "incident_bert_keras"]


def _hash(script: Path) -> str:
    h = hashlib.sha256(script.read_bytes())
    h.update((HERE / "common.py").read_bytes())
    if script.stem.startswith("incident_bert"):  # both incident_bert samples read the shared corpus
        h.update((HERE / "incident_bert_corpus.py").read_bytes())
    return h.hexdigest()[:16]


def build(names: list[str] | None = None) -> None:
    out = out_dir()
    for name in names or SAMPLES:
        script = HERE / f"{name}.py"
        stamp = out / f".{name}.stamp"
        if stamp.exists() and stamp.read_text() == _hash(script):
            print(f"{name}: up to date")
            continue
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(script)], check=True, cwd=HERE)
        stamp.write_text(_hash(script))
        print(f"{name}: built in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    build(sys.argv[1:] or None)
