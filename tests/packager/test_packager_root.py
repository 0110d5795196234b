"""Finding the repository root, and the spec model's guarantees."""

from __future__ import annotations

import pydantic
import pytest

from packager.errors import UsageError
from packager.package import load_package
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


def test_root_inside_a_second_checkout_wins_over_the_installed_one(repo, monkeypatch, tmp_path):
    """`modelpkg validate` run inside another checkout works on that checkout, and a broken spec
    there fails (it used to validate the checkout modelpkg was installed from, exit 0)."""
    from typer.testing import CliRunner

    from packager.cli import app

    monkeypatch.delenv("MODELPKG_ROOT", raising=False)
    (repo.root / "models/demo").mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(repo.root / "models/demo")  # a folder inside the second checkout
    assert find_root() == repo.root.resolve()
    assert CliRunner().invoke(app, ["validate"]).exit_code == 0
    (repo.root / "specs" / f"{NAME}.yaml").write_text("name: demo-fp32-training\ntitle: [\n")
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 2 and f"specs/{NAME}.yaml: not valid YAML" in result.output


def test_package_is_frozen_and_bound_to_its_root(repo):
    package = load_package(NAME, repo.root)
    with pytest.raises(pydantic.ValidationError):
        package.spec.title = "changed"
    assert package.root == repo.root.resolve() and package.label == f"specs/{NAME}.yaml"
    assert package.spec.all_env == (("DATASET_DIR", "OUTPUT_DIR"), ("MPI_NUM_PROCESSES",))
