"""Pretraining throughput on packed vs unpacked data: real (non-padding) tokens per CPU-second,
the same model and the same number of optimizer steps, at seq 128 and 512.

    python benchmarks/packed_training.py [--steps 6] [--batch 8] [--layers 2 --hidden 256]

The data is made the way users make it: create_pretraining_data.py's instance builder
(google's sentence grouping, short_seq_prob 0.1) on a generated corpus whose documents have
realistic lengths (benchmarks/packing.py's ``cpd`` corpus: sentences per document log-normal,
median 12, tokens per sentence log-normal, median 24), written as TFRecords, then packed by
pack_pretraining_data_tfrec.py's ``pack_dataset`` (SPFHP, 3 sequences per row). Both are read
by the PyTorch package's input pipeline and trained with its BertForPreTraining (LAMB-free:
plain SGD, so the step is the model's forward and backward), one thread, ``--batch`` rows per
step. A packed row holds ``avg_seq_per_sample`` sequences at the cost of one row, so the
ratio approaches the packing's expected speed-up (its limit: the theoretical speed-up).

Targets (issue "Sequence packing"): >= 1.7x at 512 and >= 1.3x at 128. Exit 0 when both are
met, 1 otherwise (the printed table says which figure missed and the padding that bounds it).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere

TARGETS = {128: 1.3, 512: 1.7}


def write_unpacked(folder: Path, seq: int, documents: int, seed: int) -> Path:
    """TFRecords of create_pretraining_data.py's instances from the generated corpus."""
    from benchmarks.packing import generated_documents
    from models.bert_large import tfrecord
    from models.bert_large.tensorflow import create_pretraining_data as cpd

    docs, vocab = generated_documents(documents, seed)
    cfg = cpd.InstanceConfig(max_seq_length=seq, max_predictions_per_seq=max(1, seq * 15 // 100),
                             dupe_factor=1)
    instances = cpd.create_training_instances(docs, cfg, vocab, random.Random(seed))
    out = folder / f"unpacked_{seq}"
    out.mkdir(parents=True)
    records = [tfrecord.encode_example(cpd.padded_features(i, cfg)) for i in instances]
    tfrecord.write_tfrecord(out / "part-00000", records)
    return out


def train_rate(files: list[str], seq: int, pred: int, steps: int, batch: int, config) -> dict:
    """Real tokens per CPU-second over ``steps`` optimizer steps (after one warm-up step)."""
    import torch

    from models.bert_large.pytorch.data import PretrainingBatches
    from models.bert_large.pytorch.modeling import BertForPreTraining

    torch.manual_seed(0)
    model = BertForPreTraining(config)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    batches = iter(PretrainingBatches(files, batch, seq, pred, seed=1,
                                      vocab_size=config.vocab_size))
    tokens = sequences = 0
    cpu = 0.0
    for step in range(steps + 1):
        b = next(batches)
        t0 = time.process_time()
        out = model(**b)
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step:  # step 0 warms up (allocations, one-off kernels)
            cpu += time.process_time() - t0
            tokens += int((b["attention_mask"] > 0).sum())
            packed = "next_sentence_weights" in b
            sequences += int(b["next_sentence_weights"].sum()) if packed else len(b["input_ids"])
    return {"tokens_per_cpu_s": tokens / cpu, "sequences_per_cpu_s": sequences / cpu,
            "cpu_s": cpu, "real_tokens": tokens}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6, help="timed optimizer steps per run")
    p.add_argument("--batch", type=int, default=8, help="rows per step (packed and unpacked)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--documents", type=int, default=600, help="generated corpus documents")
    p.add_argument("--seqs", default="128,512", help="sequence lengths")
    p.add_argument("--algorithms", default="spfhp,nnlshp", help="packing algorithms to time")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import torch

    from models.bert_large import packing
    from models.bert_large.config import BertConfig

    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory(prefix="modelpkg-packed-bench-") as tmp:
        for seq in (int(s) for s in args.seqs.split(",")):
            config = BertConfig(vocab_size=3005, hidden_size=args.hidden,
                                num_hidden_layers=args.layers,
                                num_attention_heads=max(1, args.hidden // 64),
                                intermediate_size=4 * args.hidden, max_position_embeddings=seq)
            pred = max(1, seq * 15 // 100)
            unpacked = write_unpacked(Path(tmp), seq, args.documents, seed=seq)
            u = train_rate([str(unpacked / "part-00000")], seq, pred, args.steps, args.batch,
                           config)
            for algorithm in args.algorithms.split(","):
                packed = Path(tmp) / f"packed_{seq}_{algorithm}"
                meta = packing.pack_dataset([str(unpacked / "part-00000")], packed, seq, pred,
                                            algorithm=algorithm, log=lambda m: None)
                k = train_rate([str(packed / "part-00000")], seq, pred + 3, args.steps,
                               args.batch, config)
                results.append({
                    "seq": seq, "algorithm": algorithm, "unpacked": u, "packed": k,
                    "ratio": k["tokens_per_cpu_s"] / u["tokens_per_cpu_s"],
                    "target": TARGETS.get(seq), "packing_efficiency": meta["packing_efficiency"],
                    "avg_seq_per_sample": meta["avg_seq_per_sample"],
                    "padding_original": meta["padding_tokens_original_dataset"]
                    / (meta["original_number_of_samples"] * seq),
                    "theoretical_speedup": meta["theoretical_speedup"]})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"model: {args.layers} layers, hidden {args.hidden}; {args.batch} rows per step, "
              f"{args.steps} timed steps, 1 thread; PyTorch {torch.__version__}")
        print(f"{'seq':>4} {'packer':>7} {'padding':>8} {'seq/row':>8} "
              f"{'unpacked tok/cpu-s':>19} {'packed tok/cpu-s':>17} {'ratio':>6} {'limit':>6} "
              f"{'target':>7}")
        for r in results:
            print(f"{r['seq']:>4} {r['algorithm']:>7} {100 * r['padding_original']:>7.1f}% "
                  f"{r['avg_seq_per_sample']:>8.2f} {r['unpacked']['tokens_per_cpu_s']:>19.0f} "
                  f"{r['packed']['tokens_per_cpu_s']:>17.0f} {r['ratio']:>5.2f}x "
                  f"{r['theoretical_speedup']:>5.2f}x "
                  f"{'>= %.1fx' % r['target'] if r['target'] else '-':>7}")
    best = {}
    for r in results:  # the best packer per sequence length counts for the target
        if r["seq"] not in best or r["ratio"] > best[r["seq"]]["ratio"]:
            best[r["seq"]] = r
    missed = [r for r in best.values() if r["target"] and r["ratio"] < r["target"]]
    for r in missed:
        print(f"target missed at seq {r['seq']}: {r['ratio']:.2f}x < {r['target']}x "
              f"(the data's padding, {100 * r['padding_original']:.1f}%, caps packing at "
              f"{r['theoretical_speedup']:.2f}x)", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
