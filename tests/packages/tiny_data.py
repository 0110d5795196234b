"""Tiny SQuAD v1.1 and GLUE MRPC data sets, written the way the real downloads are laid out.

Plain functions (no TensorFlow) so tests can call them in the pytest process. The sentences
use a small fixed word list; ``WORDS`` is what a tiny vocab.txt must hold to tokenize them
without ``[UNK]``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

_SUBJECTS = ["the cat", "a dog", "the bird", "my friend", "the teacher", "a student"]
_VERBS = ["saw", "liked", "found", "visited", "painted", "followed"]
_OBJECTS = ["the red house", "a blue car", "the green tree", "an old boat", "the small river",
            "a tall tower"]
_PLACES = ["paris", "london", "berlin", "rome", "madrid", "vienna"]
_YEARS = ["1990", "2001", "1985", "2010", "1977", "2020"]

WORDS = sorted({w for phrase in _SUBJECTS + _VERBS + _OBJECTS + _PLACES + _YEARS
                for w in phrase.split()} | {
    "in", "during", "what", "did", "where", "when", "who", "it", "was", "and", "then", "went",
    "home", "to", "see", "visit", "find", "?", ".", ","})


def _paragraph(rng: random.Random, n_sentences: int) -> tuple[str, list[dict]]:
    """A context of simple sentences and one question per sentence with its answer span."""
    sentences, facts = [], []
    for _ in range(n_sentences):
        subj, verb, obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        place, year = rng.choice(_PLACES), rng.choice(_YEARS)
        sentences.append(f"{subj.capitalize()} {verb} {obj} in {place.capitalize()} during {year}.")
        facts.append((subj, verb, obj, place.capitalize(), year))
    context = " ".join(sentences)
    qas, offset = [], 0
    for i, (sentence, (subj, verb, obj, place, year)) in enumerate(zip(sentences, facts)):
        kind = rng.choice(["where", "when", "what"])
        if kind == "where":
            question, answer = f"Where did {subj} see {obj}?", place
        elif kind == "when":
            question, answer = f"When did {subj} visit {place}?", year
        else:
            question, answer = f"What did {subj} find in {place}?", obj
        start = context.index(answer, offset)
        assert context[start:start + len(answer)] == answer
        qas.append({"question": question, "answer": answer, "answer_start": start})
        offset += len(sentence) + 1
    return context, qas


def squad_dataset(n_articles: int, n_paragraphs: int, n_sentences: int, seed: int,
                  answers_per_question: int = 1, id_prefix: str = "q") -> dict:
    """A SQuAD v1.1 json dict. Dev files carry several (here identical) answers per question."""
    rng = random.Random(seed)
    data, qid = [], 0
    for a in range(n_articles):
        paragraphs = []
        for _ in range(n_paragraphs):
            context, facts = _paragraph(rng, n_sentences)
            qas = []
            for fact in facts:
                answers = [{"text": fact["answer"], "answer_start": fact["answer_start"]}]
                qas.append({"id": f"{id_prefix}{qid:05d}", "question": fact["question"],
                            "answers": answers * answers_per_question})
                qid += 1
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": f"Article_{a}", "paragraphs": paragraphs})
    return {"version": "1.1", "data": data}


def write_squad_dir(directory: Path) -> Path:
    """train-v1.1.json, dev-v1.1.json and mini-dev-v1.1.json (the demo file) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "train-v1.1.json": squad_dataset(2, 2, 3, seed=1, id_prefix="train"),
        "dev-v1.1.json": squad_dataset(1, 2, 3, seed=2, answers_per_question=3, id_prefix="dev"),
        "mini-dev-v1.1.json": squad_dataset(1, 2, 3, seed=3, answers_per_question=3,
                                            id_prefix="mini"),
    }
    for name, content in files.items():
        (directory / name).write_text(json.dumps(content), encoding="utf-8")
    return directory


def _mrpc_rows(rng: random.Random, n: int) -> list[str]:
    """MRPC tsv rows: Quality, #1 ID, #2 ID, #1 String, #2 String."""
    rows = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    for i in range(n):
        subj, verb, obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        place = rng.choice(_PLACES)
        first = f"{subj.capitalize()} {verb} {obj} in {place.capitalize()}."
        label = rng.randint(0, 1)
        if label:
            second = f"In {place.capitalize()}, {subj} {verb} {obj}."
        else:
            other = rng.choice([p for p in _PLACES if p != place])
            second = f"{rng.choice(_SUBJECTS).capitalize()} went home to {other.capitalize()}."
        rows.append(f"{label}\t{1000 + 2 * i}\t{1001 + 2 * i}\t{first}\t{second}")
    return rows


def write_glue_dir(directory: Path, n_train: int = 24, n_dev: int = 12) -> Path:
    """A GLUE folder holding MRPC/train.tsv, MRPC/dev.tsv and MRPC/test.tsv; returns the GLUE folder."""
    rng = random.Random(7)
    mrpc = directory / "MRPC"
    mrpc.mkdir(parents=True, exist_ok=True)
    (mrpc / "train.tsv").write_text("\n".join(_mrpc_rows(rng, n_train)) + "\n", encoding="utf-8")
    (mrpc / "dev.tsv").write_text("\n".join(_mrpc_rows(rng, n_dev)) + "\n", encoding="utf-8")
    test_rows = ["index\t#1 ID\t#2 ID\t#1 String\t#2 String"] + [
        f"{i}\t" + "\t".join(row.split("\t")[1:]) for i, row in enumerate(_mrpc_rows(rng, 4)[1:])]
    (mrpc / "test.tsv").write_text("\n".join(test_rows) + "\n", encoding="utf-8")
    return directory
