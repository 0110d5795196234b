"""Shared by the Kubernetes tests: the repository, the MPIJob CRD beside the checkout
(``../shared/k8s/kubeflow.org_mpijobs.yaml``, read in place), ``modelpkg`` through CliRunner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from packager.cli import app

REPO = Path(__file__).resolve().parents[2]
CRD = REPO.parent / "shared" / "k8s" / "kubeflow.org_mpijobs.yaml"

runner = CliRunner()


def modelpkg(*args: str):
    """``modelpkg --root REPO ARGS`` in this process: (exit code, stdout, stderr)."""
    result = runner.invoke(app, ["--root", str(REPO), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="session")
def crd() -> Path:
    if not CRD.is_file():
        reason = f"the MPIJob CRD {CRD} is missing (shared/k8s beside the checkout)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CRD
