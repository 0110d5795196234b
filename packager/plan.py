"""Plan a package, then do: one pure computation of everything a build writes.

``make_plan(package, out_dir)`` checks the package against the repository, collecting every
problem (missing source, symlink leaving the repository, two files to one destination, a
quickstart script that is missing or not executable, a missing template part, a bad part
order, ...) instead of stopping at the first, and returns a ``PackagePlan``: the model
package's files with sizes (README, ``package_info.json`` and ``MANIFEST.sha256`` included),
the rendered README and Dockerfile, and the wrapper package's files. ``show``, ``validate``,
``build`` (and ``--dry-run``), ``dockerfile``, ``docs`` and ``image build`` all consume it;
``packager.archive.write_plan`` writes it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

from packager.dockerfile import check_order, image_packages, render_dockerfile
from packager.docs import render_readme
from packager.conventions import (
    DEFAULT_OUTPUT_DIR, LIB_SH, MANIFEST, PACKAGE_INFO, README, model_package_path, wrapper_package_path,
)
from packager.errors import Problem, SpecError
from packager.package import Package
from packager.spec import PACKAGE_ROOT, SAFE_PATH_PATTERN
from packager.templates import available_parts, part_file
from models.common.file_kinds import file_kind
from packager.wrapper import render_image_build_script, render_wrapper_scripts

# Never packed, whatever the spec says: caches and VCS data that would make builds depend on
# what happened to run in the checkout.
DEFAULT_EXCLUDES = ("**/__pycache__/**", "**/*.pyc", "**/*.pyo", "**/.pytest_cache/**", "**/.git/**", "**/.DS_Store")
EXTRA_DIRS = ("licenses/third_party",)  # always in an archive, even when empty
WRAPPER_TEMPLATES = ("build.sh.j2", "run.sh.j2")


@dataclass(frozen=True)
class PlannedFile:
    """One file in the package: ``path`` under ``<name>/``, where it comes from, its mode."""

    path: str
    mode: int  # 0o644 or 0o755
    origin: str  # spec key path that put it there, e.g. "files[0]" or "quickstart[1].script"
    source: Path | None = None  # a file in the repository (or an archive this build writes), or
    data: bytes | None = None  # generated content (README.md, MANIFEST.sha256, ...)
    size: int = 0

    @staticmethod
    def of_source(path: str, mode: int, origin: str, source: Path) -> "PlannedFile":
        return PlannedFile(path, mode, origin, source=source, size=source.stat().st_size)

    @staticmethod
    def of_data(path: str, origin: str, data: bytes, mode: int = 0o644) -> "PlannedFile":
        return PlannedFile(path, mode, origin, data=data, size=len(data))


@dataclass
class FilePlan:
    """The repository files of a model package (no generated ones), and the problems met."""

    files: list[PlannedFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class ArchivePlan:
    """One archive: ``path`` holds ``files`` under the single folder ``top/``."""

    path: Path
    top: str
    files: tuple[PlannedFile, ...]
    extra_dirs: tuple[str, ...] = EXTRA_DIRS

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class ImagePlan:
    """One image of the package: its key in ``images`` (None for a spec with one ``image``),
    the package with that image selected (``spec.image``) and the rendered Dockerfile."""

    key: str | None
    package: Package
    dockerfile: str


@dataclass(frozen=True)
class PackagePlan:
    """Everything one package's build writes, computed once (``make_plan``)."""

    package: Package
    readme: str | None
    dockerfile: str | None  # the Dockerfile of spec.image (the default, or the selected, image)
    model: ArchivePlan
    wrapper: ArchivePlan | None
    images: tuple[ImagePlan, ...] = ()  # every image of the spec, in spec order

    @property
    def archives(self) -> tuple[ArchivePlan, ...]:
        """In writing order: the wrapper package contains the model package."""
        return (self.model,) if self.wrapper is None else (self.model, self.wrapper)


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a path glob: ``*``/``?`` stay inside one path segment, ``**`` spans segments."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out += "(?:/.*)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    return any(glob_regex(p).match(rel) for p in patterns)


def file_mode(path: Path) -> int:
    """0755 when any execute bit is set, else 0644 (owner/group/other modes are normalised)."""
    return 0o755 if path.stat().st_mode & 0o111 else 0o644


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _kind(path: Path) -> str:
    """What a non-regular, non-folder file is, for messages."""
    return file_kind(os.lstat(path).st_mode)


def _resolve(path: Path) -> Path | None:
    """``path`` with symlinks resolved, or None for a symlink loop (or an unreadable link)."""
    try:
        return path.resolve(strict=False)
    except (RuntimeError, OSError):
        return None


