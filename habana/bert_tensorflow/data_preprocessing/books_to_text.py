"""BookCorpus (plain-text books) -> one sentence per line, a blank line between documents.

    python data_preprocessing/books_to_text.py (--url URL | --input_dir DIR) OUTPUT_DIR

Input: ``--input_dir``, a folder of ``.txt`` books (searched recursively; one book per file,
one paragraph per line, as BookCorpus' text files are), or ``--url``, a ``.tar``,
``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.zip`` or ``.txt`` file holding such books; it is
downloaded (atomically, with progress lines; kept in ``--download_dir`` so a rerun does not
download it again) and unpacked there.

Each book becomes one document (books longer than ``--max_document_sentences`` sentences are
cut into several documents of that many, so that the big concatenated BookCorpus dumps shard
well); every line is split into sentences with blingfire (see sentences.py). Written to
``OUTPUT_DIR/books_NNNNN.txt`` (one file per group of books, in parallel over --processes),
atomically: OUTPUT_DIR appears when complete.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tarfile
import time
import urllib.parse
import zipfile
from pathlib import Path
from typing import Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import prep_util  # noqa: E402
import sentences  # noqa: E402
from prep_util import UsageError, WorkError  # noqa: E402

DEFAULT_BOOKS_URL = ("https://storage.googleapis.com/huggingface-nlp/datasets/bookcorpus/"
                     "bookcorpus.tar.bz2")
BOOKS_PER_FILE = 64


def log(message: str) -> None:
    print(f"books_to_text: {message}", file=sys.stderr, flush=True)


def download_books(url: str, download_dir: Path) -> Path:
    """Download URL into DOWNLOAD_DIR and unpack it; the folder of .txt books."""
    fetch = prep_util.import_fetch()
    name = Path(urllib.parse.urlsplit(url).path).name or "books"
    archive = download_dir / name
    unpacked = download_dir / "books_raw"
    if unpacked.is_dir():
        log(f"download: {unpacked} already there")
        return unpacked
    download_dir.mkdir(parents=True, exist_ok=True)
    if archive.is_file():
        log(f"download: {archive} already there")
    else:
        fetch.remove_stale_temps(download_dir, archive.name)
        try:
            fetch.download(url, archive)
        except fetch.FetchError as err:
            raise WorkError(str(err)) from None
    log(f"unpack: {archive} -> {unpacked}")
    with prep_util.atomic_dir(unpacked) as tmp:
        lower = archive.name.lower()
        try:
            if lower.endswith(".zip"):
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(tmp)
            elif ".tar" in lower or lower.endswith(".tgz"):
                with tarfile.open(archive) as tar:
                    tar.extractall(tmp, filter="data")
            elif lower.endswith(".txt"):
                shutil.copyfile(archive, tmp / archive.name)
            else:
                raise WorkError(f"{url}: expected a .tar(.gz|.bz2), .zip or .txt file of books")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
            raise WorkError(f"{archive}: cannot unpack ({err}); remove it to download again") \
                from None
    return unpacked


def book_documents(path: Path, max_document_sentences: int) -> Iterator[list[str]]:
    """The documents of one book, streamed (the concatenated BookCorpus files are GBs)."""
    doc: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            for sent in sentences.split_sentences(line):
                doc.append(sent)
                if len(doc) == max_document_sentences:
                    yield doc
                    doc = []
    if doc:
        yield doc


def _format_group(job: tuple[list[str], str, int]) -> tuple[str, int, int]:
    books, dst, max_document_sentences = job
    n_docs = n_sents = 0
    dst_path = Path(dst)
    tmp = dst_path.with_name(f".{dst_path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            for book in books:
                for doc in book_documents(Path(book), max_document_sentences):
                    out.write(sentences.format_documents([doc]))
                    n_docs += 1
                    n_sents += len(doc)
        os.replace(tmp, dst_path)
    finally:
        tmp.unlink(missing_ok=True)
    return dst, n_docs, n_sents


def format_books(books_dir: Path, output_dir: Path, processes: int,
                 max_document_sentences: int) -> None:
    if output_dir.is_dir():
        log(f"format: {output_dir} already there")
        return
    books = sorted(p for p in books_dir.rglob("*.txt") if p.is_file())
    if not books:
        raise WorkError(f"{books_dir}: no .txt books in it")
    prep_util.remove_stale_temps(output_dir.parent)
    start = time.monotonic()
    docs = sents = 0
    with prep_util.atomic_dir(output_dir) as tmp:
        groups = [books[i:i + BOOKS_PER_FILE] for i in range(0, len(books), BOOKS_PER_FILE)]
        jobs = [([str(b) for b in group], str(tmp / f"books_{i:05d}.txt"),
                 max_document_sentences) for i, group in enumerate(groups)]
        with multiprocessing.get_context("fork").Pool(min(processes, len(jobs))) as pool:
            for i, (dst, n_docs, n_sents) in enumerate(pool.imap(_format_group, jobs), 1):
                docs += n_docs
                sents += n_sents
                log(f"format: [{i}/{len(jobs)}] {Path(dst).name}: {n_docs} documents, "
                    f"{n_sents} sentences")
        if sents == 0:
            raise WorkError(f"the books in {books_dir} hold no text")
    log(f"format: {len(books)} books, {docs} documents, {sents} sentences in "
        f"{time.monotonic() - start:.1f}s -> {output_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = prep_util.OneLineParser(
        prog="books_to_text.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(__doc__ or "").strip(),
        epilog="Exit status: 0 done, 2 bad arguments or missing input, 1 the download or "
               "formatting failed (HTTP 403/503 from an overloaded server: run again), "
               "130 interrupted.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--url", help="archive or text file of books to download (default: "
                                      f"{DEFAULT_BOOKS_URL})")
    source.add_argument("--input_dir", type=Path,
                        help="folder of .txt books already on disk (no download)")
    parser.add_argument("output_dir", type=Path, help="folder for the formatted text (created)")
    parser.add_argument("--download_dir", type=Path, default=None,
                        help="where --url is downloaded and unpacked (default: OUTPUT_DIR's "
                             "parent/download/books)")
    parser.add_argument("--processes", type=prep_util.positive_int,
                        default=prep_util.default_processes(),
                        help="formatting processes (default: the CPUs available, %(default)s)")
    parser.add_argument("--max_document_sentences", type=prep_util.positive_int, default=2000,
                        help="cut longer books into documents of this many sentences "
                             "(default %(default)s)")
    args = parser.parse_args(argv)
    try:
        sentences.check_available()
    except sentences.SplitterMissing as err:
        raise UsageError(str(err)) from None
    if args.input_dir is not None:
        if not args.input_dir.is_dir():
            raise UsageError(f"--input_dir={args.input_dir}: no such folder")
        books_dir = args.input_dir
    else:
        url = args.url or DEFAULT_BOOKS_URL
        if urllib.parse.urlsplit(url).scheme not in ("http", "https", "ftp", "file"):
            raise UsageError(f"--url={url}: not a URL")
        download_dir = args.download_dir or (args.output_dir.resolve().parent / "download" /
                                             "books")
        if args.output_dir.is_dir():
            log(f"{args.output_dir} already there: nothing to do")
            return 0
        books_dir = download_books(url, download_dir)
    format_books(books_dir, args.output_dir, args.processes, args.max_document_sentences)
    return 0


if __name__ == "__main__":
    sys.exit(prep_util.cli(main))
