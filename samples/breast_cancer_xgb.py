"""XGBoost classifier on scikit-learn's bundled breast-cancer data, saved in XGBoost's own
formats (JSON and UBJSON; no pickle). Writes breast_cancer_xgb.json, breast_cancer_xgb.ubj
and breast_cancer_val.csv (30 feature columns + 'target')."""

from __future__ import annotations

import time

from common import SEED, breast_cancer_split, out_dir, save_table


def main() -> None:
    import xgboost as xgb

    x_tr, x_va, y_tr, y_va, names = breast_cancer_split()
    t0 = time.perf_counter()
    model = xgb.XGBClassifier(n_estimators=150, max_depth=4, learning_rate=0.1, random_state=SEED, n_jobs=2)
    model.fit(x_tr, y_tr)
    acc = float((model.predict(x_va) == y_va).mean())
    out = out_dir()
    model.save_model(out / "breast_cancer_xgb.json")
    model.save_model(out / "breast_cancer_xgb.ubj")
    save_table("breast_cancer_val.csv", names, x_va, y_va)
    print(f"breast_cancer_xgb: trained in {time.perf_counter() - t0:.1f} s, validation accuracy {acc * 100:.1f}%")


if __name__ == "__main__":
    main()
