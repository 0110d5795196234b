"""CycloneDX SBOM for a built image: what is installed in it, read from the image itself.

Every image build writes a CycloneDX JSON SBOM (issue 19): into the image at
`SBOM_PATH_IN_IMAGE` and next to it as `sbom_file_name(...)`. The work has two halves:

- `INVENTORY_SCRIPT` runs *inside* the built image (`python3 -c SCRIPT`) and prints one JSON
  object listing the Python distributions its interpreter sees and the Debian packages dpkg
  knows. It is a hand-written, standard-library-only program rather than `cyclonedx-py` or
  syft run in the image because the image should not need extra tools installed to describe
  itself (nor be changed by the describing), and because the image's own interpreter is the
  one that knows what it can import: /opt/venv plus Debian's dist-packages through
  `--system-site-packages`, which a scanner looking at files from outside would have to guess.
- Everything else runs on the host, pure and testable without a container: `parse_inventory`
  checks that output, `build_sbom` turns it into a CycloneDX document with the
  `cyclonedx-python-lib` model classes and JSON outputter (so the document follows the spec
  by construction), and `validate_sbom` checks the text against the CycloneDX JSON schema.

The library is imported inside the functions that use it: `modelpkg --help` and the other
commands should not pay for it (the schema validator's format checks alone take seconds to
import).

The document is deterministic: the same inventory and `created` time give byte-identical
JSON (components sorted by the library, bom-refs from purls, serial number a UUID5 of the
inputs the content is made from), so a rebuild under the same SOURCE_DATE_EPOCH reproduces it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

# SBOM_PATH_IN_IMAGE (inside the image) and SBOM_SUFFIX (the file beside it) are owned by
# packager.conventions and re-exported here.
from models.common.redact import without_userinfo
from packager.conventions import (PROJECT_LICENSE, SBOM_PATH_IN_IMAGE, SBOM_SUFFIX,
                                  mask_credentials)
from packager.image.base import ImageError

__all__ = [
    "INVENTORY_SCRIPT", "SBOM_PATH_IN_IMAGE", "SBOM_SUFFIX", "SPEC_VERSION", "DebianPackage",
    "Inventory", "PythonPackage", "build_sbom", "find_component", "list_components",
    "parse_inventory", "sbom_file_name", "validate_sbom",
]

#: The CycloneDX spec version written: 1.6, the newest that SBOM consumers (scanners,
#: Dependency-Track) widely read; the library also validates 1.7.
SPEC_VERSION = "1.6"

#: Namespace of the UUID5 serial numbers (a fixed UUID5 of this module's name).
_SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://modelpkg/sbom/serialNumber")

#: Property names (namespaced, as CycloneDX asks of non-`cdx:` properties).
PROP_MANIFEST_SHA256 = "modelpkg:manifest-sha256"
PROP_PYTHON_LOCATION = "modelpkg:python-location"
PROP_IMAGE_TITLE = "modelpkg:image-title"
PROP_REVISION = "modelpkg:source-revision"
PROP_PYTHON_VERSION = "modelpkg:python-version"

INVENTORY_SCRIPT = r'''
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_license(meta):
    expr = (meta.get("License-Expression") or "").strip()
    if expr:
        return expr
    text = (meta.get("License") or "").strip()
    if text and len(text) < 100 and "\n" not in text and text.upper() not in ("UNKNOWN", "NONE"):
        return text
    prefix = "License :: OSI Approved :: "
    names = []
    for c in meta.get_all("Classifier") or []:
        if c.startswith(prefix) and c[len(prefix):].strip() not in names:
            names.append(c[len(prefix):].strip())
    return " OR ".join(names) or None


def python_packages():
    seen = set()
    out = []
    path = [p for p in sys.path if p]  # not the current folder: installed software only
    for dist in md.distributions(path=path):
        try:
            meta = dist.metadata
            name = meta["Name"] if meta is not None else None
            version = dist.version
        except Exception:
            continue
        if not name or not version or norm(name) in seen:
            continue
        seen.add(norm(name))
        entry = {"name": name, "version": version}
        lic = dist_license(meta)
        if lic:
            entry["license"] = lic
        try:
            entry["location"] = os.path.normpath(str(dist.locate_file("")))
        except Exception:
            pass
        out.append(entry)
    return out


def deb_license(pkg):
    try:
        with open("/usr/share/doc/%s/copyright" % pkg, encoding="utf-8", errors="replace") as f:
            text = f.read(262144)
    except OSError:
        return None
    dep5 = r"Format:\s*https?://www\.debian\.org/doc/packaging-manuals/copyright-format/"
    if not re.match(dep5, text):
        return None
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", text) if p.strip()]
    for i, para in enumerate(paragraphs):
        fields = dict(
            (m.group(1).lower(), m.group(2).strip())
            for m in re.finditer(r"^([A-Za-z-]+):[ \t]*(.*)$", para, re.M)
        )
        if i == 0 or fields.get("files", "").split()[:1] == ["*"]:
            if fields.get("license"):
                return fields["license"]
    return None


def debian_packages():
    if shutil.which("dpkg-query") is None:
        return []
    fmt = "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\t${source:Package}\n"
    try:
        text = subprocess.run(["dpkg-query", "-W", "-f", fmt], capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 5 or not parts[0].startswith("ii") or not parts[2]:
            continue
        _, name, version, arch, source = parts
        entry = {"name": name, "version": version, "arch": arch}
        if source and source != name:
            entry["source"] = source
        lic = deb_license(name)
        if lic:
            entry["license"] = lic
        out.append(entry)
    return out


def os_release():
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        info = {}
        for line in lines:
            key, sep, value = line.partition("=")
            if sep:
                info[key.strip()] = value.strip().strip("'" + '"')
        return {k.lower(): info[k] for k in ("ID", "VERSION_ID", "PRETTY_NAME") if info.get(k)}
    return {}


json.dump({
    "python": python_packages(),
    "debian": debian_packages(),
    "os": os_release(),
    "interpreter": {"executable": sys.executable, "version": sys.version.split()[0]},
}, sys.stdout, sort_keys=True)
sys.stdout.write("\n")
'''
INVENTORY_SCRIPT = INVENTORY_SCRIPT.lstrip()


@dataclass(frozen=True)
class PythonPackage:
    name: str
    version: str
    license: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str
    arch: str
    source: str | None = None
    license: str | None = None


@dataclass(frozen=True)
class Inventory:
    """What `INVENTORY_SCRIPT` found in an image. `os` holds os-release's `id`,
    `version_id`, `pretty_name` (those present); `python_version` the interpreter's."""

    python: tuple[PythonPackage, ...] = ()
    debian: tuple[DebianPackage, ...] = ()
    os: tuple[tuple[str, str], ...] = ()
    python_version: str | None = None

    @property
    def os_info(self) -> dict[str, str]:
        return dict(self.os)


