"""``modelpkg show``: the resolved spec, the files that will be packed, the image tag."""

from __future__ import annotations

from typing import Annotated

import typer
import yaml

from packager.commands.common import echo, load_selected
from packager.plan import PackagePlan, make_plan


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as YAML block literals (readable descriptions)."""


_LiteralDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None),
)


def describe(plan: PackagePlan) -> list[str]:
    """Lines shared by ``show`` and the start of ``build``."""
    spec = plan.package.spec
    lines = [f"package  {spec.name}  ({spec.spec_label})"]
    lines.append(f"  {spec.framework}, {', '.join(spec.precisions)}, {spec.mode}, {spec.hardware}")
    lines.append(f"  files    {len(plan.model.files)} (incl. MANIFEST.sha256), {plan.model.size} bytes")
    if spec.images:
        lines += [f"  image    {key}: {image.reference}" for key, image in spec.images.items()]
    else:
        lines.append(f"  image    {spec.image.reference if spec.image else '-'}")
    lines.append("  outputs  " + ", ".join(str(a.path) for a in plan.archives))
    return lines


def show_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Package name (modelpkg list shows them).", show_default=False)],
) -> None:
    """Print the resolved spec (defaults, variants and file sets filled in), the files that will be packed and the image tag."""
    package = load_selected(ctx, [name], False, command="show")[0]
    plan = make_plan(package)
    spec = package.spec
    echo(f"# {spec.spec_label}, resolved")
    echo(yaml.dump(spec.summary(), Dumper=_LiteralDumper, sort_keys=False, width=100).rstrip())
    if package.files and spec.filesets:
        echo("# files entries, file sets resolved")
        for origin, entry in package.files:
            echo(f"#   {origin}: {entry.source} -> {entry.destination}")
    echo()
    echo(f"# files in {plan.model.path.name} (under {spec.name}/)")
    for item in plan.model.files:
        echo(f"{item.mode:04o}  {item.size:>9}  {item.path}")
    echo()
    if spec.images:
        for key, image in spec.images.items():
            default = " (default)" if key == spec.image_key else ""
            echo(f"image {key}{default}: {image.reference}")
            echo(f"dockerfile {key}: {image.dockerfile}")
    elif spec.image is not None:
        echo(f"image: {spec.image.reference}")
        echo(f"dockerfile: {spec.image.dockerfile}")
    else:
        echo("image: - (no image section)")
    if plan.wrapper is not None:
        echo(f"wrapper package: {plan.wrapper.path}")
