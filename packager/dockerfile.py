"""Render a package's Dockerfile from the parts in ``templates/dockerfile/<part>.Dockerfile.j2``.

Each part renders alone with: ``spec``, ``image`` (= spec.image), ``name``, ``build_args``
(the spec's defaults), ``package_archive`` (where the build context holds the model package)
and three helpers:

- ``arg(NAME, default)`` -> ``ARG NAME=<spec build_args[NAME] or default>``;
- ``pip_run(command)`` -> a ``RUN`` that mounts the optional BuildKit/buildah secret
  ``pip_cert`` and sets ``PIP_CERT`` for that one command when the secret is given, so pip
  trusts an extra CA bundle without it ever landing in a layer;
- ``apt_install(packages, then=(), when=None)`` -> a layer of its own: the one ``RUN apt-get
  update && apt-get install ... && apt-get clean && rm -rf <lists and caches>`` idiom, with
  follow-up commands, or wrapped in ``if [ WHEN ]; then ...; fi``;
- ``apt_packages(packages, then=())`` -> declares Debian packages for the image's shared apt
  layer: every part that declares some gets them from ONE ``RUN`` (one ``apt-get update``, one
  package cache), placed before the first declaring part. The ``python`` part keeps its own
  ``apt_install`` layer: it is the same in every image, so the big pip layers after it are
  shared between images whose other Debian packages differ.

A part with a build stage (compilers, headers that must not reach the runtime image) starts it
``FROM {{ runtime_stage }} AS <name>`` and continues the image with ``{{ resume_runtime() }}``
(``FROM runtime AS runtime-<n>``, plus ``{{ build_only_args }}``, the ARGs every stage needs);
the base parts name their stage ``{{ runtime_stage }}``.

The image's static labels (title, description, licenses) come last, after every part, so that
images differing only in them share every layer in buildah's cache; the per-build ones
(``.created``, ``.revision``, ``.version``, ``.source``) are given at build time
(``packager.image.labels``), never written into the committed Dockerfile.

A part declares its role on its first line (``{# part: base #}``, ``dependency``, ``package``):
``base`` comes first (ARG BASE_IMAGE + FROM), and every ``dependency`` part comes before the
``package`` part, so that a code change does not rebuild the dependency layers.

Proxies are never declared: they are predefined build args in Docker and buildah
(``packager.conventions.PROXY_VARS``), usable in ``RUN`` and kept out of the image.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path

from packager.conventions import (
    CONTEXT_PACKAGE_DIR, OCI_LABEL_PREFIX, PIP_CERT_SECRET, PROJECT_LICENSE, context_package_path, is_proxy_var,
)
from packager.errors import Problem, SpecError
from packager.package import Package
from packager.spec import Spec
from packager.templates import part_role, render

BASE_ROLE, DEPENDENCY_ROLE, PACKAGE_ROLE = "base", "dependency", "package"


def _arg_value(value: str) -> str:
    if value == "" or re.search(r"[\s\"'$\\]", value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def pip_run(command: str, *, secret: bool = True) -> str:
    """A RUN instruction for ``command`` that can use the optional ``pip_cert`` build secret."""
    if not secret:
        return f"RUN {command}"
    path = f"/run/secrets/{PIP_CERT_SECRET}"
    return (
        f"RUN --mount=type=secret,id={PIP_CERT_SECRET},required=false \\\n"
        f"    if [ -s {path} ]; then export PIP_CERT={path}; fi && \\\n"
        f"    {command}"
    )


#: The stage the base parts start (``FROM ${BASE_IMAGE} AS runtime``): the image itself.
RUNTIME_STAGE = "runtime"
#: Build-only settings every stage's RUN lines expect (ARGs end with their stage). Any
#: SOURCE_DATE_EPOCH makes Python (pip, Debian's py3compile) write hash-based .pyc files, with
#: no build time inside, so a rebuild's layers match; the value itself is unused, and fixed so
#: that it never changes a step's cache key (the image's own times come from buildah
#: --timestamp).
BUILD_ONLY_ARGS = "ARG DEBIAN_FRONTEND=noninteractive\nARG SOURCE_DATE_EPOCH=315532800"


def _apt_steps(names: str, then: Sequence[str]) -> list[str]:
    # apt-get clean: the downloaded .debs; *.bin: apt's package caches (~80 MB a layer on a
    # base image without Debian's docker-clean apt.conf); the logs and ldconfig's aux-cache
    # record when the layer was built, so a rebuild of the same packages would differ
    return ["apt-get update", f"apt-get install -y --no-install-recommends {names}",
            "apt-get clean",
            "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/*.log /var/log/dpkg.log "
            "/var/log/alternatives.log /var/cache/ldconfig/aux-cache", *then]


def apt_install(packages: str | Sequence[str], then: Sequence[str] = (), when: str | None = None) -> str:
    """``RUN`` installing Debian ``packages`` without recommends and leaving no apt lists,
    caches or .deb files behind; ``then``: commands run after it in the same layer; ``when``:
    a ``test`` expression that must hold (``-n "${APT_PACKAGES}"``), else the layer does
    nothing."""
    names = packages if isinstance(packages, str) else " ".join(packages)
    steps = _apt_steps(names, then)
    if when is None:
        return "RUN " + " && \\\n    ".join(steps)
    body = " && \\\n        ".join(steps)
    return f"RUN if [ {when} ]; then \\\n        {body}; \\\n    fi"


class SharedAptLayer:
    """The Debian packages parts declare with ``apt_packages``, installed in one layer."""

    def __init__(self) -> None:
        self.part: str | None = None  # the part being rendered
        self.parts: list[str] = []
        self.packages: list[str] = []
        self.then: list[str] = []

    def declare(self, packages: str | Sequence[str], then: Sequence[str] = ()) -> str:
        names = packages.split() if isinstance(packages, str) else list(packages)
        if self.part is not None and self.part not in self.parts:
            self.parts.append(self.part)
        self.packages += [n for n in names if n not in self.packages]
        self.then += [c for c in then if c not in self.then]
        return f"# Debian packages: {' '.join(names)} (in the image's shared apt layer)"

    def render(self) -> str:
        return (f"# apt: the Debian packages of the parts {', '.join(self.parts)}, in one layer\n"
                + "RUN " + " && \\\n    ".join(_apt_steps(" ".join(self.packages), self.then)) + "\n")


class Stages:
    """Stage names for parts with a build stage: ``resume_runtime()`` starts the next runtime
    stage from the last one (stage names must be unique)."""

    def __init__(self) -> None:
        self.current = RUNTIME_STAGE
        self.count = 0

    def resume_runtime(self) -> str:
        previous = self.current
        self.count += 1
        self.current = f"{RUNTIME_STAGE}-{self.count}"
        return f"FROM {previous} AS {self.current}\n{BUILD_ONLY_ARGS}"

    def build_from(self) -> str:
        return self.current


def part_context(spec: Spec, *, pip_cert_secret: bool = True, apt: SharedAptLayer | None = None,
                 stages: Stages | None = None) -> dict:
    assert spec.image is not None
    apt = apt if apt is not None else SharedAptLayer()
    stages = stages if stages is not None else Stages()
    build_args = dict(spec.image.build_args)

    def arg(name: str, default: str = "") -> str:
        value = build_args.get(name, default)
        return f"ARG {name}={_arg_value(str(value))}"

    return {
        "spec": spec,
        "image": spec.image,
        "name": spec.name,
        "build_args": build_args,
        "arg": arg,
        "pip_run": lambda command: pip_run(command, secret=pip_cert_secret),
        "apt_install": apt_install,
        "apt_packages": apt.declare,
        "runtime_stage": RUNTIME_STAGE,
        "build_only_args": BUILD_ONLY_ARGS,
        "build_from": stages.build_from,
        "resume_runtime": stages.resume_runtime,
        "package_archive": context_package_path(spec.name),
    }


def render_part(package: Package, part: str, *, pip_cert_secret: bool = True,
                apt: SharedAptLayer | None = None, stages: Stages | None = None) -> str:
    """One part, rendered alone (what the golden-text tests check): ``apt_packages`` shows as
    a comment; ``render_dockerfile`` passes the image's shared ``apt`` layer and ``stages``."""
    spec = package.spec
    index = spec.image.parts.index(part) if spec.image and part in spec.image.parts else 0
    if apt is not None:
        apt.part = part
    text = render(
        spec.spec_label, package.root, f"dockerfile/{part}.Dockerfile.j2", f"{spec.image_key_path}.parts[{index}]",
        part_context(spec, pip_cert_secret=pip_cert_secret, apt=apt, stages=stages),
    )
    # the role comment is metadata for modelpkg, not Dockerfile text
    return text.strip("\n") + "\n"


