"""Text shards -> BERT pretraining TFRecords, one TFRecord per shard and sequence length.

    python data_preprocessing/make_tfrecords.py --input_dir SHARDS --output_dir TFRECORD \\
        --vocab_file VOCAB [--seq_configs 128:20,512:80] [--processes N]

SHARDS holds ``training/*.txt`` and ``test/*.txt`` (sharding.py's output). Every shard is run
through ``models/bert_large/tensorflow/create_pretraining_data.py`` (its
``create_pretraining_data`` function: google-research's masked-LM + next-sentence instances)
once per ``SEQ:MAX_PREDICTIONS`` of --seq_configs, writing

    TFRECORD/seq_len_<SEQ>/<dataset_name>/training/<shard>.tfrecord
    TFRECORD/seq_len_<SEQ>/<dataset_name>/test/<shard>.tfrecord

(the layout run_pretraining.py's --input_files_dir / --eval_files_dir point at). Shards run in
parallel in --processes worker processes (each imports TensorFlow once); every file is written
under a temp name and renamed when complete, and files already there are skipped, so a rerun
after an interruption does only what is missing. Shard K uses --random_seed + K, so the output
is the same for the same shards, vocab and flags.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import prep_util  # noqa: E402
from prep_util import UsageError, WorkError  # noqa: E402

SPLITS = ("training", "test")
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[MASK]")
_CPD = None


def log(message: str) -> None:
    print(f"make_tfrecords: {message}", file=sys.stderr, flush=True)


def parse_bool(text: str) -> bool:
    value = {"true": True, "1": True, "false": False, "0": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected true or false (or 1/0)")
    return value


def parse_seq_configs(text: str) -> list[tuple[int, int]]:
    configs = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            seq, preds = (int(x) for x in item.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected SEQ_LEN:MAX_PREDICTIONS, e.g. 128:20") from None
        if seq < 5 or not 1 <= preds <= seq:
            raise argparse.ArgumentTypeError(
                f"{item!r}: need SEQ_LEN >= 5 and 1 <= MAX_PREDICTIONS <= SEQ_LEN")
        configs.append((seq, preds))
    if not configs:
        raise argparse.ArgumentTypeError("no SEQ_LEN:MAX_PREDICTIONS given")
    return configs


def check_vocab(path: Path) -> None:
    if not path.is_file():
        raise UsageError(f"--vocab_file={path}: no such file (the vocab.txt of the BERT model "
                         "the data is for; download/download_pretrained_model.py fetches one)")
    with open(path, encoding="utf-8", errors="replace") as f:
        tokens = {line.strip() for line in f}
    missing = [t for t in SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise UsageError(f"--vocab_file={path}: lacks {', '.join(missing)}: not a BERT vocab")


def remove_partial_records(folders: list[Path]) -> None:
    """Remove the ``<file>.tfrecord.tmp<pid>`` files of create_pretraining_data writers that
    are gone (killed workers)."""
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.glob("*.tfrecord.tmp*"):
            pid = path.name.rsplit(".tmp", 1)[-1]
            if not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
                continue
            except ProcessLookupError:
                path.unlink(missing_ok=True)
            except PermissionError:
                continue


def _init_worker(quiet: bool) -> None:
    global _CPD
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the pool
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    prep_util.code_root()
    from models.bert_large.tensorflow import create_pretraining_data  # noqa: PLC0415

    _CPD = create_pretraining_data
    if quiet:  # the per-stage progress lines of every shard would interleave
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115


def _run_job(job: dict) -> dict:
    cfg = _CPD.InstanceConfig(max_seq_length=job["seq"], max_predictions_per_seq=job["preds"],
                              masked_lm_prob=job["masked_lm_prob"],
                              short_seq_prob=job["short_seq_prob"],
                              dupe_factor=job["dupe_factor"],
                              do_whole_word_mask=job["do_whole_word_mask"])
    Path(job["output"]).parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        summary = _CPD.create_pretraining_data([job["input"]], job["vocab_file"], [job["output"]],
                                               cfg, do_lower_case=job["do_lower_case"],
                                               random_seed=job["seed"], plain_progress=True)
    except (ValueError, OSError) as err:
        return {**job, "error": f"{job['input']}: {err}"}
    return {**job, "instances": summary["instances"], "seconds": time.monotonic() - start}


def plan_jobs(input_dir: Path, output_dir: Path, args) -> tuple[list[dict], int]:
    jobs, skipped = [], 0
    for seq, preds in args.seq_configs:
        for split in SPLITS:
            shards = sorted((input_dir / split).glob("*.txt"))
            for k, shard in enumerate(shards):
                out = (output_dir / f"seq_len_{seq}" / args.dataset_name / split /
                       f"{shard.stem}.tfrecord")
                if out.is_file():
                    skipped += 1
                    continue
                jobs.append({"seq": seq, "preds": preds, "split": split, "input": str(shard),
                             "output": str(out), "vocab_file": str(args.vocab_file),
                             "seed": args.random_seed + k, "dupe_factor": args.dupe_factor,
                             "masked_lm_prob": args.masked_lm_prob,
                             "short_seq_prob": args.short_seq_prob,
                             "do_lower_case": args.do_lower_case,
                             "do_whole_word_mask": args.do_whole_word_mask})
    return jobs, skipped


def main(argv: list[str] | None = None) -> int:
    parser = prep_util.OneLineParser(
        prog="make_tfrecords.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(__doc__ or "").strip(),
        epilog="Exit status: 0 done, 2 bad arguments or missing input, 1 a shard failed, "
               "130 interrupted.")
    parser.add_argument("--input_dir", type=Path, required=True,
                        help="folder with training/ and test/ text shards")
    parser.add_argument("--output_dir", type=Path, required=True,
                        help="the tfrecord/ root (seq_len_*/ folders are created in it)")
    parser.add_argument("--vocab_file", type=Path, required=True, help="the BERT vocab.txt")
    parser.add_argument("--seq_configs", type=parse_seq_configs,
                        default=parse_seq_configs("128:20,512:80"),
                        help="comma-separated SEQ_LEN:MAX_PREDICTIONS_PER_SEQ (default "
                             "128:20,512:80, phase 1 and phase 2)")
    parser.add_argument("--dataset_name", default="books_wiki_en_corpus",
                        help="folder name under seq_len_*/ (default %(default)s)")
    parser.add_argument("--processes", type=prep_util.positive_int,
                        default=prep_util.default_processes(),
                        help="parallel shards (default: the CPUs available, %(default)s)")
    parser.add_argument("--dupe_factor", type=prep_util.positive_int, default=5,
                        help="passes over each shard with different masks (default 5)")
    parser.add_argument("--masked_lm_prob", type=float, default=0.15, help="default 0.15")
    parser.add_argument("--short_seq_prob", type=float, default=0.1, help="default 0.1")
    parser.add_argument("--random_seed", type=int, default=12345, help="default 12345")
    parser.add_argument("--do_lower_case", type=parse_bool, default=True,
                        help="true for uncased vocabularies (default true)")
    parser.add_argument("--do_whole_word_mask", type=parse_bool, default=False,
                        help="mask whole words (default false)")
    parser.add_argument("--verbose", action="store_true",
                        help="show create_pretraining_data's own progress lines per shard")
    args = parser.parse_args(argv)
    check_vocab(args.vocab_file)
    if not 0.0 < args.masked_lm_prob < 1.0:
        raise UsageError(f"--masked_lm_prob={args.masked_lm_prob}: must be in (0, 1)")
    missing = [s for s in SPLITS if not (args.input_dir / s).is_dir()]
    if missing:
        raise UsageError(f"--input_dir={args.input_dir}: no {'/, '.join(missing)}/ folder "
                         "(run sharding.py first)")
    if not any((args.input_dir / "training").glob("*.txt")):
        raise UsageError(f"--input_dir={args.input_dir}: no training/*.txt shards")
    prep_util.code_root()
    jobs, skipped = plan_jobs(args.input_dir, args.output_dir, args)
    if skipped:
        log(f"{skipped} TFRecord file(s) already there: skipped")
    if not jobs:
        log("nothing to do")
        return 0
    folders = [args.output_dir / f"seq_len_{seq}" / args.dataset_name / split
               for seq, _ in args.seq_configs for split in SPLITS]
    remove_partial_records(folders)
    processes = min(args.processes, len(jobs))
    log(f"{len(jobs)} shard(s) x sequence length(s) in {processes} process(es)")
    start = time.monotonic()
    instances = 0
    ctx = multiprocessing.get_context("spawn")  # TensorFlow and fork() do not mix
    pool = ctx.Pool(processes, initializer=_init_worker, initargs=(not args.verbose,))
    try:
        for i, result in enumerate(pool.imap_unordered(_run_job, jobs), 1):
            if "error" in result:
                raise WorkError(f"create_pretraining_data failed: {result['error']}")
            instances += result["instances"]
            out = Path(result["output"])
            log(f"[{i}/{len(jobs)}] seq_len_{result['seq']}/{result['split']}/{out.name}: "
                f"{result['instances']} instances in {result['seconds']:.1f}s")
        pool.close()
    finally:
        pool.terminate()
        pool.join()
        remove_partial_records(folders)
    log(f"wrote {len(jobs)} TFRecord file(s), {instances} instances, in "
        f"{time.monotonic() - start:.1f}s under {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(prep_util.cli(main))
