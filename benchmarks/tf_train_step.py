"""Speed of one TensorFlow BERT pretraining train step (forward + backward + AdamW update),
bf16 against fp32, against the bf16/fp32 matmul kernel ceiling of this CPU, and against the
same step built on keras_hub's BERT (the peer a TF user would otherwise pick).

    python benchmarks/tf_train_step.py                       # shapes 4x256 and 2x1024
    python benchmarks/tf_train_step.py --shapes 2x1024 --xla off --steps 5 --json
    python benchmarks/tf_train_step.py --layers 1 --hidden 64  # one custom shape

Shapes (seq 128, BERT's 30522-token vocabulary, 20 masked positions, AdamW): ``4x256``
(4 layers, hidden 256, 4 heads, batch 8) and ``2x1024`` (2 layers of BERT-Large: hidden
1024, 16 heads, batch 4). ``--layers/--hidden/--heads/--batch_size`` give one custom shape
instead (the rest from 4x256).

Timing: steps of all columns (ours and keras_hub, fp32 and bf16) alternate, so a noisy shared
machine slows all alike; the median step is reported as examples per CPU-second
(``time.process_time``, what a step costs even when neighbours share the cores) and per wall
second. Ratios use CPU time. One thread by default (``--threads``, else NUM_INTRA_THREADS),
so CPU time is an exact cost. ``--xla both`` (default) times every step twice, as a plain
``tf.function`` and XLA-compiled (``jit_compile=True``, columns ``*_xla``).

Kernel ceiling: one-thread bf16 and fp32 GFLOP per CPU-second of the step's own matmuls
(QKV, attention output, intermediate, output, QK^T, probs x V, MLM decoder), measured in the
same process, and their FLOP-weighted mean: the bf16/fp32 step ratio cannot beat the kernel
ratio by much, since matmuls are most of the work. The step's model FLOPs (6 x
matmul parameters x tokens, plus attention and the MLM/NSP heads at their positions) per
CPU-second are printed against that ceiling.

keras_hub peer: ``keras_hub.models.BertBackbone`` + ``keras_hub.layers.MaskedLMHead`` (tied to
the token embedding) + a 2-way NSP dense on the pooled output, same config, same loss, same
AdamW, same dtype policy, random init. Skipped with a printed reason when keras_hub does not
import.
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

SHAPES = {  # name -> layers, hidden, heads, batch size
    "4x256": {"layers": 4, "hidden": 256, "heads": 4, "batch_size": 8},
    "2x1024": {"layers": 2, "hidden": 1024, "heads": 16, "batch_size": 4},
}
SHAPE_KEYS = ("layers", "hidden", "heads", "batch_size")
XLA_MODES = {"off": "tf.function", "on": "XLA", "both": "tf.function and XLA"}
TARGETS = {"bf16_over_fp32": {"2x1024": 1.6, "4x256": 1.3}, "ours_over_keras_hub": 1.2}


def pretraining_loss(outputs, features):
    return modeling.pretraining_loss(outputs, features["masked_lm_ids"],
                                     features["masked_lm_weights"],
                                     features["next_sentence_labels"])


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default=",".join(SHAPES),
                   help=f"comma-separated, of {', '.join(SHAPES)} (default: all)")
    for key in SHAPE_KEYS:
        p.add_argument(f"--{key}", type=int, default=None,
                       help="one custom shape instead of --shapes (rest from 4x256)")
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--seq_length", type=int, default=128)
    p.add_argument("--masked_positions", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (incl. tracing)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--threads", type=int, default=int(os.environ.get("NUM_INTRA_THREADS") or 1),
                   help="TF intra-op threads (default NUM_INTRA_THREADS, else 1)")
    p.add_argument("--xla", choices=("off", "on", "both"), default="both",
                   help="train steps as plain tf.function, XLA-compiled, or both (columns *_xla)")
    p.add_argument("--no_keras_hub", action="store_true", help="leave out the keras_hub column")
    p.add_argument("--no_kernels", action="store_true", help="leave out the kernel ceiling")
    p.add_argument("--json", action="store_true", help="also print one JSON line")
    args = p.parse_args(argv)
    if any(getattr(args, k) is not None for k in SHAPE_KEYS):
        shape = {k: getattr(args, k) if getattr(args, k) is not None else SHAPES["4x256"][k]
                 for k in SHAPE_KEYS}
        args.shape_list = [("x".join(map(str, (shape["layers"], shape["hidden"]))), shape)]
    else:
        names = [s.strip() for s in args.shapes.split(",") if s.strip()]
        unknown = [s for s in names if s not in SHAPES]
        if unknown or not names:
            p.error(f"--shapes: unknown {unknown or names}; use {', '.join(SHAPES)}")
        args.shape_list = [(name, SHAPES[name]) for name in names]
    args.precision_list = [x.strip() for x in args.precisions.split(",") if x.strip()]
    return args


def bert_config(shape: dict, args) -> modeling.BertConfig:
    return modeling.BertConfig(
        vocab_size=args.vocab, hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"], intermediate_size=4 * shape["hidden"],
        max_position_embeddings=max(512, args.seq_length), type_vocab_size=2,
    )


def make_batch(batch_size: int, args, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    b, s, p = batch_size, args.seq_length, args.masked_positions
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


def _optimizer():
    return keras.optimizers.AdamW(1e-4, weight_decay=0.01)


def build_ours(shape: dict, args, precision: str, jit_compile: bool = False):
    """Our model and the scripts' train step (``finetune_loop.make_train_step``)."""
    modeling.set_precision(precision)
    try:
        keras.utils.set_random_seed(0)
        model = modeling.BertForPreTraining(bert_config(shape, args))
        return loop.make_train_step(model, pretraining_loss, _optimizer(),
                                    jit_compile=jit_compile)
    finally:
        modeling.set_precision("fp32")


