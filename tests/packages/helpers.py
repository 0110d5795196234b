"""Helpers for the package tests: build a package with ``modelpkg build`` and extract it as a
user would; write a tiny google-format checkpoint folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def modelpkg_command() -> list[str]:
    """The installed ``modelpkg`` console script, or the same entry point through Python."""
    exe = shutil.which("modelpkg")
    if exe:
        return [exe]
    return [sys.executable, "-c", "from packager.cli import main; main()"]


def run_modelpkg(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*modelpkg_command(), *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "MODELPKG_ROOT": str(REPO)}, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"modelpkg {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def build_and_extract(name: str, workdir: Path) -> Path:
    """``modelpkg build NAME --output-dir``, then extract with the ``data`` filter; the package dir."""
    out = workdir / "output"
    run_modelpkg("build", name, "--output-dir", str(out))
    archive = out / f"{name}.tar.gz"
    assert archive.is_file(), f"modelpkg build did not write {archive}"
    dest = workdir / "extracted"
    dest.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    package = dest / name
    assert package.is_dir(), f"{archive} has no top folder {name}/"
    return package


def write_checkpoint_dir(directory: Path) -> Path:
    """A google-format BERT folder (vocab.txt, bert_config.json, bert_model.ckpt.*): tiny model.

    Written in a subprocess: TensorFlow stays out of the pytest process (tfrecord and TF clash).
    The writers are the TF model tests' (tests/tf/conftest.py).
    """
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "tests.packages.checkpoint_writer", str(directory)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO),
                               "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, f"writing the tiny checkpoint failed:\n{proc.stdout}\n{proc.stderr}"
    return directory
