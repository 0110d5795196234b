"""What every command shares: the resolved repository root, --debug, name selection, output."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console

from packager.errors import UsageError
from packager.repo import spec_names
from packager.root import find_root

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
