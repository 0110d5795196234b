"""Sentence-pair classification data (GLUE MRPC) and its conversion to BERT inputs.

MRPC in the GLUE layout: ``DATA_DIR/train.tsv``, ``dev.tsv`` (and ``test.tsv``), tab separated,
one header line, columns ``Quality  #1 ID  #2 ID  #1 String  #2 String``; Quality is the
label (1 = paraphrase). Each pair becomes ``[CLS] a [SEP] b [SEP]`` with the longer sentence
trimmed first until the pair fits ``max_seq_length``.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Sequence

import numpy as np

__all__ = ["InputExample", "MrpcProcessor", "PROCESSORS", "get_processor",
           "convert_examples_to_arrays", "truncate_pair"]


@dataclasses.dataclass(frozen=True)
class InputExample:
    guid: str
    text_a: str
    text_b: str | None
    label: str


class MrpcProcessor:
    """Microsoft Research Paraphrase Corpus, GLUE version."""

    name = "mrpc"
    labels = ("0", "1")
    columns = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")

    def train_examples(self, data_dir: str) -> list[InputExample]:
        return self._read(data_dir, "train")

    def dev_examples(self, data_dir: str) -> list[InputExample]:
        return self._read(data_dir, "dev")

    def test_examples(self, data_dir: str) -> list[InputExample]:
        return self._read(data_dir, "test", labelled=False)

    def _read(self, data_dir: str, split: str, labelled: bool = True) -> list[InputExample]:
        path = os.path.join(data_dir, f"{split}.tsv")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: --data_dir must be the GLUE MRPC folder "
                                    "holding train.tsv and dev.tsv")
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        if not rows:
            raise ValueError(f"{path} is empty")
        header, body = rows[0], rows[1:]
        if len(header) < 5:
            raise ValueError(f"{path}: expected the 5 MRPC columns {list(self.columns)}, "
                             f"got header {header}")
        examples = []
        for line_no, row in enumerate(body, start=2):
            if not row:
                continue
            if len(row) < 5:
                raise ValueError(f"{path}:{line_no}: expected 5 tab-separated columns, "
                                 f"got {len(row)}")
            label = row[0].strip() if labelled else self.labels[0]
            if label not in self.labels:
                raise ValueError(f"{path}:{line_no}: label {label!r} is not one of "
                                 f"{list(self.labels)}")
            examples.append(InputExample(guid=f"{split}-{line_no - 1}", text_a=row[3],
                                         text_b=row[4], label=label))
        return examples


PROCESSORS = {"mrpc": MrpcProcessor}


def get_processor(task_name: str):
    try:
        return PROCESSORS[task_name.lower()]()
    except KeyError:
        raise ValueError(f"--task_name={task_name} is not supported; choose one of "
                         f"{sorted(p.upper() for p in PROCESSORS)}") from None


def truncate_pair(tokens_a: list[str], tokens_b: list[str], max_length: int) -> None:
    """Drop tokens from the end of the longer list, in place, until both fit together."""
    while len(tokens_a) + len(tokens_b) > max_length:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        longer.pop()


def convert_examples_to_arrays(examples: Sequence[InputExample], labels: Sequence[str],
                               max_seq_length: int, tokenizer) -> dict[str, np.ndarray]:
    """Token ids, mask, segment ids and label ids as int32 arrays [N, S] / [N]."""
    label_map = {label: i for i, label in enumerate(labels)}
    n = len(examples)
    input_ids = np.zeros((n, max_seq_length), np.int32)
    input_mask = np.zeros((n, max_seq_length), np.int32)
    segment_ids = np.zeros((n, max_seq_length), np.int32)
    label_ids = np.zeros((n,), np.int32)
    for i, ex in enumerate(examples):
        tokens_a = tokenizer.tokenize(ex.text_a)
        tokens_b = tokenizer.tokenize(ex.text_b) if ex.text_b else []
        if tokens_b:
            truncate_pair(tokens_a, tokens_b, max_seq_length - 3)
        else:
            tokens_a = tokens_a[:max_seq_length - 2]
        tokens = ["[CLS]", *tokens_a, "[SEP]"]
        segments = [0] * len(tokens)
        if tokens_b:
            tokens += [*tokens_b, "[SEP]"]
            segments += [1] * (len(tokens_b) + 1)
        ids = tokenizer.convert_tokens_to_ids(tokens)
        input_ids[i, :len(ids)] = ids
        input_mask[i, :len(ids)] = 1
        segment_ids[i, :len(ids)] = segments
        label_ids[i] = label_map[ex.label]
    return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids,
            "label_ids": label_ids}
