"""`modelpkg image build|run`: wiring only; the work is in `packager.image`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from packager.commands.common import ModelpkgGroup, load_selected
from packager.dockerfile import select_image
from packager.package import Package
from packager.archive import atomic_write_text
from packager.conventions import DEFAULT_OUTPUT_DIR, SBOM_PATH_IN_IMAGE, SBOM_SUFFIX
from packager.image.actions import BuildOptions, build_image, image_reference, read_sbom, run_quickstart
from packager.image.base import ARCHIVE_FORMATS, ImageError
from packager.image.labels import created_timestamp
from packager.image.sbom import sbom_file_name
from packager.image.transfer import archive_path, load_image, save_image
from packager.image.context import parse_key_values, secrets as parse_secrets
from packager.image.select import BUILDER_NAMES, select_builder

app = typer.Typer(
    cls=ModelpkgGroup,  # the same exit point when this group runs on its own
    name="image",
    help="Build a package's container image (Docker SDK or daemonless buildah), run quickstarts in it, save and load image archives, print its SBOM.",
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
    sbom: Annotated[bool, typer.Option("--sbom/--no-sbom", help=f"Write the CycloneDX SBOM to OUTPUT_DIR/NAME{SBOM_SUFFIX} and into the image at {SBOM_PATH_IN_IMAGE}.")] = True,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where the SBOM file goes.")] = DEFAULT_OUTPUT_DIR,
) -> None:
    """Build the image of package NAME: its archive + rendered Dockerfile as the context.

    Proxy variables set in the environment (http_proxy, https_proxy, no_proxy and upper case)
    are passed as build args only, so they never end up in the image. With SOURCE_DATE_EPOCH
    set, the image's created time, its label org.opencontainers.image.created and the file
    times in the layers it builds are that time, so two builds of one checkout give the same
    model-package layer. Ends with the image size and its largest layers.
    """
    package = _load(ctx, name, image)
    options = BuildOptions(
        tag=tag,
        base_image=base_image,
        build_args=parse_key_values(build_arg or [], "--build-arg"),
        secrets=parse_secrets(secret or [], ca_bundle),
        layers=not no_cache,
        keep_context=context_dir,
        sbom=sbom,
        out_dir=output_dir,
        timestamp=created_timestamp(),
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


@app.command("save")
def save_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Package name (modelpkg list shows them).")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for the archive.")] = DEFAULT_OUTPUT_DIR,
    fmt: Annotated[str, typer.Option("--format", help=f"{'|'.join(ARCHIVE_FORMATS)}: docker = `docker load`-able; oci = an OCI image layout archive.")] = "docker",
    builder: BuilderOpt = "auto",
    tag: TagOpt = None,
    image: ImageOpt = None,
    storage_driver: StorageOpt = None,
    isolation: IsolationOpt = "chroot",
) -> None:
    """Write NAME's built image as a gzip archive, OUTPUT_DIR/NAME.image.tar.gz (docker) or
    NAME.oci.tar.gz (oci), with its sha256 in FILE.sha256 beside it and the image's SBOM as
    NAME.sbom.cdx.json. Load it with `docker load -i FILE` or
    `modelpkg image load FILE`."""
    package = _load(ctx, name, image)
    reference = image_reference(package.spec, tag)
    dest = archive_path(output_dir, name, fmt)
    chosen = select_builder(builder, storage_driver=storage_driver, isolation=isolation)
    _log(f"image: saving {reference} from {chosen.name} storage to {dest}")
    sha = save_image(chosen, reference, dest, fmt, _log)
    _log(f"wrote {dest} ({dest.stat().st_size / 1e9:.2f} GB, sha256 {sha}) and {dest.name}.sha256")
    try:
        document = read_sbom(package.spec, chosen, tag)
    except ImageError as exc:
        _log(f"no SBOM beside it: {exc}")
        return
    sbom_file = Path(output_dir) / sbom_file_name(name)
    atomic_write_text(sbom_file, document.rstrip("\n") + "\n")
    _log(f"wrote {sbom_file} (the SBOM inside the image)")


@app.command("load")
def load_command(
    archive: Annotated[Path, typer.Argument(help="An archive written by `modelpkg image save` (or `docker save`).")],
    builder: BuilderOpt = "auto",
    storage_driver: StorageOpt = None,
    isolation: IsolationOpt = "chroot",
) -> None:
    """Load an image archive into buildah storage (or the Docker daemon), after checking it
    against FILE.sha256 when that file is beside it."""
    chosen = select_builder(builder, storage_driver=storage_driver, isolation=isolation)
    names = load_image(chosen, archive, _log)
    _log(f"loaded {', '.join(names)} into {chosen.name}")


@app.command("sbom")
def sbom_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Package name (modelpkg list shows them).")],
    builder: BuilderOpt = "auto",
    tag: TagOpt = None,
    image: ImageOpt = None,
    storage_driver: StorageOpt = None,
    isolation: IsolationOpt = "chroot",
) -> None:
    """Print the CycloneDX JSON SBOM inside NAME's built image (/usr/share/modelpkg/sbom.cdx.json)."""
    spec = _load(ctx, name, image).spec
    chosen = select_builder(builder, storage_driver=storage_driver, isolation=isolation)
    sys.stdout.write(read_sbom(spec, chosen, tag).rstrip("\n") + "\n")
