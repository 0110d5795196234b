"""Fixtures for the package tests: extracted packages (built with ``modelpkg build``), a tiny
checkpoint folder and data folders laid out like the real downloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packages import tiny_data
from tests.packages.helpers import build_and_extract, write_checkpoint_dir, write_fake_python


@pytest.fixture(scope="session")
def bf16_package(tmp_path_factory) -> Path:
    return build_and_extract("bert-large-bf16-training", tmp_path_factory.mktemp("bf16pkg"))


@pytest.fixture(scope="session")
def fp32_package(tmp_path_factory) -> Path:
    return build_and_extract("bert-large-fp32-training", tmp_path_factory.mktemp("fp32pkg"))


@pytest.fixture(scope="session")
def pt_package(tmp_path_factory) -> Path:
    return build_and_extract("pytorch-spr-bert-large-training", tmp_path_factory.mktemp("ptpkg"))


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    return write_checkpoint_dir(tmp_path_factory.mktemp("ckpt") / "uncased_L-2_H-64_A-4")


@pytest.fixture(scope="session")
def squad_dir(tmp_path_factory) -> Path:
    return tiny_data.write_squad_dir(tmp_path_factory.mktemp("squad"))


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> Path:
    return tiny_data.write_glue_dir(tmp_path_factory.mktemp("glue"))


@pytest.fixture()
def fake_python(tmp_path) -> tuple[Path, Path]:
    """(bin dir of a fake python3 to put first on PATH, log file of its recorded calls)."""
    return write_fake_python(tmp_path)
