"""SQuAD inference speed: our TensorFlow serving path in bf16 and fp32 against Hugging Face
``BertForQuestionAnswering`` (PyTorch) with the same weights, at BERT-Large layer shape.

    python benchmarks/squad_inference.py [--layers 3 --seq 384 --batch 8 --steps 5 --json]

Random weights (hidden 1024, 16 heads, intermediate 4096, vocab 30522, ``--layers`` layers)
are written once as a google-format TF1 checkpoint (with the SQuAD head) and as an .npz; each
side runs in its own process (TensorFlow and PyTorch do not share one) on the same inputs
and threads: ours loads the checkpoint through ``inference.build_model`` and times the
compiled serving function (``inference.serving_function``), HF loads the .npz into
``BertForQuestionAnswering`` (fp32, and bf16 under ``torch.autocast``). Warm-up batches are not
timed. Printed: examples/s and latency p50 per run, bf16/fp32 and ours/HF ratios, and the
largest fp32 logit difference between the two (targets: bf16 >= 1.6x fp32; ours >= 1.0x HF).

``--worker ours|hf`` is the per-process part (also used by tests/inference to compare logits).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def large_config(layers: int, seq: int) -> dict:
    return {"vocab_size": 30522, "hidden_size": 1024, "num_hidden_layers": layers,
            "num_attention_heads": 16, "intermediate_size": 4096, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": max(512, seq), "type_vocab_size": 2,
            "initializer_range": 0.02}


def google_tensors(config: dict, seed: int = 0) -> dict:
    """Random google-named weights of BertForQuestionAnswering (numpy, float32)."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    h, i = config["hidden_size"], config["intermediate_size"]
    shapes = {"bert/embeddings/word_embeddings": (config["vocab_size"], h),
              "bert/embeddings/token_type_embeddings": (config["type_vocab_size"], h),
              "bert/embeddings/position_embeddings": (config["max_position_embeddings"], h),
              "bert/embeddings/LayerNorm/gamma": (h,), "bert/embeddings/LayerNorm/beta": (h,),
              "cls/squad/output_weights": (2, h), "cls/squad/output_bias": (2,)}
    for n in range(config["num_hidden_layers"]):
        p = f"bert/encoder/layer_{n}"
        for part in ("query", "key", "value"):
            shapes[f"{p}/attention/self/{part}/kernel"] = (h, h)
            shapes[f"{p}/attention/self/{part}/bias"] = (h,)
        shapes.update({f"{p}/attention/output/dense/kernel": (h, h),
                       f"{p}/attention/output/dense/bias": (h,),
                       f"{p}/attention/output/LayerNorm/gamma": (h,),
                       f"{p}/attention/output/LayerNorm/beta": (h,),
                       f"{p}/intermediate/dense/kernel": (h, i),
                       f"{p}/intermediate/dense/bias": (i,),
                       f"{p}/output/dense/kernel": (i, h), f"{p}/output/dense/bias": (h,),
                       f"{p}/output/LayerNorm/gamma": (h,), f"{p}/output/LayerNorm/beta": (h,)})
    out = {}
    for name, shape in shapes.items():
        base = 1.0 if name.endswith("gamma") else 0.0
        out[name] = (base + 0.02 * rng.standard_normal(shape)).astype(np.float32)
    return out


