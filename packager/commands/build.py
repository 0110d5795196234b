"""``modelpkg build``: write the model package (and wrapper package) archives."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from packager.archive import (
    build_model_package,
    build_wrapper_package,
    model_package_path,
    plan_model_package,
    sha256_file,
    wrapper_package_path,
)
from packager.commands.common import console, echo, err_console, select_names, state
from packager.commands.show import describe
from packager.errors import BuildError
from packager.repo import load_specs


def build_command(
    ctx: typer.Context,
    names: Annotated[Optional[list[str]], typer.Argument(help="Package names (specs/<name>.yaml).", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Build every package in specs/.")] = False,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where to write <name>.tar.gz (and wrapper_packages/<name>.tar.gz).")] = Path("output"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be written; write nothing.")] = False,
) -> None:
    """Build model packages: DIR/<name>.tar.gz, plus DIR/wrapper_packages/<name>.tar.gz when the spec enables a wrapper."""
    root = state(ctx).root
    specs = load_specs(select_names(root, names, all_, command="build"), root)
    for spec in specs:
        for line in describe(spec, root, output_dir):
            echo(line)
        if dry_run:
            files = plan_model_package(spec, root, manifest=False)
            echo(f"  would write {model_package_path(spec, output_dir)}:")
            for item in files:
                echo(f"    {spec.name}/{item.path}")
            echo(f"    {spec.name}/MANIFEST.sha256")
            if spec.wrapper.enabled:
                echo(f"  would write {wrapper_package_path(spec, output_dir)}:")
                for path in ("README.md", "build.sh", "run.sh", "licenses/", f"model_packages/{spec.name}.tar.gz",
                             f"{spec.name}.Dockerfile"):
                    echo(f"    {spec.name}/{path}")
            continue
        try:
            outputs = _build_one(spec, root, output_dir)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise BuildError(
                f"cannot write the package for {spec.name} into {output_dir}: {exc.strerror or exc}{where}; "
                "choose a writable --output-dir"
            ) from exc
        except KeyboardInterrupt:
            err_console.print(
                f"interrupted: no partial archive was left in {output_dir} "
                "(archives are renamed into place only when complete)", markup=False,
            )
            raise typer.Exit(130) from None
        for path in outputs:
            echo(f"wrote {path}  ({path.stat().st_size} bytes, sha256 {sha256_file(path)})")


def _build_one(spec, root: Path, output_dir: Path) -> list[Path]:
    """Write the model package (and wrapper package) of ``spec``, with a progress bar."""
    files = plan_model_package(spec, root, manifest=False)
    total = sum(len(f.data) if f.data is not None else f.source.stat().st_size for f in files)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        task = progress.add_task(f"packing {spec.name}", total=total)
        model = build_model_package(spec, output_dir, root,
                                    progress=lambda _path, size: progress.advance(task, size))
        outputs = [model]
        if spec.wrapper.enabled:
            wrapper_task = progress.add_task(f"wrapping {spec.name}", total=None)
            outputs.append(build_wrapper_package(spec, output_dir, model, root))
            progress.update(wrapper_task, completed=1, total=1)
    return outputs
