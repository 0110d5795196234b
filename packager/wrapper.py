"""The wrapper (container) package's scripts: ``build.sh`` and ``run.sh`` from
``templates/wrapper/``. Everything they check, mount and pass in comes from the spec's
quickstarts (``Spec.path_vars``, ``Spec.forward_env``, ``Spec.env_help``, ``Spec.precisions``)
and ``packager.conventions``.
"""

from __future__ import annotations

from packager.conventions import IMAGE_ARCHIVE_SUFFIX, PRECISION_VAR, PROXY_VARS
from packager.package import Package
from packager.templates import render

TEMPLATES = {"build.sh": "wrapper/build.sh.j2", "run.sh": "wrapper/run.sh.j2"}


def wrapper_context(package: Package) -> dict:
    spec = package.spec
    assert spec.image is not None and spec.wrapper.run is not None
    required, optional = spec.all_env
    used = (*required, *optional)
    choices = {PRECISION_VAR: list(spec.precisions)} if PRECISION_VAR in used else {}
    return {
        "spec": spec,
        "name": spec.name,
        "image": spec.image,
        "wrapper": spec.wrapper,
        "run": spec.wrapper.run,
        "common_required": list(spec.common_required_env),
        "mounts": list(spec.path_vars),
        "output_vars": list(spec.output_vars),
        "forward_env": list(spec.forward_env),
        "proxy_vars": list(PROXY_VARS),
        "choices": choices,
        "precision_var": PRECISION_VAR,
        "env_help": {var: spec.describe_env(var) for var in used},
        "help_width": max([len(v) for v in (*spec.forward_env, "SCRIPT")]) + 1,
        "image_only": False,
        "image_archive_suffix": IMAGE_ARCHIVE_SUFFIX,
    }


def render_image_build_script(package: Package) -> str:
    """``build.sh`` of an image-only package (a base image such as pytorch-ipex-spr: no
    quickstarts, so no wrapper and no run.sh): builds the image from the Dockerfile beside it."""
    spec = package.spec
    assert spec.image is not None
    context = {"spec": spec, "name": spec.name, "image": spec.image, "proxy_vars": list(PROXY_VARS),
               "image_only": True, "image_archive_suffix": IMAGE_ARCHIVE_SUFFIX}
    return render(package.label, package.root, TEMPLATES["build.sh"], "image", context)


def render_wrapper_scripts(package: Package) -> dict[str, str]:
    """{"build.sh": text, "run.sh": text}."""
    context = wrapper_context(package)
    return {name: render(package.label, package.root, template, "wrapper.enabled", context)
            for name, template in TEMPLATES.items()}
