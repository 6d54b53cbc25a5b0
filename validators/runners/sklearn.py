"""scikit-learn runner: the reference for scikit-learn, XGBoost and LightGBM sources.

It loads skops files (with the allowlist from `edgekit.loading`), joblib/pickle files (only
after the user passed --trust-pickle), and XGBoost/LightGBM native model files, and gives
them the same signature their ONNX conversion has, so parity pairs tensors by name:

  inputs   a ColumnTransformer pipeline fitted on a table: one [N, 1] input per column,
           named like the column (float32 for numeric columns, string for categorical);
           a text pipeline (TfidfVectorizer/CountVectorizer first): one string input 'text' [N];
           anything else: one float32 matrix 'input' [N, F]
  outputs  classifiers: 'label' [N] and 'probabilities' [N, K] (decision scores for models
           without predict_proba, e.g. LinearSVC, [N, 1] for two classes: the positive class's
           score, as skl2onnx gives it); outlier detectors: 'label' [N] (1/-1) and
           'scores' [N, 1] (decision_function); regressors: 'variable' [N, T]

Missing values: NaN in numeric columns, the empty string in string columns (ONNX string
tensors have no NaN); this runner hands the empty string to scikit-learn as NaN.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from edgekit.errors import BadInput, require
from edgekit.tensors import Signature, TensorSpec
from edgekit.validators.runners.base import Bound, Runner

TEXT_INPUT = "text"
MATRIX_INPUT = "input"


def steps_of(model) -> list:
    """The leaf steps of (nested) Pipelines, in order."""
    if hasattr(model, "steps") and isinstance(model.steps, list):
        out = []
        for _, step in model.steps:
            if step not in (None, "passthrough"):
                out.extend(steps_of(step))
        return out
    return [model]


def _first_of(step):
    steps = steps_of(step) if step not in ("drop", "passthrough") else [step]
    return steps[0] if steps else step


def _is_string_step(step) -> bool | None:
    """True/False if the fitted step shows that its input is string/numeric, None if unknown."""
    stats = getattr(step, "statistics_", None)
    if stats is not None:
        return np.asarray(stats).dtype.kind in "OUS"
    cats = getattr(step, "categories_", None)
    if cats is not None:
        return any(np.asarray(c).dtype.kind in "OUS" for c in cats)
    return None


def _known_values(step, i: int) -> list[str]:
    """Category values a fitted step knows for its i-th column (for realistic random data)."""
    cats = getattr(step, "categories_", None)
    if cats is not None and i < len(cats):
        return [str(c) for c in cats[i] if isinstance(c, str)]
    return []


def column_inputs(ct, categories: dict | None = None) -> list[TensorSpec] | None:
    """One input per column of a fitted ColumnTransformer (None if it selects by position).

    `categories`, if given, receives the known category values of each string column.
    """
    names = getattr(ct, "feature_names_in_", None)
    if names is None or not all(isinstance(n, str) for n in names):
        return None
    kinds: dict[str, str] = {}
    for _, trans, cols in ct.transformers_:
        if isinstance(cols, str):
            cols = [cols]
        elif isinstance(cols, slice) or np.asarray(cols).dtype.kind in "biu":
            return None  # columns chosen by position: skl2onnx maps them onto one matrix input
        if trans == "drop":
            for c in cols:
                kinds.setdefault(c, "drop")
            continue
        is_str = _is_string_step(_first_of(trans)) if trans != "passthrough" else False
        for j, c in enumerate(cols):
            kinds[c] = "str" if is_str else "float32"
            if is_str and categories is not None:
                encoders = [s for s in steps_of(trans) if hasattr(s, "categories_")]
                categories[c] = _known_values(encoders[0], j) if encoders else []
    # columns only dropped still arrive in the table: read them as strings (any text fits)
    return [TensorSpec(n, "str" if kinds.get(n, "drop") in ("str", "drop") else "float32", (None, 1))
            for n in names]


def _input_specs(model, categories: dict | None = None) -> list[TensorSpec]:
    sklearn_compose = require("sklearn.compose", "sklearn")
    text = require("sklearn.feature_extraction.text", "sklearn")
    first = steps_of(model)[0]
    if isinstance(first, sklearn_compose.ColumnTransformer):
        specs = column_inputs(first, categories)
        if specs:
            return specs
    if isinstance(first, (text.TfidfVectorizer, text.CountVectorizer, text.HashingVectorizer)):
        return [TensorSpec(TEXT_INPUT, "str", (None,))]
    n = getattr(model, "n_features_in_", None) or getattr(first, "n_features_in_", None)
    if n is None:
        raise BadInput("the scikit-learn model does not record how many features it takes "
                       "(n_features_in_); it may not be fitted.", hint="fit the model before saving it")
    return [TensorSpec(MATRIX_INPUT, "float32", (None, int(n)))]


def model_kind(model) -> str:
    base = require("sklearn.base", "sklearn")
    if base.is_classifier(model):
        return "classifier"
    if base.is_outlier_detector(model):
        return "outlier"
    if base.is_regressor(model):
        return "regressor"
    return "transformer"


def _label_dtype(classes) -> str:
    kind = np.asarray(classes).dtype.kind
    return "str" if kind in "OUS" else "int64" if kind in "iub" else "float32"


class _Booster:
    """XGBoost / LightGBM native models behind the scikit-learn-like surface the runner uses."""

    def __init__(self, lib: str, booster, kind: str, n_classes: int, n_features: int):
        self.lib, self.booster, self.kind = lib, booster, kind
        self.classes_ = np.arange(max(n_classes, 2)) if kind == "classifier" else None
        self.n_features_in_ = n_features

    def _raw(self, x):
        if self.lib == "xgboost":
            import xgboost

            return self.booster.predict(xgboost.DMatrix(x))
        return self.booster.predict(x)

    def predict_proba(self, x):
        p = np.asarray(self._raw(x), dtype=np.float64)
        return np.stack([1 - p, p], axis=1) if p.ndim == 1 else p

    def predict(self, x):
        if self.kind == "classifier":
            return self.predict_proba(x).argmax(1)
        return np.asarray(self._raw(x))


def load_xgboost(path) -> _Booster:
    xgb = require("xgboost", "sklearn")
    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
    except xgb.core.XGBoostError as exc:
        raise BadInput(f"{path}: XGBoost cannot load this model: {str(exc).strip().splitlines()[0][:300]}") from None
    import json

    cfg = json.loads(booster.save_config())["learner"]
    objective = cfg["objective"]["name"]
    n_classes = int(cfg["learner_model_param"].get("num_class", "0") or 0)
    if objective.startswith(("binary:logistic", "multi:softprob")):
        kind = "classifier"
    elif objective.startswith("reg:"):
        kind = "regressor"
    else:
        raise BadInput(f"{path}: XGBoost objective '{objective}' is not supported "
                       "(supported: binary:logistic, multi:softprob, reg:*).")
    return _Booster("xgboost", booster, kind, n_classes, booster.num_features())


def load_lightgbm(path) -> _Booster:
    lgb = require("lightgbm", "sklearn")
    try:
        booster = lgb.Booster(model_file=str(path))
    except lgb.basic.LightGBMError as exc:
        raise BadInput(f"{path}: LightGBM cannot load this model: {str(exc).strip()[:300]}") from None
    objective = str(booster.params.get("objective", "") or booster.dump_model().get("objective", ""))
    head = objective.split()[0] if objective else ""
    if head in ("binary", "multiclass", "softmax", "multiclassova"):
        kind = "classifier"
    elif head.startswith("regression") or head in ("huber", "fair", "poisson", "quantile", "mape", "gamma",
                                                   "tweedie", "l1", "l2"):
        kind = "regressor"
    else:
        raise BadInput(f"{path}: LightGBM objective '{objective}' is not supported "
                       "(supported: binary, multiclass, regression).")
    n_classes = booster.dump_model().get("num_class", 1)
    return _Booster("lightgbm", booster, kind, n_classes if n_classes > 1 else 2, booster.num_feature())


class SklearnRunner(Runner):
    runtime = "sklearn"
    extra = "sklearn"

    def load(self) -> "SklearnRunner":
        self.categories: dict[str, list[str]] = {}
        fmt = getattr(self, "detected", None)
        name = fmt.name if fmt else "skops"
        if name in ("xgboost_json", "xgboost_ubj"):
            model = load_xgboost(self.path)
        elif name == "lightgbm_txt":
            model = load_lightgbm(self.path)
        elif name == "skops":
            model = self._load_skops()
        elif name == "pickle":
            model = self._load_pickle()
        else:
            raise BadInput(f"{self.path}: the scikit-learn runner cannot load a {name} file.")
        self.native = model
        self.kind = model.kind if isinstance(model, _Booster) else model_kind(model)
        if isinstance(model, _Booster):
            inputs = [TensorSpec(MATRIX_INPUT, "float32", (None, model.n_features_in_))]
        else:
            inputs = _input_specs(model, self.categories)
        self.signature = Signature(inputs, self._output_specs(model))
        return self

    def random_dataset(self, n: int = 16, seed: int = 0):
        """Seeded random rows; string columns draw from the categories the model knows
        (random text would be an unknown category, which some encoders refuse)."""
        from edgekit.tensors import random_dataset

        data = random_dataset(self.signature, n=n, seed=seed)
        rng = np.random.default_rng(seed)
        for name, values in self.categories.items():
            if values and name in data.arrays:
                data.arrays[name] = rng.choice(values, size=data.arrays[name].shape)
        vocab = getattr(steps_of(self.native)[0], "vocabulary_", None) if not isinstance(self.native, _Booster) \
            else None
        if vocab and TEXT_INPUT in data.arrays:  # texts made of words the model knows
            words = sorted(str(w) for w in vocab if isinstance(w, str) and " " not in w)
            data.arrays[TEXT_INPUT] = np.array([" ".join(rng.choice(words, size=int(rng.integers(3, 9))))
                                                for _ in range(n)])
        return data

    def _load_skops(self):
        from edgekit.loading import Trust, skops_trusted_types

        sio = require("skops.io", "sklearn")
        trust = self.options.get("trust") or Trust()
        trusted = skops_trusted_types(self.detected, trust)
        try:
            return sio.load(self.path, trusted=trusted)
        except Exception as exc:
            raise BadInput(f"{self.path}: skops cannot load this file: {str(exc).strip()[:300]}",
                           hint="save it again with skops.io.dump from a matching scikit-learn version") from None

    def _load_pickle(self):
        from edgekit.loading import Trust

        trust = self.options.get("trust") or Trust()
        if not trust.pickle:  # the policy refused it already; never load a pickle without trust
            raise BadInput(f"{self.path}: pickle files load only with --trust-pickle.")
        joblib = require("joblib", "sklearn")
        try:
            return joblib.load(self.path)
        except Exception as exc:
            raise BadInput(f"{self.path}: cannot unpickle this file: {str(exc).strip()[:300]}") from None

    def _output_specs(self, model) -> list[TensorSpec]:
        if self.kind == "classifier":
            classes = model.classes_
            k = len(classes) if hasattr(model, "predict_proba") or len(classes) > 2 else 1
            return [TensorSpec("label", _label_dtype(classes), (None,)),
                    TensorSpec("probabilities", "float32", (None, k))]
        if self.kind == "outlier":
            return [TensorSpec("label", "int64", (None,)), TensorSpec("scores", "float32", (None, 1))]
        return [TensorSpec("variable", "float32", (None, None))]

    # -- inference ----------------------------------------------------------------------
    def _features(self, feeds: dict[str, np.ndarray]):
        specs = self.signature.inputs
        if specs[0].name == TEXT_INPUT and len(specs) == 1 and specs[0].dtype == "str":
            return np.asarray(feeds[TEXT_INPUT]).reshape(-1).astype(str)
        if len(specs) == 1 and specs[0].name == MATRIX_INPUT:
            x = np.asarray(feeds[MATRIX_INPUT])
            return x if isinstance(self.native, _Booster) else x.astype(np.float64)
        pd = require("pandas", "sklearn")
        cols = {}
        for s in specs:
            v = np.asarray(feeds[s.name]).reshape(-1)
            if s.dtype == "str":
                v = v.astype(object)
                v[v == ""] = np.nan  # the empty string is the missing value of string columns
            else:
                v = v.astype(np.float64)
            cols[s.name] = v
        return pd.DataFrame(cols)

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return self._infer(feeds)
        except (ValueError, TypeError, KeyError) as exc:  # scikit-learn's own input validation
            raise BadInput(f"{self.path}: the model refused the inputs: {str(exc).strip().splitlines()[0][:300]}",
                           hint="pass --inputs with real rows (e.g. a CSV whose header names the columns)") from None

    @classmethod
    def import_runtime(cls) -> None:
        require("sklearn.base", "sklearn")

    def bind(self, feeds: dict[str, np.ndarray]) -> Bound:
        """The estimator on features (the DataFrame) built once: predict and predict_proba
        (or decision_function), the two outputs the ONNX conversion also computes."""
        x = self._features(feeds)
        return Bound(lambda: self._predict(x))

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._predict(self._features(feeds))

    def _predict(self, x) -> dict[str, np.ndarray]:
        m = self.native
        if self.kind == "classifier":
            label = np.asarray(m.predict(x))
            if hasattr(m, "predict_proba"):
                try:
                    scores = m.predict_proba(x)
                except AttributeError:  # e.g. SVC(probability=False) exposes it but refuses
                    scores = m.decision_function(x)
            else:
                scores = m.decision_function(x)
            scores = np.asarray(scores, dtype=np.float32)
            if scores.ndim == 1:  # binary decision function: the positive class's score, as skl2onnx gives it
                scores = scores.reshape(-1, 1)
            dtype = self.signature.outputs[0].dtype
            label = label.astype(str) if dtype == "str" else label.astype(np.int64 if dtype == "int64" else np.float32)
            return {"label": label, "probabilities": scores}
        if self.kind == "outlier":
            return {"label": np.asarray(m.predict(x)).astype(np.int64),
                    "scores": np.asarray(m.decision_function(x), dtype=np.float32).reshape(-1, 1)}
        y = m.predict(x) if hasattr(m, "predict") else m.transform(x)
        y = np.asarray(y.toarray() if hasattr(y, "toarray") else y, dtype=np.float32)
        return {"variable": y.reshape(len(y), -1)}

    def version(self) -> str:
        if isinstance(self.native, _Booster):
            return require(self.native.lib, "sklearn").__version__
        return require("sklearn", "sklearn").__version__

    def op_counts(self) -> dict[str, int]:
        if isinstance(self.native, _Booster):
            return {f"{self.native.lib} Booster": 1}
        return dict(Counter(type(s).__name__ for s in _all_estimators(self.native)))


def _all_estimators(model) -> list:
    """Every estimator in a (nested) Pipeline / ColumnTransformer, for inspect."""
    out = []
    if hasattr(model, "steps") and isinstance(model.steps, list):
        out.append(model)
        for _, s in model.steps:
            if s not in (None, "passthrough"):
                out.extend(_all_estimators(s))
    elif hasattr(model, "transformers_"):
        out.append(model)
        for _, t, _ in model.transformers_:
            if t not in ("drop", "passthrough"):
                out.extend(_all_estimators(t))
    else:
        out.append(model)
    return out
