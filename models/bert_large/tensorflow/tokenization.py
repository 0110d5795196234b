"""WordPiece tokenization matching google-research BERT's ``FullTokenizer``, on `tokenizers`.

The Hugging Face ``tokenizers`` pipeline is configured to do what google's Python code does:

- clean text: drop NUL, U+FFFD and control characters (Unicode C* except tab/newline/CR),
  map whitespace to a space;
- put spaces around CJK ideographs so each is its own token;
- with ``do_lower_case``: lowercase and strip accents (NFD, drop Mn); without: neither;
- split on whitespace and punctuation (every ASCII non-alphanumeric printable, Unicode P*);
- greedy longest-match-first WordPiece with ``##`` continuations; a word longer than 200
  characters, or one that cannot be fully matched, becomes ``[UNK]``.

``tests/tf/test_tokenization.py`` checks this against an independent reference.
"""

from __future__ import annotations

import collections
import os
from typing import Iterable, Sequence

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

UNK_TOKEN = "[UNK]"
MAX_INPUT_CHARS_PER_WORD = 200


def convert_to_unicode(text) -> str:
    """``str`` as is, ``bytes`` decoded as UTF-8 (invalid bytes dropped)."""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8", "ignore")
    raise TypeError(f"expected str or bytes, got {type(text).__name__}")


def whitespace_tokenize(text: str) -> list[str]:
    """Split on whitespace after stripping (as google's ``whitespace_tokenize``)."""
    return text.split()


def load_vocab(vocab_file) -> "collections.OrderedDict[str, int]":
    """``vocab.txt`` → {token: id}, one token per line, id = line number (lines stripped)."""
    vocab: collections.OrderedDict[str, int] = collections.OrderedDict()
    try:
        with open(vocab_file, encoding="utf-8") as f:
            for index, line in enumerate(f):
                vocab[line.strip()] = index
    except FileNotFoundError:
        raise FileNotFoundError(
            f"vocab file {vocab_file} not found: pass the vocab.txt shipped with the "
            "checkpoint (--vocab_file)"
        ) from None
    if not vocab:
        raise ValueError(f"vocab file {vocab_file} is empty")
    return vocab


def _normalizer(do_lower_case: bool) -> normalizers.BertNormalizer:
    return normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=do_lower_case,
        lowercase=do_lower_case,
    )


def _lower_final_sigma(text: str, do_lower_case: bool) -> str:
    # The Rust lowercasing maps every capital sigma to "σ"; Python's str.lower (google's)
    # writes the word-final form "ς". Lowercase such text in Python first.
    if do_lower_case and "\u03a3" in text:
        return text.lower()
    return text


class BasicTokenizer:
    """Cleaning, CJK splitting, optional lower-casing/accent stripping, punctuation
    splitting — no WordPiece. What SQuAD's answer-span alignment uses."""

    def __init__(self, do_lower_case: bool = True):
        self.do_lower_case = do_lower_case
        self._normalizer = _normalizer(do_lower_case)
        self._pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    def tokenize(self, text) -> list[str]:
        text = _lower_final_sigma(convert_to_unicode(text), self.do_lower_case)
        normalized = self._normalizer.normalize_str(text)
        return [piece for piece, _ in self._pre_tokenizer.pre_tokenize_str(normalized)]


class FullTokenizer:
    """Basic tokenization followed by WordPiece, from a google-research ``vocab.txt``."""

    def __init__(self, vocab_file, do_lower_case: bool = True):
        self.vocab_file = os.fspath(vocab_file)
        self.do_lower_case = do_lower_case
        self.vocab = load_vocab(vocab_file)
        self.inv_vocab = {index: token for token, index in self.vocab.items()}
        if UNK_TOKEN not in self.vocab:
            raise ValueError(f"vocab file {vocab_file} has no {UNK_TOKEN} token")
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
        tokenizer = Tokenizer(
            WordPiece(
                vocab=dict(self.vocab),
                unk_token=UNK_TOKEN,
                max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD,
                continuing_subword_prefix="##",
            )
        )
        tokenizer.normalizer = _normalizer(do_lower_case)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        self._tokenizer = tokenizer

    @property
    def backend(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer`` (no special tokens added)."""
        return self._tokenizer

    def __len__(self) -> int:
        return len(self.vocab)

    def tokenize(self, text) -> list[str]:
        """Text → WordPiece tokens (no [CLS]/[SEP])."""
        text = _lower_final_sigma(convert_to_unicode(text), self.do_lower_case)
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def tokenize_batch(self, texts: Iterable) -> list[list[str]]:
        """Many texts at once (parallel in the Rust backend)."""
        encodings = self._tokenizer.encode_batch(
            [_lower_final_sigma(convert_to_unicode(t), self.do_lower_case) for t in texts],
            add_special_tokens=False,
        )
        return [e.tokens for e in encodings]

    def encode_batch_ids(self, texts: Iterable) -> list[list[int]]:
        """Many texts → WordPiece ids (no [CLS]/[SEP])."""
        encodings = self._tokenizer.encode_batch(
            [_lower_final_sigma(convert_to_unicode(t), self.do_lower_case) for t in texts],
            add_special_tokens=False,
        )
        return [e.ids for e in encodings]

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        try:
            return [self.vocab[t] for t in tokens]
        except KeyError as e:
            raise KeyError(f"token {e.args[0]!r} is not in {self.vocab_file}") from None

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        try:
            return [self.inv_vocab[int(i)] for i in ids]
        except KeyError as e:
            raise KeyError(
                f"id {e.args[0]} is outside the vocabulary of {self.vocab_file} "
                f"(size {len(self.vocab)})"
            ) from None
