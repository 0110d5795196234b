"""SQuAD v1.1 evaluation: exact match and token F1 with the official semantics.

Answers are compared after normalization (lower case, punctuation removed, the articles
"a", "an", "the" removed, whitespace collapsed). Each question scores the best match over its
reference answers; a question with no prediction scores 0. Both numbers are percentages.

    python squad_evaluate.py dev-v1.1.json predictions.json
    {"exact_match": 81.2, "f1": 88.5}
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import string
import sys
from typing import Any, Callable, Mapping, Sequence

__all__ = ["normalize_answer", "exact_match_score", "f1_score", "evaluate", "main"]

EXPECTED_VERSION = "1.1"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


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
    with open(dataset_file, encoding="utf-8") as f:
        dataset_json = json.load(f)
    if dataset_json.get("version") != EXPECTED_VERSION:
        warn(f"Evaluation expects v-{EXPECTED_VERSION}, but got dataset with "
             f"v-{dataset_json.get('version')}")
    with open(prediction_file, encoding="utf-8") as f:
        predictions = json.load(f)
    return evaluate(dataset_json["data"], predictions, warn)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=f"Evaluation for SQuAD {EXPECTED_VERSION}: exact match and F1")
    parser.add_argument("dataset_file", help="Dataset file (e.g. dev-v1.1.json)")
    parser.add_argument("prediction_file", help="Prediction file (predictions.json)")
    args = parser.parse_args(argv)
    try:
        result = evaluate_files(args.dataset_file, args.prediction_file)
    except (OSError, json.JSONDecodeError, KeyError) as err:
        print(f"error: cannot evaluate {args.prediction_file} against {args.dataset_file}: "
              f"{err}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
