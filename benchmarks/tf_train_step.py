"""Examples/sec of one TensorFlow BERT training step (forward + backward + AdamW update),
fp32 against bf16, on a fixed small config. Warmup steps (tracing included) are excluded.

    python benchmarks/tf_train_step.py                 # 4 layers, hidden 256, seq 128, batch 8
    python benchmarks/tf_train_step.py --steps 30 --json

Prints examples/sec for each precision and the bf16/fp32 ratio (fp32 is the reference,
measured in the same run). Thread pools follow NUM_INTRA_THREADS / NUM_INTER_THREADS when set
(the launcher exports them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from models.bert_large.tensorflow import finetune_loop as loop  # noqa: E402
from models.bert_large.tensorflow import modeling  # noqa: E402


def pretraining_loss(outputs, features):
    return modeling.pretraining_loss(outputs, features["masked_lm_ids"],
                                     features["masked_lm_weights"],
                                     features["next_sentence_labels"])


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--seq_length", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--masked_positions", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (incl. tracing)")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--json", action="store_true", help="also print one JSON line")
    return p.parse_args(argv)


def _batch(args, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    b, s, p = args.batch_size, args.seq_length, args.masked_positions
    return {
        "input_ids": tf.constant(rng.integers(5, args.vocab, (b, s)), tf.int32),
        "input_mask": tf.ones((b, s), tf.int32),
        "segment_ids": tf.constant((np.arange(s)[None] >= s // 2).repeat(b, 0), tf.int32),
        "masked_lm_positions": tf.constant(
            np.stack([rng.choice(s, p, replace=False) for _ in range(b)]), tf.int32),
        "masked_lm_ids": tf.constant(rng.integers(5, args.vocab, (b, p)), tf.int32),
        "masked_lm_weights": tf.ones((b, p), tf.float32),
        "next_sentence_labels": tf.constant(rng.integers(0, 2, (b,)), tf.int32),
    }


def measure(args, precision: str) -> dict:
    modeling.set_precision(precision)
    config = modeling.BertConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
        max_position_embeddings=max(512, args.seq_length), type_vocab_size=2,
    )
    keras.utils.set_random_seed(0)
    model = modeling.BertForPreTraining(config)
    optimizer = keras.optimizers.AdamW(1e-4, weight_decay=0.01)
    step = loop.make_train_step(model, pretraining_loss, optimizer)  # the scripts' train step

    features = _batch(args)
    for _ in range(args.warmup):
        step(features).numpy()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step(features)
    loss = float(loss.numpy())
    elapsed = time.perf_counter() - start
    modeling.set_precision("fp32")
    return {"precision": precision, "examples_per_sec": args.steps * args.batch_size / elapsed,
            "step_ms": 1000 * elapsed / args.steps, "final_loss": loss}


def main(argv=None) -> int:
    args = _parse(argv)
    intra, inter = os.environ.get("NUM_INTRA_THREADS"), os.environ.get("NUM_INTER_THREADS")
    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(int(intra))
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(int(inter))
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    print(f"TF {tf.__version__}, Keras {keras.__version__}; BERT {args.layers} layers, hidden "
          f"{args.hidden}, {args.heads} heads, vocab {args.vocab}, seq {args.seq_length}, "
          f"batch {args.batch_size}; {args.warmup} warmup + {args.steps} timed steps")
    results = {}
    for precision in precisions:
        r = measure(args, precision)
        results[precision] = r
        print(f"{precision:>5}: {r['examples_per_sec']:8.2f} examples/sec "
              f"({r['step_ms']:.1f} ms/step, loss {r['final_loss']:.3f})")
    summary = {"results": results}
    if "fp32" in results and "bf16" in results:
        ratio = results["bf16"]["examples_per_sec"] / results["fp32"]["examples_per_sec"]
        summary["bf16_over_fp32"] = ratio
        print(f"bf16/fp32 speed ratio: {ratio:.2f}x")
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
