"""Parity metrics and verdicts on arrays (no framework needed)."""

import numpy as np
import pytest

from edgekit.targets import TOLERANCES
from edgekit.validators.parity import compare, output_metrics, samples_for_gate, wilson


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


# ----------------------------------------------------------------------------- output kinds (issues 15 and 19)
def _detector_outputs(seed=0, n=4, classes=18, anchors=2100):
    """[N, 4+K, A] as YOLO-style detectors emit: pixel boxes (cx, cy, w, h), then K class scores,
    a few anchors per image scoring above the detection threshold."""
    rng = np.random.default_rng(seed)
    boxes = np.concatenate([rng.uniform(40, 280, (n, 2, anchors)), rng.uniform(10, 80, (n, 2, anchors))], 1)
    scores = rng.uniform(0, 0.05, (n, classes, anchors))
    for i in range(n):
        hot = rng.choice(anchors, 7, replace=False)
        scores[i, rng.integers(0, classes, 7), hot] = rng.uniform(0.3, 0.9, 7)
    return np.concatenate([boxes, scores], 1).astype("float32"), rng


def _judge(ref, cand, precision, kinds=None, labels=None, name="y"):
    return compare({name: ref}, {name: cand}, [(name, name)], TOLERANCES[precision], precision=precision,
                   data_source="test", kinds=kinds, labels=labels)


def test_detector_whose_class_scores_all_vanish_fails_although_cosine_is_0999():
    ref, rng = _detector_outputs()
    dead = ref.copy()
    dead[:, :4] += rng.normal(0, 1.0, dead[:, :4].shape)  # boxes barely move...
    dead[:, 4:] = 0.0  # ...but no class scores any more (the int8 detector of issue 19)
    rep = _judge(ref, dead, "int8")
    m = rep.outputs[0].metrics
    assert m["kind"] == "detection" and "4 box values" in m["kind_source"]
    assert m["cosine"] > 0.998 and m["snr_db"] > 12  # the whole-tensor metrics would pass it
    assert m["reference_detections"] == 28 and m["candidate_detections"] == 0 and m["det_recall"] == 0
    assert not rep and "reference detections kept" in rep.failure_summary()
    # a faithful int8 candidate (small box and score noise), here in the [N, A, 4+K] layout, passes
    good = ref.copy()
    good[:, :4] += rng.normal(0, 1.0, good[:, :4].shape)
    good[:, 4:] += rng.normal(0, 0.01, good[:, 4:].shape)
    rep = _judge(np.swapaxes(ref, 1, 2), np.swapaxes(good, 1, 2), "int8")
    m = rep.outputs[0].metrics
    assert rep, rep.failure_summary()
    assert m["kind"] == "detection" and m["det_recall"] == 1.0 and m["det_precision"] == 1.0 and m["mean_iou"] > 0.9


def test_sequence_output_fails_when_two_of_48_decoded_strings_change_despite_high_snr():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(48, 25, 37)) * 3
    ref = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    cand = ref + rng.normal(0, 1e-4, ref.shape)
    rep = _judge(ref, cand, "fp16")
    m = rep.outputs[0].metrics
    assert rep and m["kind"] == "sequence" and "probabilities" in m["kind_source"] and m["sequence_agreement"] == 1.0
    for i in (5, 30):  # two sequences: at their closest call (still above fp16 noise) the top two swap
        t = int(np.argmin(np.sort(ref[i], -1)[:, -1] - np.sort(ref[i], -1)[:, -2]))
        a, b = np.argsort(ref[i, t])[-2:]
        cand[i, t, a], cand[i, t, b] = ref[i, t, b], ref[i, t, a]
    rep = _judge(ref, cand, "fp16")
    m = rep.outputs[0].metrics
    assert m["snr_db"] > 40 and m["position_top1"] > 0.99  # passes fp16's 40 dB
    assert m["sequence_agreement"] == pytest.approx(46 / 48)
    assert not rep and "whole-sequence agreement" in rep.failure_summary()


def test_regression_head_is_not_judged_by_top1_but_a_classifier_flip_still_fails():
    """Issue 15: a 4-output head with flat scores lost top-1 to int8 noise and was refused."""
    rng = np.random.default_rng(4)
    ref = 0.5 + rng.normal(0, 0.01, (200, 4))
    cand = ref + rng.normal(0, 0.006, ref.shape)
    as_classes = _judge(ref, cand, "int8")
    assert as_classes.outputs[0].metrics["kind"] == "classification"
    assert as_classes.outputs[0].metrics["top1"] < 0.9 and not as_classes  # undeclared: judged as class scores
    rep = _judge(ref, cand, "int8", kinds={"y": "regression"})
    m = rep.outputs[0].metrics
    assert rep and m["kind"] == "regression" and m["kind_source"] == "declared" and "top1" not in m
    assert m["rel_error"] < 0.02
    # a real class flip on confident samples is never hidden by the margin rule
    logits = rng.normal(size=(100, 10)) * 4
    flipped = logits.copy()
    flipped[:20] = flipped[:20, ::-1]
    assert not _judge(logits, flipped, "int8", kinds={"y": "classification"})


