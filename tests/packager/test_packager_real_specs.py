"""The real specs in specs/: valid, and their committed Dockerfiles and READMEs fresh.

When one of these fails after a spec or template change, run
`modelpkg dockerfile --all && modelpkg docs --all` and commit the result.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from packager.archive import plan_model_package
from packager.cli import app
from packager.dockerfile import render_dockerfile
from packager.repo import load_spec, spec_names
from tests.packager.packager_fixtures import REPO

NAMES = spec_names(REPO)
runner = CliRunner()
pytestmark = pytest.mark.skipif(not NAMES, reason="no specs in specs/ yet")


@pytest.mark.parametrize("name", NAMES)
def test_real_spec_is_valid_and_renders(name):
    spec = load_spec(name, REPO)
    files = [f.path for f in plan_model_package(spec, REPO, manifest=False)]
    assert "quickstart/lib.sh" in files and "licenses/LICENSE" in files
    if spec.image is not None:
        assert render_dockerfile(spec, REPO).count("FROM ${BASE_IMAGE}") == 1


@pytest.mark.parametrize("command", ["dockerfile", "docs"])
def test_committed_generated_files_are_fresh(command):
    result = runner.invoke(app, ["--root", str(REPO), command, "--all", "--check"])
    assert result.exit_code == 0, (
        f"stale or missing generated files; run `modelpkg {command} --all` and commit:\n{result.output}"
    )
