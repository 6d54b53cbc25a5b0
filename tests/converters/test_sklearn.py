"""scikit-learn, XGBoost and LightGBM -> ONNX, converted and validated for real.

The coverage matrix runs the convert stage in-process (the real converters, runners and
parity); the user-facing paths (CSV inputs, labels, exit codes, policy) run the CLI.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from conftest import assert_user_error, run_cli

pytestmark = [pytest.mark.sklearn]


def _table(n: int, seed: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"income": rng.normal(50, 15, n).round(1), "age": rng.integers(18, 80, n).astype(float),
                       "region": rng.choice(["north", "south", "east"], n).astype(object),
                       "plan": rng.choice(["basic", "pro"], n).astype(object)})
    y = ((df.income > 50) ^ (df.region == "east")).astype(int).to_numpy()
    for col, rate in [("income", 0.1), ("region", 0.1), ("plan", 0.05)]:
        df.loc[rng.random(n) < rate, col] = np.nan
    return df, y


def _imputed_pipeline():
    """The production pattern skl2onnx alone refuses: a constant string fill on categoricals."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = Pipeline([("imp", SimpleImputer(strategy="median")), ("sc", StandardScaler())])
    cat = Pipeline([("imp", SimpleImputer(strategy="constant", fill_value="_missing_")),
                    ("oh", OneHotEncoder(handle_unknown="ignore"))])
    return Pipeline([("prep", ColumnTransformer([("num", num, ["income", "age"]), ("cat", cat, ["region", "plan"])])),
                     ("gb", GradientBoostingClassifier(n_estimators=30, random_state=0))])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Small fitted models saved the safe ways (skops, XGBoost/LightGBM native files)."""
    import lightgbm as lgb
    import skops.io as sio
    import xgboost as xgb
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
    from sklearn.ensemble import GradientBoostingClassifier, IsolationForest, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVC, LinearSVC

    out = tmp_path_factory.mktemp("sk")
    x, y = load_iris(return_X_y=True)
    xb, yb = load_breast_cancer(return_X_y=True)
    df, yt = _table(400, 0)
    clean = df.dropna()
    texts = [f"{a} {b}" for a, b in zip(np.random.default_rng(0).choice(["pump", "valve", "late", "rude", "sick"], 200),
                                          np.random.default_rng(1).choice(["broken", "again", "today", "staff"], 200))]
    tlabels = [t.split()[0] in ("pump", "valve") and "equipment" or "other" for t in texts]
    built = {
        "ct_scaler_onehot_gb": Pipeline([("prep", ColumnTransformer([("n", StandardScaler(), ["income", "age"]),
                                                                      ("c", OneHotEncoder(), ["region", "plan"])])),
                                         ("gb", GradientBoostingClassifier(n_estimators=20, random_state=0))]
                                        ).fit(clean, yt[clean.index]),
        "ct_imputers_gb": _imputed_pipeline().fit(df, yt),
        "random_forest": RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y),
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y),
        "svc_proba": make_pipeline(StandardScaler(), SVC(probability=True, random_state=0)).fit(x, y),
        "isolation_forest": IsolationForest(n_estimators=30, random_state=0).fit(x),
        "mlp": make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=600, random_state=0)).fit(x, y),
        "tfidf_linearsvc": make_pipeline(TfidfVectorizer(), LinearSVC(random_state=0)).fit(texts, tlabels),
        "ridge_regressor": Ridge().fit(*load_diabetes(return_X_y=True)),
    }
    paths = {}
    for name, m in built.items():
        sio.dump(m, out / f"{name}.skops")
        paths[name] = out / f"{name}.skops"
    xm = xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(xb, yb)
    xm.save_model(out / "xgb.json")
    xm.save_model(out / "xgb.ubj")
    lgb.LGBMClassifier(n_estimators=20, verbose=-1, n_jobs=1).fit(xb, yb).booster_.save_model(str(out / "lgbm.txt"))
    paths.update(xgb_json=out / "xgb.json", xgb_ubj=out / "xgb.ubj", lightgbm=out / "lgbm.txt")
    # validation rows, some with missing values (empty cells)
    val, yv = _table(120, 7)
    val.assign(y=yv).to_csv(out / "rows.csv", index=False)
    import csv

    with open(out / "cancer.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f"f{i}" for i in range(30)] + ["target"])
        w.writerows([list(map(repr, r)) + [int(t)] for r, t in zip(xb[:100].astype(np.float32).tolist(), yb[:100])])
    paths.update(rows=out / "rows.csv", cancer=out / "cancer.csv", dir=out)
    return paths


MATRIX = ["ct_scaler_onehot_gb", "ct_imputers_gb", "random_forest", "logistic", "svc_proba", "isolation_forest",
          "mlp", "tfidf_linearsvc", "ridge_regressor", "xgb_json", "xgb_ubj", "lightgbm"]


@pytest.mark.parametrize("name", MATRIX)
def test_converts_and_passes_parity(models, name, tmp_path):
    from edgekit.pipeline import convert_stage
    from edgekit.request import SourceRequest

    inputs = {"ct_scaler_onehot_gb": None, "ct_imputers_gb": models["rows"]}.get(name)
    if name in ("xgb_json", "xgb_ubj", "lightgbm"):
        inputs = models["cancer"]
    req = SourceRequest(str(models[name]), inputs=str(inputs) if inputs else None, label_column="target" if name in (
        "xgb_json", "xgb_ubj", "lightgbm") else ("y" if inputs else None))
    res = convert_stage(req, "onnx", "none", str(tmp_path / "m.onnx"))
    parity = res["parity"]
    assert parity["passed"], parity["outputs"]
    outs = {o["name"]: o for o in parity["outputs"]}
    if "label" in outs:  # classifiers and outlier detectors: plain label tensor, no ZipMap
        assert outs["label"]["metrics"]["agreement"] >= 0.99
        assert set(outs) in ({"label", "probabilities"}, {"label", "scores"})
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "ZipMap" not in ops


@pytest.mark.slow
def test_string_imputer_pipeline_uses_one_input_per_column_and_handles_missing(models, tmp_path):
    """The loan pattern: validated on rows with missing values in numeric and string columns."""
    import csv

    rows = list(csv.DictReader(open(models["rows"])))
    assert any(r["region"] == "" for r in rows) and any(r["income"] == "" for r in rows)
    out = tmp_path / "pipe.onnx"
    res = run_cli("convert", models["ct_imputers_gb"], "--target", "onnx", "-o", out, "--inputs", models["rows"],
                  "--label-column", "y", "--json")
    assert res.code == 0, res
    doc = res.json["result"]
    names = [i["name"] for i in doc["signature"]["inputs"]]
    assert names == ["income", "age", "region", "plan"]
    assert [i["dtype"] for i in doc["signature"]["inputs"]] == ["float32", "float32", "str", "str"]
    acc = doc["parity"]["accuracy"]
    assert acc["delta"] == 0.0 and acc["reference"] > 0.6
    val = run_cli("validate", models["ct_imputers_gb"], out, "--inputs", models["rows"], "--label-column", "y")
    assert val.code == 0, val


@pytest.mark.slow
def test_csv_missing_column_is_named(models, tmp_path):
    bad = tmp_path / "bad.csv"
    lines = open(models["rows"]).read().splitlines()
    header = lines[0].split(",")
    keep = [i for i, h in enumerate(header) if h != "plan"]
    bad.write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines) + "\n")
    res = run_cli("convert", models["ct_imputers_gb"], "--target", "onnx", "-o", tmp_path / "x.onnx",
                  "--inputs", bad)
    assert_user_error(res, 2, "plan", "no column")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_pickle_refused_without_running_it(tmp_path):
    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    model = tmp_path / "model.joblib"
    model.write_bytes(pickle.dumps(Payload(), protocol=4))
    for args in (("convert", model, "--target", "onnx", "-o", tmp_path / "m.onnx"), ("inspect", model)):
        res = run_cli(*args)
        assert_user_error(res, 2, "--trust-pickle", "skops")
        assert not sentinel.exists()


@pytest.mark.slow
def test_trusted_pickle_loads(tmp_path):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=300).fit(x, y), tmp_path / "m.joblib")
    res = run_cli("convert", tmp_path / "m.joblib", "--target", "onnx", "-o", tmp_path / "m.onnx", "--trust-pickle")
    assert res.code == 0, res


@pytest.mark.slow
def test_skops_untrusted_type_is_listed_and_can_be_trusted(tmp_path):
    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    import operator

    model = make_pipeline(FunctionTransformer(operator.neg), StandardScaler()).fit(np.random.default_rng(0).random((20, 3)))
    sio.dump(model, tmp_path / "f.skops")
    res = run_cli("inspect", tmp_path / "f.skops")
    assert_user_error(res, 2, "_operator.neg", "--trust-type")
    ok = run_cli("inspect", tmp_path / "f.skops", "--trust-type", "_operator.neg")
    assert ok.code == 0, ok
    assert "FunctionTransformer" in ok.stdout


@pytest.mark.parametrize("name, mode, expect", [
    ("mlp", "dynamic", "dynamic"),        # MatMul weights quantize
    ("mlp", "auto", None),                # whichever candidate wins, it passed parity
    ("random_forest", "auto", "fp32"),    # trees have nothing to quantize: auto keeps fp32
])
def test_quantized_tabular_models(models, tmp_path, name, mode, expect):
    from edgekit.pipeline import convert_stage
    from edgekit.request import SourceRequest

    res = convert_stage(SourceRequest(str(models[name])), "onnx", mode, str(tmp_path / "q.onnx"))
    assert res["parity"]["passed"]
    assert "latency_vs_fp32" in res["details"]
    if expect:
        assert res["precision"] == expect
    if mode == "auto":
        rows = {r["mode"]: r for r in res["details"]["auto"]}
        assert sum(r["chosen"] for r in rows.values()) == 1
        if name == "random_forest":
            assert "nothing to quantize" in rows["dynamic"]["reason"]


def test_nothing_to_quantize_is_a_clear_error(models, tmp_path):
    from edgekit.errors import ConversionFailed
    from edgekit.pipeline import convert_stage
    from edgekit.request import SourceRequest

    with pytest.raises(ConversionFailed, match="nothing to quantize"):
        convert_stage(SourceRequest(str(models["random_forest"])), "onnx", "dynamic", str(tmp_path / "q.onnx"))