def test_near_ties_are_ambiguous_not_disagreements():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(100, 10)) * 4
    ref[:10, 1] = ref[:10, 0] = ref[:10].max(1) + 1.0  # top two equal: the sample cannot flip for real
    cand = ref.copy()
    cand[:10, 1] += 1e-3  # the candidate picks the other of the tied pair
    m = _judge(ref, cand, "int8").outputs[0].metrics
    assert m["ambiguous"] >= 10 and m["top1"] == 1.0 and m["top1_n"] == 100 - m["ambiguous"]
    assert m["top1_ci95"][0] > 0.95 and m["top1_ci95"][1] == 1.0


def test_embedding_is_judged_per_row():
    rng = np.random.default_rng(6)
    ref = rng.normal(size=(64, 32))
    cand = ref + rng.normal(0, 0.01, ref.shape)
    cand[7] = -ref[7]  # one sample's embedding is wrong: invisible in the whole-tensor cosine
    rep = _judge(ref, cand, "int8", name="embeddings")
    m = rep.outputs[0].metrics
    assert m["kind"] == "embedding" and m["cosine"] > 0.9 and m["row_cosine_min"] < -0.9
    assert not rep and "worst per-sample cosine" in rep.failure_summary()


def test_one_flipped_label_in_48_is_noise_for_a_1_point_gate_but_a_real_drop_fails():
    labels = np.arange(48) % 4
    ref = np.eye(4)[labels] * 5
    one = ref.copy()
    one[0] = np.eye(4)[1] * 5  # one prediction of 48 now wrong: -2.08 points
    rep = _judge(ref, one, "int8", labels=labels, kinds={"y": "classification"})
    acc = rep.accuracy
    assert acc["delta"] == pytest.approx(-1 / 48) and acc["lost"] == 1 and acc["samples"] == 48
    lo, hi = acc["drop_ci95"]
    assert lo < 0.01 < hi and acc["ok"]  # the interval holds the allowance: not a failure by noise
    assert acc["samples_for_gate"] == samples_for_gate(0.01) == 390
    assert acc["candidate_ci95"][0] < acc["candidate"] < acc["candidate_ci95"][1]
    eight = ref.copy()
    eight[:8] = np.eye(4)[(labels[:8] + 1) % 4] * 5  # 8 of 48: a drop the interval cannot explain
    rep = _judge(ref, eight, "int8", labels=labels, kinds={"y": "regression"})  # accuracy is judged whatever the kind
    assert not rep.accuracy["ok"] and "95% interval" in rep.failure_summary()


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = wilson(1, 48)
    assert lo == pytest.approx(0.00369, abs=1e-4) and hi == pytest.approx(0.1090, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0) and wilson(10, 10)[1] == 1.0


def test_declared_kinds_are_checked():
    from edgekit.errors import BadInput

    ref = np.zeros((4, 3), "float32")
    with pytest.raises(BadInput, match="does not output"):
        _judge(ref, ref, "fp32", kinds={"nope": "detection"})
    with pytest.raises(BadInput, match="unknown output kind"):
        _judge(ref, ref, "fp32", kinds={"y": "boxes"})


@pytest.mark.slow
def test_validate_times_source_and_artifact_on_the_same_runtime(tmp_path):
    """ONNX vs ONNX: validate reports both latencies, and warns exactly when the artifact is slower."""
    import sys
    from pathlib import Path

    from onnxruntime.quantization import QuantType, quantize_dynamic

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "converters"))
    from conftest import run_cli
    from test_onnx_source import conv_model

    conv_model(tmp_path / "conv.onnx", size=32)
    quantize_dynamic(str(tmp_path / "conv.onnx"), str(tmp_path / "dyn.onnx"), weight_type=QuantType.QInt8)
    res = run_cli("validate", tmp_path / "conv.onnx", tmp_path / "dyn.onnx", "--json")
    assert res.code == 0, res
    lat = res.json["result"]["latency"]
    assert lat["source_ms"] > 0 and lat["artifact_ms"] > 0
    assert lat["ratio"] == pytest.approx(lat["artifact_ms"] / lat["source_ms"])
    assert lat["slower"] == (lat["ratio"] > 1.10) and ("warning" in lat) == lat["slower"]
    res = run_cli("validate", tmp_path / "conv.onnx", tmp_path / "dyn.onnx")
    assert "latency on this CPU" in res.stderr and "source" in res.stderr
