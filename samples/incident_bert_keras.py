"""The incident router as a Keras 3 model: the same generated reports and the same WordPiece
tokenizer as incident_bert.py (incident_bert_corpus.py), a small BERT-style encoder built from
Keras layers only (no keras-hub, no preset, no custom class: the .keras file loads with
safe_mode and nothing of this script), trained on CPU.

Encoder: token + learned position embeddings (positions from keras.ops.cumsum, which Keras
serializes as a built-in op), LayerNorm, 2 post-norm blocks of MultiHeadAttention (2 heads,
hidden 128, padding masked) and a tanh-GELU feed-forward (256), the [CLS] vector -> tanh pooler ->
5 logits. Inputs int64 input_ids + attention_mask, as the tokenizer gives them.

Writes into samples/build (or $EDGEKIT_SAMPLES_DIR):
  incident_bert_keras.keras      fixed 1x64 inputs (every target; TFLite needs fixed lengths)
  incident_bert_keras_seq.keras  the same weights with a dynamic sequence length (None): ONNX keeps
                                 the axis; TFLite takes the lengths given with --input-shape
  incident_bert_tokenizer.json, incident_bert_val.csv/.npz, incident_bert_calib.npz (as incident_bert.py)
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from common import SEED, out_dir  # noqa: E402
from incident_bert_corpus import N_TRAIN, SEQ, TEAMS, corpus, save_data  # noqa: E402

HIDDEN, HEADS, FFN, LAYERS = 128, 2, 256, 2


def build_model(vocab_size: int, seq: int | None):
    """Functional model; `seq` None gives a dynamic sequence axis. Layers are named, so two
    models built here share weights by name (get_weights/set_weights in order)."""
    import keras
    from keras import layers, ops

    ids = keras.Input((seq,), dtype="int64", name="input_ids")
    mask = keras.Input((seq,), dtype="int64", name="attention_mask")
    pos = ops.cumsum(ops.ones_like(ids), axis=1) - 1  # 0..L-1, whatever L is
    x = layers.Embedding(vocab_size, HIDDEN, name="word_embeddings")(ids)
    x = x + layers.Embedding(SEQ, HIDDEN, name="position_embeddings")(pos)
    x = layers.LayerNormalization(epsilon=1e-12, name="embeddings_norm")(x)
    x = layers.Dropout(0.1)(x)
    attend = ops.cast(ops.expand_dims(mask, 1), "bool")  # (B, 1, L): every query sees the real tokens
    for i in range(LAYERS):
        a = layers.MultiHeadAttention(HEADS, HIDDEN // HEADS, name=f"attention_{i}")(x, x, attention_mask=attend)
        x = layers.LayerNormalization(epsilon=1e-12, name=f"attention_norm_{i}")(x + layers.Dropout(0.1)(a))
        # tanh-approximate GELU (as the original BERT in TensorFlow): TF's exact GELU computes erfc,
        # which tf2onnx writes as an Erfc node that no ONNX opset defines
        f = ops.gelu(layers.Dense(FFN, name=f"intermediate_{i}")(x), approximate=True)
        f = layers.Dense(HIDDEN, name=f"output_{i}")(f)
        x = layers.LayerNormalization(epsilon=1e-12, name=f"output_norm_{i}")(x + layers.Dropout(0.1)(f))
    pooled = layers.Dense(HIDDEN, activation="tanh", name="pooler")(x[:, 0])
    logits = layers.Dense(len(TEAMS), name="classifier")(pooled)
    return keras.Model([ids, mask], logits, name="incident_bert_keras")


def main() -> None:
    t0 = time.perf_counter()
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(SEED)
    tok, texts, y, ids, mask = corpus()
    vocab = tok.get_vocab_size()
    # train on the used part of the sequence (the reports are short) with the dynamic-length model:
    # same weights, 3x less work; the fixed 1x64 model is saved from them
    used = int(mask.sum(1).max())
    model = build_model(vocab, None)
    steps = 4 * ((N_TRAIN + 31) // 32)
    lr = keras.optimizers.schedules.CosineDecay(1e-4, steps, warmup_target=2e-3, warmup_steps=steps // 4)
    model.compile(keras.optimizers.AdamW(lr, weight_decay=0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit([ids[:N_TRAIN, :used], mask[:N_TRAIN, :used]], y[:N_TRAIN], batch_size=32, epochs=4, verbose=0,
              shuffle=True)
    fixed = build_model(vocab, SEQ)
    fixed.set_weights(model.get_weights())
    logits = fixed.predict([ids[N_TRAIN:], mask[N_TRAIN:]], batch_size=128, verbose=0)
    acc = float((logits.argmax(1) == y[N_TRAIN:]).mean())
    short = model.predict([ids[N_TRAIN:, :used], mask[N_TRAIN:, :used]], batch_size=128, verbose=0)
    assert np.abs(short - logits).max() < 1e-3, "padding changes the logits: the mask is not applied"
    out = out_dir()
    fixed.save(out / "incident_bert_keras.keras")
    seq = build_model(vocab, None)  # uncompiled: no optimizer state in the file
    seq.set_weights(model.get_weights())
    seq.save(out / "incident_bert_keras_seq.keras")
    save_data(tok, texts, y, ids, mask)
    print(f"incident_bert_keras: trained in {time.perf_counter() - t0:.1f} s, vocab {vocab}, "
          f"validation accuracy {acc * 100:.1f}%")


if __name__ == "__main__":
    main()