def keras_hub_or_reason():
    """(keras_hub module, None) or (None, why it is left out)."""
    try:
        import keras_hub  # noqa: PLC0415
    except Exception as e:  # noqa: BLE001  (absent, or built for another Keras)
        return None, f"keras_hub does not import ({type(e).__name__}: {e})"
    return keras_hub, None


class KerasHubPretraining(keras.Model):
    """keras_hub's BERT with MLM (tied decoder at the masked positions) and NSP heads; the
    outputs are named as ours, so the same loss function applies."""

    def __init__(self, keras_hub, config: modeling.BertConfig, **kwargs):
        super().__init__(**kwargs)
        init = keras.initializers.TruncatedNormal(stddev=config.initializer_range)
        self.backbone = keras_hub.models.BertBackbone(
            vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads, hidden_dim=config.hidden_size,
            intermediate_dim=config.intermediate_size, dropout=config.hidden_dropout_prob,
            max_sequence_length=config.max_position_embeddings,
            num_segments=config.type_vocab_size)
        self.mlm = keras_hub.layers.MaskedLMHead(
            vocabulary_size=config.vocab_size,
            token_embedding=self.backbone.token_embedding,
            intermediate_activation="gelu", kernel_initializer=init)
        self.nsp = keras.layers.Dense(2, kernel_initializer=init)

    def call(self, features, training=None):
        out = self.backbone({"token_ids": features["input_ids"],
                             "segment_ids": features["segment_ids"],
                             "padding_mask": features["input_mask"]}, training=training)
        mlm = self.mlm(out["sequence_output"], mask_positions=features["masked_lm_positions"])
        return {"masked_lm_logits": tf.cast(mlm, tf.float32),
                "next_sentence_logits": tf.cast(self.nsp(out["pooled_output"]), tf.float32)}


def build_keras_hub(keras_hub, shape: dict, args, precision: str, jit_compile: bool = False):
    """The same train step function around keras_hub's BERT."""
    modeling.set_precision(precision)
    try:
        keras.utils.set_random_seed(0)
        model = KerasHubPretraining(keras_hub, bert_config(shape, args))
        return loop.make_train_step(model, pretraining_loss, _optimizer(),
                                    jit_compile=jit_compile)
    finally:
        modeling.set_precision("fp32")


# ---------------------------------------------------------------------------------------------
# FLOPs and the kernel ceiling