def _pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _str_field(entry: Any, key: str, where: str, kind: str, index: int,
               required: bool = True) -> str | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise ImageError(f"{where}: the package inventory's {kind}[{index}] has no valid "
                         f"{key!r} (got {value!r})")
    return value


def parse_inventory(text: str, where: str) -> Inventory:
    """Parse `INVENTORY_SCRIPT`'s output. `where` names its source (e.g. the image) in the
    one-line `ImageError` raised when the output is not the expected JSON. Duplicates are
    dropped, the first kept (Python by normalized name, Debian by name and architecture)."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
        for line in reversed(text.splitlines()):  # an entrypoint banner may come first
            if line.lstrip().startswith("{"):
                try:
                    data = json.loads(line)
                except ValueError:
                    pass
                break
        if data is None:
            snippet = mask_credentials(" ".join(text.split())[:120]) or "(empty)"
            raise ImageError(f"{where}: the package inventory is not JSON; the output was: "
                             f"{snippet}") from None
    if not isinstance(data, dict) or not isinstance(data.get("python"), list) \
            or not isinstance(data.get("debian"), list):
        raise ImageError(f"{where}: the package inventory is not a JSON object with "
                         "'python' and 'debian' lists")
    python: dict[str, PythonPackage] = {}
    for i, entry in enumerate(data["python"]):
        if not isinstance(entry, dict):
            raise ImageError(f"{where}: the package inventory's python[{i}] is not an object")
        pkg = PythonPackage(
            name=_str_field(entry, "name", where, "python", i),
            version=_str_field(entry, "version", where, "python", i),
            license=_str_field(entry, "license", where, "python", i, required=False) or None,
            location=_str_field(entry, "location", where, "python", i, required=False) or None,
        )
        python.setdefault(_pep503(pkg.name), pkg)
    debian: dict[tuple[str, str], DebianPackage] = {}
    for i, entry in enumerate(data["debian"]):
        if not isinstance(entry, dict):
            raise ImageError(f"{where}: the package inventory's debian[{i}] is not an object")
        pkg = DebianPackage(
            name=_str_field(entry, "name", where, "debian", i),
            version=_str_field(entry, "version", where, "debian", i),
            arch=_str_field(entry, "arch", where, "debian", i),
            source=_str_field(entry, "source", where, "debian", i, required=False) or None,
            license=_str_field(entry, "license", where, "debian", i, required=False) or None,
        )
        debian.setdefault((pkg.name, pkg.arch), pkg)
    os_info = data.get("os") if isinstance(data.get("os"), dict) else {}
    interpreter = data.get("interpreter") if isinstance(data.get("interpreter"), dict) else {}
    version = interpreter.get("version")
    return Inventory(
        python=tuple(python.values()),
        debian=tuple(debian.values()),
        os=tuple(sorted((k, v) for k, v in os_info.items()
                        if isinstance(k, str) and isinstance(v, str) and v)),
        python_version=version if isinstance(version, str) and version else None,
    )


def _utc(created: datetime | None) -> datetime:
    """`created` in UTC to the second (naive means UTC); now when None."""
    if created is None:
        created = datetime.now(timezone.utc)
    elif created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return created.astimezone(timezone.utc).replace(microsecond=0)


def _licenses(text: str | None) -> list[Any]:
    """One CycloneDX license from a declared string: an SPDX id, an SPDX expression, or a
    named license (the library's factory decides)."""
    if not text:
        return []
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model.license import LicenseAcknowledgement

    return [LicenseFactory().make_from_string(
        text, license_acknowledgement=LicenseAcknowledgement.DECLARED)]


def _tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelpkg")
    except PackageNotFoundError:
        return "0+unknown"


def _build_bom(inventory: Inventory, *, package_name: str, package_version: str,
               manifest_sha256: str, image_ref: str, image_title: str, created: datetime,
               source_url: str | None, revision: str | None, serial: uuid.UUID) -> str:
    from cyclonedx.contrib.this.builders import this_component
    from cyclonedx.model import (ExternalReference, ExternalReferenceType, HashAlgorithm,
                                 HashType, Property, XsUri)
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.dependency import Dependency
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat, SchemaVersion
    from packageurl import PackageURL

    image_props = [Property(name=PROP_IMAGE_TITLE, value=image_title)] if image_title else []
    image_refs = []
    if inventory.python_version:
        image_props.append(Property(name=PROP_PYTHON_VERSION, value=inventory.python_version))
    if revision:
        image_props.append(Property(name=PROP_REVISION, value=revision))
    if source_url:
        image_refs.append(ExternalReference(
            type=ExternalReferenceType.VCS, url=XsUri(without_userinfo(source_url)),
            comment=f"revision {revision}" if revision else None))
    image = Component(
        type=ComponentType.CONTAINER, name=image_ref, bom_ref=f"image:{image_ref}",
        description=image_title or None, properties=image_props,
        external_references=image_refs,
    )
    package = Component(
        type=ComponentType.APPLICATION, name=package_name, version=package_version or None,
        bom_ref=f"modelpkg:{package_name}@{package_version}",
        description="model package (its MANIFEST's SHA-256 as hash)",
        licenses=_licenses(PROJECT_LICENSE),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=manifest_sha256)],
        properties=[Property(name=PROP_MANIFEST_SHA256, value=manifest_sha256)],
    )
    components = [package]
    os_info = inventory.os_info
    distro = os_info.get("id", "debian")
    if os_info.get("id"):
        components.append(Component(
            type=ComponentType.OPERATING_SYSTEM, name=os_info["id"],
            version=os_info.get("version_id"), description=os_info.get("pretty_name"),
            bom_ref=f"os:{os_info['id']}@{os_info.get('version_id', '')}",
        ))
    for py in inventory.python:
        purl = PackageURL(type="pypi", name=_pep503(py.name), version=py.version)
        components.append(Component(
            type=ComponentType.LIBRARY, name=py.name, version=py.version, purl=purl,
            bom_ref=purl.to_string(), licenses=_licenses(py.license),
            properties=[Property(name=PROP_PYTHON_LOCATION, value=py.location)]
            if py.location else [],
        ))
    for deb in inventory.debian:
        qualifiers = {"arch": deb.arch}
        if os_info.get("version_id"):
            qualifiers["distro"] = f"{distro}-{os_info['version_id']}"
        if deb.source:
            qualifiers["upstream"] = deb.source  # syft's and grype's convention
        purl = PackageURL(type="deb", namespace=distro, name=deb.name, version=deb.version,
                          qualifiers=qualifiers)
        components.append(Component(
            type=ComponentType.LIBRARY, name=deb.name, version=deb.version, purl=purl,
            bom_ref=purl.to_string(), licenses=_licenses(deb.license),
        ))

    tool = Component(type=ComponentType.APPLICATION, name="modelpkg", version=_tool_version(),
                     bom_ref="tool:modelpkg", licenses=_licenses(PROJECT_LICENSE))
    lib = this_component()
    lib.bom_ref.value = f"tool:{lib.name}"
    metadata = BomMetaData(
        timestamp=created, component=image,
        tools=ToolRepository(components=[tool, lib]),
    )
    contained = [Dependency(ref=c.bom_ref) for c in components]  # the image contains them all
    bom = Bom(components=components, metadata=metadata, serial_number=serial,
              dependencies=[Dependency(ref=image.bom_ref, dependencies=contained)])
    outputter = make_outputter(bom, OutputFormat.JSON, SchemaVersion.from_version(SPEC_VERSION))
    return outputter.output_as_string(indent=2) + "\n"


