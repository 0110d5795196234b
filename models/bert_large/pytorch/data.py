"""Pretraining batches from MLCommons-style TFRecord shards (no TensorFlow needed).

Each record is a ``tf.train.Example`` written by ``create_pretraining_data.py`` with
``input_ids``, ``input_mask``, ``segment_ids`` [seq_len], ``masked_lm_positions``,
``masked_lm_ids``, ``masked_lm_weights`` [max_predictions] and ``next_sentence_labels`` [1].
Files are split across ranks when there are at least as many files as ranks, else records are.
Packed rows (docs/packing.md) also carry ``positions`` [seq_len] and
``next_sentence_positions/labels/weights`` [sequences per pack]; they pass through as such.

Only regular files are shards (``find_files`` names a directory, FIFO, ... that matches the
pattern, without opening it), and every record's token ids are checked against the model's
vocabulary (``RecordValueError`` naming the file, the record, the feature and the value) before
they reach an embedding lookup.
"""

from __future__ import annotations

import glob
import os
import random
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from models.bert_large.pytorch.tfrecord_reader import iter_examples
from models.common.file_kinds import file_kind

__all__ = ["PHASE_GLOBS", "DatasetError", "RecordValueError", "find_files", "record_shape",
           "PretrainingBatches"]

# Dataset layout of seed 001: DATASET_DIR/seq_128/part-*_128 and DATASET_DIR/seq_512/part-*
PHASE_GLOBS = {1: "seq_128/part-*_128", 2: "seq_512/part-*"}

INT_FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids")
# The extra features of a packed row (docs/packing.md)
PACKED_FEATURES = ("positions", "next_sentence_positions", "next_sentence_labels",
                   "next_sentence_weights")


class DatasetError(ValueError):
    """A path matching the shard pattern that is not a TFRecord file (a directory, a FIFO...)."""


class RecordValueError(ValueError):
    """A record whose values the model cannot take (a token id beyond the vocabulary...)."""


def find_files(dataset_dir: str | Path, pattern: str) -> list[str]:
    """The shards matching ``dataset_dir/pattern``, sorted. ``FileNotFoundError`` when none
    match, ``DatasetError`` naming a match that is not a regular file (checked with ``stat``;
    nothing is opened, so a FIFO cannot block)."""
    files = sorted(glob.glob(str(Path(dataset_dir) / pattern)))
    if not files:
        raise FileNotFoundError(
            f"no TFRecord files match {Path(dataset_dir) / pattern}; set DATASET_DIR to the "
            "directory holding seq_128/part-*_128 and seq_512/part-* (see the README's Datasets)"
        )
    for path in files:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise DatasetError(f"{path} matches DATASET_DIR/{pattern} but is a broken symbolic "
                               "link; only regular TFRecord files may match it: remove or fix "
                               "the link") from None
        if not stat.S_ISREG(mode):
            raise DatasetError(f"{path} matches DATASET_DIR/{pattern} but is not a regular file "
                               f"(it is {file_kind(mode)}); only regular TFRecord files may "
                               "match it: move or rename it")
    return files


def record_shape(path: str | Path) -> tuple[int, int]:
    """(sequence length, max predictions per sequence) of the first record of ``path``."""
    for ex in iter_examples(path):
        if "input_ids" not in ex or "masked_lm_positions" not in ex:
            raise ValueError(f"{path}: records lack input_ids/masked_lm_positions; "
                             "not a BERT pretraining file")
        return len(ex["input_ids"]), len(ex["masked_lm_positions"])
    raise ValueError(f"{path} holds no records")


def _check_range(path: str, index: int, name: str, values: np.ndarray, limit: int | None,
                 what: str) -> None:
    """Every value of feature ``name`` lies in ``[0, limit)``, else ``RecordValueError``."""
    if limit is None or values.size == 0:
        return
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high < limit:
        return
    bad = low if low < 0 else high
    raise RecordValueError(
        f"{path}: record index {index} has {name} value {bad}, outside [0, {limit}) allowed by {what}; "
        "the data does not fit this model"
    )


