"""Exact match / F1 with the official SQuAD v1.1 semantics, and the command-line contract."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from models.bert_large.tensorflow import squad_evaluate as ev
from tests.tf.finetune_fixtures import TF_DIR


@pytest.mark.parametrize("text, normalized", [
    ("The Eiffel Tower", "eiffel tower"),
    ("  an   apple, a pear!  ", "apple pear"),
    ("Theory of the atom", "theory of atom"),  # "the" only as a whole word
    ("U.S.A.", "usa"),
    ("rock'n'roll", "rocknroll"),
    ("A", ""),
])
def test_normalize_answer(text, normalized):
    assert ev.normalize_answer(text) == normalized


def test_exact_match_ignores_case_articles_and_punctuation():
    assert ev.exact_match_score("the Denver Broncos!", "Denver Broncos")
    assert not ev.exact_match_score("Denver", "Denver Broncos")


def test_f1_counts_overlapping_tokens():
    # prediction: denver broncos team (3), truth: denver broncos (2), overlap 2
    # precision 2/3, recall 1 -> f1 0.8
    assert ev.f1_score("Denver Broncos team", "The Denver Broncos") == pytest.approx(0.8)
    assert ev.f1_score("Carolina Panthers", "Denver Broncos") == 0.0
    # Repeated tokens count with multiplicity; "a" is an article and vanishes:
    # pred "b b", truth "b" -> overlap 1, precision 1/2, recall 1 -> f1 2/3.
    assert ev.f1_score("a b b", "b") == pytest.approx(2 / 3)
    assert ev.f1_score("the", "a") == 0.0  # both normalize to nothing


def _dataset(questions):
    return [{"title": "t", "paragraphs": [{"context": "c", "qas": [
        {"id": qid, "question": "?", "answers": [{"text": t, "answer_start": 0} for t in truths]}
        for qid, truths in questions]}]}]


def test_evaluate_takes_the_best_ground_truth_and_averages_percentages():
    data = _dataset([
        ("q1", ["Denver Broncos", "The Broncos"]),  # matches the second exactly
        ("q2", ["Denver Broncos"]),                 # f1 0.8 as above
        ("q3", ["Santa Clara"]),                    # unanswered: 0
        ("q4", ["Levi's Stadium"]),                 # wrong: 0
    ])
    warnings = []
    result = ev.evaluate(data, {"q1": "broncos", "q2": "Denver Broncos team",
                                "q4": "Paris"}, warn=warnings.append)
    assert result["exact_match"] == pytest.approx(100 * 1 / 4)
    assert result["f1"] == pytest.approx(100 * (1 + 0.8) / 4)
    assert warnings == ["Unanswered question q3 will receive score 0."]


def _cli(*args):
    return subprocess.run([sys.executable, str(TF_DIR / "squad_evaluate.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_cli_prints_json_scores(tmp_path):
    dataset = tmp_path / "dev-v1.1.json"
    dataset.write_text(json.dumps({"version": "1.1", "data": _dataset(
        [("a", ["the cat"]), ("b", ["a dog", "two dogs"])])}))
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps({"a": "Cat.", "b": "two big dogs"}))
    proc = _cli(dataset, predictions)
    assert proc.returncode == 0, proc.stderr
    # a: EM 1; b: best f1 vs "two dogs" = 2*(2/3*1)/(2/3+1) = 0.8
    assert json.loads(proc.stdout) == {"exact_match": 50.0, "f1": pytest.approx(90.0)}


def test_cli_warns_about_another_version_and_fails_on_missing_file(tmp_path):
    dataset = tmp_path / "d.json"
    dataset.write_text(json.dumps({"version": "2.0", "data": _dataset([("a", ["x"])])}))
    predictions = tmp_path / "p.json"
    predictions.write_text(json.dumps({"a": "x"}))
    proc = _cli(dataset, predictions)
    assert proc.returncode == 0
    assert "expects v-1.1" in proc.stderr
    assert json.loads(proc.stdout)["exact_match"] == 100.0

    proc = _cli(dataset, tmp_path / "missing.json")
    assert proc.returncode == 2 and "missing.json: file not found" in proc.stderr  # usage error
    assert _cli(dataset).returncode == 2  # usage error


@pytest.mark.parametrize("dataset, predictions, message", [
    ([1, 2], {"a": "x"}, "d.json is not a SQuAD file: the top-level object has no 'data' list"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q"}]}]}]}, {"a": "x"},
     "data[0].paragraphs[0].qas[0] has no 'id'"),
    (None, ["x"], "p.json is not a predictions file"),
    (None, {"a": [{"text": "x", "probability": 1.0}]}, "nbest_predictions.json holds lists"),
])
def test_cli_rejects_files_of_another_layout_in_one_line(tmp_path, dataset, predictions,
                                                          message):
    if dataset is None:
        dataset = {"version": "1.1", "data": _dataset([("a", ["x"])])}
    (tmp_path / "d.json").write_text(json.dumps(dataset))
    (tmp_path / "p.json").write_text(json.dumps(predictions))
    proc = _cli(tmp_path / "d.json", tmp_path / "p.json")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1]


def test_cli_names_a_file_that_is_not_json(tmp_path):
    (tmp_path / "d.json").write_text("<html>")
    (tmp_path / "p.json").write_text("{}")
    proc = _cli(tmp_path / "d.json", tmp_path / "p.json")
    assert proc.returncode == 1 and "d.json is not a JSON file" in proc.stderr
