"""``modelpkg dockerfile``: render the committed Dockerfiles, or check they are fresh."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from packager.commands.common import sync_generated
from packager.dockerfile import dockerfile_path


def dockerfile_command(
    ctx: typer.Context,
    names: Annotated[Optional[list[str]], typer.Argument(help="Package names (specs/<name>.yaml).", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every spec that has an image section.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 with a diff when a committed Dockerfile is stale or missing.")] = False,
) -> None:
    """Render image.dockerfile (default dockerfiles/<name>.Dockerfile; with images, one per image,
    default dockerfiles/<name>-<key>.Dockerfile) from the spec's template parts."""
    sync_generated(ctx, names, all_, check, command="dockerfile", section="image", what="Dockerfile",
                   files_of=lambda plan: [(dockerfile_path(i.package), i.dockerfile) for i in plan.images])
