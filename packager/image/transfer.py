"""`modelpkg image save|load`: image archives that move between machines and registries.

save: the builder writes the plain archive (``buildah push docker-archive:``/``oci-archive:``,
or the Docker SDK's ``image.save``) into a temp folder; it is gzip-compressed into
``<out>/<name>.image.tar.gz`` (``.oci.tar.gz`` for ``--format oci``) through ``atomic_write``
(nothing half-written is left on failure), and ``<file>.sha256`` (``sha256sum -c`` format)
is written beside it. gzip level 1: an 8 GB image compresses in about a minute and a half
rather than several at gzip's default, for an archive a few percent larger; ``mtime=0`` in the
gzip header, so the compression adds nothing that changes from run to run.
``docker load -i FILE`` reads the gzip archive as it is; ``modelpkg image load FILE`` checks
the ``.sha256`` beside it when there is one, then loads it into buildah storage (or docker).
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
from pathlib import Path
from typing import BinaryIO

from packager.archive import atomic_write, atomic_write_text
from packager.conventions import IMAGE_ARCHIVE_SUFFIX, OCI_ARCHIVE_SUFFIX
from packager.image.base import ARCHIVE_FORMATS, Builder, ImageError, ImageRunError, ImageUsageError, LogFn

GZIP_LEVEL = 1
_BLOCK = 1 << 20


def _check_format(fmt: str) -> None:
    if fmt not in ARCHIVE_FORMATS:
        raise ImageUsageError(f"--format {fmt!r}: choose one of {', '.join(ARCHIVE_FORMATS)}")


def archive_path(out_dir: Path, name: str, fmt: str) -> Path:
    _check_format(fmt)
    return Path(out_dir) / f"{name}{IMAGE_ARCHIVE_SUFFIX if fmt == 'docker' else OCI_ARCHIVE_SUFFIX}"


def checksum_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ".sha256")


class _HashingWriter:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _gzip_into(raw: Path, dest: Path, log: LogFn) -> str:
    """Compress ``raw`` into ``dest`` atomically; the sha256 of what was written."""
    total = raw.stat().st_size
    done, shown = 0, 0
    with atomic_write(dest) as out:
        hashing = _HashingWriter(out)
        with open(raw, "rb") as src, gzip.GzipFile(filename="", mode="wb", fileobj=hashing,  # type: ignore[arg-type]
                                                   compresslevel=GZIP_LEVEL, mtime=0) as gz:
            for block in iter(lambda: src.read(_BLOCK), b""):
                gz.write(block)
                done += len(block)
                if total and done * 10 // total > shown:
                    shown = done * 10 // total
                    log(f"compressing: {shown * 10}% of {total / 1e9:.2f} GB")
    return hashing.sha256.hexdigest()


def save_image(builder: Builder, image: str, dest: Path, fmt: str, log: LogFn) -> str:
    """Write ``image`` to ``dest`` (gzip archive in ``fmt``) and ``dest.sha256``; the sha256."""
    _check_format(fmt)
    if builder.image_digest(image) is None:
        raise ImageRunError(f"image {image} is not in {builder.name} storage; build it first "
                            f"(modelpkg image build NAME --builder {builder.name})")
    with tempfile.TemporaryDirectory(prefix="modelpkg-save-") as tmp:
        raw = Path(tmp) / "image.tar"
        builder.save(image, raw, fmt, log)
        sha = _gzip_into(raw, dest, log)
    atomic_write_text(checksum_path(dest), f"{sha}  {dest.name}\n")
    return sha


def verify_checksum(archive: Path) -> str | None:
    """Check ``archive`` against ``archive.sha256`` when that file exists; the sha256 checked,
    or None when there is no checksum file. ImageError naming both sums on a mismatch."""
    sums = checksum_path(archive)
    if not sums.is_file():
        return None
    fields = sums.read_text(encoding="utf-8", errors="replace").split()
    if not fields or len(fields[0]) != 64:
        raise ImageError(f"{sums}: not a sha256sum line (expected '<64 hex>  {archive.name}')")
    actual = _sha256_file(archive)
    if actual != fields[0].lower():
        raise ImageError(f"{archive}: sha256 {actual} does not match {fields[0]} in {sums.name}; "
                         "the archive is damaged or incomplete: copy or save it again")
    return actual


def load_image(builder: Builder, archive: Path, log: LogFn) -> list[str]:
    """Load a saved archive (checked against its .sha256 when present); the names loaded."""
    archive = Path(archive)
    if not archive.is_file():
        raise ImageUsageError(f"{archive}: no such file (give an archive written by `modelpkg image save`)")
    checked = verify_checksum(archive)
    log(f"{archive.name}: sha256 {checked} matches {checksum_path(archive).name}" if checked
        else f"{archive.name}: no {checksum_path(archive).name} beside it, so its checksum is not checked")
    return builder.load(archive, log)