def step_flops(shape: dict, args) -> float:
    """Model FLOPs of one training step: 6 x (matmul parameters x the tokens they see), plus
    the attention matmuls (QK^T, probs x V) x 3 (forward + two backward)."""
    h, layers, b = shape["hidden"], shape["layers"], shape["batch_size"]
    s, p, v = args.seq_length, args.masked_positions, args.vocab
    tokens = b * s
    encoder = layers * 12 * h * h * tokens            # QKV 3H^2, out H^2, FFN 8H^2
    heads = (h * h + h * v) * b * p + (h * h + 2 * h) * b  # MLM transform+decoder, pooler+NSP
    attention = layers * 4 * b * s * s * h             # QK^T + probs x V, forward
    return 6.0 * (encoder + heads) + 3.0 * attention


def kernel_cases(shape: dict, args) -> list[tuple[str, tuple, tuple, dict, float]]:
    """(label, a shape, b shape, matmul kwargs, forward FLOPs per step) of the step's matmuls."""
    h, layers, b, n = shape["hidden"], shape["layers"], shape["batch_size"], shape["heads"]
    s, p, v, d = args.seq_length, args.masked_positions, args.vocab, h // shape["heads"]
    t = b * s
    return [
        (f"qkv [{t}x{h}]x[{h}x{3 * h}]", (t, h), (h, 3 * h), {}, layers * 2 * t * h * 3 * h),
        (f"attn out [{t}x{h}]x[{h}x{h}]", (t, h), (h, h), {}, layers * 2 * t * h * h),
        (f"intermediate [{t}x{h}]x[{h}x{4 * h}]", (t, h), (h, 4 * h), {},
         layers * 2 * t * h * 4 * h),
        (f"output [{t}x{4 * h}]x[{4 * h}x{h}]", (t, 4 * h), (4 * h, h), {},
         layers * 2 * t * 4 * h * h),
        (f"QK^T [{b}x{n}x{s}x{d}]x[..x{s}x{d}]^T", (b, n, s, d), (b, n, s, d),
         {"transpose_b": True}, layers * 2 * b * n * s * s * d),
        (f"probsV [{b}x{n}x{s}x{s}]x[..x{s}x{d}]", (b, n, s, s), (b, n, s, d), {},
         layers * 2 * b * n * s * s * d),
        (f"mlm decoder [{b * p}x{h}]x[{v}x{h}]^T", (b * p, h), (v, h), {"transpose_b": True},
         2 * b * p * h * v),
    ]


def _rate(fn, flops: float, min_cpu_s: float) -> float:
    """GFLOP per CPU-second of ``fn`` (run until ``min_cpu_s`` of CPU time, after one warmup)."""
    fn()  # eager CPU execution is synchronous: no .numpy() copy needed
    start, n = time.process_time(), 0
    while True:
        fn()
        n += 1
        elapsed = time.process_time() - start
        if elapsed >= min_cpu_s:
            return flops * n / elapsed / 1e9


def kernel_ceiling(shape: dict, args, precisions, min_cpu_s: float = 0.3) -> dict:
    """Per matmul of the step and FLOP-weighted over them: GFLOP/CPU-s for each precision
    (bf16 = bfloat16 inputs and outputs, what the mixed policy runs)."""
    rng = np.random.default_rng(0)
    dtypes = {"fp32": tf.float32, "bf16": tf.bfloat16}
    rows, seconds = [], {pr: 0.0 for pr in precisions}
    for label, a_shape, b_shape, kwargs, flops in kernel_cases(shape, args):
        a0 = rng.standard_normal(a_shape).astype(np.float32)
        b0 = rng.standard_normal(b_shape).astype(np.float32)
        one = 2.0 * np.prod(a_shape[:-1]) * a_shape[-1] * (
            b_shape[-2] if kwargs.get("transpose_b") else b_shape[-1])
        row = {"kernel": label, "gflop_per_step": flops / 1e9}
        for pr in precisions:
            a, b = tf.constant(a0, dtypes[pr]), tf.constant(b0, dtypes[pr])
            fn = tf.function(lambda a=a, b=b: tf.matmul(a, b, **kwargs))
            row[pr] = _rate(fn, one, min_cpu_s)
            seconds[pr] += flops / (row[pr] * 1e9)
        rows.append(row)
    total = sum(r["gflop_per_step"] for r in rows)
    weighted = {pr: total / seconds[pr] for pr in precisions}
    return {"kernels": rows, "weighted_gflop_per_cpu_s": weighted}