_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def build_sbom(inventory: Inventory, *, package_name: str, package_version: str,
               manifest_sha256: str, image_ref: str, image_title: str,
               created: datetime | None, source_url: str | None = None,
               revision: str | None = None) -> str:
    """The CycloneDX JSON SBOM of an image (`SPEC_VERSION`): metadata.component is the
    image (type container), the components are the model package (application, hash =
    the SHA-256 of its MANIFEST), the OS, the Python distributions (pypi purls, declared
    licenses) and the Debian packages (deb purls). `created` is the metadata timestamp (take
    it from SOURCE_DATE_EPOCH when set; None: now). Deterministic: equal arguments give
    byte-identical text, the serial number being a UUID5 of what the document is made of."""
    manifest_sha256 = manifest_sha256.lower()
    if not _SHA256_RE.fullmatch(manifest_sha256):
        raise ImageError(f"SBOM of {image_ref}: manifest_sha256 {manifest_sha256!r} is not a "
                         "SHA-256 hex digest")
    args = dict(package_name=package_name, package_version=package_version,
                manifest_sha256=manifest_sha256, image_ref=image_ref, image_title=image_title,
                created=_utc(created), source_url=source_url, revision=revision)
    return _build_bom(inventory, serial=_serial_number(inventory, args), **args)


