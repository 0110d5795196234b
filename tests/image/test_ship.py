"""What makes an image shippable, without a real build (fake buildah on PATH): the per-build
OCI labels and SOURCE_DATE_EPOCH, the base-digest pin, the SBOM beside and inside the image,
the size report, and `image save` / `image load` archives with their checksums."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from packager.commands.image import app
from packager.image import sbom
from packager.image.labels import build_labels

runner = CliRunner()
PIN = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def _bud_calls(fake) -> list[list[str]]:
    return [c for c in fake.calls() if "bud" in c]


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture
def git_repo(tiny_repo):
    _git(tiny_repo, "init", "-q")
    _git(tiny_repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A")
    _git(tiny_repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "one")
    _git(tiny_repo, "remote", "add", "origin", "https://alice:t0ken@git.example.com/org/modelpkg.git")
    return tiny_repo


def test_labels_come_from_the_checkout_and_source_date_epoch(git_repo):
    head = subprocess.run(["git", "-C", str(git_repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    labels = build_labels(git_repo, 1700000000)
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert labels["org.opencontainers.image.revision"] == head
    assert labels["org.opencontainers.image.version"].endswith(f"+g{head[:7]}")
    # the remote's token never reaches a label
    assert labels["org.opencontainers.image.source"] == "https://git.example.com/org/modelpkg.git"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    (git_repo / "models" / "tiny" / "train.py").write_text("print('changed')\n")
    assert build_labels(git_repo, 1700000000)["org.opencontainers.image.version"].endswith(".dirty")


def test_labels_outside_a_checkout_or_with_a_local_remote(tiny_repo, tmp_path):
    labels = build_labels(tiny_repo, None, now=1800000000)
    assert labels["org.opencontainers.image.created"] == "2027-01-15T08:00:00Z"
    assert "org.opencontainers.image.revision" not in labels
    assert "org.opencontainers.image.source" not in labels
    _git(tiny_repo, "init", "-q")
    _git(tiny_repo, "remote", "add", "origin", str(tmp_path / "elsewhere"))  # a path nobody else reaches
    assert "org.opencontainers.image.source" not in build_labels(tiny_repo, None)


def test_build_passes_labels_timestamp_and_writes_the_sbom_beside_and_into_the_image(
        git_repo, fake_buildah, tmp_path, monkeypatch, clean_proxy_env):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.setenv("FAKE_BUILDAH_REAL_INVENTORY", "1")  # the inventory script runs on this machine
    out = tmp_path / "out"
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah", "-o", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    image_build, sbom_build = _bud_calls(fake_buildah)
    labels = dict(item.split("=", 1) for item in _pairs(image_build, "--label"))
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert labels["org.opencontainers.image.source"] == "https://git.example.com/org/modelpkg.git"
    assert _pairs(image_build, "--timestamp") == ["1700000000"]
    # not a build arg: the Dockerfile's fixed one keeps the steps' cache keys whatever the epoch
    assert not any(a.startswith("SOURCE_DATE_EPOCH") for a in _pairs(image_build, "--build-arg"))
    # the SBOM: valid CycloneDX, beside the image and COPYed into it by a second build
    document = (out / "tiny-pkg.sbom.cdx.json").read_text()
    sbom.validate_sbom(document)
    data = json.loads(document)
    assert data["metadata"]["timestamp"].startswith("2023-11-14T22:13:20")
    assert sbom.find_component(document, "pytest", "pypi")  # the fake runs the inventory here
    package = next(c for c in data["components"] if c["name"] == "tiny-pkg")
    assert len(package["hashes"][0]["content"]) == 64
    assert _pairs(sbom_build, "--timestamp") == ["1700000000"]
    assert "COPY sbom.cdx.json /usr/share/modelpkg/sbom.cdx.json" in result.output or sbom_build
    # the size and the largest layers close the build
    assert "image size: 1.62 GB in 2 layers; largest:" in result.output
    assert "pip install tensorflow-cpu" in result.output
    # `image sbom` prints what is inside the image
    shown = runner.invoke(app, ["sbom", "tiny-pkg", "--builder", "buildah"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == data


def test_no_sbom_builds_once_and_sbom_of_an_image_without_one_says_so(tiny_repo, fake_buildah, tmp_path,
                                                                      clean_proxy_env):
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah", "--no-sbom", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert len(_bud_calls(fake_buildah)) == 1 and not list(tmp_path.glob("*.cdx.json"))
    shown = runner.invoke(app, ["sbom", "tiny-pkg", "--builder", "buildah"])
    assert shown.exit_code == 1
    assert "has no /usr/share/modelpkg/sbom.cdx.json: it was built without an SBOM" in shown.stderr


def _pin(tiny_repo: Path, digest: str) -> None:
    spec = tiny_repo / "specs" / "tiny-pkg.yaml"
    spec.write_text(spec.read_text().replace("  base_image: debian:bookworm-slim\n",
                                             f"  base_image: debian:bookworm-slim\n  base_digest: {digest}\n"))


def test_base_digest_pin_matches(tiny_repo, fake_buildah, monkeypatch, clean_proxy_env, tmp_path):
    _pin(tiny_repo, PIN)
    monkeypatch.setenv("FAKE_BUILDAH_DIGEST", PIN)
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"base image: debian:bookworm-slim matches the pinned digest {PIN}" in result.output


def test_base_digest_mismatch_fails_naming_both_before_building(tiny_repo, fake_buildah, monkeypatch,
                                                                clean_proxy_env):
    _pin(tiny_repo, PIN)
    monkeypatch.setenv("FAKE_BUILDAH_DIGEST", OTHER)
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah"])
    assert result.exit_code == 1
    assert f"base image debian:bookworm-slim has digest {OTHER}, but specs/tiny-pkg.yaml image.base_digest pins {PIN}" \
        in result.stderr
    assert not _bud_calls(fake_buildah)
    # another base on purpose: said, not checked
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah", "--no-sbom",
                                 "--base-image", "localhost/mybase:1"])
    assert result.exit_code == 0, result.output
    assert "image.base_digest pins the latter and is not checked" in result.output


def test_a_malformed_pin_is_a_spec_error(tiny_repo, fake_buildah):
    _pin(tiny_repo, "sha256:nothex")
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah"])
    assert result.exit_code == 2
    assert "image.base_digest" in result.stderr and "Traceback" not in result.stderr


def test_save_writes_a_gzip_archive_and_its_checksum_and_load_reads_it(tiny_repo, fake_buildah, tmp_path):
    out = tmp_path / "images"
    result = runner.invoke(app, ["save", "tiny-pkg", "--builder", "buildah", "-o", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    archive = out / "tiny-pkg.image.tar.gz"
    push = next(c for c in fake_buildah.calls() if "push" in c)
    assert push[-1].startswith("docker-archive:") and push[-1].endswith(":local/tiny:tiny-latest")
    with tarfile.open(archive) as tar:  # gzip, with the docker archive's manifest inside
        assert "manifest.json" in tar.getnames()
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (out / "tiny-pkg.image.tar.gz.sha256").read_text() == f"{sha}  tiny-pkg.image.tar.gz\n"
    # no SBOM in this image (the fake built none), so none beside the archive; the log says so
    assert sorted(p.name for p in out.iterdir()) == ["tiny-pkg.image.tar.gz", "tiny-pkg.image.tar.gz.sha256"]
    assert "no SBOM beside it" in result.output
    assert gzip.open(archive).read(1)  # a valid gzip stream
    loaded = runner.invoke(app, ["load", str(archive), "--builder", "buildah"])
    assert loaded.exit_code == 0, loaded.output + loaded.stderr
    assert f"sha256 {sha} matches" in loaded.output and "loaded localhost/loaded:latest" in loaded.output
    pull = [c for c in fake_buildah.calls() if "pull" in c][-1]
    assert pull[-1].startswith("docker-archive:") and not pull[-1].endswith(".gz")  # buildah gets it gunzipped


def test_save_oci_and_load_finds_the_format(tiny_repo, fake_buildah, tmp_path):
    result = runner.invoke(app, ["save", "tiny-pkg", "--builder", "buildah", "--format", "oci", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output + result.stderr
    archive = tmp_path / "tiny-pkg.oci.tar.gz"
    assert archive.is_file()
    loaded = runner.invoke(app, ["load", str(archive), "--builder", "buildah"])
    assert loaded.exit_code == 0, loaded.output + loaded.stderr
    assert [c for c in fake_buildah.calls() if "pull" in c][-1][-1].startswith("oci-archive:")


def test_load_refuses_a_damaged_archive_and_a_missing_file(tiny_repo, fake_buildah, tmp_path):
    runner.invoke(app, ["save", "tiny-pkg", "--builder", "buildah", "-o", str(tmp_path)])
    archive = tmp_path / "tiny-pkg.image.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-10])  # cut short in transfer
    result = runner.invoke(app, ["load", str(archive), "--builder", "buildah"])
    assert result.exit_code == 1
    assert "does not match" in result.stderr and "damaged or incomplete" in result.stderr
    assert not any("pull" in c for c in fake_buildah.calls())
    missing = runner.invoke(app, ["load", str(tmp_path / "nope.tar.gz"), "--builder", "buildah"])
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_save_of_an_image_not_built_and_a_bad_format(tiny_repo, fake_buildah, tmp_path, monkeypatch):
    bad = runner.invoke(app, ["save", "tiny-pkg", "--builder", "buildah", "--format", "zip", "-o", str(tmp_path)])
    assert bad.exit_code == 2 and "--format 'zip'" in bad.stderr
    monkeypatch.setenv("FAKE_BUILDAH_NO_IMAGE", "1")
    out = tmp_path / "out"
    result = runner.invoke(app, ["save", "tiny-pkg", "--builder", "buildah", "-o", str(out)])
    assert result.exit_code == 1 and "is not in buildah storage; build it first" in result.stderr
    assert not out.exists() or not list(out.iterdir())  # nothing half-written
