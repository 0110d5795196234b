"""The ``modelpkg`` console script. It imports the command line (Typer, pydantic, Jinja2,
rich: most of a second) inside a guard, so Ctrl-C while Python loads them ends with one line
and exit 130 instead of a traceback through the import machinery."""

from __future__ import annotations

import sys

INTERRUPTED_EXIT = 130  # what a shell reports for a process ended by SIGINT


def main() -> None:
    try:
        from packager.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(INTERRUPTED_EXIT)


if __name__ == "__main__":
    main()
