"""Reproducible ``.tar.gz`` archives: the model package and the wrapper (container) package.

Same inputs give the same bytes: entries sorted (parents before children), every mtime =
``SOURCE_DATE_EPOCH`` or a constant, uid/gid 0 with empty owner names, modes 0644/0755 (and
0755 folders), a gzip header without file name or time. Files are written to a temporary file
beside the target and renamed into place, so a failed build never leaves a partial archive.

Entry points (no Typer here): ``write_plan`` (the archives of a ``PackagePlan``),
``write_archive``, ``atomic_write``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from packager.errors import BuildError, UsageError
from packager.package import Package
from packager.plan import PackagePlan, PlannedFile, make_plan

DEFAULT_MTIME = 315532800  # 1980-01-01T00:00:00Z, used when SOURCE_DATE_EPOCH is not set
MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z
GZIP_LEVEL = 6  # what `gzip`/`tar -czf` use by default

Progress = Callable[[str, int], None]  # (path in the archive, bytes) after each file


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return DEFAULT_MTIME
    try:
        epoch = int(value)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not an integer; set it to seconds since 1970 or unset it") from None
    if epoch < 0:
        raise UsageError(f"SOURCE_DATE_EPOCH={value} is negative; set it to seconds since 1970 or unset it")
    if epoch > MAX_EPOCH:
        raise UsageError(f"SOURCE_DATE_EPOCH={value} is after the year 9999, which tar cannot store; "
                         f"set it to seconds since 1970 (at most {MAX_EPOCH}) or unset it")
    return epoch


def _temp_prefix(path: Path, pid: int) -> str:
    return f".{path.name}.{pid}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Remove the temp files that writes of ``path`` by processes no longer running left
    beside it (a ``kill -9`` during a build); a running build's temp file is kept."""
    removed = []
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[^/]*\.tmp\Z")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match and entry.is_file(follow_symlinks=False) and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """Write ``path`` through a temp file in the same folder, renamed into place on success.
    The temp name holds this process's id, so the next write of ``path`` removes what a killed
    process left (``remove_stale_temp_files``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path, os.getpid()), suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text.encode("utf-8"))


def _sort_key(path: str) -> list[str]:
    return path.split("/")


def write_archive(
    out_path: Path,
    top: str,
    files: list[PlannedFile],
    *,
    extra_dirs: tuple[str, ...] = (),
    mtime: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write ``files`` under the single folder ``top/`` into ``out_path`` (reproducibly, atomically)."""
    mtime = source_date_epoch() if mtime is None else mtime
    dirs: set[str] = {top}
    for item in files:
        dirs.update(f"{top}/{p.as_posix()}" for p in PurePosixPath(item.path).parents if p.as_posix() != ".")
    dirs.update(f"{top}/{d}" for d in extra_dirs)
    members: list[tuple[str, PlannedFile | None]] = [(d, None) for d in dirs]
    members += [(f"{top}/{item.path}", item) for item in files]
    members.sort(key=lambda m: _sort_key(m[0]))

    def info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.size = size
        ti.mtime = mtime
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    with atomic_write(out_path) as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name, item in members:
                    if item is None:
                        tar.addfile(info(name, tarfile.DIRTYPE, 0o755))
                        continue
                    if item.data is not None:
                        tar.addfile(info(name, tarfile.REGTYPE, item.mode, len(item.data)), io.BytesIO(item.data))
                        size = len(item.data)
                    else:
                        assert item.source is not None
                        with open(item.source, "rb") as src:
                            size = os.fstat(src.fileno()).st_size
                            tar.addfile(info(name, tarfile.REGTYPE, item.mode, size), src)
                    if progress is not None:
                        progress(item.path, size)
    return out_path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_plan(plan: PackagePlan, *, progress: Progress | None = None) -> list[Path]:
    """Write every archive of ``plan`` (model package first); returns their paths."""
    outputs = []
    for archive in plan.archives:
        outputs.append(write_archive(archive.path, archive.top, list(archive.files),
                                     extra_dirs=archive.extra_dirs, progress=progress))
    return outputs


def build_package(package: Package, out_dir: Path, *, progress: Progress | None = None) -> list[Path]:
    """Plan ``package`` with archives under ``out_dir`` and write them (model package, then the
    wrapper package when the spec enables one); OS errors become a ``BuildError``."""
    plan = make_plan(package, out_dir)
    try:
        return write_plan(plan, progress=progress)
    except OSError as exc:
        raise BuildError(f"cannot write the package for {package.name} into {out_dir}: {exc}") from exc
