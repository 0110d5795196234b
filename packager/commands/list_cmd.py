"""``modelpkg list``: the packages the repository's specs define."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from packager.commands.common import echo, state
from packager.errors import SpecError
from packager.package import load_packages, package_names
from packager.specfile import spec_index


def list_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of objects (name, title, framework, precision, mode, hardware, image, wrapper).")] = False,
) -> None:
    """List the packages (one per specs/<name>.yaml, or one per variant). A spec that does not
    parse is reported after the list (exit 2); the others are still listed."""
    root = state(ctx).root
    specs: list = []
    _, problems = spec_index(root)
    for name in package_names(root):
        try:
            specs.append(load_packages([name], root)[0].spec)
        except SpecError as exc:
            problems += exc.problems
    rows = [
        {
            "name": s.name,
            "title": s.title,
            "framework": s.framework,
            "precision": s.precision if isinstance(s.precision, str) else list(s.precision),
            "mode": s.mode,
            "hardware": s.hardware,
            "image": s.image.reference if s.image else None,
            "wrapper": s.wrapper.enabled,
        }
        for s in specs
    ]
    if as_json:
        echo(json.dumps(rows, indent=2))
    elif not rows and not problems:
        echo(f"no specs in {root / 'specs'}")
    elif rows:
        _table(rows)
    if problems:
        raise SpecError(problems)


def _table(rows: list[dict]) -> None:
    headers = ["name", "framework", "precision", "mode", "hardware", "image"]
    table = [[str(r[h] if not isinstance(r[h], list) else ",".join(r[h])) if r[h] is not None else "-" for h in headers] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in table:
        echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
