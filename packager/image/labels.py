"""The per-build OCI labels: what the committed Dockerfile cannot know.

The Dockerfile's own LABEL block (``packager.dockerfile.static_labels``) says what the image is
(title, description, licenses). A build adds where it came from and when, read from the
checkout and ``SOURCE_DATE_EPOCH``:

- ``org.opencontainers.image.created``: RFC 3339 UTC, from ``SOURCE_DATE_EPOCH`` when set (so
  two builds of one checkout label alike), else now;
- ``.revision``: the checkout's ``git rev-parse HEAD``;
- ``.version``: modelpkg's version with the short revision as a PEP 440 local part
  (``0.1.0+g3b33b42``, ``.dirty`` when the tree has uncommitted changes);
- ``.source``: the checkout's ``remote.origin.url``, credentials removed; left out without a
  remote, or when the remote is a local path (no one else can reach it);
- ``.licenses``: the project licence (also in the Dockerfile, repeated so the labels a build
  sets are complete on their own).

Outside a git checkout (an unpacked source tree) revision and version fall back to the
distribution's version alone, and the build log says so.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from importlib import metadata
from pathlib import Path

from models.common.redact import without_userinfo
from packager.archive import source_date_epoch
from packager.conventions import OCI_LABEL_PREFIX, PROJECT_LICENSE


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def modelpkg_version() -> str:
    try:
        return metadata.version("modelpkg")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "0+unknown"


def created_timestamp(environ: dict[str, str] | None = None) -> int | None:
    """``SOURCE_DATE_EPOCH`` as an int (validated), or None when unset."""
    environ = os.environ if environ is None else environ
    if not environ.get("SOURCE_DATE_EPOCH"):
        return None
    return source_date_epoch()


def rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _source_url(root: Path) -> str | None:
    url = _git(root, "config", "--get", "remote.origin.url")
    if not url or not ("://" in url or url.startswith("git@")):
        return None
    return without_userinfo(url)  # no user or token in a label


def build_labels(root: Path, epoch: int | None, now: float | None = None) -> dict[str, str]:
    """The labels above for a build from the checkout at ``root`` (``epoch``: SOURCE_DATE_EPOCH)."""
    created = epoch if epoch is not None else int(now if now is not None else dt.datetime.now().timestamp())
    labels = {"created": rfc3339(created), "licenses": PROJECT_LICENSE}
    version = modelpkg_version()
    revision = _git(root, "rev-parse", "HEAD")
    if revision:
        labels["revision"] = revision
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
        version += f"+g{revision[:7]}" + (".dirty" if dirty else "")
    labels["version"] = version
    source = _source_url(root)
    if source:
        labels["source"] = source
    return {OCI_LABEL_PREFIX + key: value for key, value in sorted(labels.items())}
