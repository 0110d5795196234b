"""`modelpkg image build` / `image run` / `image sbom` as plain functions (the Typer commands
only wire them).

build: the base image checked against the spec's ``base_digest`` pin; package archive +
       rendered Dockerfile into a temp context dir; the builder, with the per-build OCI labels
       (``labels.py``) and SOURCE_DATE_EPOCH as the layers' timestamp; the CycloneDX SBOM
       (``sbom.py``: an inventory read from the built image) beside it and, in one more small
       layer, inside it; last, the image size and its largest layers.
run:   `/bin/bash quickstart/SCRIPT ARGS` in the built image with the quickstart's env and mounts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from packager.archive import atomic_write_text, write_plan
from packager.conventions import (
    DEFAULT_OUTPUT_DIR, MANIFEST, OCI_LABEL_PREFIX, PIP_CERT_SECRET, SBOM_PATH_IN_IMAGE, context_package_path,
)
from packager.dockerfile import render_dockerfile
from packager.image import sbom
from packager.image.base import (
    Builder, BuildRequest, BuildResult, ImageBuildError, ImageError, ImageRunError, Layer, LogFn, Secret,
)
from packager.image.buildah import BuildahBuilder
from packager.image.context import build_args as merge_build_args
from packager.image.context import run_request, write_context
from packager.image.labels import build_labels
from packager.package import Package
from packager.plan import make_plan
from packager.spec import Spec


@dataclass(frozen=True)
class BuildOptions:
    tag: str | None = None
    base_image: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[Secret, ...] = ()
    layers: bool = True
    keep_context: Path | None = None  # write the context here (and keep it) instead of a temp dir
    sbom: bool = True  # write the CycloneDX SBOM beside the image (out_dir) and into it
    out_dir: Path = DEFAULT_OUTPUT_DIR  # where the SBOM file goes
    timestamp: int | None = None  # SOURCE_DATE_EPOCH (labels.created_timestamp())


def image_reference(spec: Spec, tag: str | None = None) -> str:
    if spec.image is None:
        raise ImageError(f"{spec.spec_label} has no image section, so there is no image to build or run")
    return tag or spec.image.reference


def prepare_context(package: Package, context_dir: Path, *, buildkit: bool) -> str:
    """Write the package archive and the Dockerfile (both from one plan) into `context_dir`;
    returns the sha256 of the package's MANIFEST. `buildkit=False` renders RUN lines without
    `--mount` (the Docker SDK's classic builder)."""
    archive_dir = context_dir.parent / f".{context_dir.name}-archive"
    plan = make_plan(package, archive_dir)
    assert plan.dockerfile is not None
    text = plan.dockerfile if buildkit else render_dockerfile(package, pip_cert_secret=False)
    (archive,) = write_plan(replace(plan, wrapper=None))
    try:
        write_context(context_dir, text, archive, package.name)
    finally:
        archive.unlink(missing_ok=True)
        try:
            archive_dir.rmdir()
        except OSError:
            pass
    (manifest,) = [f for f in plan.model.files if f.path == MANIFEST]
    assert manifest.data is not None
    return hashlib.sha256(manifest.data).hexdigest()


def check_base_digest(spec: Spec, builder: Builder, base: str, log: LogFn) -> None:
    """The spec's ``image.base_digest`` pin against the base image the build would use
    (pulled first when it is not here). Another base than the spec's (``--base-image``) is
    the user's choice: said in the log, not checked."""
    assert spec.image is not None
    pinned = spec.image.base_digest
    if pinned is None:
        return
    if base != spec.image.base_image:
        log(f"base image: {base} given instead of {spec.image.base_image}; "
            f"{spec.image_key_path}.base_digest pins the latter and is not checked")
        return
    actual = builder.image_digest(base)
    if actual is None:
        builder.pull(base, log)
        actual = builder.image_digest(base)
    if actual != pinned:
        raise ImageError(f"base image {base} has digest {actual or 'unknown'}, but {spec.spec_label} "
                         f"{spec.image_key_path}.base_digest pins {pinned}: the image behind the name changed; "
                         "check the new one and update base_digest, or pull the pinned one "
                         f"({spec.image.base_image.rsplit(':', 1)[0]}@{pinned})")
    log(f"base image: {base} matches the pinned digest {pinned}")


def size_report(layers: list[Layer], top: int = 4) -> list[str]:
    """The image size and its largest layers, for the end of a build."""
    total = sum(layer.size for layer in layers)
    lines = [f"image size: {total / 1e9:.2f} GB in {len(layers)} layers; largest:"]
    for layer in sorted(layers, key=lambda item: -item.size)[:top]:
        made_by = " ".join(layer.created_by.split())
        # history boilerplate: "|2 ARG=... /bin/sh -c", the pip_cert secret mount and its export
        made_by = made_by.split("/bin/sh -c ", 1)[-1]
        made_by = re.sub(r"^--mount=\S+ ", "", made_by)
        made_by = made_by.replace(f"if [ -s /run/secrets/{PIP_CERT_SECRET} ]; then export "
                                  f"PIP_CERT=/run/secrets/{PIP_CERT_SECRET}; fi && ", "")
        lines.append(f"  {layer.size / 1e6:9.1f} MB  {made_by[:100]}")
    return lines


#: Runs the inventory script with the image's python3; an image without one (a bare base)
#: still gets its Debian packages listed, as the same JSON (Debian names and versions hold no
#: characters JSON would need escaped).
_INVENTORY_SHELL = (
    'if command -v python3 >/dev/null 2>&1; then exec python3 -c "$1"; fi; '
    'printf \'{"python": [], "debian": [\'; '
    "dpkg-query -W -f='${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\n' 2>/dev/null | "
    "awk -F '\\t' '$1 ~ /^ii/ { printf \"%s{\\\"name\\\": \\\"%s\\\", \\\"version\\\": \\\"%s\\\", \\\"arch\\\": \\\"%s\\\"}\", sep, $2, $3, $4; sep = \", \" }'; "
    "printf ']}\\n'"
)


def add_sbom(package: Package, builder: Builder, request: BuildRequest, manifest_sha256: str,
             out_dir: Path, log: LogFn) -> tuple[BuildResult, Path]:
    """Inventory the built image, write its CycloneDX SBOM to ``out_dir`` and, in one more
    layer, to ``SBOM_PATH_IN_IMAGE``; the final build and the SBOM file."""
    spec = package.spec
    start = time.monotonic()
    text = builder.capture(request.tag, ["/bin/sh", "-c", _INVENTORY_SHELL, "inventory", sbom.INVENTORY_SCRIPT])
    inventory = sbom.parse_inventory(text, f"the inventory of {request.tag}")
    if not inventory.python:
        log(f"sbom: {request.tag} has no python3, so only its Debian packages are listed")
    created = None if request.timestamp is None else dt.datetime.fromtimestamp(request.timestamp, dt.timezone.utc)
    document = sbom.build_sbom(
        inventory, package_name=spec.name, package_version=request.labels.get(OCI_LABEL_PREFIX + "version", ""),
        manifest_sha256=manifest_sha256, image_ref=request.tag, image_title=spec.title, created=created,
        source_url=request.labels.get(OCI_LABEL_PREFIX + "source"),
        revision=request.labels.get(OCI_LABEL_PREFIX + "revision"),
    )
    sbom.validate_sbom(document)
    dest = Path(out_dir) / sbom.sbom_file_name(spec.name)
    atomic_write_text(dest, document)
    log(f"sbom: {len(inventory.python)} Python and {len(inventory.debian)} Debian packages "
        f"in {time.monotonic() - start:.1f} s; wrote {dest}")
    with tempfile.TemporaryDirectory(prefix=f"modelpkg-sbom-{spec.name}-") as tmp:
        context = Path(tmp)
        (context / "sbom.cdx.json").write_text(document, encoding="utf-8")
        (context / "Dockerfile").write_text(
            f"# the image's CycloneDX SBOM (modelpkg image sbom {spec.name} prints it)\n"
            f"FROM {request.tag}\nCOPY sbom.cdx.json {SBOM_PATH_IN_IMAGE}\n", encoding="utf-8")
        result = builder.build(replace(request, context_dir=context, build_args={}, secrets=()), log)
    return result, dest


def build_image(package: Package, builder: Builder, options: BuildOptions, log: LogFn) -> BuildResult:
    spec = package.spec
    tag = image_reference(spec, options.tag)
    assert spec.image is not None
    args = merge_build_args(spec.image.build_args, options.build_args, options.base_image)
    buildkit = isinstance(builder, BuildahBuilder) or bool(options.secrets)
    base = args.get("BASE_IMAGE", spec.image.base_image)
    check_base_digest(spec, builder, base, log)
    labels = build_labels(package.root, options.timestamp)

    def _build(context_dir: Path) -> BuildResult:
        start = time.monotonic()
        manifest_sha256 = prepare_context(package, context_dir, buildkit=buildkit)
        log(f"build context: {context_dir} (Dockerfile, {context_package_path(spec.name)}) "
            f"in {time.monotonic() - start:.1f} s")
        request = BuildRequest(
            context_dir=context_dir, tag=tag, build_args=args, secrets=options.secrets,
            layers=options.layers, labels=labels, timestamp=options.timestamp,
        )
        result = builder.build(request, log)
        if options.sbom:
            sbom_result, _ = add_sbom(package, builder, request, manifest_sha256, options.out_dir, log)
            result = replace(sbom_result, seconds=result.seconds + sbom_result.seconds)
        for line in size_report(builder.layers(tag)):
            log(line)
        return result

    try:
        if options.keep_context is not None:
            return _build(Path(options.keep_context).resolve())
        with tempfile.TemporaryDirectory(prefix=f"modelpkg-image-{spec.name}-") as tmp:
            return _build(Path(tmp) / "context")
    except ImageBuildError as exc:
        base, used = spec.image.base_package, args.get("BASE_IMAGE", spec.image.base_image)
        if base is None or used != spec.image.base_image or not (exc.step and "FROM" in exc.step.upper()):
            raise
        hint = (f"the base image {used} is built from the package {base}: run "
                f"`modelpkg image build {base}` first (or pass --base-image IMAGE)")
        raise ImageBuildError(exc.builder, exc.step, exc.tail, f"{exc.reason}; {hint}" if exc.reason else hint) from exc


def read_sbom(spec: Spec, builder: Builder, tag: str | None = None) -> str:
    """The SBOM inside the built image (``SBOM_PATH_IN_IMAGE``)."""
    image = image_reference(spec, tag)
    if builder.image_digest(image) is None:
        raise ImageRunError(f"image {image} is not in {builder.name} storage; build it first with "
                            f"`modelpkg image build {spec.name} --builder {builder.name}`")
    try:
        return builder.capture(image, ["cat", SBOM_PATH_IN_IMAGE])
    except ImageRunError:
        raise ImageError(f"image {image} has no {SBOM_PATH_IN_IMAGE}: it was built without an SBOM "
                         f"(--no-sbom, or by an older modelpkg); build it again with `modelpkg image build {spec.name}`") from None


def quickstart_env(spec: Spec, script: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required, optional) env names of the spec's quickstart called `script` (basename)."""
    name = Path(script).name
    for qs in spec.quickstart:
        if qs.basename == name:
            return qs.env.required, qs.env.optional
    known = ", ".join(qs.basename for qs in spec.quickstart) or "none"
    raise ImageError(f"{spec.name} has no quickstart {name!r}; its quickstarts: {known}")


def run_quickstart(
    spec: Spec,
    builder: Builder,
    script: str,
    script_args: Iterable[str] = (),
    *,
    log: LogFn,
    tag: str | None = None,
    env: Mapping[str, str] | None = None,
    volumes: Iterable[str] = (),
    privileged: bool = False,
    environ: Mapping[str, str] | None = None,
) -> int:
    required, optional = quickstart_env(spec, script)
    request = run_request(
        image_reference(spec, tag), Path(script).name, script_args,
        required_env=required, optional_env=optional, mount_vars=spec.path_vars,
        extra_env=env, volumes=volumes, environ=environ, privileged=privileged, package=spec.name,
    )
    return builder.run(request, log)
