"""``modelpkg`` command line: wiring only. Commands live in ``packager.commands.*``.

One exit point: ``ModelpkgGroup.invoke`` catches ``ModelpkgError`` (and OS errors), prints the
message without a traceback (with one under ``--debug``) and exits with the error's code.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from packager import __version__
from packager.commands import build, common, docs_cmd, dockerfile_cmd, list_cmd, show, validate
from packager.errors import ModelpkgError

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
            common.err_console.print(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "This is a bug in modelpkg; rerun with --debug for the traceback and report it."
            )
            raise typer.Exit(INTERNAL_ERROR) from None

    @staticmethod
    def _report(ctx: typer.Context, exc: BaseException, message: str | None = None) -> None:
        if _debug(ctx):
            common.err_console.print(traceback.format_exc(), markup=False)
        common.err_console.print("error: " + (message or str(exc)), markup=False)


def _debug(ctx: typer.Context) -> bool:
    obj = ctx.find_root().obj
    return bool(getattr(obj, "debug", False))


app = typer.Typer(
    cls=ModelpkgGroup,
    name="modelpkg",
    help="Build reproducible model packages, Dockerfiles and docs from specs/<name>.yaml.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        common.echo(f"modelpkg {__version__}")
        raise typer.Exit()


@app.callback()
def callback(
    ctx: typer.Context,
    root: Annotated[
        Optional[Path],
        typer.Option("--root", envvar="MODELPKG_ROOT", help="Repository root (holds specs/, templates/, models/); default: the current folder or the first parent that holds specs/ and templates/, else the checkout modelpkg is installed from.", show_default=False),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """modelpkg: spec -> model package (.tar.gz), Dockerfile, README, wrapper package, image."""
    ctx.obj = common.State(root_option=root, debug=debug)


app.command("list")(list_cmd.list_command)
app.command("show")(show.show_command)
app.command("validate")(validate.validate_command)
app.command("build")(build.build_command)
app.command("dockerfile")(dockerfile_cmd.dockerfile_command)
app.command("docs")(docs_cmd.docs_command)


def _add_image_commands() -> None:
    """``modelpkg image ...`` lives in packager/commands/image.py (``app``: a typer.Typer)."""
    try:
        module = importlib.import_module("packager.commands.image")
    except ModuleNotFoundError as exc:
        if exc.name == "packager.commands.image":
            return
        error = exc
    except Exception as exc:  # a broken image module must not take the other commands down
        error = exc
    else:
        app.add_typer(module.app, name="image")
        return

    broken = typer.Typer(help="Build and run container images (failed to load).")

    @broken.callback(invoke_without_command=True)
    def _broken() -> None:
        raise ModelpkgError(f"the image commands failed to load: {type(error).__name__}: {error}")

    app.add_typer(broken, name="image")


_add_image_commands()


def main() -> None:
    """Console-script entry point (``modelpkg``)."""
    app(prog_name="modelpkg")


if __name__ == "__main__":
    main()
