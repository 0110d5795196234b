"""Helpers for the tests that build real images with buildah (marked `image`)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("MODELPKG_TEST_BASE_IMAGE", "localhost/modelpkg-base:bookworm")
CA_BUNDLE = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")


def skip_reason() -> str | None:
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    if missing:
        return (f"{' and '.join(missing)} not installed (apt-get install -y buildah debootstrap; "
                "scripts/setup-test-env.sh installs them)")
    if os.geteuid() != 0:
        return "debootstrap and buildah --isolation chroot need root here"
    return None


def ensure_base_image() -> float:
    """Make the debootstrap base image unless buildah storage has it; returns seconds spent."""
    start = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "scripts" / "make-base-image.sh"), BASE_IMAGE],
                          capture_output=True, text=True, check=False)
    print(proc.stdout, end="")
    if proc.returncode != 0:
        pytest.fail(f"scripts/make-base-image.sh failed:\n{proc.stdout}\n{proc.stderr}")
    return time.monotonic() - start


def buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, check=check)


def image_blobs(image: str, dest: Path) -> dict[str, bytes]:
    """Push `image` to an OCI layout dir; return every blob (config, manifest, layers) with
    compressed layers decompressed, keyed by digest."""
    buildah("push", "--quiet", image, f"oci:{dest}:latest")
    blobs: dict[str, bytes] = {}
    for path in sorted((dest / "blobs" / "sha256").iterdir()):
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        blobs[path.name] = data
    return blobs


def layer_names(blob: bytes) -> list[str]:
    try:
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            return tar.getnames()
    except tarfile.TarError:
        return []


def inspect(image: str) -> dict:
    return json.loads(buildah("inspect", "--type", "image", image).stdout)