def _walk_source(
    package: Package, root: Path, key: str, source_rel: str, excludes: tuple[str, ...], plan: FilePlan
) -> list[tuple[str, Path]]:
    """(path relative to the source, real file) for one source (file or folder) in the
    repository; every problem (missing, symlink leaving the repository or looping, FIFO or
    device, a name a package path may not have) is recorded under ``key``."""
    label = package.label

    def problem(message: str) -> None:
        plan.problems.append(Problem(label, key, message))

    source = root / source_rel
    if not os.path.lexists(source):
        problem(f"{source_rel} does not exist in the repository ({root})")
        return []
    real = _resolve(source)
    if real is None:
        problem(f"{source_rel} is a symlink loop; replace it with a real file or folder")
        return []
    if not _inside(real, root):
        problem(f"{source_rel} is a symlink that leaves the repository (to {real}); use a path inside it")
        return []
    if not real.exists():
        problem(f"{source_rel} is a broken symlink; fix it or drop the entry")
        return []
    patterns = DEFAULT_EXCLUDES + tuple(excludes)
    if real.is_file():
        return [("", real)]
    if not real.is_dir():
        problem(f"{source_rel} is {_kind(real)}, not a file or a folder; only regular files are packed")
        return []

    found: list[tuple[str, Path]] = []
    visited: set[Path] = set()

    def walk(directory: Path, rel_dir: str) -> None:
        if directory in visited:  # a folder reached twice through symlinks
            return
        visited.add(directory)
        for child in sorted(os.scandir(directory), key=lambda d: d.name):
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            shown = f"{source_rel}/{rel}"
            path = Path(child.path)
            try:
                is_dir = child.is_dir()  # follows symlinks
            except OSError:  # a symlink loop
                is_dir = False
            if excluded(rel, patterns) or (is_dir and excluded(rel + "/", patterns)):
                continue
            if child.is_symlink():
                target = _resolve(path)
                if target is None:
                    problem(f"{shown} is a symlink loop; remove it or exclude it")
                    continue
                if not _inside(target, root):
                    problem(f"{shown} is a symlink that leaves the repository (to {target}); "
                            "replace it with a real file, or exclude it")
                    continue
                if not target.exists():
                    problem(f"{shown} is a broken symlink; fix or exclude it")
                    continue
                path = target
            if not SAFE_PATH_PATTERN.match(child.name):
                problem(f"{shown!r} has a name a package path may not have (letters, digits and . _ + @ - only); "
                        "rename it or exclude it")
                continue
            if path.is_dir():
                walk(path.resolve(), rel)
            elif path.is_file():
                found.append((rel, path))
            else:
                problem(f"{shown} is {_kind(path)}, not a regular file; remove it or exclude it")

    walk(real, "")
    if not found and not any(p.key == key for p in plan.problems):
        problem(f"{source_rel} has no files to pack (everything is excluded?)")
    return found


def _in_repository(root: Path, rel: str, key: str, fix: str, plan: FilePlan, label: str) -> Path | None:
    """The real path of repository file ``rel``, or None with a problem recorded (missing, or
    a symlink that leaves the repository)."""
    path = root / rel
    if not path.exists():
        plan.problems.append(Problem(label, key, f"{rel} does not exist; {fix}"))
        return None
    real = path.resolve()
    if not _inside(real, root):
        plan.problems.append(Problem(label, key, f"{rel} is a symlink that leaves the repository (to {real})"))
        return None
    return real


