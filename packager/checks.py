"""Checks of a parsed spec against the repository: sources, templates, wrapper, render."""

from __future__ import annotations

import difflib
from pathlib import Path

from packager.dockerfile import check_order, render_dockerfile
from packager.docs import render_readme
from packager.errors import Problem, SpecError
from packager.plan import plan_files
from packager.spec import Spec
from packager.templates import available_parts, part_file

WRAPPER_TEMPLATES = ("build.sh.j2", "run.sh.j2")


def _missing_part(spec: Spec, root: Path, kind: str, key: str, part: str) -> Problem:
    available = available_parts(root, kind)
    message = f"template part {part!r} does not exist ({part_file(root, kind, part).relative_to(root)})"
    close = difflib.get_close_matches(part, available, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    message += f" Available: {', '.join(available) or 'none'}"
    return Problem(spec.spec_label, key, message)


def check_spec(spec: Spec, root: Path) -> list[Problem]:
    """Every problem of ``spec`` that needs the repository (the schema is already valid)."""
    root = root.resolve()
    problems = list(plan_files(spec, root).problems)

    if spec.image is not None:
        missing = [
            _missing_part(spec, root, "dockerfile", f"image.parts[{i}]", part)
            for i, part in enumerate(spec.image.parts)
            if not part_file(root, "dockerfile", part).is_file()
        ]
        problems += missing
        # a misspelt part is one problem ("does not exist; did you mean"), not also an order one
        order = [p for p in check_order(spec) if p.key not in {m.key for m in missing}]
        problems += order
        if not missing and not order:
            try:
                render_dockerfile(spec, root)
            except SpecError as exc:
                problems += exc.problems

    if spec.docs is not None:
        missing = [
            _missing_part(spec, root, "docs", f"docs.parts[{i}]", part)
            for i, part in enumerate(spec.docs.parts)
            if not part_file(root, "docs", part).is_file()
        ]
        problems += missing
        if not missing:
            try:
                render_readme(spec, root)
            except SpecError as exc:
                problems += exc.problems

    if spec.wrapper.enabled:
        for template in WRAPPER_TEMPLATES:
            if not (root / "templates" / "wrapper" / template).is_file():
                problems.append(
                    Problem(spec.spec_label, "wrapper.enabled",
                            f"a wrapper package needs templates/wrapper/{template}, which does not exist; "
                            "add it or set wrapper.enabled: false")
                )
        run = spec.wrapper.run
        names = [qs.basename for qs in spec.quickstart]
        if run is not None and run.default_script not in names:
            problems.append(
                Problem(spec.spec_label, "wrapper.run.default_script",
                        f"{run.default_script!r} is not one of the spec's quickstart scripts ({', '.join(names) or 'none'})")
            )
        base = spec.wrapper.base_image_spec
        if base is not None and not (root / "specs" / f"{base}.yaml").is_file():
            problems.append(
                Problem(spec.spec_label, "wrapper.base_image_spec", f"there is no spec specs/{base}.yaml")
            )
    return problems
