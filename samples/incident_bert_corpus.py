"""The incident reports and the WordPiece tokenizer shared by both incident_bert samples
(PyTorch: incident_bert.py, Keras: incident_bert_keras.py), so both models read the same ids.

The reports come from per-team templates and synonym lists with a fixed seed, plus shared
filler, cross-team distractor phrases and character noise (typos), so that held-out accuracy
means something. The tokenizer is trained on the training reports with `tokenizers`; its
WordPiece trainer breaks ties in a different order from run to run (a Rust hash map), so the
sample built second reads the tokenizer.json the first one wrote rather than training its own:
both models then index the same vocabulary.
"""

from __future__ import annotations

import csv

import numpy as np

from common import SEED, out_dir

N_REPORTS, N_TRAIN = 4000, 3500

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


def corpus():
    """(tokenizer, texts, labels, input_ids, attention_mask): 4000 reports with a fixed seed, the
    first 3500 for training (and the tokenizer), the rest held out. The tokenizer is the one
    already in the output folder, if any (the other incident_bert sample's)."""
    rng = np.random.default_rng(SEED)
    texts, labels = make_reports(N_REPORTS, rng)
    saved = out_dir() / "incident_bert_tokenizer.json"
    if saved.is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(saved))
    else:
        tok = train_tokenizer(texts[:N_TRAIN])
    ids, mask = encode(tok, texts)
    return tok, texts, np.array(labels, dtype=np.int64), ids, mask


def save_data(tok, texts, labels, ids, mask) -> None:
    """The tokenizer, the held-out reports as CSV (text, team, label) and tokenized (.npz), and
    200 tokenized training reports for int8 calibration."""
    out = out_dir()
    tok.save(str(out / "incident_bert_tokenizer.json"))
    with open(out / "incident_bert_val.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "team", "label"])
        w.writerows((t, TEAMS[c], int(c)) for t, c in zip(texts[N_TRAIN:], labels[N_TRAIN:]))
    np.savez(out / "incident_bert_val.npz", input_ids=ids[N_TRAIN:], attention_mask=mask[N_TRAIN:],
             _labels=labels[N_TRAIN:])
    np.savez(out / "incident_bert_calib.npz", input_ids=ids[:200], attention_mask=mask[:200])