def plan_files(package: Package) -> FilePlan:
    """Every repository file of the package (no README/MANIFEST yet), sorted, with problems."""
    spec = package.spec
    root = package.root.resolve()
    plan = FilePlan()
    label = spec.spec_label
    by_path: dict[str, PlannedFile] = {}

    def add(item: PlannedFile) -> None:
        other = by_path.get(item.path)
        if other is not None:
            plan.problems.append(
                Problem(label, item.origin, f"writes {spec.name}/{item.path}, which {other.origin} already writes; "
                        "give each file its own destination")
            )
            return
        by_path[item.path] = item

    for origin, entry in package.files:
        for rel, real in _walk_source(package, root, f"{origin}.source", entry.source, entry.exclude, plan):
            if entry.destination == PACKAGE_ROOT and not rel:
                plan.problems.append(Problem(label, f"{origin}.destination",
                                             f"{entry.source} is a file; '.' (the package root) takes a folder's "
                                             "contents, so name the file's path in the package"))
                continue
            if entry.destination == PACKAGE_ROOT:
                dest = rel
            else:
                dest = f"{entry.destination}/{rel}" if rel else entry.destination
            add(PlannedFile.of_source(dest, file_mode(real), origin, real))

    for index, qs in enumerate(spec.quickstart):
        key = f"quickstart[{index}].script"
        real = _in_repository(root, qs.script, key, "write the script or fix the path", plan, label)
        if real is None:
            continue
        if not real.is_file():
            plan.problems.append(Problem(label, key, f"{qs.script} is not a file; name the script itself"))
            continue
        if not os.stat(real).st_mode & stat.S_IXUSR:
            plan.problems.append(Problem(label, key, f"{qs.script} is not executable; run: chmod +x {qs.script}"))
            continue
        add(PlannedFile.of_source(f"quickstart/{qs.basename}", 0o755, key, real))

    if spec.quickstart or (root / LIB_SH).is_file():
        lib = root / LIB_SH
        if lib.is_file():
            add(PlannedFile.of_source("quickstart/lib.sh", 0o644, LIB_SH, lib.resolve()))
        else:
            plan.problems.append(Problem(label, "quickstart", f"{LIB_SH} (the shared quickstart library) is missing"))

    license_file = root / "LICENSE"
    if license_file.is_file():
        add(PlannedFile.of_source("licenses/LICENSE", 0o644, "LICENSE", license_file.resolve()))
    else:
        plan.problems.append(Problem(label, "licenses", "the repository has no LICENSE file at its root; every package ships it"))
    for index, lic in enumerate(spec.licenses):
        # a notice, or a folder of notices: each shipped as licenses/third_party/<its name>
        for _rel, item in _walk_source(package, root, f"licenses[{index}]", lic, (), plan):
            add(PlannedFile.of_source(f"licenses/third_party/{item.name}", 0o644, f"licenses[{index}]", item))

    reserved = {MANIFEST: "the manifest", PACKAGE_INFO: "the package info modelpkg writes"}
    if spec.docs is not None and spec.docs.readme:
        reserved[README] = "the generated README (docs.readme)"
    for path, what in reserved.items():
        if path in by_path:
            plan.problems.append(
                Problem(label, by_path[path].origin, f"writes {spec.name}/{path}, which is {what}; choose another destination")
            )

    # a file may not also be a folder on the way to another file
    for path, item in by_path.items():
        for parent in PurePosixPath(path).parents:
            other = by_path.get(parent.as_posix())
            if other is not None:
                plan.problems.append(
                    Problem(label, item.origin, f"needs {spec.name}/{parent} to be a folder, but {other.origin} writes a file there")
                )

    plan.files = sorted(by_path.values(), key=lambda f: f.path.split("/"))
    return plan


# --- checks that need the repository besides the files ---------------------------------------


