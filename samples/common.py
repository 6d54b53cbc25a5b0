"""Shared bits of the sample scripts: where outputs go, fixed seeds, the digits split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SEED = 0
OUT = Path(os.environ.get("EDGEKIT_SAMPLES_DIR", Path(__file__).resolve().parent / "build"))


def out_dir() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT


def digits_split(layout: str = "NHWC"):
    """scikit-learn's bundled 8x8 digits (no download), scaled to [0, 1], split 80/20."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x = x.reshape(-1, 8, 8, 1) if layout == "NHWC" else x.reshape(-1, 1, 8, 8)
    return train_test_split(x, y.astype("int64"), test_size=0.2, random_state=SEED, stratify=y)


def save_data(name: str, input_name: str, x_val, y_val, x_calib) -> None:
    """Validation (with '_labels') and calibration .npz files keyed by the model's input name."""
    out = out_dir()
    np.savez(out / f"{name}_val.npz", **{input_name: x_val, "_labels": y_val})
    np.savez(out / f"{name}_calib.npz", **{input_name: x_calib})


def breast_cancer_split():
    """scikit-learn's bundled breast-cancer table (no download), split 80/20, float32 features."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x = data.data.astype("float32")
    x_tr, x_va, y_tr, y_va = train_test_split(x, data.target.astype("int64"), test_size=0.2,
                                              random_state=SEED, stratify=data.target)
    return x_tr, x_va, y_tr, y_va, [n.replace(" ", "_") for n in data.feature_names]


def save_table(name: str, columns: list[str], x, y, label: str = "target") -> None:
    """A CSV with a header row: feature columns, then the label column."""
    import csv

    with open(out_dir() / name, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(columns) + [label])
        for row, t in zip(x, y):
            w.writerow([repr(float(v)) for v in row] + [int(t)])
