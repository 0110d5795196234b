"""Fixtures of the inference tests: tiny SQuAD model folders (written in a subprocess, so
TensorFlow stays out of the collecting process), SQuAD data, the built inference packages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packages import tiny_data
from tests.packages.helpers import REPO, build_and_extract


def write_model_dir(folder: Path, *extra: str) -> Path:
    proc = subprocess.run([sys.executable, "-m", "tests.inference.model_writer", str(folder),
                           *extra], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


@pytest.fixture(scope="session")
def squad_model_dir(tmp_path_factory) -> Path:
    """vocab.txt, bert_config.json and model.ckpt-3649.* with the SQuAD head."""
    return write_model_dir(tmp_path_factory.mktemp("model") / "bert_large_checkpoints")


@pytest.fixture(scope="session")
def pretrained_model_dir(tmp_path_factory) -> Path:
    """The same model without the SQuAD head (bert_model.ckpt)."""
    return write_model_dir(tmp_path_factory.mktemp("pretrained") / "uncased_L-2_H-64_A-4",
                           "--pretrained-only")


@pytest.fixture(scope="session")
def squad_data_dir(tmp_path_factory) -> Path:
    return tiny_data.write_squad_dir(tmp_path_factory.mktemp("squad"))


@pytest.fixture(scope="session")
def bf16_inference_package(tmp_path_factory) -> Path:
    return build_and_extract("bert-large-bf16-inference", tmp_path_factory.mktemp("bf16inf"))


@pytest.fixture(scope="session")
def fp32_inference_package(tmp_path_factory) -> Path:
    return build_and_extract("bert-large-fp32-inference", tmp_path_factory.mktemp("fp32inf"))