def _missing_part(package: Package, kind: str, key: str, part: str) -> Problem:
    root = package.root
    available = available_parts(root, kind)
    message = f"template part {part!r} does not exist ({part_file(root, kind, part).relative_to(root)})"
    close = difflib.get_close_matches(part, available, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    message += f" Available: {', '.join(available) or 'none'}"
    return Problem(package.label, key, message)


def _missing_parts(package: Package, kind: str, section: str, parts: tuple[str, ...]) -> list[Problem]:
    return [_missing_part(package, kind, f"{section}[{i}]", part)
            for i, part in enumerate(parts) if not part_file(package.root, kind, part).is_file()]


def check_references(package: Package) -> list[Problem]:
    """Wrapper templates, the wrapper's default script and base spec, described variables."""
    spec = package.spec
    label = spec.spec_label
    problems: list[Problem] = []
    if spec.wrapper.enabled:
        for template in WRAPPER_TEMPLATES:
            if not (package.root / "templates" / "wrapper" / template).is_file():
                problems.append(Problem(label, "wrapper.enabled",
                                        f"a wrapper package needs templates/wrapper/{template}, which does not exist; "
                                        "add it or set wrapper.enabled: false"))
        run = spec.wrapper.run
        names = [qs.basename for qs in spec.quickstart]
        if run is not None and run.default_script not in names:
            problems.append(Problem(label, "wrapper.run.default_script",
                                    f"{run.default_script!r} is not one of the spec's quickstart scripts "
                                    f"({', '.join(names) or 'none'})"))
    required, optional = spec.all_env
    used = set(required) | set(optional)
    if spec.wrapper.run is not None:
        used |= set(spec.wrapper.run.extra_env)
    for var in spec.env_help:
        if var not in used:
            problems.append(Problem(label, f"env_help.{var}",
                                    f"describes {var}, which no quickstart reads (quickstart[*].env); "
                                    "drop it or add it to a quickstart's env"))
    return problems


def _render(problems: list[Problem], render, *args, **kwargs):
    """``render(...)``, its ``SpecError`` problems collected instead of raised."""
    try:
        return render(*args, **kwargs)
    except SpecError as exc:
        problems += exc.problems
        return None


def package_info(package: Package) -> bytes:
    """``package_info.json``: what the package is, for the shipped code (``precisions.py``
    reads ``precisions`` so the quickstarts accept what the spec declares)."""
    spec = package.spec
    info = {
        "name": spec.name,
        "title": spec.title,
        "framework": spec.framework,
        "precisions": list(spec.precisions),
        "mode": spec.mode,
        "hardware": spec.hardware,
        "image": spec.image.reference if spec.image else None,
    }
    if spec.images:
        info["images"] = {key: image.reference for key, image in spec.images.items()}
    return (json.dumps(info, indent=2) + "\n").encode("utf-8")


def _sha256(item: PlannedFile) -> str:
    if item.data is not None:
        return hashlib.sha256(item.data).hexdigest()
    assert item.source is not None
    digest = hashlib.sha256()
    with open(item.source, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sort_key(item: PlannedFile) -> list[str]:
    return item.path.split("/")


def manifest_text(files: list[PlannedFile]) -> str:
    """``sha256sum -c`` format, paths relative to the package folder (run it inside ``<name>/``)."""
    return "".join(f"{_sha256(item)}  {item.path}\n" for item in sorted(files, key=_sort_key))


def make_plan(package: Package, out_dir: Path = DEFAULT_OUTPUT_DIR) -> PackagePlan:
    """The complete plan of ``package`` with archives under ``out_dir``; ``SpecError`` listing
    every problem found."""
    spec = package.spec
    found = plan_files(package)
    problems = list(found.problems)
    problems += check_references(package)

    dockerfile = None
    images: list[ImagePlan] = []
    for key, selected in image_packages(package):
        image = selected.spec.image
        assert image is not None
        at = selected.spec.image_key_path
        missing = _missing_parts(selected, "dockerfile", f"{at}.parts", image.parts)
        problems += missing
        # a misspelt part is one problem ("does not exist; did you mean"), not also an order one
        order = [p for p in check_order(selected) if p.key not in {m.key for m in missing}]
        problems += order
        if not missing and not order:
            text = _render(problems, render_dockerfile, selected)
            if text is not None:
                images.append(ImagePlan(key, selected, text))
                if key == spec.image_key:
                    dockerfile = text

    readme = None
    if spec.docs is not None:
        missing = _missing_parts(package, "docs", "docs.parts", spec.docs.parts)
        problems += missing
        if not missing:
            readme = _render(problems, render_readme, package)

    scripts = None
    if spec.wrapper.enabled and not any(p.key == "wrapper.enabled" for p in problems):
        scripts = _render(problems, render_wrapper_scripts, package)
    # an image-only package (a base image, no quickstarts) is what its image is built from:
    # the Dockerfile and build.sh, as the package the seeds call "the pytorch-ipex-spr.tar.gz container"
    image_build = None
    if dockerfile is not None and not spec.quickstart and not spec.wrapper.enabled:
        image_build = _render(problems, render_image_build_script, package)
    if problems:
        raise SpecError(problems)

    files = list(found.files)
    files.append(PlannedFile.of_data(PACKAGE_INFO, "package", package_info(package)))
    if image_build is not None:
        assert dockerfile is not None
        files.append(PlannedFile.of_data(f"{spec.name}.Dockerfile", "image", dockerfile.encode("utf-8")))
        files.append(PlannedFile.of_data("build.sh", "image", image_build.encode("utf-8"), 0o755))
    if readme is not None and spec.docs is not None and spec.docs.readme:
        files.append(PlannedFile.of_data(README, "docs", readme.encode("utf-8")))
    files.append(PlannedFile.of_data(MANIFEST, "manifest", manifest_text(files).encode("utf-8")))
    model_path = model_package_path(spec.name, out_dir)
    model = ArchivePlan(model_path, spec.name, tuple(sorted(files, key=_sort_key)))

    wrapper = None
    if scripts is not None:
        assert dockerfile is not None
        wrapper_readme = readme if readme is not None else _wrapper_readme(package)
        wrapper_files = [
            PlannedFile.of_data(README, "docs", wrapper_readme.encode("utf-8")),
            *(PlannedFile.of_data(name, "wrapper", text.encode("utf-8"), 0o755) for name, text in scripts.items()),
            PlannedFile(f"model_packages/{spec.name}.tar.gz", 0o644, "build", source=model_path),
            PlannedFile.of_data(f"{spec.name}.Dockerfile", "image", dockerfile.encode("utf-8")),
            *(item for item in found.files if item.path.startswith("licenses/")),
        ]
        wrapper = ArchivePlan(wrapper_package_path(spec.name, out_dir), spec.name,
                              tuple(sorted(wrapper_files, key=_sort_key)))
    return PackagePlan(package, readme, dockerfile, model, wrapper, tuple(images))


def _wrapper_readme(package: Package) -> str:
    spec = package.spec
    assert spec.image is not None
    return (
        f"# {spec.title}\n\n{spec.description.strip()}\n\n"
        f"Build the container `{spec.image.reference}`:\n\n```\n./build.sh\n```\n\n"
        f"Run a quickstart in it:\n\n```\n./run.sh\n```\n"
    )
