"""Plan what goes into a model package: pure file-system reads, no writing.

``plan_files(spec)`` turns a spec into the sorted list of files that will be packed (paths
relative to the package's top folder ``<name>/``), and collects every problem it meets
(missing source, symlink leaving the repository, two files to one destination, a quickstart
script that is missing or not executable) instead of stopping at the first one.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

from packager.errors import Problem
from packager.spec import Spec

# Never packed, whatever the spec says: caches and VCS data that would make builds depend on
# what happened to run in the checkout.
DEFAULT_EXCLUDES = ("**/__pycache__/**", "**/*.pyc", "**/*.pyo", "**/.pytest_cache/**", "**/.git/**", "**/.DS_Store")
LIB_SH = "quickstart/common/lib.sh"
MANIFEST = "MANIFEST.sha256"
README = "README.md"


@dataclass(frozen=True)
class PlannedFile:
    """One file in the package: ``path`` under ``<name>/``, where it comes from, its mode."""

    path: str
    mode: int  # 0o644 or 0o755
    origin: str  # spec key path that put it there, e.g. "files[0]" or "quickstart[1].script"
    source: Path | None = None  # a file in the repository, or
    data: bytes | None = None  # generated content (README.md, MANIFEST.sha256, ...)


@dataclass
class Plan:
    files: list[PlannedFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


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


def _walk_source(
    spec: Spec, root: Path, index: int, plan: Plan
) -> list[tuple[str, Path]]:
    """(path relative to the destination, real file) for one ``files`` entry."""
    entry = spec.files[index]
    key = f"files[{index}].source"
    label = spec.spec_label
    source = root / entry.source
    if not os.path.lexists(source):
        plan.problems.append(Problem(label, key, f"{entry.source} does not exist in the repository ({root})"))
        return []
    real = source.resolve()
    if not _inside(real, root):
        plan.problems.append(
            Problem(label, key, f"{entry.source} is a symlink that leaves the repository (to {real}); use a path inside it")
        )
        return []
    patterns = DEFAULT_EXCLUDES + tuple(entry.exclude)
    if real.is_file():
        return [("", real)]
    if not real.is_dir():
        plan.problems.append(Problem(label, key, f"{entry.source} is neither a file nor a folder"))
        return []

    found: list[tuple[str, Path]] = []
    visited: set[Path] = set()

    def walk(directory: Path, rel_dir: str) -> None:
        if directory in visited:  # a symlink loop inside the repository
            return
        visited.add(directory)
        for child in sorted(os.scandir(directory), key=lambda d: d.name):
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            path = Path(child.path)
            if child.is_symlink():
                target = path.resolve()
                shown = f"{entry.source}/{rel}"
                if not _inside(target, root):
                    plan.problems.append(
                        Problem(label, key, f"{shown} is a symlink that leaves the repository (to {target}); "
                                "replace it with a real file, or exclude it")
                    )
                    continue
                if not target.exists():
                    plan.problems.append(Problem(label, key, f"{shown} is a broken symlink; fix or exclude it"))
                    continue
                path = target
            if path.is_dir():
                if not excluded(rel + "/", patterns) and not excluded(rel, patterns):
                    walk(path.resolve(), rel)
            elif path.is_file():
                if not excluded(rel, patterns):
                    found.append((rel, path))

    walk(real, "")
    if not found:
        plan.problems.append(Problem(label, key, f"{entry.source} has no files to pack (everything is excluded?)"))
    return found


def plan_files(spec: Spec, root: Path) -> Plan:
    """Every repository file of the package (no README/MANIFEST yet), sorted, with problems."""
    root = root.resolve()
    plan = Plan()
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

    for index, entry in enumerate(spec.files):
        for rel, real in _walk_source(spec, root, index, plan):
            dest = f"{entry.destination}/{rel}" if rel else entry.destination
            add(PlannedFile(dest, file_mode(real), f"files[{index}]", source=real))

    for index, qs in enumerate(spec.quickstart):
        key = f"quickstart[{index}].script"
        script = root / qs.script
        if not script.is_file():
            plan.problems.append(Problem(label, key, f"{qs.script} does not exist; write the script or fix the path"))
            continue
        real = script.resolve()
        if not _inside(real, root):
            plan.problems.append(Problem(label, key, f"{qs.script} is a symlink that leaves the repository (to {real})"))
            continue
        if not os.stat(real).st_mode & stat.S_IXUSR:
            plan.problems.append(Problem(label, key, f"{qs.script} is not executable; run: chmod +x {qs.script}"))
            continue
        add(PlannedFile(f"quickstart/{qs.basename}", 0o755, key, source=real))

    if spec.quickstart or (root / LIB_SH).is_file():
        lib = root / LIB_SH
        if lib.is_file():
            add(PlannedFile("quickstart/lib.sh", 0o644, LIB_SH, source=lib.resolve()))
        else:
            plan.problems.append(Problem(label, "quickstart", f"{LIB_SH} (the shared quickstart library) is missing"))

    license_file = root / "LICENSE"
    if license_file.is_file():
        add(PlannedFile("licenses/LICENSE", 0o644, "LICENSE", source=license_file.resolve()))
    else:
        plan.problems.append(Problem(label, "licenses", "the repository has no LICENSE file at its root; every package ships it"))
    for index, lic in enumerate(spec.licenses):
        key = f"licenses[{index}]"
        path = root / lic
        if not path.exists():
            plan.problems.append(Problem(label, key, f"{lic} does not exist; add the notice or drop the entry"))
            continue
        real = path.resolve()
        if not _inside(real, root):
            plan.problems.append(Problem(label, key, f"{lic} is a symlink that leaves the repository (to {real})"))
            continue
        files = [real] if real.is_file() else sorted(p for p in real.rglob("*") if p.is_file())
        for item in files:
            add(PlannedFile(f"licenses/third_party/{item.name}", 0o644, key, source=item))

    reserved = {MANIFEST: "the manifest"}
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
