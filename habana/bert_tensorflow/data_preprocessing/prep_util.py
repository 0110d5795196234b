"""Helpers shared by the pretraining-data scripts in this folder (standard library only).

- ``UsageError`` (exit 2: a bad flag or a missing input, found before any work) and
  ``WorkError`` (exit 1: a failure during the work); ``cli(main)`` turns them, ``OSError`` and
  Ctrl-C/SIGTERM (exit 130) into one ``error: ...`` line on stderr, never a traceback.
- ``atomic_dir(final)``: a temp folder beside FINAL (``.<name>.<pid>.<random>.tmp``) that is
  renamed to FINAL when the ``with`` block ends without an error, and removed otherwise.
- ``code_root()``: the folder holding ``models/bert_large/tensorflow/create_pretraining_data.py``
  (the package root inside a package; the repository root in the source tree), put on
  ``sys.path`` so that the TFRecord writer is imported from there.
- ``fetch``: ``../download/fetch.py`` (the atomic downloader), imported from beside this folder.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE.parent  # the folder holding download/ and data_preprocessing/
CPD_RELATIVE = Path("models/bert_large/tensorflow/create_pretraining_data.py")


class UsageError(Exception):
    """A problem with the arguments or inputs, found before any work: exit 2."""


class WorkError(Exception):
    """A failure during the work: exit 1."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with a one-line ``PROG: error: ...`` (exit 2) instead of usage + error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def format_help(self):
        return super().format_help().replace("``", "")  # docstrings' literal markup


def _terminate(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run MAIN with the exit-status conventions of this folder's scripts."""
    signal.signal(signal.SIGTERM, _terminate)
    prog = Path(sys.argv[0]).name
    try:
        return main(argv)
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except WorkError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"{prog}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: error: interrupted (partial output removed)", file=sys.stderr)
        return 130


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp folder beside FINAL; rename it to FINAL on success, remove it on failure."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp",
                                dir=str(final.parent)))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


_TEMP_PID = re.compile(r"\.(\d+)(?:\.[a-z0-9_]{8})?\.tmp$")  # .<name>.<pid>[.<random>].tmp


def remove_stale_temps(directory: Path) -> None:
    """Remove ``.*.<pid>.*.tmp`` entries in DIRECTORY whose writer process is gone."""
    if not directory.is_dir():
        return
    for path in directory.glob(".*.tmp"):
        match = _TEMP_PID.search(path.name)
        if not match:
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def code_root() -> Path:
    """The folder holding models/bert_large/tensorflow/create_pretraining_data.py; on sys.path."""
    for folder in (PACKAGE_DIR, *PACKAGE_DIR.parents):
        if (folder / CPD_RELATIVE).is_file():
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            return folder
    raise UsageError(f"{CPD_RELATIVE} not found in {PACKAGE_DIR} or any folder above it: run "
                     "from an extracted model package (its models/ folder holds the TFRecord "
                     "writer)")


def import_fetch():
    download_dir = PACKAGE_DIR / "download"
    if str(download_dir) not in sys.path:
        sys.path.insert(0, str(download_dir))
    import fetch  # noqa: PLC0415

    return fetch


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def default_processes() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
