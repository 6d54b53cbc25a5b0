"""A small BERT incident router: generated incident reports -> one of 5 teams (PyTorch, Hugging Face).

The reports and the WordPiece tokenizer come from incident_bert_corpus.py (shared with the
Keras version, incident_bert_keras.py); the model is `transformers.BertForSequenceClassification` built from a `BertConfig`
(2 layers, hidden 128, no download), trained on CPU.

Writes into samples/build (or $EDGEKIT_SAMPLES_DIR):
  incident_bert.pt2             torch.export program: int64 input_ids + attention_mask (1x64) -> 5 logits
  incident_bert_seq.pt2         the same with a dynamic sequence length (2..64) for ONNX
  incident_bert_tokenizer.json  the WordPiece tokenizer (pads/truncates to 64)
  incident_bert_val.csv         held-out reports (columns text, team, label = the team's index)
  incident_bert_val.npz         the same reports tokenized (input_ids, attention_mask, _labels)
  incident_bert_calib.npz       200 tokenized training reports for int8 calibration
"""

from __future__ import annotations

import time

import torch

from common import SEED, out_dir
from incident_bert_corpus import N_TRAIN, SEQ, TEAMS, corpus, save_data

class Logits(torch.nn.Module):
    """BertForSequenceClassification returns a ModelOutput; the exported program returns the logits tensor."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).logits


def build_model(vocab_size: int):
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=256, max_position_embeddings=SEQ, num_labels=len(TEAMS),
                     hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg)


def train(ids, mask, y, vocab_size: int, epochs: int = 4):
    torch.manual_seed(SEED)
    model = build_model(vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    ids_t, mask_t, y_t = torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(y)
    # train on the used part of the sequence only (the reports are short): same weights, 4x less work
    used = int(mask.sum(1).max())
    g = torch.Generator().manual_seed(SEED)
    steps = epochs * ((len(ids) + 31) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(ids_t), generator=g).split(32):
            opt.zero_grad()
            out = model(input_ids=ids_t[idx, :used], attention_mask=mask_t[idx, :used])
            torch.nn.functional.cross_entropy(out.logits, y_t[idx]).backward()
            opt.step()
            sched.step()
    model.eval()
    return model


def main() -> None:
    t0 = time.perf_counter()
    torch.set_num_threads(2)
    tok, texts, y, ids, mask = corpus()
    model = train(ids[:N_TRAIN], mask[:N_TRAIN], y[:N_TRAIN], tok.get_vocab_size())
    wrapped = Logits(model).eval()
    with torch.no_grad():
        pred = wrapped(torch.from_numpy(ids[N_TRAIN:]), torch.from_numpy(mask[N_TRAIN:])).argmax(1).numpy()
    acc = (pred == y[N_TRAIN:]).mean()
    out = out_dir()
    example = (torch.from_numpy(ids[:1]), torch.from_numpy(mask[:1]))
    # fixed 1x64: the shape every target takes (TFLite needs fixed lengths; edgekit's TorchScript trace
    # and litert-torch paths do not yet handle a dynamic non-batch axis of a .pt2)
    torch.export.save(torch.export.export(wrapped, example), out / "incident_bert.pt2")
    # and a dynamic sequence length (2..64, both inputs tied) for the targets that keep it (ONNX, ExecuTorch)
    seq = torch.export.Dim("seq", min=2, max=SEQ)
    torch.export.save(torch.export.export(wrapped, example, dynamic_shapes=({1: seq}, {1: seq})),
                      out / "incident_bert_seq.pt2")
    save_data(tok, texts, y, ids, mask)
    print(f"incident_bert: trained in {time.perf_counter() - t0:.1f} s, vocab {tok.get_vocab_size()}, "
          f"validation accuracy {acc * 100:.1f}%")


if __name__ == "__main__":
    main()
