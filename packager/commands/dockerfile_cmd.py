"""``modelpkg dockerfile``: render the committed Dockerfiles, or check they are fresh."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from packager.commands.common import echo, select_names, state
from packager.dockerfile import dockerfile_path, render_dockerfile
from packager.errors import CheckFailed, UsageError
from packager.generated import sync
from packager.repo import load_specs


def dockerfile_command(
    ctx: typer.Context,
    names: Annotated[Optional[list[str]], typer.Argument(help="Package names (specs/<name>.yaml).", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every spec that has an image section.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 with a diff when a committed Dockerfile is stale or missing.")] = False,
) -> None:
    """Render image.dockerfile (default dockerfiles/<name>.Dockerfile) from the spec's template parts."""
    root = state(ctx).root
    specs = load_specs(select_names(root, names, all_, command="dockerfile"), root)
    if all_:
        specs = [s for s in specs if s.image is not None]
    else:
        without = [s.name for s in specs if s.image is None]
        if without:
            raise UsageError(f"{', '.join(without)}: no image section in the spec, so no Dockerfile")
    bad = []
    for spec in specs:
        path = dockerfile_path(spec, root)
        label = path.relative_to(root).as_posix()
        result = sync(path, render_dockerfile(spec, root), check=check, label=label)
        if result.diff:
            echo(result.diff.rstrip("\n"))
        echo(f"{result.status:9}  {label}")
        if not result.ok:
            bad.append(spec.name)
    if bad:
        raise CheckFailed(f"{len(bad)} Dockerfile(s) out of date; regenerate and commit: modelpkg dockerfile {' '.join(bad)}")
