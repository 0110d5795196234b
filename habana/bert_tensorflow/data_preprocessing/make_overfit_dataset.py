"""The ``overfit`` pretraining dataset: a tiny, fixed set for smoke runs.

    python data_preprocessing/make_overfit_dataset.py OUT_DIR [--vocab_file VOCAB]

Habana's BERT "overfit" runs pretrain on one small text (google-research's sample_text.txt
through create_pretraining_data.py, seq 128, 20 predictions, dupe factor 5, seed 12345): a set
so small that the model overfits it within a few hundred steps -- the loss falling towards zero
shows that the training loop, the data path and the device work, in minutes. This script
writes the same kind of set from a fixed text built into it (a dozen short documents), with
the vocab given, for both pretraining phases:

    OUT_DIR/tfrecord/seq_len_128/<dataset_name>/training/overfit_training.tfrecord  (20 preds)
    OUT_DIR/tfrecord/seq_len_128/<dataset_name>/test/overfit_test.tfrecord
    OUT_DIR/tfrecord/seq_len_512/<dataset_name>/training/overfit_training.tfrecord  (80 preds)
    OUT_DIR/tfrecord/seq_len_512/<dataset_name>/test/overfit_test.tfrecord

(the layout of create_datasets_from_start.sh, so run_pretraining.py takes
``--input_files_dir=OUT_DIR/tfrecord/seq_len_128/<dataset_name>/training`` and
``--eval_files_dir=.../test``). The test files hold the same text with other masks (another
seed; one pass), since the point is to fit this very text. The output is deterministic: the
same bytes on every run for the same vocab (create_pretraining_data.py is seeded).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import prep_util  # noqa: E402
from prep_util import UsageError, WorkError  # noqa: E402

DEFAULT_VOCAB = prep_util.PACKAGE_DIR / "wwm_uncased_L-24_H-1024_A-16" / "vocab.txt"
SEQ_CONFIGS = ((128, 20), (512, 80))
TRAIN_SEED, TEST_SEED = 12345, 54321
TRAIN_DUPE_FACTOR, TEST_DUPE_FACTOR = 5, 1

# One sentence per line, a blank line between documents (create_pretraining_data's format).
OVERFIT_TEXT = """\
The river starts high in the mountains and flows south for three hundred miles.
Small villages line both of its banks.
Every spring the snow melts and the water rises quickly.
The farmers use the water to grow wheat, corn and beans.
In the autumn the river is calm and the fish return to the lakes.

A computer stores numbers in memory as long strings of bits.
Each bit is either a zero or a one.
Programs tell the processor which numbers to add, compare or move.
The first computers filled whole rooms, but today a phone is far more powerful.
Software engineers write the programs in languages that people can read.

The old library in the centre of the town was built of red stone.
It holds more than forty thousand books and many old maps.
Students come in the evening to read and to write their papers.
The librarian knows where every book is kept.
On Sundays the library is closed and the square outside is quiet.

Bread is made from flour, water, salt and yeast.
The dough is mixed, left to rise, and then baked in a hot oven.
A good crust needs steam during the first minutes of baking.
Some bakers keep a starter alive for many years.
Fresh bread tastes best on the day it is baked.

The city council met on Tuesday to discuss the new bridge.
Engineers said the old bridge could not carry heavy trucks any more.
The new bridge will have two lanes for cars and a path for bicycles.
Work is expected to begin next year and to last eighteen months.
Residents asked for a ferry while the bridge is closed.

Music is organised sound that changes over time.
A melody is a sequence of notes that the listener hears as one line.
Harmony appears when several notes sound together.
Rhythm gives music its sense of movement and pulse.
Many people learn to play the piano or the guitar as children.

The moon travels around the earth about once every month.
Its light is sunlight reflected from its grey and dusty surface.
The same side of the moon always faces the earth.
Astronauts first walked on the moon in the summer of the year nineteen sixty nine.
The pull of the moon causes the tides of the oceans.

A healthy garden needs good soil, sunlight and regular water.
Tomatoes and peppers like warm weather and long days.
Lettuce grows quickly in the cool months of the year.
Insects such as bees carry pollen from one flower to the next.
Gardeners add compost to the soil every autumn.

The train left the station at seven in the morning.
It crossed the plain, passed through two long tunnels and reached the coast at noon.
Passengers read newspapers, slept or looked out of the windows.
A small cafe car sold coffee, tea and sandwiches.
The return train was late because of snow on the line.

