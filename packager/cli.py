"""``modelpkg`` command line: wiring only. Commands live in ``packager.commands.*``.

One exit point: ``packager.commands.common.ModelpkgGroup.invoke`` catches ``ModelpkgError``
(and OS errors), prints the message without a traceback (with one under ``--debug``) and exits
with the error's code.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from packager import __version__
from packager.commands import build, common, docs_cmd, dockerfile_cmd, k8s_cmd, list_cmd, show, validate
from packager.commands.common import ModelpkgGroup
from packager.errors import ModelpkgError

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
app.command("k8s")(k8s_cmd.k8s_command)


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
