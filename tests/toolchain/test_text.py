"""Text in, label out (issue #16): `edgekit validate --tokenizer`, the edgekit.toml keys
(tokenizer, text_column, label_column, lengths), the tokenizer in the manifest, and a
dynamic-length model checked and timed at several lengths.

One small Keras BERT (the incident_bert_keras sample's encoder, trained for one short epoch on
generated reports) is saved once per module with a fixed 1x64 input and with a dynamic length;
the tests share it. The configuration errors need no model.
"""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest

from conftest import SAMPLES, assert_user_error, run_cli

pytest.importorskip("tokenizers")


def write_config(path, body: str) -> None:
    path.write_text('[build]\nout = "out"\n\n' + body)


@pytest.fixture(scope="module")
def kbert(tmp_path_factory):
    pytest.importorskip("keras")
    sys.path.insert(0, str(SAMPLES))
    try:
        import incident_bert_corpus as corpus
        import incident_bert_keras as kb
    finally:
        sys.path.remove(str(SAMPLES))
    import keras

    d = tmp_path_factory.mktemp("kbert")
    keras.utils.set_random_seed(0)
    texts, labels = corpus.make_reports(900, np.random.default_rng(2))
    y = np.array(labels, dtype=np.int64)
    tok = corpus.train_tokenizer(texts[:700])
    ids, mask = corpus.encode(tok, texts)
    used = int(mask.sum(1).max())
    model = kb.build_model(tok.get_vocab_size(), None)
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit([ids[:700, :used], mask[:700, :used]], y[:700], batch_size=32, epochs=2, verbose=0)
    fixed = kb.build_model(tok.get_vocab_size(), corpus.SEQ)
    fixed.set_weights(model.get_weights())
    fixed.save(d / "bert.keras")
    seq = kb.build_model(tok.get_vocab_size(), None)
    seq.set_weights(model.get_weights())
    seq.save(d / "bert_seq.keras")
    tok.save(str(d / "tokenizer.json"))
    rows = list(zip(texts[700:800], labels[700:800]))
    with open(d / "reports.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("text", "label")] + rows)
    with open(d / "unlabelled.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("text",)] + [(t,) for t, _ in rows])
    return d


@pytest.fixture(scope="module")
def kbert_tflite(kbert, tmp_path_factory):
    out = tmp_path_factory.mktemp("kbert_tflite") / "bert.tflite"
    res = run_cli("convert", kbert / "bert.keras", "--target", "tflite", "--inputs", kbert / "reports.csv",
                  "--tokenizer", kbert / "tokenizer.json", "-o", out)
    assert res.code == 0, res
    return out


@pytest.mark.tf
@pytest.mark.slow
def test_validate_text_in_label_out(kbert, kbert_tflite):
    """validate tokenizes the CSV with the real tokenizer for both models, reads the labels from
    its 'label' column, reports the text->label accuracy of source and artifact, and records the
    tokenizer (file, sha256, length, padding, truncation, special tokens)."""
    import hashlib

    res = run_cli("validate", kbert / "bert.keras", kbert_tflite, "--inputs", kbert / "reports.csv",
                  "--tokenizer", kbert / "tokenizer.json", "--json")
    assert res.code == 0, res
    result = res.json["result"]
    tok = result["tokenizer"]
    assert tok["sha256"] == hashlib.sha256((kbert / "tokenizer.json").read_bytes()).hexdigest()
    assert tok["max_length"] == 64 and tok["rows"] == 100 and tok["label_column"] == "label"
    assert tok["truncation"]["max_length"] == 64 and tok["special_tokens"]["[CLS]"] is not None
    acc = result["parity"]["accuracy"]
    assert acc["samples"] == 100 and acc["reference"] == acc["candidate"], acc


@pytest.mark.tf
@pytest.mark.slow
def test_validate_without_labels_is_parity_only_and_bad_columns_are_named(kbert, kbert_tflite):
    res = run_cli("validate", kbert / "bert.keras", kbert_tflite, "--inputs", kbert / "unlabelled.csv",
                  "--tokenizer", kbert / "tokenizer.json")
    assert res.code == 0, res
    assert "no label column: parity only" in " ".join((res.stdout + res.stderr).split())
    res = run_cli("validate", kbert / "bert.keras", kbert_tflite, "--inputs", kbert / "unlabelled.csv",
                  "--tokenizer", kbert / "tokenizer.json", "--label-column", "team")
    assert_user_error(res, 2, "no column 'team'")
    res = run_cli("validate", kbert / "bert.keras", kbert_tflite, "--inputs", kbert / "reports.csv",
                  "--tokenizer", kbert / "tokenizer.json", "--text-column", "report")
    assert_user_error(res, 2, "no column 'report'", "text, label")


@pytest.mark.tf
@pytest.mark.slow
def test_build_with_a_tokenizer_and_lengths(kbert, tmp_path):
    """edgekit.toml: the CSV of texts + tokenizer feed every stage; a dynamic-length model is
    checked and timed at each length (ONNX keeps the axis), and a length pinned with input_shape
    gives a fixed-length TFLite file checked at that length. The manifest records the tokenizer."""
    cfg = tmp_path / "edgekit.toml"
    write_config(cfg, f"""
[[models]]
name = "seq"
source = "{kbert / 'bert_seq.keras'}"
inputs = "{kbert / 'reports.csv'}"
tokenizer = "{kbert / 'tokenizer.json'}"
lengths = [64, 12]

  [[models.targets]]
  target = "onnx"

[[models]]
name = "len16"
source = "{kbert / 'bert_seq.keras'}"
input_shape = ["input_ids=1x16:int64", "attention_mask=1x16:int64"]
inputs = "{kbert / 'reports.csv'}"
tokenizer = "{kbert / 'tokenizer.json'}"
lengths = [16]

  [[models.targets]]
  target = "tflite"
""")
    res = run_cli("build", cfg, "--jobs", "1")
    assert res.code == 0, res
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    by_id = {a["id"]: a for a in manifest["artifacts"]}
    onnx = by_id["seq/onnx-fp32"]
    assert onnx["tokenizer"]["file"] == "tokenizer.json" and onnx["tokenizer"]["max_length"] == 64
    assert set(onnx["lengths"]) == {"12", "64"}
    for n, at in onnx["lengths"].items():
        assert at["parity"]["passed"] and at["latency"]["sequence_length"] == int(n)
        assert at["parity"]["accuracy"]["samples"] == 100
    assert onnx["inputs"][0]["shape"][1] is None or isinstance(onnx["inputs"][0]["shape"][1], str)
    tfl = by_id["len16/tflite-fp32"]
    assert tfl["inputs"][0]["shape"][1:] == [16] and tfl["tokenizer"]["max_length"] == 16
    assert tfl["lengths"]["16"]["parity"]["passed"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {j["id"]: j for j in report["jobs"]}["seq/onnx-fp32"]["tokenizer"]["sha256"] == onnx["tokenizer"]["sha256"]


@pytest.mark.parametrize("body, needles", [
    ('lengths = [16]\n', ("lengths", "needs 'tokenizer'")),
    ('tokenizer = "tok.json"\ntext_column = "text"\n', ("tokenizer", "needs 'inputs' to be a .csv")),
    ('inputs = "r.csv"\ntokenizer = "tok.json"\nlengths = [16, 0]\n', ("lengths", "distinct positive integers")),
])
def test_text_keys_are_checked(tmp_path, body, needles):
    cfg = tmp_path / "edgekit.toml"
    write_config(cfg, f'[[models]]\nname = "m"\nsource = "m.keras"\n{body}\n  [[models.targets]]\n  target = "onnx"\n')
    assert_user_error(run_cli("build", cfg), 2, *needles)


def test_length_and_text_column_need_a_tokenizer(tmp_path):
    m = tmp_path / "m.onnx"
    m.write_bytes(b"")
    res = run_cli("validate", m, m, "--length", "16")
    assert_user_error(res, 2, "--length", "--tokenizer")
