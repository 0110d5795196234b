"""Training-step speed of our BERT pretraining model vs plain Hugging Face BertForPreTraining.

Both models get the same config, the same weights, the same batch and the same LAMB optimizer;
one step = forward + backward + optimizer step. The difference is the model: ours computes the
MLM head only at the masked positions (HF runs it on every token, [B, S, vocab] logits) and
uses scaled_dot_product_attention. Steps of the two alternate, so a noisy shared machine slows
both alike. Prints sequences/second per precision and the ratio (target >= 1.2 in bf16).

    python benchmarks/pytorch_train_step.py [--precisions bf16,fp32] [--steps 6] [--json]

``make_batch``, ``hf_copy`` and ``hf_inputs`` are shared with
``benchmarks/pytorch_pretrain_throughput.py`` (sequences/s and MFU on CUDA or CPU).

The default config (4 layers, hidden 256, BERT's 30522-token vocabulary, seq 128, batch 8,
20 predictions per sequence as in phase 1, one thread) runs in under a minute on an idle core.
Both CPU-time and wall-clock rates are printed; the ratio uses CPU time, which a busy shared
machine does not distort.

When ``intel_extension_for_pytorch`` imports, a third column trains our model as
run_pretraining.py does with IPEX (``ipex.optimize(..., inplace=True)`` in the precision's dtype,
IPEX's fused LAMB) and ``ipex/ours`` compares it with plain PyTorch in the same run (target
>= 1.1 in bf16 at 2 layers x hidden 1024). The main environment's torch has no IPEX build; run
it in the IPEX venv (``bash scripts/setup-ipex-venv.sh``), where transformers is absent and the
HF column is left out::

    .venv-ipex/bin/python benchmarks/pytorch_train_step.py --layers 2 --hidden 1024 --heads 16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from models.bert_large.pytorch.modeling import BertConfig, BertForPreTraining  # noqa: E402
from models.bert_large.pytorch.optimization import Lamb, create_optimizer  # noqa: E402


def optional_import(name: str):
    """The module, or None when it does not import (absent, or built for another torch)."""
    try:
        return __import__(name)
    except Exception:  # noqa: BLE001
        return None


def make_batch(config: BertConfig, batch: int, seq: int, preds: int, seed: int = 0) -> dict:
    """A random pretraining batch (CPU tensors) as ``PretrainingBatches`` yields one: ``preds``
    distinct masked positions per sequence, all weighted 1."""
    g = torch.Generator().manual_seed(seed)
    positions = torch.stack([torch.randperm(seq - 2, generator=g)[:preds] + 1 for _ in range(batch)])
    ids = torch.randint(5, config.vocab_size, (batch, seq), generator=g)
    return {
        "input_ids": ids,
        "token_type_ids": (torch.arange(seq) >= seq // 2).long().expand(batch, seq).contiguous(),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
        "masked_lm_positions": positions,
        "masked_lm_ids": torch.gather(ids, 1, positions),
        "masked_lm_weights": torch.ones(batch, preds),
        "next_sentence_labels": torch.randint(0, 2, (batch,), generator=g),
    }


def hf_copy(ours: BertForPreTraining, transformers):
    """Hugging Face ``BertForPreTraining`` with ``ours``' config and a copy of its weights
    (same parameter names), in training mode."""
    hf_config = transformers.BertConfig(**{k: v for k, v in ours.config.to_dict().items()
                                           if k != "architectures"})
    hf = transformers.BertForPreTraining(hf_config).train()
    hf.load_state_dict(ours.state_dict())
    return hf


def hf_inputs(b: dict) -> dict:
    """``make_batch``'s batch as HF's inputs: MLM labels -100 except at the masked positions."""
    labels = torch.full_like(b["input_ids"], -100)
    labels.scatter_(1, b["masked_lm_positions"], b["masked_lm_ids"])
    return {"input_ids": b["input_ids"], "token_type_ids": b["token_type_ids"],
            "attention_mask": b["attention_mask"], "labels": labels,
            "next_sentence_label": b["next_sentence_labels"]}


def bench(precision: str, config: BertConfig, batch: int, seq: int, preds: int, steps: int,
          warmup: int) -> dict:
    torch.manual_seed(0)
    ours = BertForPreTraining(config).train()
    data = make_batch(config, batch, seq, preds)
    runs = {"ours": (ours, Lamb(ours.parameters(), lr=1e-4), lambda: ours(**data)["loss"])}
    transformers = optional_import("transformers")
    if transformers is not None:
        hf = hf_copy(ours, transformers)
        hf_data = hf_inputs(data)
        runs["hf"] = (hf, Lamb(hf.parameters(), lr=1e-4), lambda: hf(**hf_data).loss)
    ipex = optional_import("intel_extension_for_pytorch")
    if ipex is not None:  # as run_pretraining.py: IPEX's fused LAMB, optimize in place
        im = BertForPreTraining(config).train()
        im.load_state_dict(ours.state_dict())
        iopt, _, _ = create_optimizer(im, lr=1e-4, total_steps=1000, warmup_steps=0, use_ipex=True)
        ipex.optimize(im, optimizer=iopt, inplace=True,
                      dtype=torch.bfloat16 if precision == "bf16" else torch.float32)
        runs["ipex"] = (im, iopt, lambda: im(**data)["loss"])

    def step(name: str) -> tuple[float, float]:
        model, opt, loss_fn = runs[name]
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
                    else contextlib.nullcontext())
        w0, c0 = time.perf_counter(), time.process_time()
        with autocast:
            loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - w0, time.process_time() - c0

    for _ in range(warmup):
        for name in runs:
            step(name)
    times = {name: [] for name in runs}
    for _ in range(steps):
        for name in runs:
            times[name].append(step(name))
    # Median step time. CPU time (process_time) is what the step costs even when neighbours
    # share the cores; wall-clock is what a user on an idle machine sees.
    result = {"precision": precision}
    for name, ts in times.items():
        wall = sorted(t[0] for t in ts)[len(ts) // 2]
        cpu = sorted(t[1] for t in ts)[len(ts) // 2]
        result[f"{name}_seq_per_s"] = round(batch / wall, 2)
        result[f"{name}_seq_per_cpu_s"] = round(batch / cpu, 2)
    if "hf" in runs:
        result["ratio_wall"] = round(result["ours_seq_per_s"] / result["hf_seq_per_s"], 3)
        result["ratio"] = round(result["ours_seq_per_cpu_s"] / result["hf_seq_per_cpu_s"], 3)
    if "ipex" in runs:
        result["ipex_ratio_wall"] = round(result["ipex_seq_per_s"] / result["ours_seq_per_s"], 3)
        result["ipex_ratio"] = round(result["ipex_seq_per_cpu_s"] / result["ours_seq_per_cpu_s"], 3)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precisions", default="bf16,fp32")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--preds", type=int, default=20)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 (default) makes CPU time an exact cost on a shared machine")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = BertConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                        max_position_embeddings=max(512, args.seq))
    results = [bench(pr, config, args.batch, args.seq, args.preds, args.steps, args.warmup)
               for pr in args.precisions.split(",")]
    setup = {"layers": args.layers, "hidden": args.hidden, "vocab": args.vocab, "seq": args.seq,
             "batch": args.batch, "masked_positions": args.preds, "threads": torch.get_num_threads(),
             "torch": torch.__version__,
             "ipex": getattr(optional_import("intel_extension_for_pytorch"), "__version__", None)}
    if args.json:
        print(json.dumps({"setup": setup, "results": results}))
        return 0
    print(f"BERT pretraining train step (fwd + bwd + LAMB), {setup}")
    columns = [("ours", "ours"), ("hf", "HF"), ("ipex", "IPEX")]
    columns = [(key, label) for key, label in columns if f"{key}_seq_per_s" in results[0]]
    ratios = [(key, label, target) for key, label, target in
              (("ratio", "ours/HF", 1.2), ("ipex_ratio", "IPEX/ours", 1.1)) if key in results[0]]
    print(f"{'precision':<10}" + "".join(f" {label + ' seq/cpu-s':>15}" for _, label in columns)
          + "".join(f" {label:>10}" for _, label, _ in ratios) + "  |"
          + "".join(f" {label + ' seq/s':>11}" for _, label in columns)
          + "".join(f" {label + ' wall':>10}" for _, label, _ in ratios))
    for r in results:
        targets = [f"{label} >= {target}" for key, label, target in ratios if r["precision"] == "bf16"]
        print(f"{r['precision']:<10}"
              + "".join(f" {r[key + '_seq_per_cpu_s']:>15.2f}" for key, _ in columns)
              + "".join(f" {r[key]:>10.2f}" for key, _, _ in ratios) + "  |"
              + "".join(f" {r[key + '_seq_per_s']:>11.2f}" for key, _ in columns)
              + "".join(f" {r[key + '_wall']:>10.2f}" for key, _, _ in ratios)
              + (f"   (targets {', '.join(targets)})" if targets else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
