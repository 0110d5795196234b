"""Split formatted text (one sentence per line, blank line between documents) into training
and test shards.

    python data_preprocessing/sharding.py INPUT_DIR [INPUT_DIR ...] --output_dir DIR \\
        [--num_training_shards 1472] [--num_test_shards 1472] [--fraction_test 0.1]

Reads every ``*.txt`` of the INPUT_DIRs (sorted by name, dirs in the order given). Each
document goes to the test set with probability ``--fraction_test`` (a seeded choice: the same
inputs and ``--seed`` give the same shards), else to the training set; each set is cut into
its number of shards of about equal sentence counts, documents kept whole and in input order.
Output: ``DIR/training/<name>_training_NNNN.txt`` and ``DIR/test/<name>_test_NNNN.txt``,
and ``DIR/sources.list`` (the INPUT_DIRs), written atomically (DIR appears when complete); an
existing DIR made from the same inputs is kept, one made from others is an error. A set with
fewer documents than shards gets one shard per document (said so).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path
from typing import Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import prep_util  # noqa: E402
from prep_util import UsageError, WorkError  # noqa: E402

SPLITS = ("training", "test")
SOURCES = "sources.list"  # the input folders the shards were made from


def log(message: str) -> None:
    print(f"sharding: {message}", file=sys.stderr, flush=True)


def iter_documents(paths: list[Path]) -> Iterator[list[str]]:
    """Documents (lists of sentence lines, newline kept) of PATHS, in order."""
    for path in paths:
        doc: list[str] = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    doc.append(line if line.endswith("\n") else line + "\n")
                elif doc:
                    yield doc
                    doc = []
        if doc:
            yield doc


def plan(paths: list[Path], num_shards: dict[str, int], fraction_test: float,
         seed: int) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """Pass 1: for each document (split, shard index); and the shard count of each split."""
    rng = random.Random(seed)
    splits: list[str] = []
    sizes: list[int] = []
    for doc in iter_documents(paths):
        splits.append("test" if rng.random() < fraction_test else "training")
        sizes.append(len(doc))
    if not splits:
        raise WorkError(f"no documents in {', '.join(str(p) for p in paths[:3])}: expected one "
                        "sentence per line and a blank line between documents")
    if num_shards["test"] > 0 and "test" not in splits and len(splits) > 1:
        splits[-1] = "test"  # a tiny corpus still gets a test set
    if num_shards["test"] == 0:
        splits = ["training"] * len(splits)
    if "training" not in splits:
        splits[0] = "training"
    assignment: list[tuple[str, int]] = [("", 0)] * len(splits)
    counts: dict[str, int] = {}
    for split in SPLITS:
        idx = [i for i, s in enumerate(splits) if s == split]
        if not idx:
            counts[split] = 0
            continue
        n = min(num_shards[split], len(idx))
        if n < num_shards[split]:
            log(f"{split}: {len(idx)} documents, fewer than --num_{split}_shards="
                f"{num_shards[split]}: writing {n} shards")
        total = sum(sizes[i] for i in idx)
        done = 0
        shard = 0
        for pos, i in enumerate(idx):
            assignment[i] = (split, shard)
            done += sizes[i]
            left = len(idx) - pos - 1  # documents after this one
            # next shard once this one has its share of sentences, or when every later shard
            # needs one of the documents that are left
            if shard < n - 1 and (done >= total * (shard + 1) / n or left <= n - 1 - shard):
                shard += 1
        counts[split] = n
    return assignment, counts


def shard_path(root: Path, name: str, split: str, index: int) -> Path:
    return root / split / f"{name}_{split}_{index:04d}.txt"


def sources_text(inputs: list[Path]) -> str:
    return "".join(f"{p.resolve()}\n" for p in inputs)


def write_shards(paths: list[Path], output_dir: Path, name: str, assignment, counts,
                 sources: str) -> None:
    """Pass 2: write each document to its shard (one open file per split at a time)."""
    with prep_util.atomic_dir(output_dir) as tmp:
        (tmp / SOURCES).write_text(sources, encoding="utf-8")
        for split in SPLITS:
            (tmp / split).mkdir()
        handles: dict[str, tuple[int, object]] = {}
        written = {s: [0] * counts[s] for s in SPLITS}
        try:
            for (split, shard), doc in zip(assignment, iter_documents(paths)):
                current = handles.get(split)
                if current is None or current[0] != shard:
                    if current is not None:
                        current[1].close()
                    handles[split] = (shard, open(shard_path(tmp, name, split, shard), "w",
                                                  encoding="utf-8"))
                f = handles[split][1]
                f.writelines(doc)
                f.write("\n")
                written[split][shard] += len(doc)
        finally:
            for _, f in handles.values():
                f.close()
        for split in SPLITS:
            empty = [i for i, n in enumerate(written[split]) if n == 0]
            if empty:
                raise WorkError(f"internal: {split} shards {empty} would be empty")
    for split in SPLITS:
        n = counts[split]
        if n:
            log(f"{split}: {n} shards, {sum(written[split])} sentences "
                f"({min(written[split])}..{max(written[split])} per shard) in "
                f"{output_dir / split}")


def main(argv: list[str] | None = None) -> int:
    parser = prep_util.OneLineParser(
        prog="sharding.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(__doc__ or "").strip(),
        epilog="Exit status: 0 done, 2 bad arguments or missing input, 1 no documents or an "
               "unwritable output, 130 interrupted.")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT_DIR",
                        help="folders of formatted .txt files (or single .txt files)")
    parser.add_argument("--output_dir", type=Path, required=True,
                        help="folder for training/ and test/ (created atomically)")
    parser.add_argument("--num_training_shards", type=prep_util.positive_int, default=1472,
                        help="training shards (default %(default)s)")
    parser.add_argument("--num_test_shards", type=int, default=1472,
                        help="test shards; 0: no test set (default %(default)s)")
    parser.add_argument("--fraction_test", type=float, default=0.1,
                        help="fraction of the documents for the test set (default %(default)s)")
    parser.add_argument("--seed", type=int, default=12345,
                        help="seed of the training/test choice (default %(default)s)")
    parser.add_argument("--name", default="books_wiki_en_corpus",
                        help="shard file name prefix (default %(default)s)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.fraction_test < 1.0:
        raise UsageError(f"--fraction_test={args.fraction_test}: must be in [0, 1)")
    if args.num_test_shards < 0:
        raise UsageError(f"--num_test_shards={args.num_test_shards}: must be >= 0")
    paths: list[Path] = []
    for item in args.inputs:
        if item.is_dir():
            paths.extend(sorted(item.glob("*.txt")))
        elif item.is_file():
            paths.append(item)
        else:
            raise UsageError(f"{item}: no such file or folder")
    if not paths:
        raise UsageError(f"no .txt files in {', '.join(map(str, args.inputs))}")
    sources = sources_text(args.inputs)
    if args.output_dir.is_dir():
        made_from = args.output_dir / SOURCES
        old = made_from.read_text(encoding="utf-8") if made_from.is_file() else ""
        if old != sources:
            raise UsageError(f"{args.output_dir} was made from other inputs "
                             f"({', '.join(old.split()) or 'unknown'}): remove it (and the "
                             "TFRecords made from it) to shard these")
        log(f"{args.output_dir} already there: nothing to do (remove it to shard again)")
        return 0
    prep_util.remove_stale_temps(args.output_dir.resolve().parent)
    num_shards = {"training": args.num_training_shards,
                  "test": args.num_test_shards if args.fraction_test > 0 else 0}
    log(f"reading {len(paths)} file(s)")
    assignment, counts = plan(paths, num_shards, args.fraction_test, args.seed)
    write_shards(paths, args.output_dir, args.name, assignment, counts, sources)
    return 0


if __name__ == "__main__":
    sys.exit(prep_util.cli(main))
