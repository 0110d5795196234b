"""Shared tiny fixtures for the TensorFlow BERT tests.

- ``TINY_VOCAB`` / ``write_vocab``: a few hundred WordPiece tokens as a google ``vocab.txt``;
- ``tiny_config_dict`` / ``bert_config_file``: a 2-layer, hidden-64 ``bert_config.json``;
- ``google_checkpoint_tensors`` / ``write_google_checkpoint``: a TF1-format checkpoint with
  google-research names (``bert/...``, ``cls/...``, Adam slots, ``global_step``);
- ``google_bert_dir``: a folder laid out like a downloaded google model
  (``vocab.txt``, ``bert_config.json``, ``bert_model.ckpt.*``).

TensorFlow is imported lazily (inside the writers), so collecting this file costs nothing.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = (
    "the a an of to and in is was he she it they we you that this for on with as at by from "
    "be have had not are or his her their but what all were when there can said who will "
    "one two three four five six seven eight nine ten hello world quick brown fox jumps over "
    "lazy dog paris france capital city river bank answer question token model train "
    "un want able runn ing play aff fable cafe naive resume school"
).split()
_PIECES = "##s ##ed ##ing ##ly ##er ##est ##able ##want ##a ##b ##c ##d ##e ##n ##o ##t".split()
_PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["¿", "«", "»", "—"]
_CJK = list("中国北京人大学日本")
TINY_VOCAB: list[str] = list(dict.fromkeys(  # unique, in order
    SPECIAL_TOKENS
    + _WORDS
    + _PIECES
    + _PUNCT
    + _CJK
    + list(string.ascii_lowercase)
    + [f"##{c}" for c in string.ascii_lowercase if f"##{c}" not in _PIECES]
    + list(string.digits)
    + ["Hello", "World", "Paris", "é", "ü", "café"]
))


def make_vocab_file(path, tokens=None) -> Path:
    """Write a google-style ``vocab.txt`` (one token per line, id = line number)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(tokens or TINY_VOCAB) + "\n", encoding="utf-8")
    return path


def make_config_dict(**overrides) -> dict:
    """A tiny google-research ``bert_config.json`` content (2 layers, hidden 64, 4 heads)."""
    config = {
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 128,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "type_vocab_size": 2,
        "vocab_size": len(TINY_VOCAB),
    }
    config.update(overrides)
    return config


def google_variable_shapes(config: dict, with_heads: bool = True) -> dict[str, tuple]:
    """Every variable of google-research's pretraining checkpoint, with its shape."""
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    shapes = {
        "bert/embeddings/word_embeddings": (v, h),
        "bert/embeddings/token_type_embeddings": (config["type_vocab_size"], h),
        "bert/embeddings/position_embeddings": (config["max_position_embeddings"], h),
        "bert/embeddings/LayerNorm/gamma": (h,),
        "bert/embeddings/LayerNorm/beta": (h,),
    }
    for n in range(config["num_hidden_layers"]):
        p = f"bert/encoder/layer_{n}"
        for part in ("query", "key", "value"):
            shapes[f"{p}/attention/self/{part}/kernel"] = (h, h)
            shapes[f"{p}/attention/self/{part}/bias"] = (h,)
        shapes.update({
            f"{p}/attention/output/dense/kernel": (h, h),
            f"{p}/attention/output/dense/bias": (h,),
            f"{p}/attention/output/LayerNorm/gamma": (h,),
            f"{p}/attention/output/LayerNorm/beta": (h,),
            f"{p}/intermediate/dense/kernel": (h, i),
            f"{p}/intermediate/dense/bias": (i,),
            f"{p}/output/dense/kernel": (i, h),
            f"{p}/output/dense/bias": (h,),
            f"{p}/output/LayerNorm/gamma": (h,),
            f"{p}/output/LayerNorm/beta": (h,),
        })
    shapes["bert/pooler/dense/kernel"] = (h, h)
    shapes["bert/pooler/dense/bias"] = (h,)
    if with_heads:
        shapes.update({
            "cls/predictions/transform/dense/kernel": (h, h),
            "cls/predictions/transform/dense/bias": (h,),
            "cls/predictions/transform/LayerNorm/gamma": (h,),
            "cls/predictions/transform/LayerNorm/beta": (h,),
            "cls/predictions/output_bias": (v,),
            "cls/seq_relationship/output_weights": (2, h),
            "cls/seq_relationship/output_bias": (2,),
        })
    return shapes


def make_google_tensors(config: dict, seed: int = 0, with_heads: bool = True,
                        with_optimizer_slots: bool = True) -> dict[str, np.ndarray]:
    """Random float32 weights for every google variable (+ Adam slots and global_step, as
    in checkpoints saved by google's run_pretraining.py)."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for name, shape in google_variable_shapes(config, with_heads).items():
        if name.endswith("gamma"):
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            value = 0.05 * rng.standard_normal(shape)
        tensors[name] = value.astype(np.float32)
        if with_optimizer_slots:
            tensors[f"{name}/adam_m"] = np.zeros(shape, np.float32)
            tensors[f"{name}/adam_v"] = np.zeros(shape, np.float32)
    tensors["global_step"] = np.array(1000, np.int64)
    return tensors


def save_tf1_checkpoint(prefix, tensors: dict[str, np.ndarray]) -> str:
    """Write ``tensors`` as a TF checkpoint bundle (``prefix.index`` + ``prefix.data-*``),
    the format google's ``tf.train.Saver`` produced. Imports TensorFlow."""
    from models.bert_large.tensorflow import checkpoint

    prefix = str(prefix)
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save_bundle(prefix, tensors)
    return prefix


@pytest.fixture
def fp32_policy():
    """The float32 Keras precision policy during the test, and again after it (a test may set
    bf16). Imports TensorFlow."""
    from models.bert_large.tensorflow import precision

    precision.set_precision("fp32")
    yield
    precision.set_precision("fp32")


@pytest.fixture
def tiny_config_dict() -> dict:
    return make_config_dict()


@pytest.fixture
def vocab_file(tmp_path) -> Path:
    return make_vocab_file(tmp_path / "vocab.txt")


@pytest.fixture
def write_vocab() -> Callable[..., Path]:
    """``write_vocab(path, tokens=None) -> path``."""
    return make_vocab_file


@pytest.fixture
def bert_config_file(tmp_path, tiny_config_dict) -> Path:
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(tiny_config_dict, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def google_checkpoint_tensors() -> Callable[..., dict]:
    """``google_checkpoint_tensors(config, seed=0, with_heads=True,
    with_optimizer_slots=True) -> {name: array}``."""
    return make_google_tensors


@pytest.fixture
def write_google_checkpoint() -> Callable[..., str]:
    """``write_google_checkpoint(prefix, tensors) -> prefix`` (TF1 bundle, google names)."""
    return save_tf1_checkpoint


@pytest.fixture
def google_bert_dir(tmp_path, tiny_config_dict) -> Path:
    """A folder like a downloaded google model: vocab.txt, bert_config.json, bert_model.ckpt.*"""
    folder = tmp_path / "uncased_L-2_H-64_A-4"
    make_vocab_file(folder / "vocab.txt")
    (folder / "bert_config.json").write_text(json.dumps(tiny_config_dict, indent=2))
    save_tf1_checkpoint(folder / "bert_model.ckpt", make_google_tensors(tiny_config_dict))
    return folder
