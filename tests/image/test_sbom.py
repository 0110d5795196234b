"""The image SBOM (packager/image/sbom.py) without a container: the inventory script run by
this host's interpreters against what is really installed here, and CycloneDX documents
built from small hand-written inventories, checked against the schema."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from packager.image import sbom
from packager.image.base import ImageError

CREATED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
SHA = "0123456789abcdef" * 4

SMALL_INVENTORY = {
    "python": [
        {"name": "numpy", "version": "2.1.0", "license": "BSD-3-Clause",
         "location": "/opt/venv/lib/python3.11/site-packages"},
        {"name": "tensorflow_cpu", "version": "2.21.0", "license": "Apache 2.0",
         "location": "/opt/venv/lib/python3.11/site-packages"},
        {"name": "packaging", "version": "24.1", "license": "Apache-2.0 OR BSD-2-Clause"},
        {"name": "mpi4py", "version": "3.1.4", "location": "/usr/lib/python3/dist-packages"},
        # shadowed by the first (later on sys.path): dropped
        {"name": "NumPy", "version": "1.24.2", "location": "/usr/lib/python3/dist-packages"},
    ],
    "debian": [
        {"name": "bash", "version": "5.2.15-2+b8", "arch": "amd64", "license": "GPL-3+"},
        {"name": "libc6", "version": "2.36-9+deb12u7", "arch": "amd64", "source": "glibc"},
        {"name": "openmpi-bin", "version": "4.1.4-3+b1", "arch": "amd64", "source": "openmpi"},
    ],
    "os": {"id": "debian", "version_id": "12", "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
    "interpreter": {"executable": "/opt/venv/bin/python3", "version": "3.11.2"},
}


def _small(**overrides):
    inventory = sbom.parse_inventory(json.dumps(SMALL_INVENTORY), "test image")
    args = dict(package_name="bert-large-training", package_version="1.2.0",
                manifest_sha256=SHA, image_ref="localhost/modelpkg/bert-large-training:1.2.0",
                image_title="BERT large training", created=CREATED,
                source_url="https://example.com/modelpkg.git", revision="abc123")
    args.update(overrides)
    return sbom.build_sbom(inventory, **args)


def _run_inventory(python: str, cwd: Path, env: dict[str, str] | None = None) -> sbom.Inventory:
    proc = subprocess.run([python, "-c", sbom.INVENTORY_SCRIPT], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("\n") == 1, "one JSON object on one line"
    return sbom.parse_inventory(proc.stdout, python)


def _fake_dist(site: Path, name: str, version: str, *headers: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}", *headers]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


# --- the inventory script on this host ----------------------------------------------------


@pytest.fixture(scope="module")
def host_inventory(tmp_path_factory):
    return _run_inventory(sys.executable, tmp_path_factory.mktemp("cwd"))


def test_inventory_finds_the_python_distributions_installed_here(host_inventory):
    found = {sbom._pep503(p.name): p for p in host_inventory.python}
    for name in ("numpy", "tensorflow-cpu", "tensorflow", "pytest"):
        try:
            expected = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        assert found[name].version == expected.version, name
        assert found[name].location == os.path.normpath(str(expected.locate_file("")))
    assert "numpy" in found and ("tensorflow-cpu" in found or "tensorflow" in found)
    assert found["numpy"].license, "numpy declares its license"
    assert host_inventory.python_version == "%d.%d.%d" % sys.version_info[:3]


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian-based host")
def test_inventory_lists_the_debian_packages_dpkg_reports(host_inventory):
    debs = {(d.name, d.arch): d for d in host_inventory.debian}
    reported = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\n",
         "bash", "openmpi-bin"], capture_output=True, text=True).stdout
    rows = [line.split("\t") for line in reported.splitlines()]
    assert any(row[0] == "bash" for row in rows)
    for name, version, arch, status in rows:
        if status.startswith("ii"):
            assert debs[(name, arch)].version == version
    copyright = Path("/usr/share/doc/bash/copyright")
    if copyright.is_file() and copyright.read_text(errors="replace").startswith("Format: http"):
        assert debs[("bash", rows[0][2])].license  # DEP-5: the `Files: *` License
    assert dict(host_inventory.os).get("id")


def test_inventory_under_debians_own_python3(tmp_path):
    """/usr/bin/python3 is the image's kind of interpreter: it sees dist-packages."""
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3")
    inventory = _run_inventory("/usr/bin/python3", tmp_path)
    assert inventory.python_version and inventory.python_version.startswith("3.")
    assert all(p.name and p.version for p in inventory.python)