def random_inputs(config: dict, batch: int, seq: int, seed: int = 1) -> dict:
    """Question + context windows: the last quarter padded, segment 1 after the question."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    ids = rng.integers(5, config["vocab_size"], size=(batch, seq)).astype(np.int32)
    mask = np.ones((batch, seq), np.int32)
    seg = np.zeros((batch, seq), np.int32)
    for b in range(batch):
        n = seq - (b % 4) * (seq // 16)
        mask[b, n:] = 0
        ids[b, n:] = 0
        seg[b, min(64, n // 3):n] = 1
    return {"input_ids": ids, "input_mask": mask, "segment_ids": seg}


def _timed(run, batches: int, warmup: int) -> list:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def worker_ours(args) -> dict:
    import numpy as np  # noqa: PLC0415

    from models.bert_large.tensorflow import inference, modeling  # noqa: PLC0415

    config = modeling.BertConfig.from_dict(json.load(open(args.config, encoding="utf-8")))
    if args.threads:
        import tensorflow as tf  # noqa: PLC0415
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    x = dict(np.load(args.inputs))
    model = inference.build_model(config, args.checkpoint, args.precision)
    serve = inference.serving_function(model, x["input_ids"].shape[1], x["input_ids"].shape[0])
    import tensorflow as tf  # noqa: PLC0415
    feed = [tf.constant(x[k]) for k in inference.INPUT_KEYS]
    out = {k: v.numpy() for k, v in serve(*feed).items()}
    times = _timed(lambda: serve(*feed)["start_logits"].numpy(), args.steps, args.warmup)
    return {"logits": out, "times": times}


def worker_hf(args) -> dict:
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    c = json.load(open(args.config, encoding="utf-8"))
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_config = transformers.BertConfig(
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"],
        num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
        intermediate_size=c["intermediate_size"], hidden_act=c["hidden_act"],
        max_position_embeddings=c["max_position_embeddings"],
        type_vocab_size=c["type_vocab_size"], layer_norm_eps=1e-12,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    w = dict(np.load(args.weights))

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    s = {"qa_outputs.weight": t(w["cls/squad/output_weights"]),
         "qa_outputs.bias": t(w["cls/squad/output_bias"])}
    e = "bert/embeddings/"
    for hf, g in (("word_embeddings.weight", "word_embeddings"),
                  ("position_embeddings.weight", "position_embeddings"),
                  ("token_type_embeddings.weight", "token_type_embeddings"),
                  ("LayerNorm.weight", "LayerNorm/gamma"), ("LayerNorm.bias", "LayerNorm/beta")):
        s[f"bert.embeddings.{hf}"] = t(w[e + g])
    for i in range(c["num_hidden_layers"]):
        hf, g = f"bert.encoder.layer.{i}", f"bert/encoder/layer_{i}"
        pairs = [(f"attention.self.{p}", f"attention/self/{p}") for p in ("query", "key", "value")]
        pairs += [("attention.output.dense", "attention/output/dense"),
                  ("intermediate.dense", "intermediate/dense"), ("output.dense", "output/dense")]
        for a, b in pairs:
            s[f"{hf}.{a}.weight"] = t(w[f"{g}/{b}/kernel"].T)
            s[f"{hf}.{a}.bias"] = t(w[f"{g}/{b}/bias"])
        for a, b in (("attention.output.LayerNorm", "attention/output/LayerNorm"),
                     ("output.LayerNorm", "output/LayerNorm")):
            s[f"{hf}.{a}.weight"] = t(w[f"{g}/{b}/gamma"])
            s[f"{hf}.{a}.bias"] = t(w[f"{g}/{b}/beta"])
    model = transformers.BertForQuestionAnswering(hf_config)
    missing, unexpected = model.load_state_dict(s, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise SystemExit(f"weights do not fit BertForQuestionAnswering: {missing} {unexpected}")
    model.eval()
    x = dict(np.load(args.inputs))
    feed = {"input_ids": t(x["input_ids"]).long(), "attention_mask": t(x["input_mask"]).long(),
            "token_type_ids": t(x["segment_ids"]).long()}
    bf16 = args.precision == "bf16"

    def run():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            r = model(**feed)
        return {"start_logits": r.start_logits.float().numpy(),
                "end_logits": r.end_logits.float().numpy()}

    out = run()
    times = _timed(run, args.steps, args.warmup)
    return {"logits": out, "times": times}


def run_worker(args) -> int:
    import numpy as np  # noqa: PLC0415

    result = worker_ours(args) if args.worker == "ours" else worker_hf(args)
    np.savez(args.out + ".npz", **result["logits"])
    with open(args.out + ".json", "w", encoding="utf-8") as fh:
        json.dump({"times": result["times"]}, fh)
    return 0


def _spawn(args, worker: str, precision: str, files: dict, prefix: str) -> tuple:
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2",
           "TRANSFORMERS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_VERBOSITY": "error"}
    command = [sys.executable, os.path.abspath(__file__), "--worker", worker,
               "--precision", precision, "--config", files["config"], "--weights",
               files["weights"], "--checkpoint", files["checkpoint"], "--inputs", files["inputs"],
               "--out", prefix, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{worker} {precision} failed:\n{proc.stderr[-3000:]}")
    import numpy as np  # noqa: PLC0415

    with open(prefix + ".json", encoding="utf-8") as fh:
        times = json.load(fh)["times"]
    return times, dict(np.load(prefix + ".npz"))


def write_model(folder: str, config: dict, batch: int, seq: int) -> dict:
    """config.json, weights.npz, a TF1 checkpoint (``model.ckpt``) and inputs.npz in
    ``folder``; written in a subprocess-free way (the checkpoint bundle needs TensorFlow, so
    this runs in a worker: ``--worker write``)."""
    files = {"config": os.path.join(folder, "bert_config.json"),
             "weights": os.path.join(folder, "weights.npz"),
             "checkpoint": os.path.join(folder, "model.ckpt"),
             "inputs": os.path.join(folder, "inputs.npz")}
    with open(files["config"], "w", encoding="utf-8") as fh:
        json.dump(config, fh)
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "write",
                    "--config", files["config"], "--weights", files["weights"],
                    "--checkpoint", files["checkpoint"], "--inputs", files["inputs"],
                    "--batch", str(batch), "--seq", str(seq)], check=True, env=env)
    return files


def worker_write(args) -> int:
    import numpy as np  # noqa: PLC0415

    from models.bert_large.tensorflow import checkpoint  # noqa: PLC0415

    config = json.load(open(args.config, encoding="utf-8"))
    tensors = google_tensors(config)
    np.savez(args.weights, **tensors)
    checkpoint.save_bundle(args.checkpoint, tensors)
    np.savez(args.inputs, **random_inputs(config, args.batch, args.seq))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=3, help="encoder layers (BERT-Large has 24)")
    p.add_argument("--seq", type=int, default=384)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed batches per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all)")
    p.add_argument("--no-hf", action="store_true", help="skip the Hugging Face runs")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--worker", choices=("ours", "hf", "write"), help=argparse.SUPPRESS)
    for name in ("precision", "config", "weights", "checkpoint", "inputs", "out"):
        p.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker == "write":
        return worker_write(args)
    if args.worker:
        return run_worker(args)

    import numpy as np  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="squad_inference_") as tmp:
        files = write_model(tmp, large_config(args.layers, args.seq), args.batch, args.seq)
        runs = [("ours", "fp32"), ("ours", "bf16")]
        if not args.no_hf:
            runs += [("hf", "fp32"), ("hf", "bf16")]
        figures, logits = {}, {}
        for worker, precision in runs:
            times, out = _spawn(args, worker, precision, files,
                                 os.path.join(tmp, f"{worker}_{precision}"))
            total = sum(times)
            figures[f"{worker}_{precision}"] = {
                "examples_per_sec": args.batch * len(times) / total,
                "latency_ms_p50": float(np.percentile(np.array(times) * 1000.0, 50))}
            logits[f"{worker}_{precision}"] = out
    result = {"shape": {"layers": args.layers, "hidden": 1024, "heads": 16, "seq": args.seq,
                        "batch": args.batch, "threads": args.threads or os.cpu_count()},
              "runs": figures}
    rate = {k: v["examples_per_sec"] for k, v in figures.items()}
    result["bf16_over_fp32"] = rate["ours_bf16"] / rate["ours_fp32"]
    if not args.no_hf:
        result["ours_over_hf_fp32"] = rate["ours_fp32"] / rate["hf_fp32"]
        result["ours_over_hf_bf16"] = rate["ours_bf16"] / rate["hf_bf16"]
        result["fp32_max_logit_diff"] = float(max(
            np.abs(logits["ours_fp32"][k] - logits["hf_fp32"][k]).max()
            for k in ("start_logits", "end_logits")))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    s = result["shape"]
    print(f"BERT QA, {s['layers']} layers x hidden 1024 x 16 heads, seq {s['seq']}, batch "
          f"{s['batch']}, {s['threads']} thread(s); {args.steps} timed batches after "
          f"{args.warmup} warm-up")
    for name, fig in figures.items():
        print(f"  {name:10s} {fig['examples_per_sec']:9.2f} examples/s   latency p50 "
              f"{fig['latency_ms_p50']:9.1f} ms")
    print(f"  bf16 / fp32 (ours): {result['bf16_over_fp32']:.2f}x (target >= 1.6x)")
    if not args.no_hf:
        print(f"  ours / HF: fp32 {result['ours_over_hf_fp32']:.2f}x, bf16 "
              f"{result['ours_over_hf_bf16']:.2f}x (target >= 1.0x)")
        print(f"  fp32 logits, largest |ours - HF|: {result['fp32_max_logit_diff']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
