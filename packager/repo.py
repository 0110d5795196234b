"""Find and load the specs of a repository: ``load_spec(name)`` is the entry point for others."""

from __future__ import annotations

import difflib
from pathlib import Path

from packager.checks import check_spec
from packager.errors import Problem, SpecError, UsageError
from packager.root import find_root
from packager.spec import Spec, parse_spec


def spec_names(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "specs").glob("*.yaml"))


def spec_path(root: Path, name: str) -> Path:
    path = root / "specs" / f"{name}.yaml"
    if not path.is_file():
        names = spec_names(root)
        message = f"no package named {name!r} (no specs/{name}.yaml in {root})"
        close = difflib.get_close_matches(name, names, n=1)
        message += f"; did you mean {close[0]!r}?" if close else "."
        message += f" Known: {', '.join(names) or 'none'} (modelpkg list)"
        raise UsageError(message)
    return path


def load_spec(name: str, root: Path | None = None, *, check: bool = True) -> Spec:
    """Parse ``specs/<name>.yaml`` and (``check=True``) check it against the repository.

    Raises ``SpecError`` (exit 2) listing every problem, or ``UsageError`` for an unknown name.
    """
    root = (root or find_root()).resolve()
    spec = parse_spec(spec_path(root, name), root)
    if check:
        problems = check_spec(spec, root)
        if problems:
            raise SpecError(problems)
    return spec


def load_specs(names: list[str] | None, root: Path, *, check: bool = True) -> list[Spec]:
    """Load several specs (all when ``names`` is None); one ``SpecError`` with all problems."""
    root = root.resolve()
    if names is None:
        names = spec_names(root)
    for name in names:
        spec_path(root, name)  # unknown names first: a usage error, not a spec problem
    specs: list[Spec] = []
    problems: list[Problem] = []
    for name in dict.fromkeys(names):
        try:
            specs.append(load_spec(name, root, check=check))
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(problems)
    return specs
