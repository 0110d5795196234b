"""Fixtures for the PyTorch BERT pretraining tests: tiny datasets, packages, subprocess runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.pytorch import pretraining_data

REPO = Path(__file__).resolve().parents[2]
SPEC = "pytorch-spr-bert-large-training"


def child_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: repo importable, one thread (2 shared cores)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI_", "PMIX_"))}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run(cmd, *, env=None, cwd=None, timeout=240, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], env=env or child_env(), cwd=cwd, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}")
    return proc


def summary(output_dir: Path) -> dict:
    return json.loads((output_dir / "summary.json").read_text())


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> tuple[Path, Path]:
    """(DATASET_DIR, CONFIG_FILE): seq_128/part-*_128 and seq_512/part-* of tiny examples."""
    root = tmp_path_factory.mktemp("ptdata")
    dataset = pretraining_data.make_dataset(root)
    return dataset, root / "bert_config.json"


@pytest.fixture(scope="session")
def package_dir(tmp_path_factory) -> Path:
    """The model package built by ``modelpkg build`` and extracted, as a user would."""
    out = tmp_path_factory.mktemp("ptpkg")
    run([sys.executable, "-c", "from packager.cli import main; main()", "build", SPEC,
         "--output-dir", out / "output"], env=child_env(MODELPKG_ROOT=str(REPO)), cwd=REPO)
    with tarfile.open(out / "output" / f"{SPEC}.tar.gz") as tar:
        tar.extractall(out / "extracted", filter="data")
    wrapper = out / "output" / "wrapper_packages" / f"{SPEC}.tar.gz"
    if wrapper.exists():
        with tarfile.open(wrapper) as tar:
            tar.extractall(out / "wrapper", filter="data")
    return out / "extracted" / SPEC


@pytest.fixture(scope="session")
def wrapper_dir(package_dir: Path) -> Path:
    path = package_dir.parents[1] / "wrapper" / SPEC
    assert path.is_dir(), "modelpkg build did not write the wrapper package"
    return path


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