def check_order(package: Package) -> list[Problem]:
    """Order rules from the parts' roles: the ``base`` part first and once; every
    ``dependency`` part before the ``package`` part; no part twice."""
    spec = package.spec
    assert spec.image is not None
    parts = spec.image.parts
    roles = [part_role(package.root, "dockerfile", part) for part in parts]
    label = spec.spec_label
    where = spec.image_key_path
    problems = []
    bases = [p for p, r in zip(parts, roles) if r == BASE_ROLE]
    if roles[0] != BASE_ROLE:
        problems.append(Problem(label, f"{where}.parts[0]",
                                f"is {parts[0]!r}; the first part must be a base part "
                                f"({', '.join(bases) or 'base'}: ARG BASE_IMAGE and FROM)"))
    if BASE_ROLE in roles[1:]:
        problems.append(Problem(label, f"{where}.parts", f"a base part ({', '.join(bases)}) may appear only once, first"))
    if PACKAGE_ROLE in roles:
        at = roles.index(PACKAGE_ROLE)
        for index, (part, role) in enumerate(zip(parts[at + 1:], roles[at + 1:]), start=at + 1):
            if role == DEPENDENCY_ROLE:
                problems.append(
                    Problem(label, f"{where}.parts[{index}]",
                            f"{part!r} installs dependencies but comes after {parts[at]!r}; move it before, "
                            "so that a code change does not rebuild the dependency layers")
                )
    dupes = sorted({p for p in parts if parts.count(p) > 1})
    if dupes:
        problems.append(Problem(label, f"{where}.parts", f"parts listed twice: {', '.join(dupes)}"))
    return problems


