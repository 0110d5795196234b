"""SQuAD reading, BERT feature conversion and answer post-processing.

Follows the google-research BERT SQuAD recipe so that scores are comparable with published
numbers:

- contexts are split on whitespace into "doc tokens"; each doc token is WordPiece-tokenized;
- the question is cut to ``max_query_length`` word pieces;
- a context longer than ``max_seq_length - len(query) - 3`` word pieces is covered by windows
  ("doc spans") that start ``doc_stride`` pieces apart; a token is scored only in the window
  where it has the most context on both sides (``token_is_max_context``);
- for training, the answer span is narrowed to the word pieces that match the tokenized answer
  text, and a window that does not hold the whole answer gets start = end = 0 ([CLS]);
- prediction takes the ``n_best_size`` best start and end logits per window, drops invalid
  spans (outside the context, not max-context, reversed, longer than ``max_answer_length``),
  and maps the best word-piece span back to the original context text.

Inputs are the SQuAD JSON files (v1.1; v2.0 with ``version_2_with_negative``).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from models.bert_large.tensorflow.squad_evaluate import (
    SquadFormatError,
    check_dataset,
    load_json,
)

log = logging.getLogger(__name__)

__all__ = ["SquadExample", "InputFeatures", "RawResult", "read_squad_examples",
           "convert_examples_to_features", "features_to_arrays", "write_predictions",
           "get_final_text", "whitespace_split", "load_squad_file", "SquadFormatError"]

UNIQUE_ID_START = 1000000000


@dataclasses.dataclass
class SquadExample:
    """One question about one context. Positions are doc-token (whitespace word) indices."""

    qas_id: str
    question_text: str
    doc_tokens: list[str]
    orig_answer_text: str | None = None
    start_position: int | None = None
    end_position: int | None = None
    is_impossible: bool = False
    answers: list[str] = dataclasses.field(default_factory=list)  # every reference answer


@dataclasses.dataclass
class InputFeatures:
    """One window of one example, ready for the model."""

    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list[str]
    token_to_orig_map: dict[int, int]       # feature position -> doc-token index
    token_is_max_context: dict[int, bool]   # feature position -> scored in this window?
    input_ids: list[int]
    input_mask: list[int]
    segment_ids: list[int]
    start_position: int | None = None
    end_position: int | None = None
    is_impossible: bool = False


def load_squad_file(path: str) -> dict:
    """Parse and check a SQuAD JSON file; :class:`SquadFormatError` names the file and the
    place where its layout breaks."""
    data = load_json(path)
    check_dataset(data, path)
    return data


RawResult = collections.namedtuple("RawResult", ["unique_id", "start_logits", "end_logits"])


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def _is_whitespace(c: str) -> bool:
    return c in (" ", "\t", "\r", "\n") or ord(c) == 0x202F


def whitespace_split(text: str) -> tuple[list[str], list[int]]:
    """Split ``text`` on whitespace. Returns the words and, for every character, the index
    of the word it belongs to (whitespace maps to the preceding word)."""
    words: list[str] = []
    char_to_word: list[int] = []
    new_word = True
    for c in text:
        if _is_whitespace(c):
            new_word = True
        else:
            if new_word:
                words.append(c)
            else:
                words[-1] += c
            new_word = False
        char_to_word.append(len(words) - 1)
    return words, char_to_word


def read_squad_examples(source: str | Mapping[str, Any], is_training: bool,
                        version_2_with_negative: bool = False) -> list[SquadExample]:
    """Read a SQuAD JSON file (path or already-parsed dict) into examples.

    For training, the first answer of each question is the target (dev files list several);
    a question whose answer text cannot be found at its ``answer_start`` is skipped with a
    warning, as google's reader does."""
    if isinstance(source, str):
        data = load_squad_file(source)
    else:
        data = source
        check_dataset(data, "the SQuAD data")

    examples: list[SquadExample] = []
    skipped = 0
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            doc_tokens, char_to_word = whitespace_split(context)
            for qa in paragraph["qas"]:
                answers = [a["text"] for a in qa.get("answers", [])]
                is_impossible = bool(qa.get("is_impossible", False)) and version_2_with_negative
                ex = SquadExample(qas_id=str(qa["id"]), question_text=qa["question"],
                                  doc_tokens=doc_tokens, is_impossible=is_impossible,
                                  answers=answers)
                if is_training:
                    if is_impossible:
                        ex.start_position = ex.end_position = -1
                        ex.orig_answer_text = ""
                    else:
                        if not qa.get("answers"):
                            raise SquadFormatError(
                                f"question {qa['id']!r} has no answer; training needs one "
                                "(SQuAD v2 data needs --version_2_with_negative=True)")
                        answer = qa["answers"][0]
                        text = answer["text"]
                        try:
                            offset = int(answer["answer_start"])
                        except (KeyError, TypeError, ValueError):
                            raise SquadFormatError(
                                f"question {qa['id']!r}: its first answer has no integer "
                                "'answer_start' (the character offset training needs)") from None
                        if offset < 0 or offset + len(text) > len(context) or not text:
                            skipped += 1
                            log.warning("skipping %s: answer_start %d is outside its context",
                                        qa["id"], offset)
                            continue
                        start = char_to_word[offset]
                        end = char_to_word[offset + len(text) - 1]
                        found = " ".join(doc_tokens[start:end + 1])
                        wanted = " ".join(whitespace_split(text)[0])
                        if wanted not in found:
                            skipped += 1
                            log.warning("skipping %s: answer %r not found in %r", qa["id"],
                                        wanted, found)
                            continue
                        ex.orig_answer_text = text
                        ex.start_position = start
                        ex.end_position = end
                examples.append(ex)
    if skipped:
        log.warning("skipped %d questions whose answers do not match their contexts", skipped)
    return examples


