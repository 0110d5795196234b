"""Fixtures for the packager tests (helpers live in packager_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packager.packager_fixtures import FixtureRepo, make_repo


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FixtureRepo:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.setenv("MODELPKG_ROOT", str(tmp_path / "repo"))
    return make_repo(tmp_path / "repo")