def _example_arrays(ex: dict, seq_len: int, max_pred: int, path: str, index: int = 0,
                    vocab_size: int | None = None,
                    type_vocab_size: int | None = None) -> dict[str, np.ndarray]:
    out = {}
    for name in INT_FEATURES:
        if name not in ex:
            raise ValueError(f"{path}: record has no feature {name!r}; not a BERT pretraining file")
        out[name] = ex[name]
    if out["input_ids"].shape[0] != seq_len:
        raise ValueError(
            f"{path}: records have sequence length {out['input_ids'].shape[0]}, expected {seq_len}"
        )
    weights = ex.get("masked_lm_weights")
    if weights is None:
        weights = (out["masked_lm_ids"] != 0).astype(np.float32)
    out["masked_lm_weights"] = weights
    if "positions" in ex:  # a packed row (docs/packing.md): its sequences' own features
        for name in PACKED_FEATURES:
            if name not in ex:
                raise ValueError(f"{path}: packed record index {index} has no feature {name!r}; "
                                 "pack the data again with pack_pretraining_data_tfrec.py")
            out[name] = ex[name]
        out["next_sentence_weights"] = out["next_sentence_weights"].astype(np.float32)
        _check_range(path, index, "positions", out["positions"], seq_len,
                     f"the sequence length {seq_len}")
        _check_range(path, index, "next_sentence_positions", out["next_sentence_positions"],
                     seq_len, f"the sequence length {seq_len}")
    else:
        out["next_sentence_labels"] = ex.get("next_sentence_labels", np.zeros(1, np.int64))[:1]
    # pad/trim predictions to a fixed width so batches stack
    for name in ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights"):
        v = out[name][:max_pred]
        if v.shape[0] < max_pred:
            v = np.concatenate([v, np.zeros(max_pred - v.shape[0], v.dtype)])
        out[name] = v
    # ids the embeddings and the MLM loss would index with: an IndexError deep in torch otherwise
    vocab = f"the model's vocab_size={vocab_size} (bert_config.json)"
    _check_range(path, index, "input_ids", out["input_ids"], vocab_size, vocab)
    _check_range(path, index, "masked_lm_ids", out["masked_lm_ids"], vocab_size, vocab)
    _check_range(path, index, "segment_ids", out["segment_ids"], type_vocab_size,
                 f"the model's type_vocab_size={type_vocab_size} (bert_config.json)")
    _check_range(path, index, "masked_lm_positions", out["masked_lm_positions"], seq_len,
                 f"the sequence length {seq_len}")
    return out


class PretrainingBatches:
    """Endless iterator of batches (dict of tensors) for one rank, reshuffled every epoch."""

    def __init__(
        self,
        files: list[str],
        batch_size: int,
        seq_len: int,
        max_predictions: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 12345,
        shuffle_buffer: int = 1000,
        vocab_size: int | None = None,
        type_vocab_size: int | None = None,
    ):
        """``vocab_size`` / ``type_vocab_size`` (the model's; None: unchecked) bound the token
        and segment ids of every record: ``RecordValueError`` names the file and the value."""
        self.files = list(files)
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.max_predictions = max_predictions
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.vocab_size = vocab_size
        self.type_vocab_size = type_vocab_size

    def _examples(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        rng = random.Random(self.seed + epoch)
        files = list(self.files)
        rng.shuffle(files)  # same order on every rank (same seed)
        split_files = len(files) >= self.world_size
        if split_files:
            files = files[self.rank :: self.world_size]
        i = 0
        for path in files:
            for index, ex in enumerate(iter_examples(path)):
                if split_files or i % self.world_size == self.rank:
                    yield _example_arrays(ex, self.seq_len, self.max_predictions, path, index,
                                          self.vocab_size, self.type_vocab_size)
                i += 1

    def _shuffled(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        rng = random.Random(self.seed * 7919 + epoch * 31 + self.rank)
        buf: list[dict] = []
        for ex in self._examples(epoch):
            buf.append(ex)
            if len(buf) >= self.shuffle_buffer:
                j = rng.randrange(len(buf))
                buf[j], buf[-1] = buf[-1], buf[j]
                yield buf.pop()
        rng.shuffle(buf)
        yield from buf

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = 0
        batch: list[dict] = []  # carried over epochs, so a tiny dataset still fills batches
        while True:
            n = 0
            for ex in self._shuffled(epoch):
                n += 1
                batch.append(ex)
                if len(batch) == self.batch_size:
                    yield self._collate(batch)
                    batch = []
            if n == 0:
                raise ValueError(
                    f"rank {self.rank} got no records from {len(self.files)} file(s); "
                    "the dataset is empty or smaller than the number of processes"
                )
            epoch += 1  # the next epoch reshuffles

    @staticmethod
    def _collate(batch: list[dict]) -> dict[str, torch.Tensor]:
        stacked = {k: np.stack([ex[k] for ex in batch]) for k in batch[0]}
        out = {
            "input_ids": torch.from_numpy(stacked["input_ids"]),
            "token_type_ids": torch.from_numpy(stacked["segment_ids"]),
            "attention_mask": torch.from_numpy(stacked["input_mask"]),
            "masked_lm_positions": torch.from_numpy(stacked["masked_lm_positions"]),
            "masked_lm_ids": torch.from_numpy(stacked["masked_lm_ids"]),
            "masked_lm_weights": torch.from_numpy(stacked["masked_lm_weights"].astype(np.float32)),
            "next_sentence_labels": torch.from_numpy(stacked["next_sentence_labels"].reshape(-1)),
        }
        if "positions" in stacked:  # packed rows: [B, K] next-sentence slots
            out["next_sentence_labels"] = torch.from_numpy(stacked["next_sentence_labels"])
            for name in ("positions", "next_sentence_positions", "next_sentence_weights"):
                out[name] = torch.from_numpy(stacked[name])
        return out
