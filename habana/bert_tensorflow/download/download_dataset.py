"""Download the MRPC fine-tuning dataset in the GLUE layout (as Habana's download_dataset.py).

    python download/download_dataset.py [--dataset_path DIR]

downloads ``msr_paraphrase_train.txt``, ``msr_paraphrase_test.txt`` (SentEval's copy of the
Microsoft Research Paraphrase Corpus) and GLUE's ``mrpc_dev_ids.tsv`` (saved as ``dev_ids.tsv``),
then writes, as google's ``download_glue_data.py`` does:

  train.tsv  header ``Quality  #1 ID  #2 ID  #1 String  #2 String``; the training pairs that
             are not in the dev ids
  dev.tsv    the same columns; the training pairs whose (#1 ID, #2 ID) is in dev_ids.tsv
  test.tsv   header ``index  #1 ID  #2 ID  #1 String  #2 String``; the test pairs

which is what ``run_classifier.py --dataset_path=DIR`` (models/bert_large/tensorflow/
classifier_data.py) reads. Default DIR: ``<package>/dataset/MRPC``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fetch  # noqa: E402

PACKAGE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATASET_PATH = PACKAGE_DIR / "dataset" / "MRPC"
DEFAULT_MRPC_URL = "https://dl.fbaipublicfiles.com/senteval/senteval_data/"
DEFAULT_DEV_IDS_URL = "https://dl.fbaipublicfiles.com/glue/data/mrpc_dev_ids.tsv"
RAW_FILES = ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt")
OUTPUTS = ("train.tsv", "dev.tsv", "test.tsv")
HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
TEST_HEADER = "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


class WorkError(Exception):
    pass


def _join(base: str, name: str) -> str:
    return base + name if base.endswith("/") else f"{base}/{name}"


def read_rows(path: Path) -> list[list[str]]:
    """The data rows (header dropped) of an MRPC source file: 5 tab-separated columns each."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise WorkError(f"{path}: not UTF-8 text ({err.reason}): not the MRPC file") from None
    lines = text.splitlines()
    if not lines or not lines[0].startswith("Quality"):
        raise WorkError(f"{path}: expected the MRPC header 'Quality\\t#1 ID\\t#2 ID\\t#1 "
                        f"String\\t#2 String', got {lines[0][:60]!r}" if lines else
                        f"{path}: empty file")
    rows = []
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        row = line.rstrip("\r\n").split("\t")
        if len(row) != 5:
            raise WorkError(f"{path}:{line_no}: expected 5 tab-separated columns, got {len(row)}")
        rows.append(row)
    if not rows:
        raise WorkError(f"{path}: no data rows")
    return rows


def read_dev_ids(path: Path) -> set[tuple[str, str]]:
    ids = set()
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        if len(parts) != 2:
            raise WorkError(f"{path}:{line_no}: expected two tab-separated ids (#1 ID, #2 ID), "
                            f"got {line[:60]!r}")
        ids.add((parts[0], parts[1]))
    if not ids:
        raise WorkError(f"{path}: no dev ids")
    return ids


def _write_atomic(path: Path, text: str) -> None:
    tmp = fetch.temp_path_beside(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def convert(dataset_dir: Path) -> dict[str, int]:
    """Write train.tsv, dev.tsv, test.tsv from the downloaded files; returns row counts."""
    train_rows = read_rows(dataset_dir / "msr_paraphrase_train.txt")
    test_rows = read_rows(dataset_dir / "msr_paraphrase_test.txt")
    dev_ids = read_dev_ids(dataset_dir / "dev_ids.tsv")
    train, dev = [], []
    for label, id1, id2, s1, s2 in train_rows:
        if label not in ("0", "1"):
            raise WorkError(f"msr_paraphrase_train.txt: label {label!r} is not 0 or 1")
        (dev if (id1, id2) in dev_ids else train).append("\t".join((label, id1, id2, s1, s2)))
    if not dev:
        raise WorkError("none of the dev ids is in msr_paraphrase_train.txt: the files do not "
                        "belong together")
    test = [f"{i}\t{id1}\t{id2}\t{s1}\t{s2}" for i, (_, id1, id2, s1, s2) in enumerate(test_rows)]
    # test.tsv, dev.tsv, then train.tsv last: its presence means all three are there.
    _write_atomic(dataset_dir / "test.tsv", TEST_HEADER + "".join(r + "\n" for r in test))
    _write_atomic(dataset_dir / "dev.tsv", HEADER + "".join(r + "\n" for r in dev))
    _write_atomic(dataset_dir / "train.tsv", HEADER + "".join(r + "\n" for r in train))
    return {"train.tsv": len(train), "dev.tsv": len(dev), "test.tsv": len(test)}


def run(dataset_dir: Path, mrpc_url: str, dev_ids_url: str, force: bool) -> dict[str, int] | None:
    if not force and all((dataset_dir / name).is_file() for name in OUTPUTS):
        print(f"{dataset_dir} already holds {', '.join(OUTPUTS)}: not downloading again "
              "(--force to redo)", file=sys.stderr)
        return None
    dataset_dir.mkdir(parents=True, exist_ok=True)
    sources = [(_join(mrpc_url, name), dataset_dir / name) for name in RAW_FILES]
    sources.append((dev_ids_url, dataset_dir / "dev_ids.tsv"))
    for url, target in sources:
        if target.is_file() and target.stat().st_size > 0 and not force:
            print(f"using the existing {target}", file=sys.stderr)
            continue
        fetch.remove_stale_temps(dataset_dir, target.name)
        try:
            fetch.download(url, target)
        except fetch.FetchError as err:
            raise WorkError(str(err)) from None
    return convert(dataset_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = fetch.OneLineParser(
        prog="download_dataset.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(__doc__ or "").strip(),
        epilog="Each file is downloaded to a temp file beside it and renamed when complete; "
               "an error or Ctrl-C leaves no half-written file. Files already downloaded are "
               "reused; a folder already holding train.tsv, dev.tsv and test.tsv is left as it "
               "is.\nExit status: 0 done (or already there), 2 bad arguments, 1 a download or "
               "conversion failed, 130 interrupted.")
    parser.add_argument("--dataset_path", "--dataset-path", dest="dataset_path",
                        default=str(DEFAULT_DATASET_PATH),
                        help="folder for the MRPC files (created; default: %(default)s)")
    parser.add_argument("--mrpc_url", default=DEFAULT_MRPC_URL,
                        help="base URL of msr_paraphrase_train.txt and msr_paraphrase_test.txt "
                             "(default: %(default)s)")
    parser.add_argument("--dev_ids_url", default=DEFAULT_DEV_IDS_URL,
                        help="URL of GLUE's MRPC dev ids file (default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="download and convert again even if the files are there")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fetch.install_signal_handlers()
    dataset_dir = Path(args.dataset_path)
    if dataset_dir.exists() and not dataset_dir.is_dir():
        print(f"error: --dataset_path={dataset_dir}: exists and is not a folder", file=sys.stderr)
        return 2
    try:
        counts = run(dataset_dir, args.mrpc_url, args.dev_ids_url, args.force)
    except WorkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: {err.filename or dataset_dir}: {err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing half-written was left", file=sys.stderr)
        return 130
    if counts:
        print(f"MRPC ready in {dataset_dir}: " + ", ".join(f"{k} {v} rows"
                                                         for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
