"""`modelpkg image build` without a real build: context contents, buildah argv (fake buildah
on PATH), proxy/secret plumbing, and the error shown when a step fails."""

from __future__ import annotations

import hashlib
import tarfile

import pytest
from typer.testing import CliRunner

from packager.commands.image import app
from packager.image import ImageError, Secret
from packager.image.actions import prepare_context
from packager.image.context import build_args, proxy_build_args, secrets
from packager.package import load_package

runner = CliRunner()


def _bud_argv(fake) -> list[str]:
    """The image build's argv (a second `bud`, when there is one, adds the SBOM layer)."""
    calls = [c for c in fake.calls() if "bud" in c]
    assert len(calls) in (1, 2), fake.calls()
    return calls[0]


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_context_holds_exactly_the_dockerfile_and_the_package(tiny_repo, tmp_path):
    spec = load_package("tiny-pkg", tiny_repo)
    context = tmp_path / "ctx"
    manifest_sha256 = prepare_context(spec, context, buildkit=True)
    files = sorted(p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file())
    assert files == ["Dockerfile", "model_packages/tiny-pkg.tar.gz"]
    text = (context / "Dockerfile").read_text()
    assert "ADD model_packages/tiny-pkg.tar.gz /workspace/" in text
    assert "--mount=type=secret,id=pip_cert" in text
    with tarfile.open(context / "model_packages" / "tiny-pkg.tar.gz") as tar:
        names = tar.getnames()
        manifest = tar.extractfile("tiny-pkg/MANIFEST.sha256").read()
    assert hashlib.sha256(manifest).hexdigest() == manifest_sha256
    assert "tiny-pkg/models/tiny/train.py" in names
    assert "tiny-pkg/quickstart/run_demo.sh" in names
    # nothing left beside the context (the archive is built next to it, then moved in)
    assert not any(p.name.startswith(".ctx") for p in tmp_path.iterdir())


def test_classic_docker_context_has_no_buildkit_mounts(tiny_repo, tmp_path):
    spec = load_package("tiny-pkg", tiny_repo)
    prepare_context(spec, tmp_path / "ctx", buildkit=False)
    text = (tmp_path / "ctx" / "Dockerfile").read_text()
    assert "--mount" not in text


def test_build_args_precedence_and_proxies_from_environment():
    environ = {"http_proxy": "http://p:3128", "HTTPS_PROXY": "http://q:3128", "no_proxy": "",
               "PATH": "/bin"}
    assert proxy_build_args(environ) == {"http_proxy": "http://p:3128", "HTTPS_PROXY": "http://q:3128"}
    args = build_args({"TF_PACKAGE": "tensorflow-cpu", "BASE_IMAGE": "x"}, {"TF_PACKAGE": "tf==1"},
                      base_image="localhost/base:1", environ=environ)
    assert args == {"TF_PACKAGE": "tf==1", "BASE_IMAGE": "localhost/base:1",
                    "http_proxy": "http://p:3128", "HTTPS_PROXY": "http://q:3128"}