Language models learn the patterns of words from large amounts of text.
A masked language model guesses words that have been hidden in a sentence.
The model also learns whether one sentence follows another.
After this pretraining the model can be fine tuned for many tasks.
Question answering and classification are two common examples.

The museum opened a new exhibition about ancient ships.
Visitors can see the remains of a wooden boat that is two thousand years old.
Divers found the boat near the harbour more than fifty years ago.
The exhibition also explains how sailors found their way using the stars.
Schools bring their classes to the museum every week.

Winter in the north is long, dark and cold.
People spend the evenings at home with their families and friends.
Children go skating on the frozen lakes after school.
In the middle of winter the sun rises for only a few hours.
When spring comes the days grow longer very quickly.
"""


def _import_cpd():
    prep_util.code_root()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from models.bert_large.tensorflow import create_pretraining_data  # noqa: PLC0415

    return create_pretraining_data


def outputs(out_dir: Path, dataset_name: str) -> dict[tuple[int, str], Path]:
    root = out_dir / "tfrecord"
    return {(seq, split): root / f"seq_len_{seq}" / dataset_name / split /
            f"overfit_{split}.tfrecord"
            for seq, _ in SEQ_CONFIGS for split in ("training", "test")}


def main(argv: list[str] | None = None) -> int:
    parser = prep_util.OneLineParser(
        prog="make_overfit_dataset.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(__doc__ or "").strip(),
        epilog="Files already there are kept (--force rewrites them). Exit status: 0 done, 2 bad "
               "arguments or a missing vocab, 1 writing failed, 130 interrupted.")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR",
                        help="folder for tfrecord/ (created)")
    parser.add_argument("--vocab_file", type=Path, default=DEFAULT_VOCAB,
                        help="the BERT vocab.txt (default: %(default)s, where "
                             "download/download_pretrained_model.py puts BERT Large)")
    parser.add_argument("--do_lower_case", choices=("true", "false", "True", "False", "1", "0"),
                        default="true", help="true for uncased vocabularies (default true)")
    parser.add_argument("--dataset_name", default="books_wiki_en_corpus",
                        help="folder name under seq_len_*/ (default %(default)s)")
    parser.add_argument("--force", action="store_true", help="rewrite existing files")
    args = parser.parse_args(argv)
    if not args.vocab_file.is_file():
        raise UsageError(f"--vocab_file={args.vocab_file}: no such file (pass the vocab.txt of "
                         "the BERT model to pretrain; download/download_pretrained_model.py "
                         "fetches one)")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise UsageError(f"{args.out_dir}: exists and is not a folder")
    targets = outputs(args.out_dir, args.dataset_name)
    if not args.force and all(p.is_file() for p in targets.values()):
        print(f"{args.out_dir}/tfrecord already holds the overfit dataset: kept (--force to "
              "rewrite)", file=sys.stderr)
        return 0
    cpd = _import_cpd()
    lower = args.do_lower_case.lower() in ("true", "1")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".overfit-text.", dir=str(args.out_dir)) as tmp:
        text_file = Path(tmp) / "overfit.txt"
        text_file.write_text(OVERFIT_TEXT, encoding="utf-8")
        for seq, preds in SEQ_CONFIGS:
            for split, seed, dupe in (("training", TRAIN_SEED, TRAIN_DUPE_FACTOR),
                                      ("test", TEST_SEED, TEST_DUPE_FACTOR)):
                target = targets[(seq, split)]
                if target.is_file() and not args.force:
                    print(f"{target}: already there, kept", file=sys.stderr)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                cfg = cpd.InstanceConfig(max_seq_length=seq, max_predictions_per_seq=preds,
                                         masked_lm_prob=0.15, short_seq_prob=0.1,
                                         dupe_factor=dupe)
                try:
                    summary = cpd.create_pretraining_data(
                        [str(text_file)], str(args.vocab_file), [str(target)], cfg,
                        do_lower_case=lower, random_seed=seed, plain_progress=True)
                except ValueError as err:
                    raise WorkError(f"{target}: {err}") from None
                print(f"{target}: {summary['instances']} instances", file=sys.stderr)
    print(f"overfit dataset ready: {args.out_dir / 'tfrecord'}/seq_len_{{128,512}}/"
          f"{args.dataset_name}/{{training,test}}")
    return 0


if __name__ == "__main__":
    sys.exit(prep_util.cli(main))
