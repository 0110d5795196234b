"""``modelpkg build``: write the model package (and wrapper package) archives."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from packager.archive import sha256_file, write_plan
from packager.commands.common import console, echo, err_console, load_selected
from packager.commands.show import describe
from packager.conventions import DEFAULT_OUTPUT_DIR
from packager.errors import BuildError, UsageError
from packager.plan import PackagePlan, make_plan


def build_command(
    ctx: typer.Context,
    names: Annotated[Optional[list[str]], typer.Argument(help="Package names (modelpkg list shows them).", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Build every package in specs/.")] = False,
    output: Annotated[str, typer.Option("--output-dir", "-o", help="Where to write <name>.tar.gz (and wrapper_packages/<name>.tar.gz).")] = str(DEFAULT_OUTPUT_DIR),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List every file each archive would hold; write nothing.")] = False,
) -> None:
    """Build model packages: DIR/<name>.tar.gz, plus DIR/wrapper_packages/<name>.tar.gz when the spec enables a wrapper."""
    if not output.strip():
        raise UsageError("--output-dir is empty; name a folder, e.g. -o output")
    output_dir = Path(output)
    packages = load_selected(ctx, names, all_, command="build")
    plans = [make_plan(package, output_dir) for package in packages]
    for plan in plans:
        for line in describe(plan):
            echo(line)
        if dry_run:
            for archive in plan.archives:
                echo(f"  would write {archive.path}:")
                for item in archive.files:
                    echo(f"    {archive.top}/{item.path}")
            continue
        try:
            outputs = _write(plan)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise BuildError(
                f"cannot write the package for {plan.package.name} into {output_dir}: {exc.strerror or exc}{where}; "
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


def _write(plan: PackagePlan) -> list[Path]:
    """Write the plan's archives with a progress bar (bytes of the model package's files)."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        task = progress.add_task(f"packing {plan.package.name}", total=sum(a.size for a in plan.archives))
        return write_plan(plan, progress=lambda _path, size: progress.advance(task, size))
