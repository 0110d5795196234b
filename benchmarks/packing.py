"""Packing efficiency and time of SPFHP and NNLSHP (models/bert_large/packing.py), next to the
figures of Krell et al., "Efficient Sequence Packing without Cross-contamination" (arXiv
2107.02027): on Wikipedia at seq 512, SPFHP 99.60% in about 0.03 s for a 16M-sequence
histogram, NNLSHP 99.75%, theoretical speed-up limit 2.0013x.

    python benchmarks/packing.py                 # both histograms, seq 128, 384, 512
    python benchmarks/packing.py --sequences 2000000 --json

Histograms (the algorithms only ever see the histogram of sequence lengths):

- ``cpd``: the lengths of create_pretraining_data.py's instances (its own
  ``create_training_instances``: google's sentence grouping, ``short_seq_prob`` 0.1, [CLS]/[SEP]
  added) built from a generated corpus of token ids whose documents have realistic lengths
  (sentences per document log-normal, median 12, and tokens per sentence log-normal, median 24,
  so that many articles are shorter than a 512-token row, as on Wikipedia);
- ``wiki16m``: 16M sequences (``--sequences``) with Wikipedia's padding at every length (the
  mean length is ``seq / 2.0013``, about 50% padding, Krell et al.'s theoretical speed-up): 5%
  full rows, a uniform body of document tails and a bump of short sequences (a stand-in for
  the real histogram, which is not public data here; see ``wiki_like_histogram``).

Prints per histogram and sequence length: packing efficiency (real tokens / row tokens), the
time of the algorithm (SPFHP: best of 5), packs, sequences per pack, expected and theoretical
speed-up; SPFHP with a cap of 3 sequences per pack (Habana's default, NNLSHP's depth) and of
16 (``--spfhp-depths``): with 3, surplus short sequences end three to a mostly empty row;
then the targets (SPFHP >= 99.5% at 512 in <= 0.1 s on wiki16m at its best cap, NNLSHP >=
99.7%).
Exit 0 when the targets are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere

KRELL = {"spfhp": {"efficiency": 0.9960, "seconds": 0.03}, "nnlshp": {"efficiency": 0.9975},
         "theoretical_speedup": 2.0013}
TARGETS = {"spfhp_efficiency": 0.995, "spfhp_seconds": 0.1, "nnlshp_efficiency": 0.997}
SEQS = (128, 384, 512)


def generated_documents(documents: int, seed: int = 0):
    """(documents of sentences of token ids, the Vocab): sentences per document log-normal
    (median 12), tokens per sentence log-normal (median 24), ids of a 3005-token vocabulary."""
    from models.bert_large.tensorflow import create_pretraining_data as cpd

    rng = np.random.default_rng(seed)
    words = 3000
    vocab = cpd.Vocab.from_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                  + [f"w{i}" for i in range(words)])
    docs = []
    for _ in range(documents):
        n_sent = int(np.clip(rng.lognormal(np.log(12), 0.9), 1, 400))
        lens = np.clip(rng.lognormal(np.log(24), 0.5, size=n_sent), 3, 150).astype(int)
        docs.append([rng.integers(5, 5 + words, size=n).tolist() for n in lens])
    return docs, vocab


def cpd_histograms(documents: int, seed: int = 0) -> dict[int, np.ndarray]:
    """Length histograms of create_pretraining_data.py's instances at each SEQS."""
    from models.bert_large.tensorflow import create_pretraining_data as cpd

    docs, vocab = generated_documents(documents, seed)
    out = {}
    for seq in SEQS:
        cfg = cpd.InstanceConfig(max_seq_length=seq, max_predictions_per_seq=max(1, seq * 15 // 100),
                                 dupe_factor=1)
        instances = cpd.create_training_instances([list(d) for d in docs], cfg, vocab,
                                                  random.Random(seed))
        out[seq] = np.bincount([len(i.input_ids) for i in instances], minlength=seq + 1)
    return out


def wiki_like_histogram(seq: int, sequences: int, full: float = 0.05) -> np.ndarray:
    """``sequences`` lengths: ``full`` of them at ``seq`` (documents longer than a row), a
    uniform body over [2, seq - 1] (document tails), and a bump of short sequences over
    [2, seq / 8] (short articles, short_seq_prob) sized so that the mean length is
    ``seq / 2.0013`` -- the padding of Wikipedia at 512 in Krell et al. (about 50%)."""
    lengths = np.arange(seq + 1)
    body = np.zeros(seq + 1)
    body[2:seq] = 1.0 / (seq - 2)
    short = np.zeros(seq + 1)
    short[2:seq // 8 + 1] = 1.0 / (seq // 8 - 1)
    mean_body, mean_short = (body * lengths).sum(), (short * lengths).sum()
    target = seq / KRELL["theoretical_speedup"]
    bump = (target - full * seq - (1 - full) * mean_body) / (mean_short - mean_body)
    weights = (1 - full - bump) * body + bump * short
    hist = np.floor(weights * sequences).astype(np.int64)
    hist[seq] = sequences - hist.sum()
    return hist


def measure(hist: np.ndarray, seq: int, algorithm: str, depth: int = 3) -> dict:
    from models.bert_large import packing as pk

    fn = pk.spfhp if algorithm == "spfhp" else pk.nnlshp
    repeats = 5 if algorithm == "spfhp" else 1
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan = fn(hist, seq, depth)
        best = min(best, time.perf_counter() - t0)
    pk.check_plan(hist, plan)
    s = pk.plan_summary(hist, plan)
    return {"algorithm": algorithm, "depth": depth, "seq": seq, "seconds": best,
            "efficiency": s["packing_efficiency"], "packs": s["new_number_of_samples"],
            "sequences": s["original_number_of_samples"],
            "seq_per_pack": s["avg_seq_per_sample"], "expected_speedup": s["expected_speedup"],
            "theoretical_speedup": s["theoretical_speedup"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sequences", type=int, default=16_000_000,
                   help="sequences in the Wikipedia-shaped histogram")
    p.add_argument("--documents", type=int, default=3000,
                   help="documents of the generated corpus for create_pretraining_data.py")
    p.add_argument("--skip-nnlshp", action="store_true", help="SPFHP only (NNLSHP takes ~20 s "
                   "at seq 512)")
    p.add_argument("--spfhp-depths", default="3,16",
                   help="SPFHP's caps on sequences per pack to measure (3: Habana's default and "
                        "what NNLSHP uses; a larger cap lets surplus short sequences fill rows)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    histograms = {"cpd": cpd_histograms(args.documents),
                  "wiki16m": {seq: wiki_like_histogram(seq, args.sequences) for seq in SEQS}}
    print(f"histograms built in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    runs = [("spfhp", int(d)) for d in args.spfhp_depths.split(",")]
    if not args.skip_nnlshp:
        runs.append(("nnlshp", 3))
    results = []
    for name, by_seq in histograms.items():
        for seq, hist in by_seq.items():
            for algorithm, depth in runs:
                results.append(dict(measure(hist, seq, algorithm, depth), histogram=name))
    check = {}
    for r in results:  # the targets, on wiki16m at 512; SPFHP: its best cap (said below)
        if r["histogram"] == "wiki16m" and r["seq"] == 512:
            if r["algorithm"] == "spfhp":
                if r["efficiency"] >= check.get("_spfhp_best", (0.0,))[0]:
                    check["_spfhp_best"] = (r["efficiency"], r["seconds"], r["depth"])
            else:
                check["nnlshp_efficiency"] = r["efficiency"] >= TARGETS["nnlshp_efficiency"]
    efficiency, seconds, spfhp_depth = check.pop("_spfhp_best", (0.0, float("inf"), 0))
    check["spfhp_efficiency"] = efficiency >= TARGETS["spfhp_efficiency"]
    check["spfhp_seconds"] = seconds <= TARGETS["spfhp_seconds"]
    if args.json:
        print(json.dumps({"results": results, "krell": KRELL, "targets": TARGETS,
                          "met": check}, indent=2))
    else:
        print(f"{'histogram':<9} {'seq':>4} {'algorithm':<7} {'cap':>3} {'efficiency':>10} "
              f"{'time':>9} {'sequences':>10} {'packs':>10} {'seq/pack':>8} {'speed-up':>8} "
              f"{'limit':>7}")
        for r in results:
            print(f"{r['histogram']:<9} {r['seq']:>4} {r['algorithm']:<7} {r['depth']:>3} "
                  f"{100 * r['efficiency']:>9.3f}% {r['seconds']:>8.4f}s {r['sequences']:>10} "
                  f"{r['packs']:>10} {r['seq_per_pack']:>8.3f} {r['expected_speedup']:>7.4f}x "
                  f"{r['theoretical_speedup']:>6.4f}x")
        print(f"Krell et al., Wikipedia seq 512 (16M sequences): SPFHP "
              f"{100 * KRELL['spfhp']['efficiency']:.2f}% in ~{KRELL['spfhp']['seconds']} s, "
              f"NNLSHP {100 * KRELL['nnlshp']['efficiency']:.2f}%, theoretical speed-up "
              f"{KRELL['theoretical_speedup']}x")
        print(f"SPFHP targets judged at its best cap on wiki16m 512: {spfhp_depth} sequences "
              "per pack")
        for key, ok in check.items():
            print(f"target {key} {TARGETS[key]}: {'met' if ok else 'NOT met'}")
    return 0 if all(check.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