def test_inventory_license_rules_dedup_and_current_folder(tmp_path):
    first, second, cwd = tmp_path / "first", tmp_path / "second", tmp_path / "cwd"
    _fake_dist(first, "Demo-Pkg", "1.0", "License-Expression: MIT OR Apache-2.0",
               "License: BSD", "Classifier: License :: OSI Approved :: BSD License")
    _fake_dist(second, "demo_pkg", "2.0")  # later on sys.path: shadowed
    _fake_dist(first, "short-license", "1.0", "License: BSD-3-Clause")
    _fake_dist(first, "long-license", "1.0", "License: Copyright (c) someone",
               "        Permission is hereby granted, free of charge, to any person " * 3,
               "Classifier: License :: OSI Approved :: Apache Software License",
               "Classifier: License :: OSI Approved :: BSD License")
    _fake_dist(first, "no-license", "1.0", "License: UNKNOWN")
    _fake_dist(cwd, "in-current-folder", "9.9")
    env = dict(os.environ, PYTHONPATH=f"{first}{os.pathsep}{second}")
    python = {p.name: p for p in _run_inventory(sys.executable, cwd, env).python}
    assert python["Demo-Pkg"].version == "1.0" and "demo_pkg" not in python
    assert python["Demo-Pkg"].license == "MIT OR Apache-2.0"
    assert python["Demo-Pkg"].location == str(first)
    assert python["short-license"].license == "BSD-3-Clause"
    assert python["long-license"].license == "Apache Software License OR BSD License"
    assert python["no-license"].license is None
    assert "in-current-folder" not in python


