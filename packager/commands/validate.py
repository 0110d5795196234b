"""``modelpkg validate``: check specs against the schema and the repository."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from packager.commands.common import echo, state
from packager.errors import Problem, SpecError
from packager.package import load_packages
from packager.plan import make_plan


def validate_command(
    ctx: typer.Context,
    names: Annotated[Optional[list[str]], typer.Argument(help="Package names; all packages when none is given.", show_default=False)] = None,
) -> None:
    """Validate specs: keys, names, paths, sources, quickstart scripts, template parts (by planning each package). Exit 2 on a problem."""
    root = state(ctx).root
    packages = load_packages(names or None, root)
    if not packages:
        echo(f"no specs in {root / 'specs'}")
        return
    problems: list[Problem] = []
    lines = []
    for package in packages:
        try:
            plan = make_plan(package)
        except SpecError as exc:
            problems += exc.problems
            continue
        lines.append(f"ok  {package.name}  ({package.label}, {len(plan.model.files)} files)")
    for line in lines:
        echo(line)
    if problems:
        raise SpecError(problems)
