"""``modelpkg docs``: render the committed package READMEs, or check they are fresh."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from packager.commands.common import echo, select_names, state
from packager.docs import docs_path, render_readme
from packager.errors import CheckFailed, UsageError
from packager.generated import sync
from packager.repo import load_specs


def docs_command(
    ctx: typer.Context,
    names: Annotated[Optional[list[str]], typer.Argument(help="Package names (specs/<name>.yaml).", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every spec that has a docs section.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 with a diff when a committed README is stale or missing.")] = False,
) -> None:
    """Render the package README (docs.parts) to docs.output (default docs/packages/<name>.md)."""
    root = state(ctx).root
    specs = load_specs(select_names(root, names, all_, command="docs"), root)
    if all_:
        specs = [s for s in specs if s.docs is not None]
    else:
        without = [s.name for s in specs if s.docs is None]
        if without:
            raise UsageError(f"{', '.join(without)}: no docs section in the spec, so no README")
    bad = []
    for spec in specs:
        path = docs_path(spec, root)
        label = path.relative_to(root).as_posix()
        result = sync(path, render_readme(spec, root), check=check, label=label)
        if result.diff:
            echo(result.diff.rstrip("\n"))
        echo(f"{result.status:9}  {label}")
        if not result.ok:
            bad.append(spec.name)
    if bad:
        raise CheckFailed(f"{len(bad)} README(s) out of date; regenerate and commit: modelpkg docs {' '.join(bad)}")
