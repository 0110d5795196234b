"""What a path that is not a regular file is, in words, for error messages (shared by the
packager's source walk and the shipped TFRecord reader)."""

from __future__ import annotations

import stat

__all__ = ["file_kind"]

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"))


def file_kind(mode: int) -> str:
    """``"a FIFO (named pipe)"``, ``"a directory"``... for an ``st_mode`` that is not a regular file."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a regular file"
