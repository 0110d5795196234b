"""Write a tiny google-research style BERT folder (vocab.txt, bert_config.json, TF1-format
``bert_model.ckpt.*`` with google's variable names) with the TF model tests' writers, its
vocabulary extended by the words of the package tests' data. Imports TensorFlow: run it in a
subprocess (``python -m tests.packages.checkpoint_writer FOLDER``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.packages import tiny_data
from tests.tf.conftest import (TINY_VOCAB, make_config_dict, make_google_tensors,
                               make_vocab_file, save_tf1_checkpoint)


def write_google_checkpoint_dir(folder: Path, seed: int = 0) -> Path:
    tokens = list(dict.fromkeys([*TINY_VOCAB, *tiny_data.WORDS]))
    config = make_config_dict(vocab_size=len(tokens))
    make_vocab_file(folder / "vocab.txt", tokens)
    (folder / "bert_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    save_tf1_checkpoint(folder / "bert_model.ckpt", make_google_tensors(config, seed=seed))
    return folder


if __name__ == "__main__":
    write_google_checkpoint_dir(Path(sys.argv[1]))
