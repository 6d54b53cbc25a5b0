"""Parity metrics and verdicts on arrays (no framework needed)."""

import numpy as np
import pytest

from edgekit.targets import TOLERANCES
from edgekit.validators.parity import compare, output_metrics


def _report(ref, cand, precision="fp32", labels=None):
    return compare({"y": ref}, {"y": cand}, [("y", "y")], TOLERANCES[precision], precision=precision,
                   data_source="test", labels=labels)


def test_identical_outputs_pass_with_perfect_metrics():
    ref = np.random.default_rng(0).normal(size=(8, 10)).astype("float32")
    rep = _report(ref, ref.copy())
    assert rep and rep.passed
    m = rep.outputs[0].metrics
    assert m["max_abs"] == 0 and m["cosine"] == pytest.approx(1.0) and m["top1"] == 1.0 and m["snr_db"] >= 100


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_never_passes_even_with_huge_tolerance(bad):
    ref = np.ones((4, 3), "float32")
    cand = ref.copy()
    cand[1, 1] = bad
    rep = compare({"y": ref}, {"y": cand}, [("y", "y")], TOLERANCES["fp32"].override(atol=1e9, rtol=1e9),
                  precision="fp32", data_source="t")
    assert not rep
    assert "NaN or Inf" in rep.failure_summary()
    assert not _report(cand, ref)  # NaN in the reference fails too


def test_small_error_passes_fp32_but_large_fails_and_is_named():
    ref = np.linspace(0, 1, 40, dtype="float32").reshape(4, 10)
    assert _report(ref, ref + 1e-6)
    rep = _report(ref, ref + 0.01)
    assert not rep
    assert "abs error 0.01" in rep.failure_summary()


def test_int8_preset_accepts_quantization_noise_but_not_a_wrong_model():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 10)) * 4
    ref = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    noisy = ref + rng.normal(scale=0.004, size=ref.shape)
    assert _report(ref, noisy, "int8")
    shuffled = ref[rng.permutation(len(ref))]
    rep = _report(ref, shuffled, "int8")
    assert not rep and "top1" in rep.failure_summary()


def test_accuracy_drop_is_gated_for_quantized_precisions():
    ref = np.eye(10)[np.arange(100) % 10]
    labels = np.arange(100) % 10
    cand = ref.copy()
    cand[:5] = np.eye(10)[(np.arange(5) + 1) % 10]  # 5 of 100 now wrong: -5 points
    rep = _report(ref, cand, "int8", labels=labels)
    assert rep.accuracy["reference"] == 1.0 and rep.accuracy["candidate"] == pytest.approx(0.95)
    assert not rep.accuracy["ok"] and not rep


def test_string_labels_compare_by_agreement():
    m = output_metrics(np.array(["a", "b", "c"]), np.array(["a", "b", "x"]))
    assert m["agreement"] == pytest.approx(2 / 3)


def test_shape_mismatch_fails():
    rep = _report(np.zeros((4, 3)), np.zeros((4, 2)))
    assert not rep and "values where the reference has" in rep.failure_summary()


def test_rank_difference_with_same_values_is_tolerated():
    rep = _report(np.arange(4.0).reshape(4, 1), np.arange(4.0))
    assert rep
