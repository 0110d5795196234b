"""Real (small) buildah builds through `modelpkg image build` (marked `image`): two clean
builds of one checkout under one SOURCE_DATE_EPOCH give the same model-package and SBOM layers
(and the same image); the SBOM inside is the one beside it; `image save` and `image load` move
the image through a gzip archive intact. The full TF image's figures come from
benchmarks/image_reproducibility.py."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from packager.commands.image import app
from packager.image import sbom

from .realbuild import BASE_IMAGE, buildah, ensure_base_image, inspect, skip_reason

pytestmark = [pytest.mark.image, pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")]

runner = CliRunner()
TAG = "localhost/modelpkg-test/tiny-repro:latest"


def _small_spec(tiny_repo) -> None:
    spec = tiny_repo / "specs" / "tiny-pkg.yaml"
    spec.write_text(spec.read_text()
                    .replace("parts: [base, python, tensorflow, model_package, workdir]",
                             "parts: [base, numactl, model_package, workdir]")
                    .replace('  build_args: {TF_PACKAGE: "tensorflow-cpu==2.21.0"}\n', ""))


def test_clean_builds_are_identical_and_the_image_survives_save_and_load(tiny_repo, tmp_path, monkeypatch,
                                                                         clean_proxy_env):
    ensure_base_image()
    _small_spec(tiny_repo)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    builds = []
    try:
        for run in (1, 2):
            out = tmp_path / f"out{run}"
            result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah", "--tag", TAG, "--no-cache",
                                         "--base-image", BASE_IMAGE, "-o", str(out)])
            assert result.exit_code == 0, result.output[-4000:] + result.stderr
            info = inspect(TAG)
            builds.append((info["OCIv1"]["rootfs"]["diff_ids"], info["OCIv1"]["created"],
                           (out / "tiny-pkg.sbom.cdx.json").read_text()))
        (ids1, created1, sbom1), (ids2, created2, sbom2) = builds
        # base, the apt layer (numactl), the package, the SBOM: all bit-identical
        assert len(ids1) == 4 and ids1 == ids2
        assert created1 == created2 and created1.startswith("2023-11-14T22:13:20")
        assert sbom1 == sbom2
        assert sbom.find_component(sbom1, "numactl", "deb")
        labels = info["OCIv1"]["config"]["Labels"]
        assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
        assert labels["org.opencontainers.image.title"] == "tiny-pkg"
        # the SBOM inside the image is the one beside it
        shown = runner.invoke(app, ["sbom", "tiny-pkg", "--builder", "buildah", "--tag", TAG])
        assert shown.exit_code == 0, shown.output + shown.stderr
        assert json.loads(shown.output) == json.loads(sbom1)

        saved = runner.invoke(app, ["save", "tiny-pkg", "--builder", "buildah", "--tag", TAG, "-o", str(tmp_path)])
        assert saved.exit_code == 0, saved.output + saved.stderr
        archive = tmp_path / "tiny-pkg.image.tar.gz"
        assert (tmp_path / "tiny-pkg.sbom.cdx.json").read_text() == sbom1  # the SBOM travels with it
        buildah("rmi", "--force", TAG)
        loaded = runner.invoke(app, ["load", str(archive), "--builder", "buildah"])
        assert loaded.exit_code == 0, loaded.output + loaded.stderr
        assert f"loaded {TAG}" in loaded.output
        assert inspect(TAG)["OCIv1"]["rootfs"]["diff_ids"] == ids1
    finally:
        buildah("rmi", "--force", TAG, check=False)
