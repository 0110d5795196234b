"""`modelpkg image build` / `image run` as plain functions (the Typer command only wires them).

build: package archive + rendered Dockerfile into a temp context dir, then the builder.
run:   `/bin/bash quickstart/SCRIPT ARGS` in the built image with the quickstart's env and mounts.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from packager.archive import write_plan
from packager.conventions import context_package_path
from packager.dockerfile import render_dockerfile
from packager.image.base import Builder, BuildRequest, BuildResult, ImageBuildError, ImageError, LogFn, Secret
from packager.image.buildah import BuildahBuilder
from packager.image.context import build_args as merge_build_args
from packager.image.context import run_request, write_context
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


def image_reference(spec: Spec, tag: str | None = None) -> str:
    if spec.image is None:
        raise ImageError(f"{spec.spec_label} has no image section, so there is no image to build or run")
    return tag or spec.image.reference


def prepare_context(package: Package, context_dir: Path, *, buildkit: bool) -> Path:
    """Write the package archive and the Dockerfile (both from one plan) into `context_dir`;
    returns the Dockerfile. `buildkit=False` renders RUN lines without `--mount` (the Docker
    SDK's classic builder)."""
    archive_dir = context_dir.parent / f".{context_dir.name}-archive"
    plan = make_plan(package, archive_dir)
    assert plan.dockerfile is not None
    text = plan.dockerfile if buildkit else render_dockerfile(package, pip_cert_secret=False)
    (archive,) = write_plan(replace(plan, wrapper=None))
    try:
        return write_context(context_dir, text, archive, package.name)
    finally:
        archive.unlink(missing_ok=True)
        try:
            archive_dir.rmdir()
        except OSError:
            pass


def build_image(package: Package, builder: Builder, options: BuildOptions, log: LogFn) -> BuildResult:
    spec = package.spec
    tag = image_reference(spec, options.tag)
    assert spec.image is not None
    args = merge_build_args(spec.image.build_args, options.build_args, options.base_image)
    buildkit = isinstance(builder, BuildahBuilder) or bool(options.secrets)

    def _build(context_dir: Path) -> BuildResult:
        start = time.monotonic()
        prepare_context(package, context_dir, buildkit=buildkit)
        log(f"build context: {context_dir} (Dockerfile, {context_package_path(spec.name)}) "
            f"in {time.monotonic() - start:.1f} s")
        request = BuildRequest(
            context_dir=context_dir, tag=tag, build_args=args, secrets=options.secrets,
            layers=options.layers,
        )
        return builder.build(request, log)

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
