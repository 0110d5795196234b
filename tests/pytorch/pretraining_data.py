"""Tiny BERT pretraining datasets for tests: a protobuf/TFRecord *writer* in plain Python.

TFRecord files written here follow the same framing and ``tf.train.Example`` encoding as
``tf.io.TFRecordWriter`` (packed int64/float lists); the reader is tested against TF itself
in test_tfrecord_reader.py, so these files exercise the same code path.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from models.bert_large.pytorch.tfrecord_reader import masked_crc32c

VOCAB = 200
TINY_CONFIG = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
}


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def encode_example(features: dict[str, list]) -> bytes:
    entries = b""
    for name, values in features.items():
        if values and isinstance(values[0], float):
            inner = _ld(1, struct.pack(f"<{len(values)}f", *values))
            feature = _ld(2, inner)
        else:
            inner = _ld(1, b"".join(_varint(int(v)) for v in values))
            feature = _ld(3, inner)
        entries += _ld(1, _ld(1, name.encode()) + _ld(2, feature))
    return _ld(1, entries)


def write_tfrecord(path: Path, records: list[bytes]) -> None:
    with open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc32c(length)))
            f.write(data + struct.pack("<I", masked_crc32c(data)))


def make_examples(n: int, seq_len: int, max_pred: int, seed: int = 0,
                  lengths: tuple[int, int] | None = None) -> list[dict[str, list]]:
    """Zipf-distributed tokens, so a few optimizer steps visibly lower the MLM loss. Sequence
    lengths are drawn from ``lengths`` (low, high), default half to all of ``seq_len``."""
    rng = np.random.default_rng(seed)
    low, high = lengths or (seq_len // 2, seq_len)
    probs = 1.0 / np.arange(1, VOCAB - 4 + 1)
    probs /= probs.sum()
    out = []
    for _ in range(n):
        length = int(rng.integers(low, high + 1))
        ids = [1] + list(rng.choice(np.arange(4, VOCAB), size=length - 2, p=probs)) + [2]
        mask = [1] * length + [0] * (seq_len - length)
        seg_split = int(rng.integers(1, length))
        segs = [0] * seg_split + [1] * (length - seg_split) + [0] * (seq_len - length)
        n_pred = int(min(max_pred, max(1, length // 7)))
        positions = sorted(rng.choice(np.arange(1, length - 1), size=n_pred, replace=False).tolist())
        labels = [int(ids[p]) for p in positions]
        for p in positions:
            ids[p] = 3  # [MASK]
        ids = [int(x) for x in ids] + [0] * (seq_len - length)
        pad = max_pred - n_pred
        out.append({
            "input_ids": ids,
            "input_mask": mask,
            "segment_ids": segs,
            "masked_lm_positions": positions + [0] * pad,
            "masked_lm_ids": labels + [0] * pad,
            "masked_lm_weights": [1.0] * n_pred + [0.0] * pad,
            "next_sentence_labels": [int(rng.integers(0, 2))],
        })
    return out


def make_dataset(root: Path, n128: int = 64, n512: int = 32, files: int = 2, seq512: int = 128,
                 lengths128: tuple[int, int] | None = None) -> Path:
    """DATASET_DIR with seq_128/part-*_128 and seq_512/part-* (the "512" files use ``seq512``
    tokens so tests stay small) plus a bert_config.json beside it. Returns DATASET_DIR."""
    dataset = root / "dataset"
    (dataset / "seq_128").mkdir(parents=True, exist_ok=True)
    (dataset / "seq_512").mkdir(parents=True, exist_ok=True)
    for i in range(files):
        ex = make_examples(n128 // files, 128, 20, seed=i, lengths=lengths128)
        write_tfrecord(dataset / "seq_128" / f"part-{i:05d}-of-{files:05d}_128",
                       [encode_example(e) for e in ex])
        ex = make_examples(n512 // files, seq512, 20, seed=100 + i)
        write_tfrecord(dataset / "seq_512" / f"part-{i:05d}-of-{files:05d}",
                       [encode_example(e) for e in ex])
    (root / "bert_config.json").write_text(json.dumps(TINY_CONFIG, indent=2))
    return dataset