def test_secret_parsing_and_ca_bundle(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("CERT")
    assert secrets([], ca) == (Secret("pip_cert", ca.resolve()),)
    assert Secret.parse(f"id=tok,source={ca}").to_arg() == f"id=tok,src={ca.resolve()}"
    with pytest.raises(ImageError, match="id=NAME,src=FILE"):
        Secret.parse("pip_cert")
    with pytest.raises(ImageError, match="is not a file"):
        Secret.parse(f"id=x,src={tmp_path / 'missing'}")
    with pytest.raises(ImageError, match="both given"):
        secrets([f"id=pip_cert,src={ca}"], ca)


def test_buildah_build_argv_with_proxies_secret_and_storage(
    tiny_repo, fake_buildah, tmp_path, monkeypatch, clean_proxy_env
):
    monkeypatch.setenv("http_proxy", "http://user:secret@proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.internal")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    context = tmp_path / "kept-context"
    result = runner.invoke(app, [
        "build", "tiny-pkg", "--builder", "buildah", "--storage-driver", "vfs",
        "--base-image", "localhost/modelpkg-base:bookworm", "--build-arg", "PIP_EXTRA=1",
        "--ca-bundle", str(ca), "--context-dir", str(context),
    ])
    assert result.exit_code == 0, result.output
    argv = _bud_argv(fake_buildah)
    assert argv[:3] == ["--storage-driver", "vfs", "bud"]
    assert argv[argv.index("--isolation") + 1] == "chroot"
    assert "--layers=true" in argv and "--pull=false" in argv
    assert argv[argv.index("--tag") + 1] == "local/tiny:tiny-latest"
    assert argv[argv.index("--file") + 1] == str(context / "Dockerfile")
    assert argv[-1] == str(context)
    assert sorted(_pairs(argv, "--build-arg")) == sorted([
        "TF_PACKAGE=tensorflow-cpu==2.21.0", "BASE_IMAGE=localhost/modelpkg-base:bookworm",
        "PIP_EXTRA=1", "http_proxy=http://user:secret@proxy.example:3128",
        "NO_PROXY=localhost,.internal",
    ])
    assert _pairs(argv, "--secret") == [f"id=pip_cert,src={ca.resolve()}"]
    # the CA never goes into the context; the proxy never into the Dockerfile
    assert sorted(p.name for p in context.rglob("*") if p.is_file()) == ["Dockerfile", "tiny-pkg.tar.gz"]
    assert "proxy.example" not in (context / "Dockerfile").read_text()
    # progress is streamed; the printed command hides proxy values (they may hold passwords)
    assert "STEP 3/3: RUN echo step 3" in result.output
    assert "http_proxy=***" in result.output and "user:secret" not in result.output
    assert "built local/tiny:tiny-latest (id 0123456789ab) with buildah" in result.output


def test_tag_and_no_cache(tiny_repo, fake_buildah, clean_proxy_env):
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah", "--tag", "me/x:1", "--no-cache"])
    assert result.exit_code == 0, result.output
    argv = _bud_argv(fake_buildah)
    assert argv[argv.index("--tag") + 1] == "me/x:1"
    assert "--no-cache" in argv and "--layers=true" in argv  # layered, nothing reused
    assert not any(a.startswith("http_proxy") for a in _pairs(argv, "--build-arg"))


def test_failed_step_shows_the_step_and_its_last_lines(tiny_repo, fake_buildah, monkeypatch, clean_proxy_env):
    monkeypatch.setenv("FAKE_BUILDAH_FAIL_AT", "2")
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah"])
    assert result.exit_code == 1
    err = result.stderr
    assert "buildah build failed at step: STEP 2/3: RUN echo step 2" in err
    assert "E: Unable to locate package no-such-package" in err
    assert "exit status 100" in err
    assert "output 2.39" in err
    # only the failing step's tail (25 lines), not step 1's output
    assert "output 1.0" not in err and "output 2.0\n" not in err
    assert "last 25 output lines" in err
    assert "Traceback" not in result.output


def test_unknown_package_and_bad_build_arg_are_errors(tiny_repo, fake_buildah):
    result = runner.invoke(app, ["build", "no-such", "--builder", "buildah"])
    assert result.exit_code == 2
    assert "no package named 'no-such'" in result.stderr
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah", "--build-arg", "=x"])
    assert result.exit_code == 1
    assert "expected NAME=VALUE" in result.stderr
    assert fake_buildah.calls() == []


def test_modelpkg_cli_has_the_image_group(tiny_repo, fake_buildah, clean_proxy_env):
    from packager.cli import app as modelpkg

    result = runner.invoke(modelpkg, ["--root", str(tiny_repo), "image", "build", "tiny-pkg", "--builder", "buildah"])
    assert result.exit_code == 0, result.output + result.stderr
    assert "built local/tiny:tiny-latest" in result.output
    result = runner.invoke(modelpkg, ["image", "--help"])
    assert result.exit_code == 0 and "build" in result.output and "run" in result.output


def test_missing_ca_bundle_names_the_option_not_a_secret(tiny_repo, fake_buildah, tmp_path, monkeypatch):
    missing = tmp_path / "no-ca.pem"
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah", "--ca-bundle", str(missing)])
    assert result.exit_code == 1
    assert f"--ca-bundle {missing} (or $MODELPKG_CA_BUNDLE): {missing} is not a file" in result.stderr
    assert "--secret" not in result.stderr
    monkeypatch.setenv("MODELPKG_CA_BUNDLE", str(missing))
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah"])
    assert result.exit_code == 1 and "$MODELPKG_CA_BUNDLE" in result.stderr
    assert fake_buildah.calls() == []


def test_unknown_builder_or_isolation_is_a_usage_error(tiny_repo, fake_buildah):
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "podman"])
    assert result.exit_code == 2
    assert "--builder 'podman': choose one of auto, docker, buildah" in result.stderr
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah", "--isolation", "bogus"])
    assert result.exit_code == 2 and "--isolation 'bogus' is not one of chroot, oci, rootless" in result.stderr
    assert fake_buildah.calls() == []


