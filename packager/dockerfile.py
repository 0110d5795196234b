"""Render a spec's Dockerfile from the parts in ``templates/dockerfile/<part>.Dockerfile.j2``.

Each part renders alone with: ``spec``, ``image`` (= spec.image), ``name``, ``build_args``
(the spec's defaults), and two helpers:

- ``arg(NAME, default)`` -> ``ARG NAME=<spec build_args[NAME] or default>``;
- ``pip_run(command)`` -> a ``RUN`` that mounts the optional BuildKit/buildah secret
  ``pip_cert`` and sets ``PIP_CERT`` for that one command when the secret is given, so pip
  trusts an extra CA bundle without it ever landing in a layer.

Proxies are never declared: ``http_proxy``/``https_proxy``/``no_proxy`` (and upper case) are
predefined build args in Docker and buildah, usable in ``RUN`` and kept out of the image.
"""

from __future__ import annotations

import re
from pathlib import Path

from packager.errors import Problem, SpecError
from packager.root import find_root
from packager.spec import Spec
from packager.templates import render

# Generic parts that install dependencies: they must come before ``model_package`` so that a
# change in the model code does not invalidate (rebuild) their layers.
DEPENDENCY_PARTS = frozenset(
    {"python", "tensorflow", "pytorch", "openmpi", "numactl", "ssh", "apt_packages", "pip_packages"}
)
PIP_CERT_SECRET = "pip_cert"
BUILD_CONTEXT_PACKAGE_DIR = "model_packages"


def _spec_root(spec: Spec, root: Path | None) -> Path:
    return (root or spec.root or find_root()).resolve()


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


def part_context(spec: Spec, *, pip_cert_secret: bool = True) -> dict:
    assert spec.image is not None
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
        "package_archive": f"{BUILD_CONTEXT_PACKAGE_DIR}/{spec.name}.tar.gz",
    }


def render_part(spec: Spec, part: str, root: Path | None = None, *, pip_cert_secret: bool = True) -> str:
    """One part, rendered alone (what the golden-text tests check)."""
    root = _spec_root(spec, root)
    index = spec.image.parts.index(part) if spec.image and part in spec.image.parts else 0
    text = render(
        spec, root, f"dockerfile/{part}.Dockerfile.j2", f"image.parts[{index}]",
        part_context(spec, pip_cert_secret=pip_cert_secret),
    )
    return text.strip("\n") + "\n"


def check_order(spec: Spec) -> list[Problem]:
    """Order rules: ``base`` first (it holds ARG BASE_IMAGE + FROM); dependencies before the package."""
    assert spec.image is not None
    parts = spec.image.parts
    problems = []
    if parts[0] != "base":
        problems.append(
            Problem(spec.spec_label, "image.parts[0]", f"is {parts[0]!r}; the first part must be 'base' (ARG BASE_IMAGE and FROM)")
        )
    if "base" in parts[1:]:
        problems.append(Problem(spec.spec_label, "image.parts", "'base' may appear only once, first"))
    if "model_package" in parts:
        at = parts.index("model_package")
        for index, part in enumerate(parts[at + 1 :], start=at + 1):
            if part in DEPENDENCY_PARTS:
                problems.append(
                    Problem(spec.spec_label, f"image.parts[{index}]",
                            f"{part!r} installs dependencies but comes after 'model_package'; move it before, "
                            "so that a code change does not rebuild the dependency layers")
                )
    dupes = sorted({p for p in parts if parts.count(p) > 1})
    if dupes:
        problems.append(Problem(spec.spec_label, "image.parts", f"parts listed twice: {', '.join(dupes)}"))
    return problems


def render_dockerfile(spec: Spec, root: Path | None = None, *, pip_cert_secret: bool = True) -> str:
    """The full Dockerfile text for ``spec`` (parts in spec order, blank line between them).

    The build context it expects: ``<context>/Dockerfile`` and
    ``<context>/model_packages/<name>.tar.gz``. With ``pip_cert_secret=False`` the RUN lines do
    not use ``--mount`` (for the classic, non-BuildKit Docker builder).
    """
    if spec.image is None:
        raise SpecError([Problem(spec.spec_label, "image", "the spec has no image section, so no Dockerfile")])
    problems = check_order(spec)
    if problems:
        raise SpecError(problems)
    root = _spec_root(spec, root)
    header = (
        f"# Generated by modelpkg from {spec.spec_label}; do not edit.\n"
        f"# Regenerate with: modelpkg dockerfile {spec.name}\n"
        f"# Build context: this file + {BUILD_CONTEXT_PACKAGE_DIR}/{spec.name}.tar.gz (modelpkg build {spec.name})\n"
    )
    bodies = [render_part(spec, part, root, pip_cert_secret=pip_cert_secret) for part in spec.image.parts]
    text = header + "\n" + "\n".join(bodies)
    declared = set(re.findall(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)", text, flags=re.M))
    unknown = sorted(set(spec.image.build_args) - declared)
    if unknown:
        raise SpecError(
            [Problem(spec.spec_label, f"image.build_args.{name}",
                     f"no part declares ARG {name}; declared: {', '.join(sorted(declared))}") for name in unknown]
        )
    env_lines = re.findall(r"^ENV\s+.*$", text, flags=re.M | re.I)
    leaking = [line for line in env_lines if re.search(r"\b(https?|ftp|no|all)_proxy\b", line, flags=re.I)]
    if leaking:
        raise SpecError([Problem(spec.spec_label, "image.parts", f"a part sets a proxy with ENV ({leaking[0]}); proxies must stay build args")])
    return text


def dockerfile_path(spec: Spec, root: Path | None = None) -> Path:
    assert spec.image is not None
    return _spec_root(spec, root) / spec.image.dockerfile
