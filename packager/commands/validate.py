"""``modelpkg validate``: check specs against the schema and the repository."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from packager.commands.common import echo, state
from packager.plan import plan_files
from packager.repo import load_specs


def validate_command(
    ctx: typer.Context,
    names: Annotated[Optional[list[str]], typer.Argument(help="Package names (specs/<name>.yaml); all specs when none is given.", show_default=False)] = None,
) -> None:
    """Validate specs: keys, names, paths, sources, quickstart scripts, template parts. Exit 2 on a problem."""
    root = state(ctx).root
    specs = load_specs(names or None, root, check=True)
    if not specs:
        echo(f"no specs in {root / 'specs'}")
        return
    for spec in specs:
        count = len(plan_files(spec, root).files)
        echo(f"ok  {spec.name}  ({spec.spec_label}, {count} files)")
