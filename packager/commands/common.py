"""What every command shares: the resolved repository root, --debug, name selection, output."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import typer
from rich.console import Console
from typer.core import TyperGroup

from packager.conventions import mask_credentials
from packager.errors import CheckFailed, ModelpkgError, UsageError
from packager.generated import sync
from packager.package import package_names
from packager.plan import PackagePlan, make_plan
from packager.root import find_root
from packager.package import Package, load_packages

# rich writes to whatever sys.stdout/sys.stderr is at the time (so CliRunner captures it)
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in modelpkg
SIGPIPE_EXIT = 141  # what a shell reports for a process ended by SIGPIPE
# typer >= 0.20 vendors click: take its exception classes from typer, not from `click`
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_PASS_THROUGH = (typer.Exit, typer.Abort, _CLICK_EXCEPTION)


class ModelpkgGroup(TyperGroup):
    """Typer group that turns errors into a message and an exit code (the one exit point)."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except ModelpkgError as exc:
            self._report(ctx, exc)
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:
            # `modelpkg show NAME | head`: the reader is gone; stop quietly like other CLI tools
            # (stdout goes to /dev/null so the interpreter's final flush does not complain)
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(SIGPIPE_EXIT) from None
        except OSError as exc:
            self._report(ctx, exc, f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
            raise typer.Exit(1) from None
        except Exception as exc:  # a bug: say so, keep the traceback for --debug
            if _debug(ctx):
                raise
            err_console.print(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "This is a bug in modelpkg; rerun with --debug for the traceback and report it."
            )
            raise typer.Exit(INTERNAL_ERROR) from None

    @staticmethod
    def _report(ctx: typer.Context, exc: BaseException, message: str | None = None) -> None:
        if _debug(ctx):
            err_console.print(traceback.format_exc(), markup=False)
        err_console.print("error: " + mask_credentials(message or str(exc)), markup=False)


def _debug(ctx: typer.Context) -> bool:
    obj = ctx.find_root().obj
    return bool(getattr(obj, "debug", False))


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
        return package_names(root)
    if not names:
        raise UsageError(f"name at least one package, or use --all (modelpkg list shows them; modelpkg {command} --help)")
    return names


def echo(text: str = "") -> None:
    """Plain output (no rich markup, no wrapping): JSON, diffs, file lists."""
    sys.stdout.write(text + "\n")


def load_selected(ctx: typer.Context, names: list[str] | None, all_: bool, *, command: str) -> list[Package]:
    """The packages a command works on (``select_names``), loaded from the command's root."""
    root = state(ctx).root
    return load_packages(select_names(root, names, all_, command=command), root)


def sync_generated(
    ctx: typer.Context, names: list[str] | None, all_: bool, check: bool, *,
    command: str, section: str, what: str,
    files_of: Callable[[PackagePlan], list[tuple[Path, str]]],
) -> None:
    """Write (or with ``check`` compare) one committed generated file per package.

    ``section`` is the spec section the file needs (``image``, ``docs``): with ``--all`` specs
    without it are skipped, a named one without it is a usage error. ``what`` names the file
    kind in messages ("Dockerfile", "README"); ``files_of`` takes (path, text) of each from the
    package's plan (one README; one Dockerfile per image).
    Prints a diff per stale file and one status line per file; raises ``CheckFailed`` naming
    the packages to regenerate.
    """
    packages = load_selected(ctx, names, all_, command=command)
    if all_:
        packages = [p for p in packages if getattr(p.spec, section) is not None]
    else:
        without = [p.name for p in packages if getattr(p.spec, section) is None]
        if without:
            raise UsageError(f"{', '.join(without)}: no {section} section in the spec, so no {what}")
    bad = []
    for package in packages:
        for path, text in files_of(make_plan(package)):
            label = path.relative_to(package.root).as_posix()
            result = sync(path, text, check=check, label=label)
            if result.diff:
                echo(result.diff.rstrip("\n"))
            echo(f"{result.status:9}  {label}")
            if not result.ok and package.name not in bad:
                bad.append(package.name)
    if bad:
        raise CheckFailed(f"{len(bad)} {what}(s) out of date; regenerate and commit: modelpkg {command} {' '.join(bad)}")
