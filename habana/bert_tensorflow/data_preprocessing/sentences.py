"""Sentence splitting for the pretraining corpus: one sentence per line, documents separated by
a blank line (the input format of create_pretraining_data.py).

Splitter: ``blingfire`` (Microsoft's Bling Fire, PyPI ``blingfire``). Why this one:

- it works offline: its sentence-breaking model is compiled into the native library inside the
  wheel, so nothing is downloaded at run time (nltk's punkt needs ``nltk.download('punkt')``,
  which this pipeline must not depend on);
- it is fast enough for Wikipedia: about 15-20 MB of text per second on one core, where
  ``pysbd`` (rule-based, the most accurate of the three on abbreviations) manages about
  20 KB/s -- days of CPU for the ~20 GB of English Wikipedia text -- and ``syntok`` about
  0.5 MB/s;
- it handles the cases that matter for BERT data well (abbreviations such as "Dr.", "U.S.",
  "e.g.", decimals, initials), is used for this purpose by other BERT/LLM data pipelines, and
  is maintained by Microsoft (x86-64 Linux, macOS and Windows wheels).

Limitation: blingfire ships native code for x86-64 only (Gaudi hosts are x86-64).
"""

from __future__ import annotations

from typing import Iterable

_SPLIT = None


class SplitterMissing(ImportError):
    pass


def _splitter():
    global _SPLIT
    if _SPLIT is None:
        try:
            import blingfire  # noqa: PLC0415
        except (ImportError, OSError) as err:
            raise SplitterMissing(
                f"the sentence splitter blingfire cannot be loaded ({err}): pip install -r "
                "data_preprocessing/requirements.txt") from None
        _SPLIT = blingfire.text_to_sentences
    return _SPLIT


def check_available() -> None:
    """Raise SplitterMissing (one-line message) when the splitter cannot be loaded."""
    _splitter()


def split_sentences(paragraph: str) -> list[str]:
    """The sentences of one paragraph (whitespace-normalised, empty ones dropped)."""
    text = " ".join(paragraph.split())
    if not text:
        return []
    return [s.strip() for s in _splitter()(text).split("\n") if s.strip()]


def document_sentences(paragraphs: Iterable[str], min_paragraph_words: int = 1) -> list[str]:
    """Sentences of a document given as paragraphs; paragraphs with fewer than
    MIN_PARAGRAPH_WORDS words (section headings, list stubs) are dropped."""
    out: list[str] = []
    for paragraph in paragraphs:
        if len(paragraph.split()) < min_paragraph_words:
            continue
        out.extend(split_sentences(paragraph))
    return out


def format_documents(documents: Iterable[list[str]]) -> str:
    """Documents (lists of sentences) as text: a sentence per line, a blank line after each."""
    return "".join("\n".join(doc) + "\n\n" for doc in documents if doc)
