"""The image-only package pytorch-ipex-spr: what seed 001 calls "the pytorch-ipex-spr.tar.gz
container" is built from it. `modelpkg build pytorch-ipex-spr` writes the package with its
Dockerfile and build.sh; build.sh, driven with a fake `docker` on PATH, builds the image; the
README, build.sh and the model package's build.sh agree on the image archive's name."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.pytorch.test_wrapper import FAKE_DOCKER

REPO = Path(__file__).resolve().parents[2]
NAME = "pytorch-ipex-spr"


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    proc = subprocess.run(["modelpkg", "--root", str(REPO), "build", NAME, "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with tarfile.open(out / f"{NAME}.tar.gz") as tar:
        tar.extractall(out, filter="data")
    return out / NAME


def test_package_holds_the_dockerfile_and_build_sh(package_dir: Path):
    assert os.access(package_dir / "build.sh", os.X_OK)
    dockerfile = (package_dir / f"{NAME}.Dockerfile").read_text()
    assert dockerfile == (REPO / "dockerfiles" / f"{NAME}.Dockerfile").read_text()
    # its header says the truth: it ADDs nothing, so it needs no build context
    assert "# Build context: none: nothing is ADDed or COPYed from it" in dockerfile
    assert "\nADD " not in dockerfile and "\nCOPY " not in dockerfile
    manifest = (package_dir / "MANIFEST.sha256").read_text()
    assert f"  {NAME}.Dockerfile\n" in manifest and "  build.sh\n" in manifest


def test_build_sh_builds_the_image_and_says_how_to_move_it(package_dir: Path, tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    env = {k: v for k, v in os.environ.items() if k not in {"IMAGE", "BASE_IMAGE"} and not k.lower().endswith("_proxy")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_DOCKER_LOG=str(log), FAKE_DOCKER_IMAGES="")
    proc = subprocess.run([str(package_dir / "build.sh")], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    # the base is a registry image docker pulls itself: no "is it here" check first
    assert [c["argv"][0] for c in calls] == ["build"]
    argv = calls[0]["argv"]
    assert argv[argv.index("-t") + 1] == "model-zoo:pytorch-ipex-spr"
    assert argv[argv.index("-f") + 1] == f"{NAME}.Dockerfile"
    assert "BASE_IMAGE=debian:bookworm-slim" in argv
    assert f"docker load -i {NAME}.image.tar.gz" in proc.stdout


@pytest.mark.skipif(subprocess.run(["which", "shellcheck"], capture_output=True).returncode != 0,
                    reason="needs shellcheck")
def test_build_sh_passes_shellcheck(package_dir: Path):
    proc = subprocess.run(["shellcheck", str(package_dir / "build.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_readmes_name_the_same_archive_and_how_it_is_made():
    base_readme = (REPO / "docs" / "packages" / f"{NAME}.md").read_text()
    model_readme = (REPO / "docs" / "packages" / "pytorch-spr-bert-large-training.md").read_text()
    for text in (base_readme, model_readme):
        assert f"docker load -i {NAME}.image.tar.gz" in text
        assert f"modelpkg image save {NAME}" in text
    assert "./build.sh" in base_readme and f"tar -xzf {NAME}.tar.gz" in base_readme