def render_dockerfile(package: Package, *, pip_cert_secret: bool = True) -> str:
    """The full Dockerfile text (parts in spec order, blank line between them).

    The build context it expects: ``<context>/Dockerfile`` and
    ``<context>/model_packages/<name>.tar.gz``. With ``pip_cert_secret=False`` the RUN lines do
    not use ``--mount`` (for the classic, non-BuildKit Docker builder).
    """
    spec = package.spec
    if spec.image is None:
        raise SpecError([Problem(spec.spec_label, "image", "the spec has no image section, so no Dockerfile")])
    problems = check_order(package)
    if problems:
        raise SpecError(problems)
    roles = [part_role(package.root, "dockerfile", part) for part in spec.image.parts]
    context = (f"this file + {CONTEXT_PACKAGE_DIR}/{spec.name}.tar.gz (modelpkg build {spec.name})"
               if PACKAGE_ROLE in roles else "none: nothing is ADDed or COPYed from it (docker build - < this file)")
    header = (
        f"# Generated by modelpkg from {spec.spec_label}; do not edit.\n"
        + (f"# Image: {spec.image_key_path} ({spec.image.reference}); build it with: "
           f"modelpkg image build {spec.name} --image {spec.image_key}\n" if spec.image_key is not None else "")
        + f"# Regenerate with: modelpkg dockerfile {spec.name}\n"
        f"# Build context: {context}\n"
    )
    apt, stages = SharedAptLayer(), Stages()
    bodies = [render_part(package, part, pip_cert_secret=pip_cert_secret, apt=apt, stages=stages)
              for part in spec.image.parts]
    if apt.parts:  # before the first part that declared packages
        bodies.insert(spec.image.parts.index(apt.parts[0]), apt.render())
    bodies.append(static_labels(spec))
    text = header + "\n" + "\n".join(bodies)
    declared = set(re.findall(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)", text, flags=re.M))
    unknown = sorted(set(spec.image.build_args) - declared)
    if unknown:
        raise SpecError(
            [Problem(spec.spec_label, f"{spec.image_key_path}.build_args.{name}",
                     f"no part declares ARG {name}; declared: {', '.join(sorted(declared))}") for name in unknown]
        )
    for line in re.findall(r"^ENV\s+.*$", text, flags=re.M | re.I):
        names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", line)
        if any(is_proxy_var(name) for name in names):
            raise SpecError([Problem(spec.spec_label, f"{spec.image_key_path}.parts",
                                     f"a part sets a proxy with ENV ({line}); proxies must stay build args")])
    return text


def static_labels(spec: Spec) -> str:
    """The LABEL block at the end of every Dockerfile (see the module docstring)."""
    labels = {"title": spec.name, "description": spec.title, "licenses": PROJECT_LICENSE}
    lines = [f"{OCI_LABEL_PREFIX}{key}={json.dumps(value)}" for key, value in labels.items()]
    return ("# labels: what the image is (modelpkg image build adds .created, .revision, .version\n"
            "# and .source); last, so images that differ only here share every layer\n"
            "LABEL " + " \\\n      ".join(lines) + "\n")


def image_packages(package: Package) -> list[tuple[str | None, Package]]:
    """(key, package with that image as ``spec.image``) for every image of the spec, in spec
    order: ``images`` by key, or the one ``image`` (key None); empty without an image."""
    spec = package.spec
    if spec.images:
        return [(key, dataclasses.replace(package, spec=spec.with_image(key))) for key in spec.images]
    return [(None, package)] if spec.image is not None else []


def select_image(package: Package, key: str | None) -> Package:
    """The package with image ``key`` selected (None: the default image, the first of
    ``images``); ``SpecError`` naming the keys for an unknown one."""
    spec = package.spec
    if key is None or key == spec.image_key:
        return package
    if key not in spec.images:
        known = ", ".join(spec.images) if spec.images else "none: the spec has one image section; drop --image"
        raise SpecError([Problem(spec.spec_label, "images", f"no image {key!r}; images: {known}")])
    return dataclasses.replace(package, spec=spec.with_image(key))


def dockerfile_path(package: Package) -> Path:
    assert package.spec.image is not None
    return package.root / package.spec.image.dockerfile
