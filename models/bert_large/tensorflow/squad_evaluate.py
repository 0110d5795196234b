"""SQuAD v1.1 evaluation: exact match and token F1 with the official semantics.

Answers are compared after normalization (lower case, punctuation removed, the articles
"a", "an", "the" removed, whitespace collapsed). Each question scores the best match over its
reference answers; a question with no prediction scores 0. Both numbers are percentages.

    python squad_evaluate.py dev-v1.1.json predictions.json
    {"exact_match": 81.2, "f1": 88.5}

Exit status: 2 for a usage error (a missing argument or file), 1 when a file is not a SQuAD /
predictions JSON; one ``error: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import string
import sys
from typing import Any, Callable, Mapping, Sequence

__all__ = ["normalize_answer", "exact_match_score", "f1_score", "evaluate", "main",
           "SquadFormatError", "check_dataset", "check_predictions"]

EXPECTED_VERSION = "1.1"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


class SquadFormatError(ValueError):
    """A file that is not laid out as SQuAD JSON; the message says where it breaks."""


def check_dataset(obj: Any, source: str = "dataset") -> None:
    """Check the SQuAD JSON layout the readers rely on (``data`` -> ``paragraphs`` ->
    ``context`` + ``qas`` with ``id``, ``question`` and an optional ``answers`` list of
    ``text``; training also needs ``answer_start``, checked by its reader). Raises
    :class:`SquadFormatError` naming ``source`` and the place."""
    def fail(where: str, what: str) -> None:
        raise SquadFormatError(f"{source} is not a SQuAD file: {where}{what}; expected "
                               "{\"data\": [{\"paragraphs\": [{\"context\": ..., \"qas\": "
                               "[{\"id\", \"question\", \"answers\"}]}]}]} as in dev-v1.1.json")

    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        fail("", "the top-level object has no 'data' list")
    for a, article in enumerate(obj["data"]):
        where = f"data[{a}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            fail(where, " has no 'paragraphs' list")
        for p, paragraph in enumerate(article["paragraphs"]):
            where = f"data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                fail(where, " has no 'context' text")
            if not isinstance(paragraph.get("qas"), list):
                fail(where, " has no 'qas' list")
            for q, qa in enumerate(paragraph["qas"]):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                if not isinstance(qa, dict):
                    fail(where, " is not an object")
                for key in ("id", "question"):
                    if key not in qa:
                        fail(where, f" has no '{key}'")
                answers = qa.get("answers", [])
                if not isinstance(answers, list):
                    fail(where, "'s 'answers' is not a list")
                for i, answer in enumerate(answers):
                    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
                        fail(f"{where}.answers[{i}]", " has no 'text'")


def check_predictions(obj: Any, source: str = "predictions") -> None:
    """Predictions are ``{question id: answer text}`` (``predictions.json``)."""
    if not isinstance(obj, dict):
        raise SquadFormatError(f"{source} is not a predictions file: expected a JSON object "
                               "{\"question id\": \"answer text\", ...} (predictions.json)")
    for qid, answer in obj.items():
        if not isinstance(answer, str):
            raise SquadFormatError(
                f"{source} is not a predictions file: the answer for {qid!r} is a "
                f"{type(answer).__name__}, not text (nbest_predictions.json holds lists; "
                "pass predictions.json)")


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(c for c in text if c not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(truth)


def f1_score(prediction: str, truth: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(truth).split()
    overlap = sum((collections.Counter(pred_tokens) & collections.Counter(truth_tokens))
                  .values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def _best(metric: Callable[[str, str], float], prediction: str, truths: Sequence[str]) -> float:
    return max(float(metric(prediction, t)) for t in truths)


def evaluate(dataset: Sequence[Mapping[str, Any]], predictions: Mapping[str, str],
             warn: Callable[[str], None] | None = None) -> dict[str, float]:
    """Score ``predictions`` (question id -> answer text) against the ``data`` list of a
    SQuAD file. Returns ``{"exact_match": %, "f1": %}``."""
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    total = 0
    em = f1 = 0.0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    warn(f"Unanswered question {qa['id']} will receive score 0.")
                    continue
                truths = [a["text"] for a in qa["answers"]]
                if not truths:
                    continue  # unanswerable (v2) question: v1.1 scoring counts it as 0
                prediction = predictions[qa["id"]]
                em += _best(exact_match_score, prediction, truths)
                f1 += _best(f1_score, prediction, truths)
    if total == 0:
        return {"exact_match": 0.0, "f1": 0.0}
    return {"exact_match": 100.0 * em / total, "f1": 100.0 * f1 / total}


def evaluate_files(dataset_file: str, prediction_file: str,
                   warn: Callable[[str], None] | None = None) -> dict[str, float]:
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    dataset_json = load_json(dataset_file)
    check_dataset(dataset_json, dataset_file)
    if dataset_json.get("version") != EXPECTED_VERSION:
        warn(f"Evaluation expects v-{EXPECTED_VERSION}, but got dataset with "
             f"v-{dataset_json.get('version')}")
    predictions = load_json(prediction_file)
    check_predictions(predictions, prediction_file)
    return evaluate(dataset_json["data"], predictions, warn)


def load_json(path: str) -> Any:
    """Parse a JSON file; a file that is not JSON is a :class:`SquadFormatError` naming it."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SquadFormatError(f"{path} is not a JSON file ({err})") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=f"Evaluation for SQuAD {EXPECTED_VERSION}: exact match and F1")
    parser.add_argument("dataset_file", help="Dataset file (e.g. dev-v1.1.json)")
    parser.add_argument("prediction_file", help="Prediction file (predictions.json)")
    args = parser.parse_args(argv)
    for path in (args.dataset_file, args.prediction_file):
        if not os.path.isfile(path):  # a usage error, like argparse's own: exit 2
            print(f"error: {path}: file not found", file=sys.stderr)
            return 2
    try:
        result = evaluate_files(args.dataset_file, args.prediction_file)
    except (OSError, SquadFormatError) as err:
        print(f"error: cannot evaluate {args.prediction_file} against {args.dataset_file}: "
              f"{err}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
