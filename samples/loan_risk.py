"""Synthetic loan-default table -> Pipeline(ColumnTransformer + GradientBoostingClassifier), saved with skops.

The production pattern: numeric columns are imputed with the median and scaled; categorical
columns are imputed with the constant '_missing_' and one-hot encoded. Some rows have
missing values, in training and in the validation CSV (empty cells).

Writes loan_risk.skops and loan_risk_val.csv (header = column names, 'default_flag' = label).
"""

from __future__ import annotations

import time

import numpy as np

from common import SEED, out_dir

NUMERIC = ["credit_score", "dti_ratio", "ltv_ratio", "months_employed", "loan_amount"]
CATEGORICAL = ["loan_type", "property_type", "employment_status"]
TARGET = "default_flag"


def make_table(n: int, rng):
    import pandas as pd

    loan_type = rng.choice(["conventional", "fha", "va", "jumbo"], n, p=[0.55, 0.25, 0.12, 0.08])
    property_type = rng.choice(["single_family", "condo", "townhouse", "multi_family"], n, p=[0.6, 0.2, 0.12, 0.08])
    employment = rng.choice(["salaried", "self_employed", "contract", "unemployed"], n, p=[0.65, 0.2, 0.1, 0.05])
    credit = np.clip(rng.normal(690, 60, n), 300, 850).round()
    dti = np.clip(rng.beta(2, 5, n) * 0.9, 0, 0.9).round(3)
    ltv = np.clip(rng.normal(0.78, 0.12, n), 0.2, 1.1).round(3)
    months = rng.gamma(2.0, 30.0, n).round()
    amount = np.exp(rng.normal(12.3, 0.5, n)).round(-2)
    logit = (-0.018 * (credit - 690) + 4.0 * (dti - 0.25) + 3.0 * (ltv - 0.78) - 0.006 * months
             + 0.35 * (loan_type == "fha") + 0.5 * (loan_type == "jumbo") + 0.3 * (property_type == "multi_family")
             + 0.6 * (employment == "self_employed") + 1.6 * (employment == "unemployed") - 1.6)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    df = pd.DataFrame({"credit_score": credit, "dti_ratio": dti, "ltv_ratio": ltv, "months_employed": months,
                       "loan_amount": amount, "loan_type": loan_type, "property_type": property_type,
                       "employment_status": employment})
    for col, rate in [("credit_score", 0.04), ("months_employed", 0.06), ("ltv_ratio", 0.03),
                      ("employment_status", 0.05), ("property_type", 0.03)]:
        df[col] = df[col].astype(object) if col in CATEGORICAL else df[col]
        df.loc[rng.random(n) < rate, col] = np.nan
    return df, y


def build_pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="_missing_")),
                            ("encode", OneHotEncoder(handle_unknown="ignore"))])
    prep = ColumnTransformer([("num", numeric, NUMERIC), ("cat", categorical, CATEGORICAL)])
    return Pipeline([("prep", prep), ("model", GradientBoostingClassifier(n_estimators=120, max_depth=3,
                                                                          random_state=SEED))])


def main() -> None:
    import skops.io as sio

    rng = np.random.default_rng(SEED)
    df, y = make_table(5000, rng)
    train, val = slice(0, 4500), slice(4500, 5000)
    t0 = time.perf_counter()
    pipe = build_pipeline().fit(df.iloc[train], y[train])
    acc = pipe.score(df.iloc[val], y[val])
    out = out_dir()
    sio.dump(pipe, out / "loan_risk.skops")
    val_df = df.iloc[val].copy()
    val_df[TARGET] = y[val]
    val_df.to_csv(out / "loan_risk_val.csv", index=False)
    missing = int(val_df[NUMERIC + CATEGORICAL].isna().any(axis=1).sum())
    print(f"loan_risk: trained in {time.perf_counter() - t0:.1f} s, validation accuracy {acc * 100:.1f}%, "
          f"{missing} of {len(val_df)} validation rows have missing values")


if __name__ == "__main__":
    main()
