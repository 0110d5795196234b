"""Finding the repository root, and the spec model's guarantees."""

from __future__ import annotations

import pydantic
import pytest

from packager.errors import UsageError
from packager.repo import load_spec
from packager.root import find_root
from tests.packager.packager_fixtures import NAME, REPO


def test_root_from_installed_location(monkeypatch, tmp_path):
    monkeypatch.delenv("MODELPKG_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)  # not inside any checkout
    assert find_root() == REPO


def test_root_override_order(repo, monkeypatch, tmp_path):
    monkeypatch.setenv("MODELPKG_ROOT", str(repo.root))
    assert find_root() == repo.root
    assert find_root(REPO) == REPO  # --root wins over the environment
    monkeypatch.setenv("MODELPKG_ROOT", str(tmp_path / "nothing"))
    with pytest.raises(UsageError, match=r"\$MODELPKG_ROOT=.* is not a modelpkg repository"):
        find_root()


def test_spec_is_frozen_and_remembers_its_root(repo):
    spec = load_spec(NAME, repo.root)
    with pytest.raises(pydantic.ValidationError):
        spec.title = "changed"
    assert spec.root == repo.root and spec.spec_label == f"specs/{NAME}.yaml"
    assert spec.all_env == (("DATASET_DIR", "OUTPUT_DIR"), ("MPI_NUM_PROCESSES",))
