"""Hugging Face text classifiers built from configs that are not the incident_bert sample (issue #16):
a BertForSequenceClassification (4 heads, hidden 32) and a DistilBertForSequenceClassification,
random-init, exported as .pt2 with int64 input_ids + attention_mask (1x16), converted by the CLI
to every target that takes a transformer, each checked for parity on padded inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli

pytestmark = [pytest.mark.torch, pytest.mark.slow]

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CONFIGS = {
    "bert": lambda: transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        num_labels=3, max_position_embeddings=64)),
    "distilbert": lambda: transformers.DistilBertForSequenceClassification(transformers.DistilBertConfig(
        vocab_size=300, dim=32, n_layers=2, n_heads=2, hidden_dim=64, num_labels=3, max_position_embeddings=64)),
}


class Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 300, (24, 16)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[::2, 9:] = 0  # every other input padded after 9 tokens
    ids[mask == 0] = 0
    np.savez(d / "inputs.npz", input_ids=ids, attention_mask=mask)
    for name, build in CONFIGS.items():
        torch.manual_seed(0)
        model = Logits(build().eval()).eval()
        example = (torch.from_numpy(ids[:1]), torch.from_numpy(mask[:1]))
        torch.export.save(torch.export.export(model, example), d / f"{name}.pt2")
    return d


@pytest.mark.parametrize("name,target,ext", [("bert", "onnx", "onnx"), ("bert", "tflite", "tflite"),
                                             ("bert", "executorch", "pte"), ("distilbert", "tflite", "tflite"),
                                             ("distilbert", "executorch", "pte")])
def test_hf_classifier_from_a_config_converts_with_parity(exported, tmp_path, name, target, ext):
    out = tmp_path / f"{name}.{ext}"
    res = run_cli("convert", exported / f"{name}.pt2", "--target", target, "--inputs", exported / "inputs.npz",
                  "-o", out)
    assert res.code == 0, res
    parity = json.loads((tmp_path / f"{name}.{ext}.report.json").read_text())["result"]["parity"]
    assert parity["passed"] and parity["samples"] == 24
