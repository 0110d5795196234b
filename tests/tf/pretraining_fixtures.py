"""Generated corpora and a subprocess runner for the pretraining tests.

Words are drawn from the tiny vocab of ``conftest.py``; some are multi-piece words
(``runn ##ing``, ``want ##ed``) so whole-word masking has something to group.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TF_DIR = REPO_ROOT / "models" / "bert_large" / "tensorflow"
CREATE_DATA = TF_DIR / "create_pretraining_data.py"
RUN_PRETRAINING = TF_DIR / "run_pretraining.py"

WORDS = ("the a of to and in is was he she it they we that this for on with as at by from "
         "quick brown fox jumps over lazy dog paris france capital city river bank model "
         "train school cafe world hello one two three four five six seven eight nine ten "
         "running wanted playing quickly").split()


def write_corpus(path, num_documents: int = 40, seed: int = 0, min_sentences: int = 2,
                 max_sentences: int = 8, min_words: int = 3, max_words: int = 14) -> Path:
    """One sentence per line, a blank line between documents."""
    rng = random.Random(seed)
    lines = []
    for _ in range(num_documents):
        for _ in range(rng.randint(min_sentences, max_sentences)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))]
            lines.append(" ".join(words).capitalize() + ".")
        lines.append("")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def subprocess_env(threads: int = 1) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["NUM_INTRA_THREADS"] = str(threads)
    env["NUM_INTER_THREADS"] = "1"
    env["OMP_NUM_THREADS"] = str(threads)
    for name in list(env):  # a test must not inherit an MPI rank layout
        if name.startswith(("OMPI_COMM_WORLD_", "PMI_")) or name in ("RANK", "WORLD_SIZE"):
            env.pop(name)
    return env


def run_script(script: Path, *args: str, timeout: float = 300, check: bool = True,
               env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(script), *args], cwd=REPO_ROOT,
                          env=env or subprocess_env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script.name} exited {proc.returncode}\n--- stdout\n"
                             f"{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc
