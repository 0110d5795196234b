"""Find the repository root: the folder that holds ``specs/``, ``templates/`` and ``models/``.

Order: an explicit path (``--root``), then ``$MODELPKG_ROOT``, then the current directory and
its parents, then the checkout that holds this installed ``packager`` (editable install). So a
command run inside a second checkout works on that checkout, not on the one modelpkg was
installed from.
"""

from __future__ import annotations

import os
from pathlib import Path

from packager.errors import UsageError

ROOT_ENV = "MODELPKG_ROOT"
MARKERS = ("specs", "templates")


def _is_root(path: Path) -> bool:
    return all((path / marker).is_dir() for marker in MARKERS)


def find_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the absolute, resolved repository root or raise ``UsageError`` saying how to set it."""
    for source, value in (("--root", explicit), (f"${ROOT_ENV}", os.environ.get(ROOT_ENV))):
        if value:
            path = Path(value).expanduser().resolve()
            if not _is_root(path):
                raise UsageError(
                    f"{source}={value} is not a modelpkg repository: it must contain "
                    f"{' and '.join(m + '/' for m in MARKERS)}"
                )
            return path
    cwd = Path.cwd().resolve()
    candidates = [cwd, *cwd.parents, Path(__file__).resolve().parent.parent]
    for candidate in candidates:
        if _is_root(candidate):
            return candidate
    raise UsageError(
        "cannot find the modelpkg repository (a folder with specs/ and templates/); "
        f"run inside the checkout, or pass --root DIR or set {ROOT_ENV}=DIR"
    )
