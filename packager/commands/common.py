"""What every command shares: the resolved repository root, --debug, name selection, output."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import typer
from rich.console import Console

from packager.errors import CheckFailed, UsageError
from packager.generated import sync
from packager.repo import load_specs, spec_names
from packager.root import find_root
from packager.spec import Spec

# rich writes to whatever sys.stdout/sys.stderr is at the time (so CliRunner captures it)
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class State:
    root_option: Path | None = None
    debug: bool = False
    _root: Path | None = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = find_root(self.root_option)
        return self._root


def state(ctx: typer.Context) -> State:
    """The State set by the top-level callback (a fresh one when a command runs on its own)."""
    root_ctx = ctx.find_root()
    if not isinstance(root_ctx.obj, State):
        root_ctx.obj = State()
    return root_ctx.obj


def select_names(root: Path, names: list[str] | None, all_: bool, *, command: str) -> list[str]:
    """The package names a command works on: the given ones, or every spec with --all."""
    names = list(names or [])
    if all_ and names:
        raise UsageError(f"give package names or --all, not both (modelpkg {command} --help)")
    if all_:
        return spec_names(root)
    if not names:
        raise UsageError(f"name at least one package, or use --all (modelpkg list shows them; modelpkg {command} --help)")
    return names


def echo(text: str = "") -> None:
    """Plain output (no rich markup, no wrapping): JSON, diffs, file lists."""
    sys.stdout.write(text + "\n")


def sync_generated(
    ctx: typer.Context, names: list[str] | None, all_: bool, check: bool, *,
    command: str, section: str, what: str,
    path_for: Callable[[Spec, Path], Path], render: Callable[[Spec, Path], str],
) -> None:
    """Write (or with ``check`` compare) one committed generated file per package.

    ``section`` is the spec section the file needs (``image``, ``docs``): with ``--all`` specs
    without it are skipped, a named one without it is a usage error. ``what`` names the file
    kind in messages ("Dockerfile", "README"). Prints a diff per stale file and one status line
    per file; raises ``CheckFailed`` naming the packages to regenerate.
    """
    root = state(ctx).root
    specs = load_specs(select_names(root, names, all_, command=command), root)
    if all_:
        specs = [s for s in specs if getattr(s, section) is not None]
    else:
        without = [s.name for s in specs if getattr(s, section) is None]
        if without:
            raise UsageError(f"{', '.join(without)}: no {section} section in the spec, so no {what}")
    bad = []
    for spec in specs:
        path = path_for(spec, root)
        label = path.relative_to(root).as_posix()
        result = sync(path, render(spec, root), check=check, label=label)
        if result.diff:
            echo(result.diff.rstrip("\n"))
        echo(f"{result.status:9}  {label}")
        if not result.ok:
            bad.append(spec.name)
    if bad:
        raise CheckFailed(f"{len(bad)} {what}(s) out of date; regenerate and commit: modelpkg {command} {' '.join(bad)}")
