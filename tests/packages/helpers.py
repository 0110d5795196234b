"""Helpers for the package tests: build a package with ``modelpkg build`` and extract it as a
user would; write a tiny google-format checkpoint folder; a fake ``python3`` that records the
command a quickstart starts (the ``fake_python`` fixture writes it)."""

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


FAKE_PYTHON = """#!/usr/bin/env bash
# Records how the quickstart called python3, then exits with $FAKE_PYTHON_RC (default 0).
# The quickstart's question for the interpreter's path (python3 -c ...) gets this file's path;
# its precision questions (models/common/precisions.py) go to the real Python.
if [[ "$1" == "-c" ]]; then echo "$0"; exit 0; fi
if [[ "$1" == */models/common/precisions.py ]]; then exec "${REAL_PYTHON}" "$@"; fi
{
  printf 'PYTHONPATH=%s\\n' "${PYTHONPATH:-}"
  printf '%s\\n' "$@"
  printf -- '-----\\n'
} >> "${FAKE_PYTHON_LOG}"
exit "${FAKE_PYTHON_RC:-0}"
"""


def write_fake_python(directory: Path) -> tuple[Path, Path]:
    """A fake python3 in DIRECTORY/fakebin: (bin dir to put first on PATH, log of its calls)."""
    bindir = directory / "fakebin"
    bindir.mkdir()
    exe = bindir / "python3"
    exe.write_text(FAKE_PYTHON)
    exe.chmod(0o755)
    return bindir, directory / "python3_calls.log"


def with_fake_python(fake_python: tuple[Path, Path], env: dict[str, str]) -> dict[str, str]:
    """ENV with the fake python3 first on PATH (precision questions go to this Python)."""
    bindir, log = fake_python
    env = dict(env)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["FAKE_PYTHON_LOG"] = str(log)
    env["REAL_PYTHON"] = sys.executable
    return env


def recorded_calls(fake_python: tuple[Path, Path]) -> list[list[str]]:
    """The fake python3's calls: each [PYTHONPATH=..., arg1, arg2, ...]."""
    log = fake_python[1]
    if not log.exists():
        return []
    calls = log.read_text().split("-----\n")
    return [c.splitlines() for c in calls if c.strip()]


def explain(proc: subprocess.CompletedProcess) -> str:
    return (f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n"
            f"--- stderr ---\n{proc.stderr[-6000:]}")