# --------------------------------------------------------------------------------------------
# Feature conversion
# --------------------------------------------------------------------------------------------
def _improve_answer_span(doc_tokens: Sequence[str], start: int, end: int, tokenizer,
                         answer_text: str) -> tuple[int, int]:
    """Narrow [start, end] (word pieces) to the smallest sub-span whose pieces equal the
    tokenized answer, e.g. "(1895-1943)." with answer "1895" -> just the "1895" piece."""
    target = " ".join(tokenizer.tokenize(answer_text))
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if " ".join(doc_tokens[new_start:new_end + 1]) == target:
                return new_start, new_end
    return start, end


def _doc_spans(num_tokens: int, max_tokens: int, stride: int) -> list[tuple[int, int]]:
    """(start, length) windows over ``num_tokens`` pieces, ``stride`` apart, last one ending
    at the document end."""
    spans = []
    start = 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens)
        spans.append((start, length))
        if start + length == num_tokens:
            break
        start += min(length, stride)
    return spans


def _is_max_context(spans: Sequence[tuple[int, int]], span_index: int, position: int) -> bool:
    """Is ``spans[span_index]`` the window with the most context around ``position``?

    Score = min(left context, right context) + 0.01 * window length; ties go to the first."""
    best_score, best_index = None, None
    for i, (start, length) in enumerate(spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_index = score, i
    return best_index == span_index


def _tokenize_doc(tokenizer, words: Sequence[str]
                  ) -> tuple[list[int], list[int], list[str]]:
    """Word-piece the whitespace words of a context. Returns (piece -> word index,
    word -> first piece index, pieces)."""
    batch = getattr(tokenizer, "tokenize_batch", None)
    per_word = batch(list(words)) if batch and words else [tokenizer.tokenize(w) for w in words]
    tok_to_orig: list[int] = []
    orig_to_tok: list[int] = []
    pieces: list[str] = []
    for i, word_pieces in enumerate(per_word):
        orig_to_tok.append(len(pieces))
        tok_to_orig.extend([i] * len(word_pieces))
        pieces.extend(word_pieces)
    return tok_to_orig, orig_to_tok, pieces


def convert_examples_to_features(examples: Sequence[SquadExample], tokenizer,
                                 max_seq_length: int, doc_stride: int, max_query_length: int,
                                 is_training: bool) -> list[InputFeatures]:
    """Turn examples into fixed-length windows: ``[CLS] query [SEP] doc-window [SEP]``."""
    if max_seq_length <= max_query_length + 3:
        raise ValueError(f"max_seq_length ({max_seq_length}) must be larger than "
                         f"max_query_length + 3 ({max_query_length + 3})")
    if doc_stride < 1:
        raise ValueError(f"doc_stride must be >= 1, got {doc_stride}")
    features: list[InputFeatures] = []
    unique_id = UNIQUE_ID_START
    doc_cache: dict[int, tuple[list[int], list[int], list[str]]] = {}
    for example_index, ex in enumerate(examples):
        query_tokens = tokenizer.tokenize(ex.question_text)[:max_query_length]

        key = id(ex.doc_tokens)  # questions on one paragraph share its doc_tokens list
        if key not in doc_cache:
            doc_cache.clear()  # paragraphs come in order; keep only the current one
            doc_cache[key] = _tokenize_doc(tokenizer, ex.doc_tokens)
        tok_to_orig, orig_to_tok, doc_pieces = doc_cache[key]

        tok_start = tok_end = None
        if is_training and not ex.is_impossible:
            tok_start = orig_to_tok[ex.start_position]
            if ex.end_position < len(ex.doc_tokens) - 1:
                tok_end = orig_to_tok[ex.end_position + 1] - 1
            else:
                tok_end = len(doc_pieces) - 1
            tok_start, tok_end = _improve_answer_span(doc_pieces, tok_start, tok_end,
                                                      tokenizer, ex.orig_answer_text)

        max_doc = max_seq_length - len(query_tokens) - 3
        spans = _doc_spans(len(doc_pieces), max_doc, doc_stride)
        for span_index, (span_start, span_len) in enumerate(spans):
            tokens = ["[CLS]", *query_tokens, "[SEP]"]
            segment_ids = [0] * len(tokens)
            token_to_orig: dict[int, int] = {}
            max_context: dict[int, bool] = {}
            for i in range(span_len):
                doc_pos = span_start + i
                token_to_orig[len(tokens)] = tok_to_orig[doc_pos]
                max_context[len(tokens)] = _is_max_context(spans, span_index, doc_pos)
                tokens.append(doc_pieces[doc_pos])
                segment_ids.append(1)
            tokens.append("[SEP]")
            segment_ids.append(1)

            input_ids = list(tokenizer.convert_tokens_to_ids(tokens))
            input_mask = [1] * len(input_ids)
            pad = max_seq_length - len(input_ids)
            input_ids += [0] * pad
            input_mask += [0] * pad
            segment_ids += [0] * pad

            start_position = end_position = None
            if is_training:
                span_end = span_start + span_len - 1
                if ex.is_impossible or tok_start < span_start or tok_end > span_end:
                    start_position = end_position = 0  # answer not in this window: [CLS]
                else:
                    offset = len(query_tokens) + 2
                    start_position = tok_start - span_start + offset
                    end_position = tok_end - span_start + offset

            features.append(InputFeatures(
                unique_id=unique_id, example_index=example_index, doc_span_index=span_index,
                tokens=tokens, token_to_orig_map=token_to_orig,
                token_is_max_context=max_context, input_ids=input_ids,
                input_mask=input_mask, segment_ids=segment_ids,
                start_position=start_position, end_position=end_position,
                is_impossible=ex.is_impossible))
            unique_id += 1
    return features


def features_to_arrays(features: Sequence[InputFeatures], is_training: bool
                       ) -> dict[str, np.ndarray]:
    """Stack features into int32 arrays (``unique_ids`` int64) for ``tf.data``."""
    arrays = {
        "unique_ids": np.array([f.unique_id for f in features], dtype=np.int64),
        "input_ids": np.array([f.input_ids for f in features], dtype=np.int32),
        "input_mask": np.array([f.input_mask for f in features], dtype=np.int32),
        "segment_ids": np.array([f.segment_ids for f in features], dtype=np.int32),
    }
    if is_training:
        arrays["start_positions"] = np.array([f.start_position for f in features], np.int32)
        arrays["end_positions"] = np.array([f.end_position for f in features], np.int32)
    return arrays


# --------------------------------------------------------------------------------------------
# Post-processing
# --------------------------------------------------------------------------------------------
def _top_indexes(logits: Sequence[float], n: int) -> list[int]:
    order = sorted(range(len(logits)), key=lambda i: logits[i], reverse=True)
    return order[:n]


def _softmax(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def _without_spaces(text: str) -> tuple[str, dict[int, int]]:
    """``text`` with spaces removed, and a map from each kept char's index to its original."""
    chars, mapping = [], {}
    for i, c in enumerate(text):
        if c == " ":
            continue
        mapping[len(chars)] = i
        chars.append(c)
    return "".join(chars), mapping


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool,
                   basic_tokenizer=None) -> str:
    """Project a normalized prediction (lower-cased, punctuation split) back onto the
    original words, keeping their case and punctuation but not the extra characters
    outside the predicted span. Falls back to ``orig_text`` when the alignment fails."""
    if basic_tokenizer is None:
        from models.bert_large.tensorflow import tokenization  # noqa: PLC0415
        basic_tokenizer = tokenization.BasicTokenizer(do_lower_case=do_lower_case)
    tok_text = " ".join(basic_tokenizer.tokenize(orig_text))
    start = tok_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1

    orig_ns, orig_map = _without_spaces(orig_text)
    tok_ns, tok_map = _without_spaces(tok_text)
    if len(orig_ns) != len(tok_ns):
        return orig_text  # the tokenizer changed characters (accents); cannot align
    tok_to_ns = {orig_i: ns_i for ns_i, orig_i in tok_map.items()}

    ns_start = tok_to_ns.get(start)
    ns_end = tok_to_ns.get(end)
    if ns_start is None or ns_end is None:
        return orig_text
    return orig_text[orig_map[ns_start]:orig_map[ns_end] + 1]


def write_predictions(examples: Sequence[SquadExample], features: Sequence[InputFeatures],
                      results: Iterable[RawResult], n_best_size: int, max_answer_length: int,
                      do_lower_case: bool, output_prediction_file: str | None = None,
                      output_nbest_file: str | None = None,
                      output_null_log_odds_file: str | None = None,
                      version_2_with_negative: bool = False,
                      null_score_diff_threshold: float = 0.0, basic_tokenizer=None
                      ) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """Pick each question's answer from the windows' logits; write predictions.json and
    nbest_predictions.json when paths are given. Returns (predictions, nbest)."""
    if basic_tokenizer is None:
        from models.bert_large.tensorflow import tokenization  # noqa: PLC0415
        basic_tokenizer = tokenization.BasicTokenizer(do_lower_case=do_lower_case)
    by_example: dict[int, list[InputFeatures]] = collections.defaultdict(list)
    for f in features:
        by_example[f.example_index].append(f)
    result_by_id = {int(r.unique_id): r for r in results}

    predictions: dict[str, str] = collections.OrderedDict()
    all_nbest: dict[str, list[dict]] = collections.OrderedDict()
    null_odds: dict[str, float] = collections.OrderedDict()

    for example_index, ex in enumerate(examples):
        candidates = []  # (score, feature_index, start, end, start_logit, end_logit)
        null_score, null_start, null_end = None, 0.0, 0.0
        for fi, feature in enumerate(by_example[example_index]):
            result = result_by_id.get(feature.unique_id)
            if result is None:
                raise ValueError(f"no model output for feature {feature.unique_id} "
                                 f"(question {ex.qas_id})")
            start_logits = [float(x) for x in result.start_logits]
            end_logits = [float(x) for x in result.end_logits]
            if version_2_with_negative:
                score = start_logits[0] + end_logits[0]
                if null_score is None or score < null_score:
                    null_score, null_start, null_end = score, start_logits[0], end_logits[0]
            n_tokens = len(feature.tokens)
            for s in _top_indexes(start_logits, n_best_size):
                for e in _top_indexes(end_logits, n_best_size):
                    if s >= n_tokens or e >= n_tokens:
                        continue
                    if s not in feature.token_to_orig_map or e not in feature.token_to_orig_map:
                        continue
                    if not feature.token_is_max_context.get(s, False):
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    candidates.append((start_logits[s] + end_logits[e], fi, s, e,
                                       start_logits[s], end_logits[e]))
        if version_2_with_negative and null_score is not None:
            candidates.append((null_score, -1, 0, 0, null_start, null_end))
        candidates.sort(key=lambda c: c[0], reverse=True)

        feats = by_example[example_index]
        nbest = []
        seen = set()
        for score, fi, s, e, sl, el in candidates:
            if len(nbest) >= n_best_size:
                break
            if fi >= 0:
                feature = feats[fi]
                pieces = feature.tokens[s:e + 1]
                orig_start = feature.token_to_orig_map[s]
                orig_end = feature.token_to_orig_map[e]
                orig_text = " ".join(ex.doc_tokens[orig_start:orig_end + 1])
                tok_text = " ".join(pieces).replace(" ##", "").replace("##", "")
                tok_text = " ".join(tok_text.strip().split())
                text = get_final_text(tok_text, orig_text, do_lower_case, basic_tokenizer)
            else:
                text = ""
            if text in seen:
                continue
            seen.add(text)
            nbest.append({"text": text, "start_logit": sl, "end_logit": el, "score": score})
        if version_2_with_negative and "" not in seen and null_score is not None:
            nbest.append({"text": "", "start_logit": null_start, "end_logit": null_end,
                          "score": null_score})
        if not nbest:
            nbest.append({"text": "empty", "start_logit": 0.0, "end_logit": 0.0, "score": 0.0})

        probs = _softmax([n["score"] for n in nbest])
        entries = [{"text": n["text"], "probability": p, "start_logit": n["start_logit"],
                    "end_logit": n["end_logit"]} for n, p in zip(nbest, probs)]
        all_nbest[ex.qas_id] = entries

        if not version_2_with_negative:
            predictions[ex.qas_id] = entries[0]["text"]
        else:
            best_non_null = next((n for n in nbest if n["text"]), None)
            if best_non_null is None:
                predictions[ex.qas_id] = ""
                null_odds[ex.qas_id] = float("inf")
            else:
                diff = (null_score if null_score is not None else 0.0) - best_non_null["score"]
                null_odds[ex.qas_id] = diff
                predictions[ex.qas_id] = ("" if diff > null_score_diff_threshold
                                          else best_non_null["text"])

    if output_prediction_file:
        _write_json(output_prediction_file, predictions)
    if output_nbest_file:
        _write_json(output_nbest_file, all_nbest)
    if version_2_with_negative and output_null_log_odds_file:
        _write_json(output_null_log_odds_file, null_odds)
    return predictions, all_nbest


def _write_json(path: str, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