# ---------------------------------------------------------------------------------------------
# Timing


def time_steps(steps: dict, features: dict, warmup: int, n: int) -> dict:
    """Alternate timed steps over ``steps`` ({name: step}); median (wall, CPU) seconds each."""
    losses = {}
    for name, step in steps.items():
        for _ in range(warmup):
            losses[name] = float(step(features).numpy())
    times = {name: [] for name in steps}
    for _ in range(n):
        for name, step in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            losses[name] = float(step(features).numpy())
            times[name].append((time.perf_counter() - w0, time.process_time() - c0))
    out = {}
    for name, ts in times.items():
        out[name] = {"wall_s": float(np.median([t[0] for t in ts])),
                     "cpu_s": float(np.median([t[1] for t in ts])), "final_loss": losses[name]}
    return out


def run_shape(name: str, shape: dict, args, keras_hub) -> dict:
    precisions = args.precision_list
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.xla]
    steps = {}
    for xla in modes:
        tag = "_xla" if xla else ""
        for pr in precisions:
            steps[f"ours{tag}_{pr}"] = build_ours(shape, args, pr, jit_compile=xla)
            if keras_hub is not None:
                steps[f"keras_hub{tag}_{pr}"] = build_keras_hub(keras_hub, shape, args, pr,
                                                                jit_compile=xla)
    timed = time_steps(steps, make_batch(shape["batch_size"], args), args.warmup, args.steps)
    flops = step_flops(shape, args)
    b = shape["batch_size"]
    result = {"shape": name, **shape, "gflop_per_step": flops / 1e9, "columns": {}}
    for col, t in timed.items():
        result["columns"][col] = {
            "examples_per_cpu_s": b / t["cpu_s"], "examples_per_sec": b / t["wall_s"],
            "step_cpu_ms": 1000 * t["cpu_s"], "step_ms": 1000 * t["wall_s"],
            "gflop_per_cpu_s": flops / t["cpu_s"] / 1e9, "final_loss": t["final_loss"]}
    cols = result["columns"]
    for tag in ("", "_xla"):  # ratios from CPU time; *_wall from wall-clock
        if f"ours{tag}_fp32" in cols and f"ours{tag}_bf16" in cols:
            a, b = cols[f"ours{tag}_fp32"], cols[f"ours{tag}_bf16"]
            result[f"bf16_over_fp32{tag}"] = b["examples_per_cpu_s"] / a["examples_per_cpu_s"]
            result[f"bf16_over_fp32{tag}_wall"] = b["examples_per_sec"] / a["examples_per_sec"]
        for pr in precisions:
            if f"keras_hub{tag}_{pr}" in cols:
                result[f"ours_over_keras_hub{tag}_{pr}"] = (
                    cols[f"ours{tag}_{pr}"]["examples_per_cpu_s"]
                    / cols[f"keras_hub{tag}_{pr}"]["examples_per_cpu_s"])
    if not args.no_kernels:
        ceiling = kernel_ceiling(shape, args, precisions)
        result["kernel_ceiling"] = ceiling
        for col, c in cols.items():
            if col.startswith("ours"):
                precision = col.rsplit("_", 1)[1]
                c["share_of_kernel_ceiling"] = (
                    c["gflop_per_cpu_s"] / ceiling["weighted_gflop_per_cpu_s"][precision])
        w = ceiling["weighted_gflop_per_cpu_s"]
        if "fp32" in w and "bf16" in w:
            result["kernel_bf16_over_fp32"] = w["bf16"] / w["fp32"]
    return result


