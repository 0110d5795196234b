"""One error type with an exit code; ``cli`` prints it (no traceback unless --debug) and exits.

Inner code raises these (or plain ``ValueError``/``OSError`` that the command boundary
translates). Exit codes: 1 = the work failed or a check found a difference, 2 = the input
(spec, name, option) is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass


class ModelpkgError(Exception):
    """Base error: ``str(error)`` is the message shown to the user; ``exit_code`` the status."""

    exit_code = 1


class UsageError(ModelpkgError):
    """Wrong command-line use (no names, unknown package name, ...)."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: the file, the key path (``files[0].source``), the message."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.message}"


class SpecError(ModelpkgError):
    """A spec is invalid; carries every problem found, not only the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        if not problems:
            raise ValueError("SpecError needs at least one problem")  # a silent spec error is a bug
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in spec{'s' if len({p.file for p in self.problems}) > 1 else ''}:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


class CheckFailed(ModelpkgError):
    """A ``--check`` found a committed generated file that differs from a fresh render."""

    exit_code = 1


class BuildError(ModelpkgError):
    """Writing an archive or another output failed (disk, permissions, ...)."""

    exit_code = 1
