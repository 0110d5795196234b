"""The `tokenizers`-based FullTokenizer against an independent re-statement of google-research
BERT's tokenization rules (``_reference_tokenize`` below), on strings chosen to hit each rule."""

from __future__ import annotations

import unicodedata

import pytest

from models.bert_large.tensorflow import tokenization
from tests.tf.conftest import TINY_VOCAB, make_vocab_file


# --- reference: google-research BERT's rules, written out plainly --------------------------

def _is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch):
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    ranges = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]
    return any(lo <= cp <= hi for lo, hi in ranges)


def _reference_basic(text, lower):
    cleaned = []
    for ch in text:
        if ord(ch) in (0, 0xFFFD) or _is_control(ch):
            continue
        cleaned.append(" " if _is_whitespace(ch) else ch)
    text = "".join(" " + ch + " " if _is_cjk(ord(ch)) else ch for ch in cleaned)
    out = []
    for word in text.split():
        if lower:
            word = word.lower()
            word = "".join(c for c in unicodedata.normalize("NFD", word)
                           if unicodedata.category(c) != "Mn")
        current = ""
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    out.append(current)
                out.append(ch)
                current = ""
            else:
                current += ch
        if current:
            out.append(current)
    return out


def _reference_wordpiece(word, vocab):
    if len(word) > 200:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def _reference_tokenize(text, vocab, lower):
    return [p for w in _reference_basic(text, lower) for p in _reference_wordpiece(w, vocab)]


# --- cases -----------------------------------------------------------------------------------

TRICKY = [
    "Hello World",
    "Héllo Wörld, café naïve RÉSUMÉ",
    "e\u0301cole cafe\u0301",  # combining accents (NFD input)
    "hello,world!! ¿what?  «quick» — brown…fox",
    "$5.00 & 100% (yes) [no] {maybe} a_b a-b a/b a\\b ~`^|",
    "北京大学is中国的 capital",  # CJK ideographs become separate tokens
    "hel\x00lo wo\ufffdrld\x07 in\u200bvisible soft\u00adhyphen",  # control / format chars
    "tab\there\nnew\r\nline\u3000ideo\u00a0nbsp\u2028sep\u2029par",  # whitespace kinds
    "a" * 201,  # longer than 200 characters -> [UNK]
    "a" * 200,  # exactly 200 -> WordPiece pieces
    "unwanted running playable",  # ## continuations
    "xyzzyq ßtraße ☃snow",  # unknown characters make the whole word [UNK]
    "ΟΔΟΣ Σίσυφος",  # Greek capital sigma (word-final form when lower-cased)
    "İstanbul ﬁne Ǆ",  # special casing, ligature, titlecase digraph
    "   ",
    "",
]


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory):
    return make_vocab_file(tmp_path_factory.mktemp("vocab") / "vocab.txt")


@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
@pytest.mark.parametrize("text", TRICKY, ids=range(len(TRICKY)))
def test_full_tokenizer_matches_google_rules(vocab_path, text, lower):
    tok = tokenization.FullTokenizer(vocab_path, do_lower_case=lower)
    vocab = set(TINY_VOCAB)
    assert tok.tokenize(text) == _reference_tokenize(text, vocab, lower)
    assert tok.basic_tokenizer.tokenize(text) == _reference_basic(text, lower)


def test_expected_tokens_on_known_strings(vocab_path):
    uncased = tokenization.FullTokenizer(vocab_path, do_lower_case=True)
    assert uncased.tokenize("Héllo, WORLD!") == ["hello", ",", "world", "!"]
    assert uncased.tokenize("unwanted jumps") == ["un", "##want", "##ed", "jumps"]
    assert uncased.tokenize("北京is") == ["北", "京", "is"]
    assert uncased.tokenize("a" * 201) == ["[UNK]"]
    assert uncased.tokenize("a" * 200)[:2] == ["a", "##a"]
    assert uncased.tokenize("ß") == ["[UNK]"]
    cased = tokenization.FullTokenizer(vocab_path, do_lower_case=False)
    assert cased.tokenize("Hello hello HELLO café") == ["Hello", "hello", "[UNK]", "café"]


def test_batch_equals_single_and_ids_round_trip(vocab_path):
    tok = tokenization.FullTokenizer(vocab_path, do_lower_case=True)
    texts = [t for t in TRICKY if t.strip()]
    batch = tok.tokenize_batch(texts)
    assert batch == [tok.tokenize(t) for t in texts]
    ids = tok.encode_batch_ids(texts)
    assert ids == [tok.convert_tokens_to_ids(b) for b in batch]
    assert [tok.convert_ids_to_tokens(i) for i in ids] == batch
    assert tok.vocab["[UNK]"] == 1 and tok.inv_vocab[1] == "[UNK]"
    assert len(tok) == len(TINY_VOCAB)


def test_bytes_input_and_errors(vocab_path, tmp_path):
    tok = tokenization.FullTokenizer(vocab_path)
    assert tok.tokenize("café".encode()) == ["cafe"]
    with pytest.raises(KeyError, match="notatoken"):
        tok.convert_tokens_to_ids(["notatoken"])
    with pytest.raises(KeyError, match="99999"):
        tok.convert_ids_to_tokens([99999])
    with pytest.raises(FileNotFoundError, match="--vocab_file"):
        tokenization.FullTokenizer(tmp_path / "missing.txt")
    no_unk = make_vocab_file(tmp_path / "v.txt", ["[PAD]", "a"])
    with pytest.raises(ValueError, match=r"\[UNK\]"):
        tokenization.FullTokenizer(no_unk)
