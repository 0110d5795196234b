"""Pack BERT pretraining TFRecords: several short sequences per ``--max-sequence-length`` row.

    python models/bert_large/pack_pretraining_data_tfrec.py \\
        --input-glob DATA/seq_len_128/training --output-dir PACKED/seq_len_128/training \\
        --max-sequence-length 128 --max-predictions-per-sequence 20 [--max-files N] \\
        [--max-sequences-per-pack 3] [--duplication-factor 1] [--algorithm spfhp|nnlshp] \\
        [--seed 12345]

Habana's command line (their ``data_preprocessing/pack_pretraining_data_tfrec.py``) plus
``--algorithm`` and ``--seed``. Reads the unpacked records of create_pretraining_data.py
(no TensorFlow needed), writes as many packed TFRecord files as it read, named like them, and
``<output dir name>_metadata.json`` one level above the output directory; run_pretraining.py
switches to packed training when it finds that file. The same inputs, flags and seed give
byte-identical output. Format and algorithms: docs/packing.md, models/bert_large/packing.py.

Exit status: 0 done; 2 a bad flag or input path (one ``error:`` line, nothing written); 1 the
work failed (damaged or unsuitable records; nothing half-written is left); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

if __package__ in (None, ""):  # run as a file: make the package root importable
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

PROG = "pack_pretraining_data_tfrec.py"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def _int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be >= {minimum}")
        return value
    return parse


_positive = _int_at_least(1)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=(__doc__ or "").split("\n\n")[0],
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input-glob", required=True,
                   help="directory of unpacked TFRecord files (create_pretraining_data.py "
                        "output), or a glob of them")
    p.add_argument("--output-dir", required=True,
                   help="where the packed files go; the metadata file goes beside it")
    p.add_argument("--max-sequence-length", type=_positive, required=True,
                   help="sequence length of the input records and of the packed rows")
    p.add_argument("--max-predictions-per-sequence", type=_positive, required=True,
                   help="masked LM slots of the input records (create_pretraining_data's "
                        "--max_predictions_per_seq)")
    p.add_argument("--max-files", type=_positive, default=None,
                   help="use the first N input files in sorted order (default: all)")
    p.add_argument("--max-sequences-per-pack", type=_positive, default=3,
                   help="at most this many sequences in one packed row")
    p.add_argument("--duplication-factor", type=_positive, default=1,
                   help="write every input sequence N times, each copy in another pack")
    p.add_argument("--algorithm", choices=("spfhp", "nnlshp"), default="spfhp",
                   help="shortest-pack-first histogram packing, or non-negative least squares "
                        "histogram packing (needs scipy)")
    p.add_argument("--seed", type=_int_at_least(0), default=12345,
                   help="seed of the packs' composition and order")
    p.add_argument("--max-predictions-per-pack", type=_positive, default=None,
                   help="masked LM slots of a packed row (default: "
                        "max-predictions-per-sequence + max-sequences-per-pack, Habana's)")
    return p


def _check(args, packing) -> list[str]:
    """Flag and path checks before any work; PackingError(usage=True) on a problem."""
    if args.max_sequences_per_pack > args.max_sequence_length:
        raise packing.PackingError(f"--max-sequences-per-pack={args.max_sequences_per_pack} is "
                                   f"more than --max-sequence-length={args.max_sequence_length}",
                                   usage=True)
    if args.algorithm == "nnlshp":
        try:
            import scipy.optimize  # noqa: F401
        except ImportError:
            raise packing.PackingError("--algorithm nnlshp needs scipy (pip install scipy); "
                                       "or use --algorithm spfhp", usage=True) from None
    files = packing.list_input_files(args.input_glob, args.max_files)
    out = os.path.abspath(args.output_dir)
    if any(os.path.dirname(os.path.abspath(f)) == out for f in files):
        raise packing.PackingError(f"--output-dir={args.output_dir} is the input directory; "
                                   "write the packed files somewhere else", usage=True)
    if os.path.exists(out) and not os.path.isdir(out):
        raise packing.PackingError(f"--output-dir={args.output_dir} exists and is not a "
                                   "directory", usage=True)
    if os.path.isdir(out):
        ours = {os.path.basename(f) for f in files}
        others = sorted(n for n in os.listdir(out) if not n.startswith(".") and n not in ours)
        if others:
            raise packing.PackingError(
                f"--output-dir={args.output_dir} already holds other files ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}); pass an empty or new directory",
                usage=True)
    seq, pred = packing.probe_record_shape(files[0])
    if seq != args.max_sequence_length:
        raise packing.PackingError(f"--max-sequence-length={args.max_sequence_length} does not "
                                   f"match the data: {files[0]} has {seq} tokens per record",
                                   usage=True)
    if pred != args.max_predictions_per_sequence:
        raise packing.PackingError(
            f"--max-predictions-per-sequence={args.max_predictions_per_sequence} does not match "
            f"the data: {files[0]} has {pred} masked LM slots per record", usage=True)
    return files


def _interrupted(signum, frame):  # noqa: ARG001  (SIGTERM: clean up as for Ctrl-C)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from models.bert_large import packing  # noqa: PLC0415  (numpy; after --help)

    signal.signal(signal.SIGTERM, _interrupted)
    try:
        files = _check(args, packing)
        packing.pack_dataset(
            files, args.output_dir, args.max_sequence_length, args.max_predictions_per_sequence,
            max_sequences_per_pack=args.max_sequences_per_pack,
            duplication_factor=args.duplication_factor, algorithm=args.algorithm, seed=args.seed,
            max_predictions_per_pack=args.max_predictions_per_pack,
            log=lambda m: print(f"{PROG}: {m}", file=sys.stderr, flush=True))
    except packing.PackingError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2 if err.usage else 1
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"{PROG}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted (partial output removed)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
