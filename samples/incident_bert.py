"""A small BERT incident router: generated incident reports -> one of 5 teams (PyTorch, Hugging Face).

The reports come from per-team templates and synonym lists with a fixed seed, plus shared
filler, cross-team distractor phrases and character noise (typos), so that held-out accuracy
means something. A WordPiece tokenizer is trained on the training reports with `tokenizers`;
the model is `transformers.BertForSequenceClassification` built from a `BertConfig`
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

import csv
import time

import numpy as np
import torch

from common import SEED, out_dir

SEQ = 64
TEAMS = ["equipment", "food_safety", "logistics", "customer", "staffing"]
# per team: templates with {slots}; each slot draws from the team's synonym lists
SLOTS = {
    "equipment": {
        "thing": ["freezer", "walk-in cooler", "fryer", "dishwasher", "oven", "ice machine", "grill", "compressor",
                  "pos terminal", "extractor fan", "coffee machine", "card reader"],
        "fault": ["not cooling", "won't heat up", "leaking water", "keeps tripping the breaker", "broken",
                  "making a grinding noise", "stopped working", "showing error code e4", "keeps rebooting",
                  "smells of burning"],
    },
    "food_safety": {
        "thing": ["chicken", "raw beef", "salad mix", "dairy", "rice", "fish", "sauces", "sandwiches",
                  "prepared veg", "eggs"],
        "fault": ["held below safe temperature", "past its use-by date", "stored next to raw meat",
                  "missing allergen labels", "found with mould", "left out overnight", "not logged in the haccp sheet",
                  "cross contaminated at prep", "with pest droppings nearby", "undercooked on probe check"],
    },
    "logistics": {
        "thing": ["supplier truck", "produce order", "dry goods delivery", "meat shipment", "courier", "pallet",
                  "invoice for the order", "bread delivery", "drinks order", "frozen stock"],
        "fault": ["arrived three hours late", "never turned up", "missed the delivery window", "stuck at the depot",
                  "delivered to the wrong store", "short by two cases", "rescheduled again", "damaged in transit",
                  "held up by weather", "sent without the paperwork"],
    },
    "customer": {
        "thing": ["guest", "customer", "diner", "regular", "family at table 6", "caller", "online reviewer",
                  "delivery customer", "couple", "party of eight"],
        "fault": ["complained the meal was cold", "says the order was wrong", "reported rude service",
                  "waited an hour for a table", "wants a refund", "left a one star review",
                  "found a hair in the food", "was overcharged on the bill", "asked to speak to the manager",
                  "is unhappy about the noise"],
    },
    "staffing": {
        "thing": ["two cooks", "the night porter", "a new hire", "the shift manager", "three servers", "the baker",
                  "kitchen team", "weekend staff", "the supervisor", "bar staff"],
        "fault": ["called in sick", "did not show up", "need cover for saturday", "are over their overtime limit",
                  "quit without notice", "left a gap in the rota", "are short at the lunch rush",
                  "have no backup while on leave", "asked for shift swaps", "missed the training session"],
    },
}
TEMPLATES = ["{thing} {fault}", "{fault} - {thing}", "the {thing} {fault}", "{thing} {fault} {filler}",
             "{filler} {thing} {fault}", "report: {thing} {fault}", "{thing} {fault}, {filler}",
             "issue with {thing}: {fault}"]
FILLER = ["today", "again", "urgent", "at the downtown store", "please advise", "this morning", "store 14",
          "reported by shift lead", "second time this week", "need help asap", "fyi", "before opening",
          "during dinner service", "per the area manager"]


def _noise(text: str, rng) -> str:
    """A typo now and then (swap two letters or drop one)."""
    chars = list(text)
    for _ in range(int(rng.integers(0, 3))):
        i = int(rng.integers(1, max(2, len(chars) - 1)))
        if rng.random() < 0.5 and i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        else:
            del chars[i]
    return "".join(chars)


def make_reports(n: int, rng) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for _ in range(n):
        c = int(rng.integers(len(TEAMS)))
        slots = SLOTS[TEAMS[c]]
        # a team's thing may come with another team's fault (and vice versa): the words that decide
        # are spread over both slots, so a bag of single words is not enough half the time
        kind = "thing" if rng.random() < 0.5 else "fault"
        other = SLOTS[TEAMS[int(rng.integers(len(TEAMS)))]]
        pick = {k: v[int(rng.integers(len(v)))] for k, v in slots.items()}
        if rng.random() < 0.15:
            pick[kind] = other[kind][int(rng.integers(len(other[kind])))]
        text = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(
            filler=FILLER[int(rng.integers(len(FILLER)))], **pick)
        if rng.random() < 0.3:
            text = _noise(text, rng)
        texts.append(text.upper() if rng.random() < 0.05 else text)
        labels.append(c)
    return texts, labels


def train_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=1000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls),
                                                                                                 ("[SEP]", sep)])
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]", length=SEQ)
    tok.enable_truncation(max_length=SEQ)
    return tok


def encode(tok, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    enc = tok.encode_batch(texts)
    return (np.array([e.ids for e in enc], dtype=np.int64), np.array([e.attention_mask for e in enc], dtype=np.int64))


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
    rng = np.random.default_rng(SEED)
    texts, labels = make_reports(4000, rng)
    tr_t, va_t = texts[:3500], texts[3500:]
    y = np.array(labels, dtype=np.int64)
    tok = train_tokenizer(tr_t)
    ids, mask = encode(tok, texts)
    model = train(ids[:3500], mask[:3500], y[:3500], tok.get_vocab_size())
    wrapped = Logits(model).eval()
    with torch.no_grad():
        pred = wrapped(torch.from_numpy(ids[3500:]), torch.from_numpy(mask[3500:])).argmax(1).numpy()
    acc = (pred == y[3500:]).mean()
    out = out_dir()
    example = (torch.from_numpy(ids[:1]), torch.from_numpy(mask[:1]))
    # fixed 1x64: the shape every target takes (TFLite needs fixed lengths; edgekit's TorchScript trace
    # and litert-torch paths do not yet handle a dynamic non-batch axis of a .pt2)
    torch.export.save(torch.export.export(wrapped, example), out / "incident_bert.pt2")
    # and a dynamic sequence length (2..64, both inputs tied) for the targets that keep it (ONNX)
    seq = torch.export.Dim("seq", min=2, max=SEQ)
    torch.export.save(torch.export.export(wrapped, example, dynamic_shapes=({1: seq}, {1: seq})),
                      out / "incident_bert_seq.pt2")
    tok.save(str(out / "incident_bert_tokenizer.json"))
    with open(out / "incident_bert_val.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "team", "label"])
        w.writerows((t, TEAMS[c], c) for t, c in zip(va_t, labels[3500:]))
    np.savez(out / "incident_bert_val.npz", input_ids=ids[3500:], attention_mask=mask[3500:], _labels=y[3500:])
    np.savez(out / "incident_bert_calib.npz", input_ids=ids[:200], attention_mask=mask[:200])
    print(f"incident_bert: trained in {time.perf_counter() - t0:.1f} s, vocab {tok.get_vocab_size()}, "
          f"validation accuracy {acc * 100:.1f}%")


if __name__ == "__main__":
    main()
