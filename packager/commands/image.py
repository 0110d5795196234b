"""`modelpkg image build|run`: wiring only; the work is in `packager.image`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from packager.commands.common import ModelpkgGroup, load_selected
from packager.dockerfile import select_image
from packager.package import Package
from packager.image.actions import BuildOptions, build_image, run_quickstart
from packager.image.context import parse_key_values, secrets as parse_secrets
from packager.image.select import BUILDER_NAMES, select_builder

app = typer.Typer(
    cls=ModelpkgGroup,  # the same exit point when this group runs on its own
    name="image",
    help="Build a package's container image (Docker SDK or daemonless buildah) and run quickstarts in it.",
    no_args_is_help=True,
)

BuilderOpt = Annotated[
    str,
    typer.Option(
        "--builder",
        help=f"{'|'.join(BUILDER_NAMES)}: auto = docker when a daemon answers, else buildah.",
        envvar="MODELPKG_BUILDER",
    ),
]
StorageOpt = Annotated[
    Optional[str],
    typer.Option(help="buildah storage driver (overlay, vfs); default: buildah's own.",
                 envvar="MODELPKG_STORAGE_DRIVER"),
]
IsolationOpt = Annotated[
    str,
    typer.Option(help="buildah isolation: chroot (works without a daemon or user namespaces), oci, rootless.",
                 envvar="MODELPKG_ISOLATION"),
]
TagOpt = Annotated[Optional[str], typer.Option(help="Image reference (default: the spec's image name:tag).")]
ImageOpt = Annotated[Optional[str], typer.Option("--image", help="Which of the spec's images (its key in images:, e.g. cpu); default: the first.")]


def _log(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _load(ctx: typer.Context, name: str, image: str | None = None) -> Package:
    """The package from the command's repository root (`--root`, $MODELPKG_ROOT, or found),
    with image ``image`` of its ``images`` selected (None: the default one)."""
    return select_image(load_selected(ctx, [name], False, command="image")[0], image)


@app.command("build")
def build_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Package name (modelpkg list shows them).")],
    builder: BuilderOpt = "auto",
    tag: TagOpt = None,
    image: ImageOpt = None,
    base_image: Annotated[Optional[str], typer.Option(help="Override ARG BASE_IMAGE, e.g. localhost/modelpkg-base:bookworm.")] = None,
    build_arg: Annotated[Optional[list[str]], typer.Option("--build-arg", help="NAME=VALUE (repeatable); NAME alone takes $NAME.")] = None,
    secret: Annotated[Optional[list[str]], typer.Option("--secret", help="Build secret id=NAME,src=FILE (repeatable); never stored in a layer.")] = None,
    ca_bundle: Annotated[Optional[Path], typer.Option(help="Extra CA bundle for pip in the build (= --secret id=pip_cert,src=FILE).", envvar="MODELPKG_CA_BUNDLE")] = None,
    storage_driver: StorageOpt = None,
    isolation: IsolationOpt = "chroot",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not reuse cached layers.")] = False,
    context_dir: Annotated[Optional[Path], typer.Option(help="Write (and keep) the build context here instead of a temp dir.")] = None,
) -> None:
    """Build the image of package NAME: its archive + rendered Dockerfile as the context.

    Proxy variables set in the environment (http_proxy, https_proxy, no_proxy and upper case)
    are passed as build args only, so they never end up in the image.
    """
    package = _load(ctx, name, image)
    options = BuildOptions(
        tag=tag,
        base_image=base_image,
        build_args=parse_key_values(build_arg or [], "--build-arg"),
        secrets=parse_secrets(secret or [], ca_bundle),
        layers=not no_cache,
        keep_context=context_dir,
    )
    chosen = select_builder(builder, storage_driver=storage_driver, isolation=isolation)
    _log(f"image: building {name} with {chosen.name}")
    result = build_image(package, chosen, options, _log)
    _log(f"image: built {result.tag} (id {result.image_id[:12]}) with {result.builder} in {result.seconds:.1f} s")


@app.command("run")
def run_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Package name (modelpkg list shows them).")],
    script: Annotated[str, typer.Argument(help="Quickstart script file name, e.g. bfloat16_squad_training_demo.sh.")],
    args: Annotated[Optional[list[str]], typer.Argument(help="Arguments for the script (after --).")] = None,
    builder: BuilderOpt = "auto",
    tag: TagOpt = None,
    image: ImageOpt = None,
    env: Annotated[Optional[list[str]], typer.Option("--env", "-e", help="NAME=VALUE for the container (repeatable); NAME alone takes $NAME.")] = None,
    volume: Annotated[Optional[list[str]], typer.Option("--volume", "-v", help="HOST[:CONTAINER][:ro] (repeatable).")] = None,
    privileged: Annotated[bool, typer.Option(help="docker only: run privileged (as Intel's documented docker run does).")] = False,
    storage_driver: StorageOpt = None,
    isolation: IsolationOpt = "chroot",
) -> None:
    """Run `/bin/bash quickstart/SCRIPT ARGS` in NAME's image: usage `image run NAME -- SCRIPT [ARGS]`.

    The quickstart's env vars (CHECKPOINT_DIR, DATASET_DIR, OUTPUT_DIR, MPI_NUM_PROCESSES, ...)
    set here are forwarded, with proxies; the folders are mounted at the same path.
    Exits with the script's exit status.
    """
    spec = _load(ctx, name, image).spec
    chosen = select_builder(builder, storage_driver=storage_driver, isolation=isolation)
    code = run_quickstart(
        spec, chosen, script, args or [], log=_log, tag=tag,
        env=parse_key_values(env or [], "--env"), volumes=volume or [], privileged=privileged,
    )
    if code != 0:
        typer.echo(f"error: quickstart/{Path(script).name} exited with status {code}", err=True)
    raise typer.Exit(code)