def test_missing_base_image_built_from_another_spec_says_to_build_that_first(
    tiny_repo, fake_buildah, monkeypatch, clean_proxy_env
):
    spec_file = tiny_repo / "specs" / "tiny-pkg.yaml"
    base_spec = spec_file.read_text().replace("name: tiny-pkg", "name: tiny-base").replace(
        "name: local/tiny", "name: local/tiny-base").replace("tag: tiny-latest", "tag: '1'")
    spec_file.write_text(spec_file.read_text().replace("base_image: debian:bookworm-slim",
                                                       "base_package: tiny-base"))
    (tiny_repo / "specs" / "tiny-base.yaml").write_text(base_spec)
    monkeypatch.setenv("FAKE_BUILDAH_NO_BASE", "1")
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah"])
    assert result.exit_code == 1
    assert "buildah build failed at step: STEP 1/3: FROM" in result.stderr
    assert ("the base image local/tiny-base:1 is built from the package tiny-base: run "
            "`modelpkg image build tiny-base` first (or pass --base-image IMAGE)") in result.stderr
    # another base image than the package's: the builder's own message only
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah", "--base-image", "debian:trixie"])
    assert result.exit_code == 1
    assert 'short-name "debian:trixie"' in result.stderr and "modelpkg image build tiny-base" not in result.stderr


def test_printed_commands_are_quoted_and_hide_proxy_credentials(
    tiny_repo, fake_buildah, tmp_path, monkeypatch, clean_proxy_env
):
    import shlex

    monkeypatch.setenv("https_proxy", "http://user:secret@proxy.example:3128")
    result = runner.invoke(app, ["build", "tiny-pkg", "--builder", "buildah",
                                 "--build-arg", "PIP_PACKAGES=numpy safetensors"])
    assert result.exit_code == 0, result.output + result.stderr
    printed = next(line for line in result.output.splitlines() if line.startswith("$ "))
    argv = shlex.split(printed[2:])  # copy-pasteable: the value with a space stays one word
    assert "PIP_PACKAGES=numpy safetensors" in argv and "https_proxy=***" in argv
    monkeypatch.setenv("DATASET_DIR", str(tmp_path))
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path))
    result = runner.invoke(app, ["run", "tiny-pkg", "--builder", "buildah", "--", "run_demo.sh"])
    assert result.exit_code == 0, result.output + result.stderr
    printed = next(line for line in result.output.splitlines() if line.startswith("$ "))
    assert "https_proxy=***" in shlex.split(printed[2:])
    assert "user:secret" not in result.output
    # the container itself still gets the real value
    run_argv = next(c for c in fake_buildah.calls() if "run" in c and "/bin/bash" in c)  # not the SBOM's
    assert "https_proxy=http://user:secret@proxy.example:3128" in run_argv
