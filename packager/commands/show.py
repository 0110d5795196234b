"""``modelpkg show``: the resolved spec, the files that will be packed, the image tag."""

from __future__ import annotations

from typing import Annotated

import typer
import yaml

from packager.archive import model_package_path, plan_model_package, wrapper_package_path
from packager.commands.common import echo, state
from packager.repo import load_spec


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as YAML block literals (readable descriptions)."""


_LiteralDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None),
)


def describe(spec, root, out_dir="output") -> list[str]:
    """Lines shared by ``show`` and the start of ``build``."""
    files = plan_model_package(spec, root, manifest=False)
    lines = [f"package  {spec.name}  ({spec.spec_label})"]
    lines.append(f"  {spec.framework}, {', '.join(spec.precisions)}, {spec.mode}, {spec.hardware}")
    lines.append(f"  files    {len(files) + 1} (incl. MANIFEST.sha256), {sum(len(f.data) if f.data is not None else f.source.stat().st_size for f in files)} bytes")
    lines.append(f"  image    {spec.image.reference if spec.image else '-'}")
    lines.append(f"  outputs  {model_package_path(spec, out_dir)}"
                 + (f", {wrapper_package_path(spec, out_dir)}" if spec.wrapper.enabled else ""))
    return lines


def show_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Package name (specs/<name>.yaml).", show_default=False)],
) -> None:
    """Print the resolved spec (defaults filled in), the files that will be packed and the image tag."""
    root = state(ctx).root
    spec = load_spec(name, root)
    echo(f"# {spec.spec_label}, resolved")
    echo(yaml.dump(spec.summary(), Dumper=_LiteralDumper, sort_keys=False, width=100).rstrip())
    echo()
    files = plan_model_package(spec, root, manifest=False)
    echo(f"# files in {spec.name}.tar.gz (under {spec.name}/)")
    for item in files:
        size = len(item.data) if item.data is not None else item.source.stat().st_size
        echo(f"{item.mode:04o}  {size:>9}  {item.path}")
    echo(f"0644  {'-':>9}  MANIFEST.sha256")
    echo()
    if spec.image is not None:
        echo(f"image: {spec.image.reference}")
        echo(f"dockerfile: {spec.image.dockerfile}")
    else:
        echo("image: - (no image section)")
    if spec.wrapper.enabled:
        echo(f"wrapper package: output/wrapper_packages/{spec.name}.tar.gz")
