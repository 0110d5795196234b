"""A real (small) buildah build through `modelpkg image build`: the proxy values and the CA
bundle reach the build steps but appear nowhere in the image config, history or layers."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from packager.commands.image import app

from .realbuild import BASE_IMAGE, buildah, ensure_base_image, image_blobs, inspect, layer_names, skip_reason

pytestmark = [pytest.mark.image, pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")]

PROXY_MARKER = "proxy-marker-7f3a9c.invalid"
CA_MARKER = "CA-MARKER-5b1e0d2c"

PROBE_PART = """\
# leak_probe: proves the secret and the proxies reach the build step (files hold no values)
{{ pip_run('if [ -n "${PIP_CERT:-}" ] && grep -q CA-MARKER "$PIP_CERT"; then touch /secret-was-visible; fi; if [ -n "${http_proxy:-}" ] && [ -n "${HTTPS_PROXY:-}" ]; then touch /proxy-was-visible; fi') }}
"""


def test_proxy_and_ca_bundle_never_land_in_the_image(tiny_repo, tmp_path, monkeypatch, clean_proxy_env):
    ensure_base_image()
    (tiny_repo / "templates" / "dockerfile" / "leak_probe.Dockerfile.j2").write_text(PROBE_PART)
    spec_file = tiny_repo / "specs" / "tiny-pkg.yaml"
    spec_file.write_text(
        spec_file.read_text()
        .replace("parts: [base, python, tensorflow, model_package, workdir]", "parts: [base, leak_probe, model_package, workdir]")
        .replace('  build_args: {TF_PACKAGE: "tensorflow-cpu==2.21.0"}\n', "")
    )
    ca = tmp_path / "extra-ca.pem"
    ca.write_text(f"-----BEGIN CERTIFICATE-----\n{CA_MARKER}\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("http_proxy", f"http://user:pw@{PROXY_MARKER}:3128")
    monkeypatch.setenv("HTTPS_PROXY", f"http://{PROXY_MARKER}:3129")
    monkeypatch.setenv("no_proxy", f"localhost,{PROXY_MARKER}")
    tag = "localhost/modelpkg-test/leak-probe:latest"
    result = CliRunner().invoke(app, [
        "build", "tiny-pkg", "--builder", "buildah", "--tag", tag, "--base-image", BASE_IMAGE,
        "--ca-bundle", str(ca), "--no-cache",
    ])
    try:
        assert result.exit_code == 0, result.output + result.stderr
        assert PROXY_MARKER not in result.output  # the printed command hides proxy values
        info = inspect(tag)
        text = str(info)
        assert PROXY_MARKER not in text and CA_MARKER not in text
        assert not any("proxy" in e.lower() for e in info["OCIv1"]["config"].get("Env", []))
        blobs = image_blobs(tag, tmp_path / "oci")
        assert len(blobs) >= 4  # index/manifest, config, base layer, the probe's layer...
        names = [n for blob in blobs.values() for n in layer_names(blob)]
        assert any(n.endswith("secret-was-visible") for n in names), "the CA secret did not reach the RUN step"
        assert any(n.endswith("proxy-was-visible") for n in names), "the proxies did not reach the RUN step"
        assert any(n.endswith("tiny-pkg/models/tiny/train.py") for n in names)
        for digest, blob in blobs.items():
            assert PROXY_MARKER.encode() not in blob, f"proxy value found in blob {digest}"
            assert CA_MARKER.encode() not in blob, f"CA bundle content found in blob {digest}"
    finally:
        buildah("rmi", "--force", tag, check=False)
