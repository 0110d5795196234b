"""Reproducible ``.tar.gz`` archives: the model package and the wrapper (container) package.

Same inputs give the same bytes: entries sorted (parents before children), every mtime =
``SOURCE_DATE_EPOCH`` or a constant, uid/gid 0 with empty owner names, modes 0644/0755 (and
0755 folders), a gzip header without file name or time. Files are written to a temporary file
beside the target and renamed into place, so a failed build never leaves a partial archive.

Entry points (no Typer here): ``plan_model_package``, ``build_model_package``,
``plan_wrapper_package``, ``build_wrapper_package``, ``write_archive``, ``atomic_write``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from packager.dockerfile import render_dockerfile
from packager.docs import render_readme
from packager.errors import BuildError, Problem, SpecError
from packager.plan import MANIFEST, README, PlannedFile, plan_files
from packager.root import find_root
from packager.spec import Spec
from packager.templates import render

DEFAULT_MTIME = 315532800  # 1980-01-01T00:00:00Z, used when SOURCE_DATE_EPOCH is not set
GZIP_LEVEL = 6  # what `gzip`/`tar -czf` use by default
WRAPPER_DIR = "wrapper_packages"

Progress = Callable[[str, int], None]  # (path in the archive, bytes) after each file


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return DEFAULT_MTIME
    try:
        epoch = int(value)
    except ValueError:
        raise BuildError(f"SOURCE_DATE_EPOCH={value!r} is not an integer; set it to seconds since 1970 or unset it") from None
    if epoch < 0:
        raise BuildError(f"SOURCE_DATE_EPOCH={value} is negative; set it to seconds since 1970 or unset it")
    return epoch


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """Write ``path`` through a temp file in the same folder, renamed into place on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def sha256_of(item: PlannedFile) -> str:
    if item.data is not None:
        return hashlib.sha256(item.data).hexdigest()
    assert item.source is not None
    return sha256_file(item.source)


def manifest_text(files: list[PlannedFile]) -> str:
    """``sha256sum -c`` format, paths relative to the package folder (run it inside ``<name>/``)."""
    return "".join(f"{sha256_of(item)}  {item.path}\n" for item in sorted(files, key=lambda f: _sort_key(f.path)))


def _root_of(spec: Spec, root: Path | None) -> Path:
    return (root or spec.root or find_root()).resolve()


def plan_model_package(spec: Spec, root: Path | None = None, *, manifest: bool = True) -> list[PlannedFile]:
    """Every file of ``<name>.tar.gz`` (paths under ``<name>/``), sorted; raises ``SpecError``."""
    root = _root_of(spec, root)
    plan = plan_files(spec, root)
    if plan.problems:
        raise SpecError(plan.problems)
    files = list(plan.files)
    if spec.docs is not None and spec.docs.readme:
        files.append(PlannedFile(README, 0o644, "docs", data=render_readme(spec, root).encode("utf-8")))
    if manifest:
        files.append(PlannedFile(MANIFEST, 0o644, "manifest", data=manifest_text(files).encode("utf-8")))
    return sorted(files, key=lambda f: _sort_key(f.path))


def model_package_path(spec: Spec, out_dir: Path) -> Path:
    return Path(out_dir) / f"{spec.name}.tar.gz"


def wrapper_package_path(spec: Spec, out_dir: Path) -> Path:
    return Path(out_dir) / WRAPPER_DIR / f"{spec.name}.tar.gz"


def build_model_package(
    spec: Spec, out_dir: Path, root: Path | None = None, *, progress: Progress | None = None
) -> Path:
    """Write ``out_dir/<name>.tar.gz`` and return its path."""
    files = plan_model_package(spec, root)
    return write_archive(model_package_path(spec, out_dir), spec.name, files,
                         extra_dirs=("licenses/third_party",), progress=progress)


def _wrapper_readme(spec: Spec) -> str:
    assert spec.image is not None
    return (
        f"# {spec.title}\n\n{spec.description.strip()}\n\n"
        f"Build the container `{spec.image.reference}`:\n\n```\n./build.sh\n```\n\n"
        f"Run a quickstart in it:\n\n```\n./run.sh\n```\n"
    )


def plan_wrapper_package(spec: Spec, model_archive: Path, root: Path | None = None) -> list[PlannedFile]:
    """The wrapper tree of seed 001: README.md, build.sh, run.sh, licenses/, model_packages/,
    ``<name>.Dockerfile`` (its build context is the extracted wrapper folder)."""
    root = _root_of(spec, root)
    if not spec.wrapper.enabled or spec.image is None:
        raise SpecError([Problem(spec.spec_label, "wrapper.enabled", "is not true, so there is no wrapper package")])
    context = {"spec": spec, "wrapper": spec.wrapper, "run": spec.wrapper.run, "image": spec.image,
               "name": spec.name, "vars": dict(spec.wrapper.vars)}
    readme = render_readme(spec, root) if spec.docs is not None else _wrapper_readme(spec)
    files = [
        PlannedFile(README, 0o644, "docs", data=readme.encode("utf-8")),
        PlannedFile("build.sh", 0o755, "wrapper",
                    data=render(spec, root, "wrapper/build.sh.j2", "wrapper.enabled", context).encode("utf-8")),
        PlannedFile("run.sh", 0o755, "wrapper",
                    data=render(spec, root, "wrapper/run.sh.j2", "wrapper.enabled", context).encode("utf-8")),
        PlannedFile(f"model_packages/{spec.name}.tar.gz", 0o644, "build", source=Path(model_archive)),
        PlannedFile(f"{spec.name}.Dockerfile", 0o644, "image",
                    data=render_dockerfile(spec, root).encode("utf-8")),
    ]
    plan = plan_files(spec, root)
    if plan.problems:
        raise SpecError(plan.problems)
    files += [item for item in plan.files if item.path.startswith("licenses/")]
    return sorted(files, key=lambda f: _sort_key(f.path))


def build_wrapper_package(
    spec: Spec, out_dir: Path, model_archive: Path | None = None, root: Path | None = None,
    *, progress: Progress | None = None,
) -> Path:
    """Write ``out_dir/wrapper_packages/<name>.tar.gz`` (building the model package first when
    ``model_archive`` is not given) and return its path."""
    if model_archive is None:
        model_archive = build_model_package(spec, out_dir, root)
    files = plan_wrapper_package(spec, model_archive, root)
    return write_archive(wrapper_package_path(spec, out_dir), spec.name, files,
                         extra_dirs=("licenses/third_party",), progress=progress)


def build_package(spec: Spec, out_dir: Path, root: Path | None = None, *, progress: Progress | None = None) -> list[Path]:
    """The model package, and the wrapper package when the spec enables it."""
    try:
        model = build_model_package(spec, out_dir, root, progress=progress)
        outputs = [model]
        if spec.wrapper.enabled:
            outputs.append(build_wrapper_package(spec, out_dir, model, root, progress=progress))
    except OSError as exc:
        raise BuildError(f"cannot write the package for {spec.name} into {out_dir}: {exc}") from exc
    return outputs
