"""Hugging Face BERT text classifiers (issue #16), converted for real by the `edgekit` CLI.

One small BERT (the incident_bert sample's generator, tokenizer and model, trained briefly on
fewer reports so it takes seconds) is exported once per module as a fixed 1x64 program and as a
dynamic-sequence one; the tests share them.
"""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest

from conftest import SAMPLES, assert_user_error, run_cli

pytestmark = [pytest.mark.torch, pytest.mark.slow]

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    sys.path.insert(0, str(SAMPLES))
    try:
        import incident_bert as ib
        import incident_bert_corpus as corpus
    finally:
        sys.path.remove(str(SAMPLES))
    d = tmp_path_factory.mktemp("bert")
    torch.set_num_threads(2)
    texts, labels = corpus.make_reports(1400, np.random.default_rng(1))
    y = np.array(labels, dtype=np.int64)
    tok = corpus.train_tokenizer(texts[:1000])
    ids, mask = corpus.encode(tok, texts)
    model = ib.Logits(ib.train(ids[:1000], mask[:1000], y[:1000], tok.get_vocab_size(), epochs=2)).eval()
    example = (torch.from_numpy(ids[:1]), torch.from_numpy(mask[:1]))
    torch.export.save(torch.export.export(model, example), d / "bert.pt2")
    seq = torch.export.Dim("seq", min=2, max=corpus.SEQ)
    torch.export.save(torch.export.export(model, example, dynamic_shapes=({1: seq}, {1: seq})), d / "bert_seq.pt2")
    np.savez(d / "val.npz", input_ids=ids[1000:], attention_mask=mask[1000:], _labels=y[1000:])
    np.savez(d / "calib.npz", input_ids=ids[:100], attention_mask=mask[:100])
    tok.save(str(d / "tokenizer.json"))
    with open(d / "reports.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("report", "label")] + [(t, c) for t, c in zip(texts[1000:1200], labels[1000:1200])])
    return d, model, ids, mask


def test_executorch_int8_of_a_hf_bert(bert, tmp_path):
    """Was exit 3 'tensors used as indices must be long': XNNPACKQuantizer turned the integer
    `arange + 0` of the position/mask arithmetic into float. Now it converts and passes parity."""
    d, *_ = bert
    out = tmp_path / "bert.int8.pte"
    res = run_cli("convert", d / "bert.pt2", "--target", "executorch", "--quantize", "int8",
                  "--inputs", d / "val.npz", "--calibration", d / "calib.npz", "-o", out)
    assert res.code == 0, res
    assert out.exists() and "int8 PT2E" in res.stdout + res.stderr


def test_dynamic_sequence_to_onnx_at_several_lengths(bert, tmp_path):
    """A .pt2 whose input_ids and attention_mask share a dynamic sequence Dim (torch writes a
    shape guard for it) loads without --trust-code, and the ONNX file keeps the axis: onnxruntime
    matches the source at the longest length and at short padded ones."""
    import onnxruntime as ort

    d, model, ids, mask = bert
    out = tmp_path / "bert_seq.onnx"
    res = run_cli("convert", d / "bert_seq.pt2", "--target", "onnx", "--inputs", d / "val.npz", "-o", out)
    assert res.code == 0, res
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert not isinstance(sess.get_inputs()[0].shape[1], int)
    names = [i.name for i in sess.get_inputs()]
    assert (mask[1000:1004, :24] == 0).any()  # 24: padded short inputs; 8: truncated ones
    for n in (64, 24, 8):
        x, m = ids[1000:1004, :n], mask[1000:1004, :n]
        got = np.concatenate([sess.run(None, dict(zip(names, (x[i:i + 1], m[i:i + 1]))))[0] for i in range(len(x))])
        with torch.no_grad():
            want = model(torch.from_numpy(x), torch.from_numpy(m)).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


def test_torchscript_trace_of_a_dynamic_length_bert_that_does_not_generalise_is_exit_3(bert, tmp_path):
    """torch.jit.trace bakes the example's sequence length into the graph; on the user's 64-token
    data the trace cannot run. That was an internal error (exit 5) inside the parity check; it is a
    conversion failure (exit 3) that says why and what to do, and no file is written."""
    d, *_ = bert
    out = tmp_path / "bert_seq.pt"
    res = run_cli("convert", d / "bert_seq.pt2", "--target", "torchscript", "--inputs", d / "val.npz", "-o", out)
    assert_user_error(res, 3, "does not generalise to the shapes of your data", "--script")
    assert not out.exists()


def test_tflite_dynamic_range_of_a_bert_loads_and_passes(bert, tmp_path):
    """Was exit 3: litert-torch gave the word embeddings an int8 table with a nonzero zero point
    (4 on this model), which LiteRT's hybrid EMBEDDING_LOOKUP refuses. The table is requantized
    with zero point 0 (tflite_edit.symmetric_embedding_tables): it stays int8 and parity passes."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    d, *_ = bert
    out = tmp_path / "bert.dynamic.tflite"
    res = run_cli("convert", d / "bert.pt2", "--target", "tflite", "--quantize", "dynamic",
                  "--inputs", d / "val.npz", "-o", out)
    assert res.code == 0, res
    m = fu.read_model(str(out))
    lookup = {i for i, c in enumerate(m.operatorCodes)
              if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.EMBEDDING_LOOKUP}
    tables = [sg.tensors[op.inputs[1]] for sg in m.subgraphs for op in sg.operators if op.opcodeIndex in lookup]
    assert tables and all(t.type == schema.TensorType.INT8 and not any(t.quantization.zeroPoint) for t in tables)
    assert json.loads((tmp_path / "bert.dynamic.tflite.report.json").read_text())["result"]["parity"]["passed"]


def test_executorch_dynamic_activation_int8_of_a_hf_bert(bert, tmp_path):
    """--quantize dynamic for ExecuTorch: XNNPACK's dynamically quantized linear layers (int8
    weights, activations quantized per run), no calibration data needed; parity passes."""
    d, *_ = bert
    out = tmp_path / "bert.dynamic.pte"
    res = run_cli("convert", d / "bert.pt2", "--target", "executorch", "--quantize", "dynamic",
                  "--inputs", d / "val.npz", "-o", out)
    assert res.code == 0, res
    result = json.loads((tmp_path / "bert.dynamic.pte.report.json").read_text())["result"]
    assert result["precision"] == "dynamic" and result["parity"]["passed"]
    assert "is_dynamic=True" in res.stdout + res.stderr


def test_onnx_transformer_fusion_and_its_opt_out(bert, tmp_path):
    """onnxruntime's transformer optimizer fuses the BERT's LayerNorm/GELU (SkipLayerNormalization,
    BiasGelu: the dynamo exporter's attention is not a pattern it fuses); the report says what it
    fused, that the fused graph matched the plain one, and whether it was faster (then it is the
    file). --no-transformer-fusion keeps the plain graph: standard ONNX operators only."""
    import onnx

    d, *_ = bert
    res = run_cli("convert", d / "bert.pt2", "--target", "onnx", "--quantize", "dynamic", "--inputs", d / "val.npz",
                  "-o", tmp_path / "fused.onnx")
    assert res.code == 0, res
    fusion = json.loads((tmp_path / "fused.onnx.report.json").read_text())["result"]["details"]["transformer_fusion"]
    assert fusion["fused"].get("SkipLayerNormalization", 0) >= 2 and max(fusion["parity"].values()) < 1e-4
    domains = {n.domain for n in onnx.load(str(tmp_path / "fused.onnx")).graph.node}
    assert ("com.microsoft" in domains) == fusion["kept"]
    assert fusion["kept"] == (fusion["fused_ms"] <= fusion["plain_ms"] * 0.98)
    res = run_cli("convert", d / "bert.pt2", "--target", "onnx", "--no-transformer-fusion", "--inputs", d / "val.npz",
                  "-o", tmp_path / "plain.onnx")
    assert res.code == 0, res
    assert "transformer_fusion" not in json.loads((tmp_path / "plain.onnx.report.json").read_text())["result"]["details"]
    assert {n.op_type for n in onnx.load(str(tmp_path / "plain.onnx")).graph.node}.isdisjoint(
        {"SkipLayerNormalization", "BiasGelu"})


def test_text_in_label_out(bert, tmp_path):
    """--tokenizer: a CSV of texts is tokenized with the real tokenizer; parity and text->label
    accuracy run on it, and the report records the tokenizer (file, sha256, length, specials)."""
    d, *_ = bert
    out = tmp_path / "bert.onnx"
    res = run_cli("convert", d / "bert.pt2", "--target", "onnx", "--inputs", d / "reports.csv", "--tokenizer",
                  d / "tokenizer.json", "--text-column", "report", "--label-column", "label", "-o", out)
    assert res.code == 0, res
    result = json.loads((tmp_path / "bert.onnx.report.json").read_text())["result"]
    tok = result["tokenizer"]
    assert tok["max_length"] == 64 and tok["rows"] == 200 and len(tok["sha256"]) == 64
    assert tok["special_tokens"]["[PAD]"] == tok["padding"]["pad_id"]
    assert "accuracy" in res.stdout + res.stderr


def test_text_column_missing_is_named(bert, tmp_path):
    from conftest import assert_user_error

    d, *_ = bert
    res = run_cli("convert", d / "bert.pt2", "--target", "onnx", "--inputs", d / "reports.csv", "--tokenizer",
                  d / "tokenizer.json", "-o", tmp_path / "x.onnx")
    assert_user_error(res, 2, "no column 'text'", "report, label")
    assert not (tmp_path / "x.onnx").exists()


def test_wrong_tokenizer_and_ids_past_the_vocabulary_are_refused(bert, tmp_path):
    """Checked against the embedding table read from the .pt2's metadata, before any runtime."""
    from tokenizers import Tokenizer

    from conftest import assert_user_error

    d, *_ = bert
    other = Tokenizer.from_file(str(d / "tokenizer.json"))
    other.add_tokens(["freezerx", "walkinx"])  # two more tokens than the model's embedding has rows
    other.save(str(tmp_path / "other.json"))
    res = run_cli("convert", d / "bert.pt2", "--target", "onnx", "--inputs", d / "reports.csv", "--tokenizer",
                  tmp_path / "other.json", "--text-column", "report", "-o", tmp_path / "x.onnx")
    assert_user_error(res, 2, "not this model's tokenizer")
    val = dict(np.load(d / "val.npz"))
    val["input_ids"][0, 3] = 10 ** 6
    np.savez(tmp_path / "bad.npz", **val)
    res = run_cli("convert", d / "bert.pt2", "--target", "onnx", "--inputs", tmp_path / "bad.npz",
                  "-o", tmp_path / "x.onnx")
    assert_user_error(res, 2, "input_ids", "1000000", "embedding has")
    assert not (tmp_path / "x.onnx").exists()


def test_executorch_keeps_the_bounds_and_validates_at_several_lengths(bert, tmp_path):
    """The dynamic-sequence program lowered to ExecuTorch keeps its bounds (2..64): the runtime's
    metadata gives only the upper bound, so edgekit reads the program's DYNAMIC_BOUND inputs as
    dynamic, and `validate --tokenizer --length N` checks it on the texts tokenized to N tokens
    (16: truncated and padded; 64: the longest)."""
    d, *_ = bert
    out = tmp_path / "bert_seq.pte"
    res = run_cli("convert", d / "bert_seq.pt2", "--target", "executorch", "--inputs", d / "reports.csv",
                  "--tokenizer", d / "tokenizer.json", "--text-column", "report", "-o", out)
    assert res.code == 0, res
    for n in (16, 64):
        res = run_cli("validate", d / "bert_seq.pt2", out, "--inputs", d / "reports.csv", "--tokenizer",
                      d / "tokenizer.json", "--text-column", "report", "--length", str(n), "--json")
        assert res.code == 0, res
        result = res.json["result"]
        assert result["tokenizer"]["max_length"] == n and result["parity"]["accuracy"]["samples"] == 200
