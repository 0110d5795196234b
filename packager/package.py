"""A package: one validated spec bound to the repository it comes from.

``load_package(name, root)`` is the entry point for everything else: it finds the spec that
defines ``name`` (a spec file, or one variant of a file with ``variants``), validates it, and
resolves its file sets. Nothing after this looks up the repository root again.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from packager.errors import Problem, SpecError, UsageError
from packager.spec import FileEntry, Image, Spec
from packager.specfile import SPECS_DIR, SpecSource, fileset_entries, parse_source, spec_index


@dataclass(frozen=True)
class Package:
    """``spec`` of the repository at ``root`` (absolute), with its ``files`` entries resolved:
    (origin key for messages, entry) for each, file sets first."""

    spec: Spec
    root: Path
    source: SpecSource
    files: tuple[tuple[str, FileEntry], ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        return self.spec.spec_label


def package_names(root: Path) -> list[str]:
    """Every package name the repository's specs define (files that fail to read are skipped;
    ``load_packages`` reports them)."""
    index, _ = spec_index(root)
    return sorted(index)


def _unknown(name: str, index: dict[str, SpecSource], root: Path) -> UsageError:
    names = sorted(index)
    message = f"no package named {name!r} in {root / SPECS_DIR}"
    close = difflib.get_close_matches(name, names, n=1)
    message += f"; did you mean {close[0]!r}?" if close else "."
    message += f" Known: {', '.join(names) or 'none'} (modelpkg list)"
    return UsageError(message)


def _with_base_image(spec: Spec, index: dict[str, SpecSource], root: Path) -> Spec:
    """``image.base_package``: the base image is that package's image (one owner of the fact).
    Each of ``images`` is resolved the same way."""
    if spec.images:
        images = {key: _resolved_image(spec, f"images.{key}", image, index, root)
                  for key, image in spec.images.items()}
        resolved = spec.model_copy(update={"images": images})
        return resolved.with_image(spec.image_key or next(iter(images)))
    if spec.image is None:
        return spec
    return spec.model_copy(update={"image": _resolved_image(spec, "image", spec.image, index, root)})


def _resolved_image(spec: Spec, at: str, image: Image, index: dict[str, SpecSource], root: Path) -> Image:
    if image.base_package is None:
        return image
    key = f"{at}.base_package"
    source = index.get(image.base_package)
    if source is None or source.name == spec.name:
        close = difflib.get_close_matches(image.base_package, sorted(set(index) - {spec.name}), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecError([Problem(spec.spec_label, key, f"no other package named {image.base_package!r}{hint}")])
    base = parse_source(source, root)
    if base.image is None:
        raise SpecError([Problem(spec.spec_label, key, f"{base.name} has no image section, so no image to build on")])
    reference = base.image.reference
    if "base_image" in image.model_fields_set and image.base_image != reference:
        raise SpecError([Problem(spec.spec_label, f"{at}.base_image",
                                 f"{image.base_image!r} is not the image of {base.name} ({reference}); "
                                 "drop base_image, base_package gives it")])
    return image.model_copy(update={"base_image": reference})


def _load(source: SpecSource, index: dict[str, SpecSource], root: Path) -> Package:
    spec = _with_base_image(parse_source(source, root), index, root)
    own = [(f"files[{i}]", entry) for i, entry in enumerate(spec.files)]
    return Package(spec, root, source, tuple(fileset_entries(spec, root) + own))


def load_package(name: str, root: Path) -> Package:
    """The package ``name``; ``UsageError`` for an unknown name, ``SpecError`` for a bad spec."""
    return load_packages([name], root)[0]


def load_packages(names: list[str] | None, root: Path) -> list[Package]:
    """Several packages (all when ``names`` is None); one ``SpecError`` with every problem.

    A spec file that cannot be read is a problem only when one of its packages is asked for
    (or all are)."""
    root = root.resolve()
    index, unreadable = spec_index(root)
    if names is None:
        names = sorted(index)
        problems: list[Problem] = list(unreadable)
    else:
        problems = []
        for name in names:
            if name not in index:
                broken = [p for p in unreadable if Path(p.file).stem == name]
                if broken:
                    problems += broken
                else:
                    raise _unknown(name, index, root)
    packages: list[Package] = []
    for name in dict.fromkeys(names):
        if name not in index:
            continue
        try:
            packages.append(_load(index[name], index, root))
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(problems)
    return packages