def test_inventory_without_dpkg_lists_no_debian_packages(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no dpkg-query on PATH
    inventory = _run_inventory(sys.executable, tmp_path, env)
    assert inventory.debian == () and inventory.python


def test_inventory_script_is_self_contained():
    """It runs as `python3 -c SCRIPT` in an image: standard library only, no file of ours."""
    for line in sbom.INVENTORY_SCRIPT.splitlines():
        if line.startswith(("import ", "from ")):
            module = line.split()[1].split(".")[0]
            assert module in sys.stdlib_module_names, line
    assert "packager" not in sbom.INVENTORY_SCRIPT and sbom.INVENTORY_SCRIPT.isascii()


# --- parse_inventory ----------------------------------------------------------------------


def test_parse_inventory_drops_shadowed_duplicates_and_tolerates_a_banner():
    text = "Welcome to the image\n" + json.dumps(SMALL_INVENTORY) + "\n"
    inventory = sbom.parse_inventory(text, "img")
    numpy = [p for p in inventory.python if p.name.lower() == "numpy"]
    assert [(p.name, p.version) for p in numpy] == [("numpy", "2.1.0")]
    assert inventory.os_info["id"] == "debian" and inventory.python_version == "3.11.2"
    assert [d.source for d in inventory.debian] == [None, "glibc", "openmpi"]


@pytest.mark.parametrize("text, needle", [
    ("", "not JSON"),
    ("Traceback (most recent call last):\n  ...\nNameError: x", "not JSON"),
    ("[1, 2]", "'python' and 'debian' lists"),
    ('{"python": []}', "'python' and 'debian' lists"),
    ('{"python": [{"name": "x"}], "debian": []}', "python[0] has no valid 'version'"),
    ('{"python": [], "debian": [{"name": "x", "version": "1"}]}', "debian[0] has no valid 'arch'"),
    ('{"python": ["numpy"], "debian": []}', "python[0] is not an object"),
])
def test_parse_inventory_errors_name_where(text, needle):
    with pytest.raises(ImageError) as info:
        sbom.parse_inventory(text, "image modelpkg/x:1")
    message = str(info.value)
    assert message.startswith("image modelpkg/x:1: ") and needle in message
    assert "\n" not in message and info.value.exit_code == 1


# --- build_sbom / validate_sbom -----------------------------------------------------------


def test_sbom_is_valid_cyclonedx_with_the_image_package_and_packages():
    text = _small()
    sbom.validate_sbom(text)
    doc = json.loads(text)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == sbom.SPEC_VERSION
    assert doc["metadata"]["timestamp"] == "2024-05-01T12:00:00+00:00"
    image = doc["metadata"]["component"]
    assert image["type"] == "container"
    assert image["name"] == "localhost/modelpkg/bert-large-training:1.2.0"
    assert image["externalReferences"][0]["url"] == "https://example.com/modelpkg.git"
    props = {p["name"]: p["value"] for p in image["properties"]}
    assert props[sbom.PROP_REVISION] == "abc123" and props[sbom.PROP_PYTHON_VERSION] == "3.11.2"
    by_name = {c["name"]: c for c in doc["components"]}
    package = by_name["bert-large-training"]
    assert package["type"] == "application" and package["version"] == "1.2.0"
    assert package["hashes"] == [{"alg": "SHA-256", "content": SHA}]
    assert {"name": sbom.PROP_MANIFEST_SHA256, "value": SHA} in package["properties"]
    assert by_name["tensorflow_cpu"]["purl"] == "pkg:pypi/tensorflow-cpu@2.21.0"
    assert by_name["numpy"]["licenses"] == [
        {"license": {"acknowledgement": "declared", "id": "BSD-3-Clause"}}]
    assert by_name["packaging"]["licenses"] == [
        {"acknowledgement": "declared", "expression": "Apache-2.0 OR BSD-2-Clause"}]
    assert by_name["tensorflow_cpu"]["licenses"][0]["license"]["name"] == "Apache 2.0"
    assert "licenses" not in by_name["mpi4py"]
    assert by_name["libc6"]["purl"] == \
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64&distro=debian-12&upstream=glibc"
    assert by_name["debian"]["type"] == "operating-system"
    # the image contains every component
    root = [d for d in doc["dependencies"] if d["ref"] == image["bom-ref"]][0]
    assert set(root["dependsOn"]) == {c["bom-ref"] for c in doc["components"]}
    assert sbom.find_component(text, "numpy") == "2.1.0"
    assert sbom.find_component(text, "Tensorflow-CPU", kind="pypi") == "2.21.0"
    assert sbom.find_component(text, "openmpi-bin", kind="deb") == "4.1.4-3+b1"
    assert sbom.find_component(text, "bash", kind="pypi") is None
    assert sbom.find_component(text, "no-such-thing") is None
    kinds = {kind for kind, _, _ in sbom.list_components(text)}
    assert {"container", "application", "operating-system", "pypi", "deb"} <= kinds


def test_sbom_is_deterministic():
    first, second = _small(), _small()
    assert first == second
    later = _small(created=CREATED + timedelta(seconds=1))
    assert later != first
    assert json.loads(later)["serialNumber"] != json.loads(first)["serialNumber"]
    assert json.loads(first)["serialNumber"].startswith("urn:uuid:")
    # naive datetimes are UTC; sub-second parts are dropped
    assert _small(created=CREATED.replace(tzinfo=None, microsecond=5)) == first
    # the serial number follows the content
    other = _small(manifest_sha256="f" * 64)
    assert json.loads(other)["serialNumber"] != json.loads(first)["serialNumber"]


def test_sbom_without_created_uses_now_and_without_source_has_no_reference():
    text = _small(created=None, source_url=None, revision=None)
    sbom.validate_sbom(text)
    doc = json.loads(text)
    stamp = datetime.fromisoformat(doc["metadata"]["timestamp"])
    assert abs(stamp - datetime.now(timezone.utc)) < timedelta(minutes=5)
    assert "externalReferences" not in doc["metadata"]["component"]


def test_source_url_credentials_stay_out_of_the_sbom():
    text = _small(source_url="https://user:s3cret@example.com/modelpkg.git")
    assert "s3cret" not in text and "user@" not in text
    image = json.loads(text)["metadata"]["component"]
    assert image["externalReferences"][0]["url"] == "https://example.com/modelpkg.git"


def test_bad_manifest_digest_is_refused():
    with pytest.raises(ImageError, match="not a SHA-256"):
        _small(manifest_sha256="abc")


@pytest.mark.parametrize("corrupt, needle", [
    (lambda d: d["components"][0].update(type="bogus"), "components/0/type"),
    (lambda d: d["components"][0]["hashes"][0].update(content="xyz"), "components/0/hashes/0"),
    (lambda d: d.update(unexpected=1), "unexpected"),
])
def test_validation_failures_are_caught(corrupt, needle):
    doc = json.loads(_small())
    corrupt(doc)
    with pytest.raises(ImageError) as info:
        sbom.validate_sbom(json.dumps(doc))
    assert needle in str(info.value) and "CycloneDX 1.6 schema" in str(info.value)


@pytest.mark.parametrize("text, needle", [
    ("{not json", "not JSON"),
    ('{"bomFormat": "SPDX"}', "not a CycloneDX document"),
    ('{"bomFormat": "CycloneDX", "specVersion": "0.9"}', "unsupported CycloneDX specVersion"),
])
def test_validate_rejects_what_is_not_a_cyclonedx_document(text, needle):
    with pytest.raises(ImageError, match=needle):
        sbom.validate_sbom(text)


def test_sbom_from_this_hosts_inventory_is_valid(host_inventory):
    """Real names and versions (epochs, `~`, `+b1`, dotted names) survive purls and the
    schema. A sample of the Debian packages: the schema's uniqueItems check is quadratic."""
    odd = [d for d in host_inventory.debian if any(c in d.version for c in ":~")][:20]
    sample = dataclasses.replace(
        host_inventory, debian=tuple(dict.fromkeys(odd + list(host_inventory.debian[::8]))))
    text = sbom.build_sbom(sample, package_name="p", package_version="1",
                           manifest_sha256=SHA, image_ref="p:1", image_title="", created=CREATED)
    sbom.validate_sbom(text)
    numpy = importlib.metadata.version("numpy")
    assert sbom.find_component(text, "numpy", kind="pypi") == numpy


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize("ref, name", [
    ("bert-large-training", "bert-large-training.sbom.cdx.json"),
    ("localhost/modelpkg/bert-large-training:1.2.0", "bert-large-training-1.2.0.sbom.cdx.json"),
    ("registry:5000/x/y@sha256:" + "ab" * 32, "y-abababababab.sbom.cdx.json"),
    ("y:1@sha256:" + "ab" * 32, "y-1.sbom.cdx.json"),
])
def test_sbom_file_name(ref, name):
    assert sbom.sbom_file_name(ref) == name


def test_sbom_file_name_refuses_an_empty_name():
    with pytest.raises(ImageError):
        sbom.sbom_file_name("  ")


def test_sbom_path_in_image():
    assert sbom.SBOM_PATH_IN_IMAGE == "/usr/share/modelpkg/sbom.cdx.json"


def test_sbom_without_a_package_version_is_valid():
    text = _small(package_version="")
    sbom.validate_sbom(text)
    package = [c for c in json.loads(text)["components"] if c["name"] == "bert-large-training"]
    assert "version" not in package[0] and package[0]["licenses"]
