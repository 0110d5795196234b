"""Tiny generated data and a subprocess runner for the fine-tuning script tests.

Words come from the tiny vocab of ``conftest.py`` so that every word is one word piece (or a
few), which keeps window/position arithmetic predictable.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TF_DIR = REPO_ROOT / "models" / "bert_large" / "tensorflow"

CONTEXT_WORDS = ("the quick brown fox jumps over lazy dog paris france capital city river "
                 "bank model train school cafe world hello one two three four five six seven "
                 "eight nine ten").split()
QUESTION_WORDS = "what who when where is was the of".split()


def make_squad_dict(num_paragraphs: int = 4, questions_per_paragraph: int = 2,
                    context_words: int = 40, seed: int = 0,
                    answers_per_question: int = 1) -> dict:
    """A SQuAD v1.1 dict with random contexts; each answer is 1-3 words of its context and
    ``answer_start`` is its character offset."""
    rng = random.Random(seed)
    articles = []
    qid = 0
    for p in range(num_paragraphs):
        words = [rng.choice(CONTEXT_WORDS) for _ in range(context_words)]
        words[-1] += "."
        context = " ".join(words)
        offsets = []
        pos = 0
        for w in words:
            offsets.append(pos)
            pos += len(w) + 1
        qas = []
        for _ in range(questions_per_paragraph):
            answers = []
            for _ in range(answers_per_question):
                start = rng.randrange(0, context_words - 4)
                length = rng.randint(1, 3)
                text = " ".join(words[start:start + length])
                answers.append({"text": text, "answer_start": offsets[start]})
            question = " ".join(rng.choice(QUESTION_WORDS) for _ in range(5)) + " " + \
                answers[0]["text"].split()[0] + "?"
            qas.append({"id": f"q{qid}", "question": question, "answers": answers})
            qid += 1
        articles.append({"title": f"article {p}", "paragraphs": [{"context": context,
                                                                  "qas": qas}]})
    return {"version": "1.1", "data": articles}


def write_squad(path, **kwargs) -> Path:
    path = Path(path)
    path.write_text(json.dumps(make_squad_dict(**kwargs)), encoding="utf-8")
    return path


def write_mrpc(folder, num_train: int = 24, num_dev: int = 12, seed: int = 0) -> Path:
    """GLUE-layout MRPC folder: label 1 when the second sentence repeats the first."""
    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    for split, n in (("train", num_train), ("dev", num_dev), ("test", num_dev)):
        lines = [header]
        for i in range(n):
            a = " ".join(rng.choice(CONTEXT_WORDS) for _ in range(6))
            label = i % 2
            b = a if label else " ".join(rng.choice(CONTEXT_WORDS) for _ in range(6))
            lines.append(f"{label}\t{1000 + i}\t{2000 + i}\t{a}\t{b}\n")
        (folder / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    return folder


def script_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("NUM_INTRA_THREADS", "1")
    env.setdefault("NUM_INTER_THREADS", "1")
    for key in [k for k in env if k.startswith(("OMPI_", "PMI_", "PMIX_"))]:
        del env[key]  # never look like an MPI rank by accident
    env.update(extra)
    return env


def run_script(name: str, args: list[str], timeout: int = 300, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TF_DIR / name), *args], cwd=REPO_ROOT,
                          env=script_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def model_args(bert_dir) -> list[str]:
    bert_dir = Path(bert_dir)
    return [f"--vocab_file={bert_dir / 'vocab.txt'}",
            f"--bert_config_file={bert_dir / 'bert_config.json'}",
            f"--init_checkpoint={bert_dir / 'bert_model.ckpt'}"]


def make_bert_dir(folder, seed: int = 0, **config_overrides) -> Path:
    """A folder like a downloaded google model (vocab.txt, bert_config.json,
    bert_model.ckpt.*) for the tiny config. Imports TensorFlow (to write the checkpoint)."""
    from tests.tf.conftest import (make_config_dict, make_google_tensors, make_vocab_file,
                                   save_tf1_checkpoint)

    folder = Path(folder)
    config = make_config_dict(**config_overrides)
    make_vocab_file(folder / "vocab.txt")
    (folder / "bert_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    save_tf1_checkpoint(folder / "bert_model.ckpt", make_google_tensors(config, seed=seed))
    return folder
