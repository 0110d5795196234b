"""Write tiny BERT SQuAD model folders for the inference tests (imports TensorFlow: run it in a
subprocess, ``python -m tests.inference.model_writer FOLDER [--pretrained-only]``).

FOLDER gets ``vocab.txt``, ``bert_config.json`` (2 layers, hidden 64,
max_position_embeddings 512 so Intel's default sequence length 384 fits) and a google/Intel
format TF1 checkpoint ``model.ckpt-3649`` with the SQuAD head (``cls/squad/output_weights``,
``cls/squad/output_bias``), as Intel's ``bert_large_checkpoints``; ``--pretrained-only``
writes ``bert_model.ckpt`` without the head instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tests.packages import tiny_data
from tests.tf.conftest import (TINY_VOCAB, make_config_dict, make_google_tensors,
                               make_vocab_file, save_tf1_checkpoint)


def write_squad_model_dir(folder: Path, with_head: bool = True, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tokens = list(dict.fromkeys([*TINY_VOCAB, *tiny_data.WORDS]))
    config = make_config_dict(vocab_size=len(tokens), max_position_embeddings=512)
    make_vocab_file(folder / "vocab.txt", tokens)
    (folder / "bert_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    tensors = make_google_tensors(config, seed=seed, with_optimizer_slots=False)
    if with_head:
        rng = np.random.default_rng(seed + 1)
        tensors["cls/squad/output_weights"] = (0.5 * rng.standard_normal(
            (2, config["hidden_size"]))).astype(np.float32)
        tensors["cls/squad/output_bias"] = np.zeros((2,), np.float32)
        save_tf1_checkpoint(folder / "model.ckpt-3649", tensors)
    else:
        save_tf1_checkpoint(folder / "bert_model.ckpt", tensors)
    return folder


if __name__ == "__main__":
    write_squad_model_dir(Path(sys.argv[1]), with_head="--pretrained-only" not in sys.argv[2:])
