"""The real specs in specs/: valid, and their committed Dockerfiles and READMEs fresh.

When one of these fails after a spec or template change, run
`modelpkg dockerfile --all && modelpkg docs --all` and commit the result.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from packager.cli import app
from packager.plan import make_plan
from packager.package import load_package, package_names
from tests.packager.packager_fixtures import REPO

NAMES = package_names(REPO)
runner = CliRunner()
pytestmark = pytest.mark.skipif(not NAMES, reason="no specs in specs/ yet")


@pytest.mark.parametrize("name", NAMES)
def test_real_spec_is_valid_and_renders(name):
    plan = make_plan(load_package(name, REPO))
    files = [f.path for f in plan.model.files]
    assert "quickstart/lib.sh" in files and "licenses/LICENSE" in files
    if plan.package.spec.image is not None:
        assert plan.dockerfile.count("FROM ${BASE_IMAGE}") == 1


@pytest.mark.parametrize("command", ["dockerfile", "docs"])
def test_committed_generated_files_are_fresh(command):
    result = runner.invoke(app, ["--root", str(REPO), command, "--all", "--check"])
    assert result.exit_code == 0, (
        f"stale or missing generated files; run `modelpkg {command} --all` and commit:\n{result.output}"
    )
