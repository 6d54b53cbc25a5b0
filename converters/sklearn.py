"""scikit-learn, XGBoost and LightGBM -> ONNX (skl2onnx / onnxmltools).

The ONNX model takes the inputs the scikit-learn runner declares (see
`edgekit.validators.runners.sklearn`): one [N, 1] input per table column for a
ColumnTransformer pipeline (named like the column; float32 or string), one string input
'text' for text pipelines, one float32 matrix 'input' otherwise. Classifiers output
'label' and 'probabilities' as plain tensors (ZipMap is switched off), so mobile runtimes
and parity read them directly.

skl2onnx 1.20 refuses a SimpleImputer over string columns whose missing value is NaN (the
usual `SimpleImputer(strategy="constant", fill_value="_missing_")` on pandas data): ONNX
string tensors cannot hold NaN. edgekit registers its own converter for that case: in the
ONNX model the empty string is the missing value of a string column, and it is replaced by
the imputer's fill value exactly as scikit-learn replaces NaN.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

from edgekit.converters.registry import ConvertRequest, ConvertResult, register
from edgekit.errors import ConversionFailed, require, upstream
from edgekit.progress import progress

SKLEARN_OPSET = {"": 17, "ai.onnx.ml": 3}
ONNXMLTOOLS_OPSET = 15  # the highest onnxmltools 1.16 supports for XGBoost/LightGBM
QUANTIZE = ("none", "dynamic")  # tree ensembles have no quantizable ops; MLPs/linear models do
MISSING_STRING = ""  # the ONNX-side missing value of a string column
# StringNormalizer lower-cases text with a C++ locale; onnxruntime's default (en_US.UTF-8)
# is missing on many Linux images and fails at load. C.UTF-8 is built into glibc >= 2.35.
TEXT_LOCALE = "C.UTF-8"

_registered = False


def _string_imputer_converter(scope, operator, container):
    """skl2onnx's SimpleImputer converter, with NaN on string inputs read as the empty string."""
    from skl2onnx.common.data_types import StringTensorType
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer

    op = operator.raw_operator
    if isinstance(operator.inputs[0].type, StringTensorType) and not isinstance(op.missing_values, str):
        proxy = copy.copy(op)
        proxy.missing_values = MISSING_STRING
        if proxy.fill_value is not None and not isinstance(proxy.fill_value, str):
            proxy.fill_value = str(proxy.fill_value)
        operator.raw_operator = proxy
        try:
            return convert_sklearn_imputer(scope, operator, container)
        finally:
            operator.raw_operator = op
    return convert_sklearn_imputer(scope, operator, container)


def register_custom_converters() -> None:
    """Install edgekit's converter overrides in skl2onnx (once per process)."""
    global _registered
    if _registered:
        return
    skl2onnx = require("skl2onnx", "sklearn")
    from sklearn.impute import SimpleImputer
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes

    skl2onnx.update_registered_converter(SimpleImputer, "SklearnSimpleImputer",
                                         calculate_sklearn_imputer_output_shapes, _string_imputer_converter,
                                         overwrite=True)
    _registered = True


def initial_types(signature, module: str = "skl2onnx.common.data_types"):
    """skl2onnx/onnxmltools input types from an edgekit signature (names kept)."""
    types = require(module, "sklearn")
    by_dtype = {"float32": types.FloatTensorType, "str": types.StringTensorType,
                "int64": types.Int64TensorType, "float64": types.DoubleTensorType}
    return [(s.name, by_dtype[s.dtype](list(s.shape))) for s in signature.inputs]


def _zipmap_off(model) -> dict:
    """Options switching ZipMap off on every probabilistic classifier (plain tensor outputs).

    Classifiers without predict_proba (LinearSVC) have no ZipMap and refuse the option, yet
    skl2onnx's Pipeline parser adds it to them unless they carry options of their own: they
    get their default 'nocl=False' (keep class labels) instead.
    """
    from sklearn.base import BaseEstimator, is_classifier
    from skl2onnx.common.utils_sklearn import enumerate_model_names

    from sklearn.feature_extraction.text import CountVectorizer

    options = {}
    for _, m in enumerate_model_names(model):
        if isinstance(m, BaseEstimator) and is_classifier(m) and not hasattr(m, "steps"):
            options[id(m)] = {"zipmap": False} if hasattr(m, "predict_proba") else {"nocl": False}
        elif isinstance(m, CountVectorizer):  # TfidfVectorizer too
            options[id(m)] = {"locale": TEXT_LOCALE}
    return options


