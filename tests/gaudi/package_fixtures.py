"""Shared set-up of the Gaudi package tests: the extracted `tensorflow-gaudi-bert-training`
package, a tiny google-format checkpoint folder named like BERT large's download, tiny
MRPC / SQuAD data and pretraining TFRecords written by the package's own
create_pretraining_data.py, and a runner for the package's scripts (from the package root,
as seed 002 runs them, with the CPU and one thread per process)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from tests.packages import tiny_data
from tests.packages.helpers import build_and_extract, explain, write_checkpoint_dir

PACKAGE = "tensorflow-gaudi-bert-training"
LARGE = "wwm_uncased_L-24_H-1024_A-16"  # the folder name seed 002's command lines use


def extract_package(workdir: Path) -> Path:
    return build_and_extract(PACKAGE, workdir)


def checkpoint_folder(parent: Path) -> Path:
    """A tiny model in ``parent/wwm_uncased_L-24_H-1024_A-16`` (the seeds' relative path)."""
    return write_checkpoint_dir(parent / LARGE)


def package_env(package: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMI_", "PMIX_", "TF_BF16_"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", NUM_INTRA_THREADS="1", NUM_INTER_THREADS="1",
               OMP_NUM_THREADS="1", PYTHONPATH=str(package),
               MODELPKG_ACCEL_SYSFS=str(package / "no-accel"))  # never a Gaudi in tests
    env.update(extra)
    return env


def run_in_package(package: Path, argv: list[str], env: dict[str, str] | None = None,
                   timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=package, env=env or package_env(package),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:3])} ... failed: {explain(proc)}")
    return proc


def write_corpus(path: Path, documents: int, seed: int) -> Path:
    """Plain text, one sentence per line, documents separated by blank lines, from the
    words the tiny checkpoint's vocabulary knows."""
    rng = random.Random(seed)
    lines = []
    for _ in range(documents):
        for _ in range(rng.randint(3, 8)):
            lines.append(" ".join(rng.choice(tiny_data.WORDS)
                                  for _ in range(rng.randint(4, 14))) + " .")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pretraining_records(package: Path, root: Path, vocab: Path,
                        lengths=((32, 5), (64, 10))) -> Path:
    """``root/tfrecord/seq_len_<S>/books_wiki_en_corpus/{training,test}/`` as seed 002's
    pipeline lays them out, written by the package's create_pretraining_data.py."""
    corpus = write_corpus(root / "text" / "corpus.txt", documents=60, seed=1)
    for seq, pred in lengths:
        for split, shards in (("training", 2), ("test", 1)):
            out = root / "tfrecord" / f"seq_len_{seq}" / "books_wiki_en_corpus" / split
            run_in_package(package, [
                sys.executable, "models/bert_large/tensorflow/create_pretraining_data.py",
                f"--input_file={corpus}", f"--vocab_file={vocab}", f"--output_dir={out}",
                f"--num_shards={shards}", f"--max_seq_length={seq}",
                f"--max_predictions_per_seq={pred}", "--dupe_factor=2",
                f"--random_seed={12345 + seq + shards}"])
    return root


def mrpc_folder(parent: Path) -> Path:
    return tiny_data.write_glue_dir(parent) / "MRPC"


def squad_folder(parent: Path) -> Path:
    return tiny_data.write_squad_dir(parent)
