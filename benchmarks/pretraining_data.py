"""Sentences/sec of create_pretraining_data.py on a generated corpus, against slower
tokenizer paths run through the same pipeline in the same process.

    python benchmarks/pretraining_data.py                     # 20000 sentences, seq 128
    python benchmarks/pretraining_data.py --sentences 50000 --json

Four runs of the identical pipeline (read -> tokenize -> instances + masking -> TFRecords),
differing only in tokenization:

- ``cached``: what the script does: ``CachedEncoder`` (ids of already-seen words from a
  dict, unseen words through the ``tokenizers`` library in batches);
- ``batched``: ``FullTokenizer.encode_batch_ids`` on whole lines, 4096 per call;
- ``per-line``: the same library called once per line (google's loop shape);
- ``pure-python``: google-research's rules written out in Python (basic tokenization and
  greedy longest-match WordPiece), the cost of the original ``tokenization.py``.

The corpus: documents of 2-12 sentences of 5-30 words drawn with Zipf frequencies from a
lexicon of 30000 synthetic word forms; a third of them are not in the vocab as a whole and
split into ``##`` pieces. Prints sentences/sec
and instances/sec per run (TensorFlow import excluded) and the speed-up of ``cached`` over
each reference. All runs must write identical records (checked; exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import string
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from models.bert_large.tensorflow import create_pretraining_data as cpd  # noqa: E402
from models.bert_large.tensorflow import tokenization  # noqa: E402

SYLLABLES = ("ka ri to me na su lo pe vi da ne mo ra si tu ge ba ko li fa zu hi "
             "wo ye xa qu").split()
SUFFIXES = ("s ed ing ly er est ness ment able").split()


def make_vocab_and_corpus(folder: Path, sentences: int, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    stems = sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
                    for _ in range(3000)})
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(".,;:!?'\"()-")
             + stems + [f"##{s}" for s in SUFFIXES] + [f"##{s}" for s in SYLLABLES]
             + list(string.ascii_lowercase) + [f"##{c}" for c in string.ascii_lowercase])
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")

    # A lexicon of word forms with Zipf frequencies (rank r drawn with weight 1/r), as in
    # natural text: a few words are very common, most are rare.
    lexicon = []
    for _ in range(30000):
        w = rng.choice(stems)
        r = rng.random()
        if r < 0.2:
            w += rng.choice(SUFFIXES)  # stem + ##suffix
        elif r < 0.33:
            w += rng.choice(SYLLABLES) + rng.choice(SYLLABLES)  # several pieces
        lexicon.append(w)
    cum_weights = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(lexicon))))

    def words(n: int) -> list[str]:
        ws = rng.choices(lexicon, cum_weights=cum_weights, k=n)
        ws[0] = ws[0].capitalize()
        return ws

    lines, written = [], 0
    while written < sentences:
        for _ in range(min(rng.randint(2, 12), sentences - written)):
            ws = words(rng.randint(5, 30))
            if rng.random() < 0.3:
                ws[rng.randrange(len(ws))] += ","
            lines.append(" ".join(ws) + rng.choice(".!?"))
            written += 1
        lines.append("")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return vocab_file, corpus


# --- google-research's tokenization rules in plain Python (the reference) --------------------


class PurePythonWordPiece:
    def __init__(self, vocab: dict[str, int], do_lower_case: bool = True,
                 max_chars: int = 200):
        self.vocab = vocab
        self.lower = do_lower_case
        self.max_chars = max_chars
        self.unk = vocab["[UNK]"]

    @staticmethod
    def _is_punct(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    def _basic(self, text: str) -> list[str]:
        out = []
        cleaned = "".join(" " if c.isspace() else c for c in text
                          if not (ord(c) == 0 or ord(c) == 0xFFFD
                                  or (unicodedata.category(c).startswith("C")
                                      and c not in "\t\n\r")))
        for word in cleaned.split():
            if self.lower:
                word = "".join(c for c in unicodedata.normalize("NFD", word.lower())
                               if unicodedata.category(c) != "Mn")
            piece = []
            for ch in word:
                if self._is_punct(ch):
                    if piece:
                        out.append("".join(piece))
                        piece = []
                    out.append(ch)
                else:
                    piece.append(ch)
            if piece:
                out.append("".join(piece))
        return out

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > self.max_chars:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.vocab:
                    found = self.vocab[sub]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def encode_batch(self, lines: list[str]) -> list[list[int]]:
        return [[i for w in self._basic(line) for i in self._wordpiece(w)] for line in lines]


# ---------------------------------------------------------------------------------------------


def run_pipeline(name, corpus, vocab_file, out_dir, cfg, encode_batch=None) -> dict:
    outputs = cpd.shard_names(str(out_dir / name), 4)
    start, cpu_start = time.perf_counter(), time.process_time()
    summary = cpd.create_pretraining_data([str(corpus)], str(vocab_file), outputs, cfg,
                                          random_seed=12345, plain_progress=True,
                                          encode_batch=encode_batch)
    seconds = time.perf_counter() - start
    return {"name": name, "seconds": seconds, "cpu_seconds": time.process_time() - cpu_start,
            "sentences": summary["sentences"],
            "instances": summary["instances"],
            "sentences_per_sec": summary["sentences"] / seconds,
            "instances_per_sec": summary["instances"] / seconds,
            "tokenize_seconds": summary["seconds"]["tokenize"],
            "instance_seconds": summary["seconds"]["instances"],
            "write_seconds": summary["seconds"]["write"],
            "outputs": outputs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sentences", type=int, default=20000)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--max_predictions_per_seq", type=int, default=20)
    p.add_argument("--dupe_factor", type=int, default=1)
    p.add_argument("--skip_pure_python", action="store_true")
    p.add_argument("--json", action="store_true", help="also print one JSON line")
    args = p.parse_args(argv)

    import tensorflow  # noqa: F401, PLC0415 - imported once, outside every timing

    cfg = cpd.InstanceConfig(max_seq_length=args.max_seq_length,
                             max_predictions_per_seq=args.max_predictions_per_seq,
                             dupe_factor=args.dupe_factor)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        vocab_file, corpus = make_vocab_and_corpus(folder, args.sentences)
        tok = tokenization.FullTokenizer(str(vocab_file), do_lower_case=True)

        def per_line(lines):
            return [tok.convert_tokens_to_ids(tok.tokenize(line)) for line in lines]

        runs = [run_pipeline("cached", corpus, vocab_file, folder, cfg)]
        runs.append(run_pipeline("batched", corpus, vocab_file, folder, cfg,
                                 tok.encode_batch_ids))
        runs.append(run_pipeline("per-line", corpus, vocab_file, folder, cfg, per_line))
        if not args.skip_pure_python:
            ref = PurePythonWordPiece(dict(tok.vocab))
            runs.append(run_pipeline("pure-python", corpus, vocab_file, folder, cfg,
                                     ref.encode_batch))
        # All three tokenizers implement the same rules: the records must be identical.
        same = all(open(a, "rb").read() == open(b, "rb").read()
                   for r in runs[1:] for a, b in zip(runs[0]["outputs"], r["outputs"]))

    print(f"create_pretraining_data on {runs[0]['sentences']} sentences -> "
          f"{runs[0]['instances']} instances (seq {args.max_seq_length}, dupe_factor "
          f"{args.dupe_factor}); identical output across tokenizers: {same}")
    print("wall-clock seconds per stage; cpu s = process CPU time (all threads), steadier "
          "than wall time on a busy machine")
    print(f"{'tokenizer':<12} {'total s':>8} {'cpu s':>7} {'tokenize s':>10} "
          f"{'instances s':>11} {'write s':>8} {'sentences/s':>12} {'instances/s':>12}")
    for r in runs:
        print(f"{r['name']:<12} {r['seconds']:8.2f} {r['cpu_seconds']:7.2f} "
              f"{r['tokenize_seconds']:10.2f} {r['instance_seconds']:11.2f} "
              f"{r['write_seconds']:8.2f} {r['sentences_per_sec']:12.0f} "
              f"{r['instances_per_sec']:12.0f}")
    base = runs[0]
    for r in runs[1:]:
        tok_ratio = r["tokenize_seconds"] / max(base["tokenize_seconds"], 1e-9)
        print(f"cached vs {r['name']}: {r['seconds'] / base['seconds']:.2f}x end to end "
              f"(cpu {r['cpu_seconds'] / base['cpu_seconds']:.2f}x), tokenization "
              f"{tok_ratio:.1f}x")
    if args.json:
        print(json.dumps({"identical_output": same,
                          "runs": [{k: v for k, v in r.items() if k != "outputs"}
                                   for r in runs]}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
