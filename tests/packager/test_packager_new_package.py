"""docs/DEVELOPING.md "Adding a package", case (b): a new package on existing code is one spec
file. This builds one in a copy of the repository with no other change: the packager needs no
code, templates or parts of its own for it."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

from typer.testing import CliRunner

from packager.cli import app
from tests.packager.packager_fixtures import REPO

NEW = "bert-large-bf16-squad-demo"
SPEC = """\
name: bert-large-bf16-squad-demo
title: BERT Large BFloat16 SQuAD demo
framework: tensorflow
precision: bfloat16
mode: training
hardware: xeon
description: |
  The SQuAD demo of {{ name }} only, in {{ precisions }}.
filesets: [bert-common, bert-tensorflow]
quickstart:
  - script: quickstart/bert_large/tensorflow/bfloat16_squad_training_demo.sh
    description: A short fine-tuning run on mini-dev-v1.1.json, then prediction and evaluation.
    env:
      required: [CHECKPOINT_DIR, DATASET_DIR, OUTPUT_DIR]
      optional: [MPI_NUM_PROCESSES, BATCH_SIZE]
env_help:
  CHECKPOINT_DIR: "path to the pretrained bert model directory"
  DATASET_DIR: "the folder holding mini-dev-v1.1.json"
  OUTPUT_DIR: "directory where checkpoints and log files will be saved"
image:
  name: example/bert-demo
  tag: bf16
  parts: [base, python, tensorflow, pip_packages, openmpi, numactl, model_package, entrypoint]
  build_args:
    PIP_PACKAGES: "tokenizers==0.23.3"
docs:
  parts: [title, description, download, quickstart_table, bare_metal, docker, license]
licenses:
  - licenses/third_party/tensorflow.txt
"""


def _copy_repository(root: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("specs", "templates", "models", "quickstart", "licenses", "habana", "benchmarks"):
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    shutil.copy(REPO / "LICENSE", root / "LICENSE")


def test_a_new_package_on_existing_code_needs_only_its_spec(tmp_path):
    root = tmp_path / "repo"
    _copy_repository(root)
    (root / "specs" / f"{NEW}.yaml").write_text(SPEC)
    runner = CliRunner()
    for command in (["validate"], ["dockerfile", NEW], ["docs", NEW]):
        result = runner.invoke(app, ["--root", str(root), *command])
        assert result.exit_code == 0, result.output
    assert (root / "dockerfiles" / f"{NEW}.Dockerfile").read_text().count("FROM ${BASE_IMAGE}") == 1
    readme = (root / "docs" / "packages" / f"{NEW}.md").read_text()
    assert f"The SQuAD demo of {NEW} only, in bf16." in readme
    assert "--volume ${CHECKPOINT_DIR}:${CHECKPOINT_DIR}" in readme

    out = tmp_path / "out"
    result = runner.invoke(app, ["--root", str(root), "build", NEW, "-o", str(out)])
    assert result.exit_code == 0, result.output
    with tarfile.open(out / f"{NEW}.tar.gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    pkg = tmp_path / "x" / NEW
    assert (pkg / "models/bert_large/tensorflow/run_squad.py").is_file()
    assert sorted(p.name for p in (pkg / "quickstart").iterdir()) == [
        "bert_large_tf_common.sh", "bfloat16_squad_training_demo.sh", "lib.sh"]
    assert subprocess.run(["sha256sum", "-c", "--quiet", "MANIFEST.sha256"], cwd=pkg).returncode == 0
    shown = subprocess.run([str(pkg / "quickstart/bfloat16_squad_training_demo.sh"), "--help"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "CHECKPOINT_DIR" in shown.stdout and "DATASET_DIR" in shown.stdout