def _dynamic_batch(proto) -> None:
    """Every input/output's first axis becomes the named dynamic axis 'N'.

    onnxmltools declares LightGBM's label output as [1]; onnxruntime then warns on every run.
    """
    for vi in list(proto.graph.input) + list(proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = "N"


def _rename_outputs(proto, mapping: dict[str, str]) -> None:
    """Rename graph outputs (and every node reference to them)."""
    for vi in proto.graph.output:
        vi.name = mapping.get(vi.name, vi.name)
    for n in proto.graph.node:
        n.output[:] = [mapping.get(o, o) for o in n.output]
        n.input[:] = [mapping.get(i, i) for i in n.input]


def _finish(proto, model, request: ConvertRequest, out_path: Path, details: dict) -> ConvertResult:
    """Save the float model, then run the shared ONNX quantization step if asked."""
    import onnx

    from edgekit.converters import onnx_quant

    _dynamic_batch(proto)
    want = [s.name for s in model.signature.outputs]
    have = [o.name for o in proto.graph.output]
    if len(want) == len(have) and want != have:
        _rename_outputs(proto, dict(zip(have, want)))
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ConversionFailed(f"the converted ONNX model does not pass onnx.checker: {str(exc)[:300]}") from None
    notes = []
    if any(s.dtype == "str" for s in model.signature.inputs) and len(model.signature.inputs) > 1:
        notes.append("one input per table column, named like the column; a missing categorical value is "
                     "the empty string, a missing number is NaN")
    return onnx_quant.finish(request, out_path, lambda path: onnx.save_model(proto, str(path)), details, notes)


def _convert_error(lib: str, exc: Exception) -> ConversionFailed:
    text = str(exc).strip() or type(exc).__name__
    return ConversionFailed(f"{lib} could not convert this model: {text.splitlines()[0][:300]}",
                            hint="edgekit converts the estimators skl2onnx supports; see "
                                 "https://onnx.ai/sklearn-onnx/supported.html",
                            details=text[-2000:])


@register("sklearn", "onnx", quantize=QUANTIZE, extra="sklearn", library="skl2onnx")
def sklearn_to_onnx(model, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """scikit-learn estimator or Pipeline -> ONNX (skl2onnx, plain-tensor outputs)."""
    skl2onnx = require("skl2onnx", "sklearn")
    register_custom_converters()
    progress(f"converting with skl2onnx {skl2onnx.__version__}")
    est = model.native
    with upstream("skl2onnx", "convert_sklearn", error=partial(_convert_error, "skl2onnx")):
        proto = skl2onnx.convert_sklearn(est, initial_types=initial_types(model.signature),
                                         target_opset=SKLEARN_OPSET, options=_zipmap_off(est) or None)
    return _finish(proto, model, request, out_path,
                   {"converter": "skl2onnx", "skl2onnx": skl2onnx.__version__, "opset": SKLEARN_OPSET})


def _onnxmltools_convert(model, request, out_path, lib: str) -> ConvertResult:
    onnxmltools = require("onnxmltools", "sklearn")
    types = initial_types(model.signature, "onnxmltools.convert.common.data_types")
    booster = model.native.booster
    progress(f"converting the {lib} model with onnxmltools {onnxmltools.__version__}")
    with upstream("onnxmltools", f"convert_{lib}", error=partial(_convert_error, "onnxmltools")):
        if lib == "xgboost":
            proto = onnxmltools.convert_xgboost(booster, initial_types=types, target_opset=ONNXMLTOOLS_OPSET)
        else:
            proto = onnxmltools.convert_lightgbm(booster, initial_types=types, target_opset=ONNXMLTOOLS_OPSET,
                                                 zipmap=False)
    return _finish(proto, model, request, out_path,
                   {"converter": "onnxmltools", "onnxmltools": onnxmltools.__version__, "opset": ONNXMLTOOLS_OPSET})


@register("xgboost", "onnx", quantize=QUANTIZE, extra="sklearn", library="onnxmltools")
def xgboost_to_onnx(model, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """XGBoost native model (.json/.ubj) -> ONNX (onnxmltools)."""
    return _onnxmltools_convert(model, request, out_path, "xgboost")


@register("lightgbm", "onnx", quantize=QUANTIZE, extra="sklearn", library="onnxmltools")
def lightgbm_to_onnx(model, request: ConvertRequest, out_path: Path) -> ConvertResult:
    """LightGBM native model (.txt) -> ONNX (onnxmltools)."""
    return _onnxmltools_convert(model, request, out_path, "lightgbm")
