"""Write a tiny google-research style BERT folder: vocab.txt, bert_config.json and a TF1-format
``bert_model.ckpt`` with google's variable names. Imports TensorFlow: run it in a subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

TINY_CONFIG = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 128,
    "max_position_embeddings": 512,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "type_vocab_size": 2,
}


def google_variable_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every variable of google-research's BertForPreTraining checkpoint, with its shape."""
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "bert/embeddings/word_embeddings": (v, h),
        "bert/embeddings/token_type_embeddings": (config["type_vocab_size"], h),
        "bert/embeddings/position_embeddings": (config["max_position_embeddings"], h),
        "bert/embeddings/LayerNorm/gamma": (h,),
        "bert/embeddings/LayerNorm/beta": (h,),
        "bert/pooler/dense/kernel": (h, h),
        "bert/pooler/dense/bias": (h,),
        "cls/predictions/transform/dense/kernel": (h, h),
        "cls/predictions/transform/dense/bias": (h,),
        "cls/predictions/transform/LayerNorm/gamma": (h,),
        "cls/predictions/transform/LayerNorm/beta": (h,),
        "cls/predictions/output_bias": (v,),
        "cls/seq_relationship/output_weights": (2, h),
        "cls/seq_relationship/output_bias": (2,),
    }
    for layer in range(config["num_hidden_layers"]):
        p = f"bert/encoder/layer_{layer}"
        for name in ("query", "key", "value"):
            shapes[f"{p}/attention/self/{name}/kernel"] = (h, h)
            shapes[f"{p}/attention/self/{name}/bias"] = (h,)
        shapes[f"{p}/attention/output/dense/kernel"] = (h, h)
        shapes[f"{p}/attention/output/dense/bias"] = (h,)
        shapes[f"{p}/attention/output/LayerNorm/gamma"] = (h,)
        shapes[f"{p}/attention/output/LayerNorm/beta"] = (h,)
        shapes[f"{p}/intermediate/dense/kernel"] = (h, i)
        shapes[f"{p}/intermediate/dense/bias"] = (i,)
        shapes[f"{p}/output/dense/kernel"] = (i, h)
        shapes[f"{p}/output/dense/bias"] = (h,)
        shapes[f"{p}/output/LayerNorm/gamma"] = (h,)
        shapes[f"{p}/output/LayerNorm/beta"] = (h,)
    return shapes


def write_google_checkpoint_dir(directory: Path, extra_words=(), seed: int = 0) -> Path:
    """vocab.txt (special tokens, ``extra_words``, letters), bert_config.json, bert_model.ckpt.*."""
    import tensorflow as tf

    directory.mkdir(parents=True, exist_ok=True)
    words = list(dict.fromkeys([*SPECIAL, *(w.lower() for w in extra_words),
                                *"abcdefghijklmnopqrstuvwxyz0123456789",
                                *("##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"),
                                *".,?!;:'\"()-"]))
    (directory / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    config = {**TINY_CONFIG, "vocab_size": len(words)}
    (directory / "bert_config.json").write_text(json.dumps(config, indent=2) + "\n")

    rng = np.random.default_rng(seed)
    names, tensors = [], []
    for name, shape in sorted(google_variable_shapes(config).items()):
        if name.endswith("gamma"):
            value = np.ones(shape, np.float32)
        elif name.endswith(("beta", "bias")):
            value = np.zeros(shape, np.float32)
        else:
            value = rng.normal(0.0, config["initializer_range"], shape).astype(np.float32)
        names.append(name)
        tensors.append(tf.constant(value))
    tf.raw_ops.SaveV2(prefix=str(directory / "bert_model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=tensors)
    # google's archives also carry the TF1 meta graph; the loader only needs index + data.
    return directory