def _serial_number(inventory: Inventory, args: dict[str, Any]) -> uuid.UUID:
    """A UUID5 of everything the document is made from (inputs, spec and tool versions), so
    equal documents share it and a changed one gets a new one, with one serialization."""
    from cyclonedx import __version__ as cdx_version

    content = json.dumps({
        "inventory": dataclasses.asdict(inventory),
        "args": {k: v.isoformat() if isinstance(v, datetime) else v for k, v in args.items()},
        "spec": SPEC_VERSION, "tools": [_tool_version(), cdx_version],
    }, sort_keys=True)
    return uuid.uuid5(_SERIAL_NAMESPACE, hashlib.sha256(content.encode()).hexdigest())


def validate_sbom(text: str) -> None:
    """Check `text` against the CycloneDX JSON schema of its `specVersion` (strict: no
    unknown fields); raise ImageError with the first problem."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ImageError(f"the SBOM is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("bomFormat") != "CycloneDX":
        raise ImageError("the SBOM is not a CycloneDX document (bomFormat is not 'CycloneDX')")
    spec = data.get("specVersion")
    try:
        version = SchemaVersion.from_version(str(spec))
    except ValueError:
        raise ImageError(f"the SBOM has an unsupported CycloneDX specVersion {spec!r}") from None
    error = JsonStrictValidator(version).validate_str(text)
    if error is not None:
        detail = error.data
        path = "/".join(str(p) for p in getattr(detail, "absolute_path", ())) or "(top)"
        message = getattr(detail, "message", str(detail)).splitlines()[0][:300]
        raise ImageError(f"the SBOM does not match the CycloneDX {spec} schema at {path}: "
                         f"{message}")


def _all_components(data: dict[str, Any]) -> Iterable[dict[str, Any]]:
    stack = list(data.get("components") or [])
    root = (data.get("metadata") or {}).get("component")
    if root:
        stack.insert(0, root)
    while stack:
        comp = stack.pop(0)
        yield comp
        stack[0:0] = comp.get("components") or []


def list_components(text: str) -> list[tuple[str, str, str | None]]:
    """`(kind, name, version)` of every component in an SBOM's text, in document order;
    kind is the purl type (`pypi`, `deb`) or else the CycloneDX component type."""
    out = []
    for comp in _all_components(json.loads(text)):
        purl = comp.get("purl") or ""
        kind = purl[4:].split("/", 1)[0] if purl.startswith("pkg:") else comp.get("type", "")
        out.append((kind, comp.get("name", ""), comp.get("version")))
    return out


def find_component(text: str, name: str, kind: str | None = None) -> str | None:
    """The version of the first component called `name` (Python names compared normalized,
    so `Tensorflow_CPU` finds `tensorflow-cpu`), optionally only of that `kind` (see
    `list_components`); None when absent or versionless."""
    for comp_kind, comp_name, version in list_components(text):
        if kind is not None and comp_kind != kind:
            continue
        if comp_name == name or (comp_kind == "pypi" and _pep503(comp_name) == _pep503(name)):
            return version
    return None


def sbom_file_name(image_ref_or_package_name: str) -> str:
    """The SBOM's file name next to the image: `<name>.sbom.cdx.json`, from a package name
    or an image reference (registry and path dropped; `name:tag` gives `name-tag`, a digest
    without a tag its first 12 hex digits)."""
    name, _, digest = image_ref_or_package_name.strip().rsplit("/", 1)[-1].partition("@")
    if digest and ":" not in name:  # name@sha256:HEX, no tag: a short digest names it
        name += "-" + digest.rpartition(":")[2][:12]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    if not stem:
        raise ImageError(f"no SBOM file name can be made from {image_ref_or_package_name!r}")
    return stem + SBOM_SUFFIX
