"""Wikipedia XML dump -> plain text, one sentence per line, a blank line between articles.

    python data_preprocessing/wiki_to_text.py DUMP OUTPUT_DIR [--work_dir DIR] [--processes N]

Stages (each one's output is written under a temp name and renamed when complete, so a rerun
after an interruption redoes only what was not finished):

1. decompress: a ``.bz2`` DUMP is decompressed with ``lbzip2`` (parallel) when it is on PATH,
   into ``WORK_DIR/<dump>.xml``; without lbzip2 the ``.bz2`` goes to wikiextractor as it is
   (Python's bz2 module, one core). ``--decompressor`` chooses explicitly.
2. extract: the ``wikiextractor`` library (``python -m wikiextractor.WikiExtractor``, JSON
   output, templates expanded) turns the wiki markup into article text in
   ``WORK_DIR/extracted/``.
3. format: every article becomes one document: its paragraphs split into sentences with
   blingfire (see sentences.py), paragraphs of fewer than ``--min_paragraph_words`` words
   (section headings) dropped, articles with fewer than ``--min_document_sentences``
   sentences (redirects, stubs) dropped. Written to ``OUTPUT_DIR/wiki_*.txt`` (one per
   extracted file, in parallel over --processes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import prep_util  # noqa: E402
import sentences  # noqa: E402
from prep_util import UsageError, WorkError  # noqa: E402

EXTRACT_CHUNK = "100M"  # wikiextractor output file size


def log(message: str) -> None:
    print(f"wiki_to_text: {message}", file=sys.stderr, flush=True)


def decompress(dump: Path, work_dir: Path, how: str, processes: int) -> Path:
    """The file to give wikiextractor: DUMP itself, or its lbzip2-decompressed copy."""
    if dump.suffix != ".bz2" or how == "python":
        return dump
    lbzip2 = shutil.which("lbzip2")
    if how == "lbzip2" and not lbzip2:
        raise UsageError("--decompressor=lbzip2 but lbzip2 is not on PATH (apt-get install "
                         "lbzip2)")
    if not lbzip2:
        log("lbzip2 not found: wikiextractor reads the .bz2 with Python's bz2 (one core; "
            "install lbzip2 for a faster decompression)")
        return dump
    xml = work_dir / dump.name[: -len(".bz2")]
    if xml.suffix != ".xml":
        xml = xml.with_name(xml.name + ".xml")
    if xml.is_file():
        log(f"decompress: {xml} already there")
        return xml
    prep_util.remove_stale_temps(work_dir)
    tmp = work_dir / f".{xml.name}.{os.getpid()}.tmp"
    log(f"decompress: lbzip2 -d -n {processes} {dump} -> {xml}")
    start = time.monotonic()
    try:
        with open(tmp, "wb") as out:
            proc = subprocess.run([lbzip2, "-d", "-c", "-n", str(processes), str(dump)],
                                  stdout=out, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise WorkError(f"lbzip2 could not decompress {dump}: {last}")
        os.replace(tmp, xml)
    finally:
        tmp.unlink(missing_ok=True)
    log(f"decompress: {xml.stat().st_size / 2**20:.1f} MiB in {time.monotonic() - start:.1f}s")
    return xml


def extract(source: Path, extracted: Path, processes: int, quiet: bool) -> None:
    """Run wikiextractor on SOURCE into EXTRACTED (atomically)."""
    if extracted.is_dir():
        log(f"extract: {extracted} already there")
        return
    prep_util.remove_stale_temps(extracted.parent)
    log(f"extract: wikiextractor {source} -> {extracted} ({processes} processes)")
    start = time.monotonic()
    with prep_util.atomic_dir(extracted) as tmp:
        cmd = [sys.executable, "-m", "wikiextractor.WikiExtractor", str(source), "-o", str(tmp),
               "--json", "-b", EXTRACT_CHUNK, "--processes", str(processes)]
        if quiet:
            cmd.append("-q")
        proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0 or not any(tmp.rglob("wiki_*")):
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            last = lines[-1] if lines else "no output"
            raise WorkError(f"wikiextractor failed on {source} (exit {proc.returncode}): {last}")
        if not quiet and proc.stderr.strip():
            sys.stderr.write(proc.stderr)
    files = sorted(extracted.rglob("wiki_*"))
    log(f"extract: {len(files)} file(s) in {time.monotonic() - start:.1f}s")


def _format_file(job: tuple[str, str, int, int]) -> tuple[str, int, int]:
    src, dst, min_paragraph_words, min_document_sentences = job
    n_docs = n_sentences = 0
    dst_path = Path(dst)
    tmp = dst_path.with_name(f".{dst_path.name}.{os.getpid()}.tmp")
    try:
        with open(src, encoding="utf-8") as f, open(tmp, "w", encoding="utf-8") as out:
            for line in f:
                if not line.strip():
                    continue
                article = json.loads(line)
                paragraphs = article.get("text", "").split("\n")
                doc = sentences.document_sentences(paragraphs, min_paragraph_words)
                if len(doc) >= min_document_sentences:
                    out.write(sentences.format_documents([doc]))
                    n_docs += 1
                    n_sentences += len(doc)
        os.replace(tmp, dst_path)
    finally:
        tmp.unlink(missing_ok=True)
    return dst, n_docs, n_sentences


def format_extracted(extracted: Path, output_dir: Path, processes: int,
                     min_paragraph_words: int, min_document_sentences: int) -> None:
    if output_dir.is_dir():
        log(f"format: {output_dir} already there")
        return
    files = sorted(extracted.rglob("wiki_*"))
    prep_util.remove_stale_temps(output_dir.parent)
    start = time.monotonic()
    docs = sents = 0
    with prep_util.atomic_dir(output_dir) as tmp:
        jobs = [(str(src), str(tmp / f"wiki_{src.parent.name}_{src.name}.txt"),
                 min_paragraph_words, min_document_sentences) for src in files]
        with multiprocessing.get_context("fork").Pool(min(processes, len(jobs) or 1)) as pool:
            for i, (dst, n_docs, n_sents) in enumerate(pool.imap(_format_file, jobs), 1):
                docs += n_docs
                sents += n_sents
                log(f"format: [{i}/{len(jobs)}] {Path(dst).name}: {n_docs} articles, "
                    f"{n_sents} sentences")
        if docs == 0:
            raise WorkError(f"no article of {extracted} has {min_document_sentences} or more "
                            "sentences: is the dump a MediaWiki pages-articles export?")
    log(f"format: {docs} articles, {sents} sentences in {time.monotonic() - start:.1f}s -> "
        f"{output_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = prep_util.OneLineParser(
        prog="wiki_to_text.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(__doc__ or "").strip(),
        epilog="Exit status: 0 done, 2 bad arguments or missing input, 1 a stage failed, "
               "130 interrupted.")
    parser.add_argument("dump", type=Path, help="the pages-articles dump (.xml or .xml.bz2)")
    parser.add_argument("output_dir", type=Path,
                        help="folder for the formatted text files (created)")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="folder for the decompressed dump and wikiextractor's output "
                             "(default: OUTPUT_DIR's parent)")
    parser.add_argument("--processes", type=prep_util.positive_int,
                        default=prep_util.default_processes(),
                        help="processes for lbzip2, wikiextractor and formatting (default: the "
                             "CPUs available, %(default)s)")
    parser.add_argument("--decompressor", choices=("auto", "lbzip2", "python"), default="auto",
                        help="auto: lbzip2 when on PATH, else Python's bz2 (default auto)")
    parser.add_argument("--min_paragraph_words", type=int, default=4,
                        help="drop paragraphs (lines of the article) with fewer words: section "
                             "headings (default %(default)s)")
    parser.add_argument("--min_document_sentences", type=int, default=2,
                        help="drop articles with fewer sentences (default %(default)s)")
    parser.add_argument("--keep_xml", action="store_true",
                        help="keep the decompressed XML after extraction (default: remove it)")
    parser.add_argument("--quiet", action="store_true", help="no wikiextractor progress")
    args = parser.parse_args(argv)
    if not args.dump.is_file():
        raise UsageError(f"{args.dump}: no such file (the Wikipedia dump)")
    try:
        sentences.check_available()
    except sentences.SplitterMissing as err:
        raise UsageError(str(err)) from None
    if importlib.util.find_spec("wikiextractor") is None:
        raise UsageError("wikiextractor is not installed: pip install -r "
                         "data_preprocessing/requirements.txt")
    work_dir = args.work_dir or args.output_dir.resolve().parent
    work_dir.mkdir(parents=True, exist_ok=True)
    extracted = work_dir / "extracted"
    if not extracted.is_dir() and not args.output_dir.is_dir():
        source = decompress(args.dump, work_dir, args.decompressor, args.processes)
    else:
        source = args.dump
    if not args.output_dir.is_dir():
        extract(source, extracted, args.processes, args.quiet)
        if source != args.dump and not args.keep_xml:
            source.unlink(missing_ok=True)
        format_extracted(extracted, args.output_dir, args.processes, args.min_paragraph_words,
                         args.min_document_sentences)
    else:
        log(f"{args.output_dir} already there: nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(prep_util.cli(main))
