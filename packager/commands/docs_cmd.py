"""``modelpkg docs``: render the committed package READMEs, or check they are fresh."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from packager.commands.common import sync_generated
from packager.docs import docs_path


def docs_command(
    ctx: typer.Context,
    names: Annotated[Optional[list[str]], typer.Argument(help="Package names (specs/<name>.yaml).", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every spec that has a docs section.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 with a diff when a committed README is stale or missing.")] = False,
) -> None:
    """Render the package README (docs.parts) to docs.output (default docs/packages/<name>.md)."""
    sync_generated(ctx, names, all_, check, command="docs", section="docs", what="README",
                   files_of=lambda plan: [(docs_path(plan.package), plan.readme)] if plan.readme is not None else [])
