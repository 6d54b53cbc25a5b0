"""LightGBM classifier on scikit-learn's bundled breast-cancer data, saved as LightGBM's
text model file (no pickle). Writes breast_cancer_lgbm.txt and breast_cancer_val.csv."""

from __future__ import annotations

import time

from common import SEED, breast_cancer_split, out_dir, save_table


def main() -> None:
    import lightgbm as lgb

    x_tr, x_va, y_tr, y_va, names = breast_cancer_split()
    t0 = time.perf_counter()
    model = lgb.LGBMClassifier(n_estimators=150, num_leaves=15, learning_rate=0.1, random_state=SEED,
                               n_jobs=1, verbose=-1)
    model.fit(x_tr, y_tr)
    acc = float((model.predict(x_va) == y_va).mean())
    model.booster_.save_model(str(out_dir() / "breast_cancer_lgbm.txt"))
    save_table("breast_cancer_val.csv", names, x_va, y_va)
    print(f"breast_cancer_lgbm: trained in {time.perf_counter() - t0:.1f} s, validation accuracy {acc * 100:.1f}%")


if __name__ == "__main__":
    main()
