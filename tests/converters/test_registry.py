"""edgekit.converters.registry: registration rules and lookups (no framework is imported)."""

from __future__ import annotations

import pytest

from edgekit.converters import registry
from edgekit.errors import BadInput


def test_every_registered_path_is_within_its_targets_precisions():
    from edgekit.targets import TARGETS, precision_of

    for conv in registry.paths():
        assert {precision_of(q) for q in conv.quantize if q != "auto"} <= set(TARGETS[conv.target].precisions), conv
        assert ("auto" in conv.quantize) == (len(conv.quantize) > 1), conv


def test_every_onnx_path_has_its_ort_twin():
    reg = registry.load_all()
    onnx = {s: c for (s, t), c in reg.items() if t == "onnx"}
    ort = {s: c for (s, t), c in reg.items() if t == "ort"}
    assert set(onnx) == set(ort)
    for source, conv in onnx.items():
        assert ort[source].quantize == conv.quantize and ort[source].extra == conv.extra


def test_registration_mistakes_fail_loudly():
    with pytest.raises(BadInput, match="unknown target"):
        registry.register("onnx", "coreml", extra="core", library="x")
    with pytest.raises(ValueError, match="unknown quantize"):
        registry.register("onnx", "onnx", quantize=("int4",), extra="core", library="x")
    with pytest.raises(ValueError, match="'auto' is added by the registry"):
        registry.register("onnx", "onnx", quantize=("none", "auto"), extra="core", library="x")
    with pytest.raises(ValueError, match="holds no fp16"):
        registry.register("onnx", "torchscript", quantize=("none", "fp16"), extra="core", library="x")
    registry.load_all()
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("onnx", "onnx", extra="core", library="x")(lambda *a: None)


def test_lookup_says_what_exists():
    with pytest.raises(BadInput) as exc:
        registry.lookup("sklearn", "tflite")
    assert "from sklearn edgekit can make: onnx, ort" in exc.value.hint
    with pytest.raises(BadInput) as exc:
        registry.lookup("sklearn", "onnx", "int8")
    assert "supported: none, dynamic, auto" in exc.value.hint
    assert registry.lookup("onnx", "ort", "int8").needs_calibration == ("int8",)