def print_shape(r: dict, args) -> None:
    print(f"\n== {r['shape']}: {r['layers']} layers, hidden {r['hidden']}, {r['heads']} heads, "
          f"batch {r['batch_size']}, seq {args.seq_length}, vocab {args.vocab}; "
          f"{r['gflop_per_step']:.1f} model GFLOP/step")
    print(f"{'column':<18} {'ex/cpu-s':>9} {'ex/s':>8} {'cpu ms/step':>12} {'ms/step':>9} "
          f"{'GFLOP/cpu-s':>12} {'loss':>7}")
    for col, c in r["columns"].items():
        print(f"{col:<18} {c['examples_per_cpu_s']:>9.2f} {c['examples_per_sec']:>8.2f} "
              f"{c['step_cpu_ms']:>12.1f} {c['step_ms']:>9.1f} {c['gflop_per_cpu_s']:>12.1f} "
              f"{c['final_loss']:>7.3f}")
    if "kernel_ceiling" in r:
        k = r["kernel_ceiling"]
        prs = list(k["weighted_gflop_per_cpu_s"])
        print(f"kernel ceiling, one thread, GFLOP/cpu-s {'':<28}"
              + "".join(f"{pr:>8}" for pr in prs))
        for row in k["kernels"]:
            print(f"  {row['kernel']:<36} {row['gflop_per_step']:>6.2f} GFLOP/step"
                  + "".join(f"{row[pr]:>8.1f}" for pr in prs))
        print("  FLOP-weighted kernel ceiling: "
              + ", ".join(f"{pr} {v:.1f} GFLOP/cpu-s"
                          for pr, v in k["weighted_gflop_per_cpu_s"].items())
              + (f"; kernel bf16/fp32 {r['kernel_bf16_over_fp32']:.2f}x"
                 if "kernel_bf16_over_fp32" in r else ""))
        for col, c in r["columns"].items():
            if "share_of_kernel_ceiling" in c:
                print(f"  {col} step: {c['gflop_per_cpu_s']:.1f} GFLOP/cpu-s = "
                      f"{100 * c['share_of_kernel_ceiling']:.0f}% of its precision's kernel "
                      "ceiling")
    target = TARGETS["bf16_over_fp32"].get(r["shape"])
    for tag, label in (("", "tf.function"), ("_xla", "XLA")):
        if f"bf16_over_fp32{tag}" in r:
            print(f"bf16/fp32 speed ratio, {label} (CPU time): {r[f'bf16_over_fp32{tag}']:.2f}x "
                  f"(wall {r[f'bf16_over_fp32{tag}_wall']:.2f}x)"
                  + (f"; kernel ceiling {r['kernel_bf16_over_fp32']:.2f}x"
                     if "kernel_bf16_over_fp32" in r else "")
                  + (f"; target >= {target}" if target else ""))
        for pr in args.precision_list:
            if f"ours_over_keras_hub{tag}_{pr}" in r:
                print(f"ours/keras_hub {pr}, {label} (CPU time): "
                      f"{r[f'ours_over_keras_hub{tag}_{pr}']:.2f}x"
                      + (f" (target >= {TARGETS['ours_over_keras_hub']})" if pr == "bf16" else ""))


def main(argv=None) -> int:
    args = _parse(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(
        int(os.environ.get("NUM_INTER_THREADS") or 1))
    keras_hub, reason = (None, "--no_keras_hub") if args.no_keras_hub else keras_hub_or_reason()
    print(f"TF {tf.__version__}, Keras {keras.__version__}, keras_hub "
          f"{getattr(keras_hub, '__version__', '-')}; {args.threads} intra-op thread(s); "
          f"oneDNN opts {os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')}; "
          f"train steps: {XLA_MODES[args.xla]}; "
          f"{args.warmup} warmup + {args.steps} timed steps (median)")
    if keras_hub is None:
        print(f"keras_hub column skipped: {reason}")
    summary = {"threads": args.threads, "xla": args.xla,
               "keras_hub": getattr(keras_hub, "__version__", None), "shapes": {}}
    if keras_hub is None:
        summary["keras_hub_skipped"] = reason
    for name, shape in args.shape_list:
        r = run_shape(name, shape, args, keras_hub)
        summary["shapes"][name] = r
        print_shape(r, args)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
