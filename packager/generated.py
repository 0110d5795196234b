"""Committed generated files (Dockerfiles, package docs): write when changed, or check freshness."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from packager.archive import atomic_write_text


@dataclass(frozen=True)
class SyncResult:
    path: Path
    status: str  # "written", "unchanged", "stale", "missing"
    diff: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("written", "unchanged")


def unified_diff(old: str, new: str, label: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"{label} (committed)", tofile=f"{label} (rendered)",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def sync(path: Path, text: str, *, check: bool, label: str | None = None) -> SyncResult:
    """Write ``text`` to ``path`` when it differs (atomically); with ``check`` only compare."""
    label = label or str(path)
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    if current == text:
        return SyncResult(path, "unchanged")
    if check:
        if current is None:
            return SyncResult(path, "missing")
        return SyncResult(path, "stale", unified_diff(current, text, label))
    atomic_write_text(path, text)
    return SyncResult(path, "written")
