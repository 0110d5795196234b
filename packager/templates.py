"""Jinja2 rendering of the template parts in ``templates/`` (StrictUndefined: a missing value is
an error that names the part and the spec key, never an empty string).

A part may declare what it is on its first line, ``{# part: ROLE #}`` (for Dockerfile parts:
``base``, ``dependency`` or ``package``); ``part_role`` reads it, so the rules that depend on
a part's role (``packager.dockerfile.check_order``) need no list of part names.
"""

from __future__ import annotations

import json
import re
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from packager.errors import Problem, SpecError

KINDS = {
    "dockerfile": ("templates/dockerfile", ".Dockerfile.j2"),
    "docs": ("templates/docs", ".md.j2"),
}


def part_file(root: Path, kind: str, part: str) -> Path:
    folder, suffix = KINDS[kind]
    return root / folder / f"{part}{suffix}"


def available_parts(root: Path, kind: str) -> list[str]:
    folder, suffix = KINDS[kind]
    return sorted(p.name[: -len(suffix)] for p in (root / folder).glob(f"*{suffix}"))


_ROLE = re.compile(r"\A\{#\s*part:\s*([a-z_-]+)\s*#\}")


def part_role(root: Path, kind: str, part: str) -> str | None:
    """The ``{# part: ROLE #}`` declared on the part's first line, or None."""
    try:
        with open(part_file(root, kind, part), encoding="utf-8") as handle:
            first = handle.readline()
    except OSError:
        return None
    match = _ROLE.match(first)
    return match.group(1) if match else None


def _fail(message: str) -> None:
    """``{{ fail("...") }}`` in a template: stop with a message for the spec author."""
    raise jinja2.TemplateRuntimeError(message)


@lru_cache(maxsize=16)
def environment(root: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root / "templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["shquote"] = lambda value: shlex.quote(str(value))
    env.filters["shvar"] = lambda name: "${" + str(name) + "}"
    env.globals["fail"] = _fail
    env.filters["dquote"] = lambda value: json.dumps(str(value))
    env.filters["basename"] = lambda value: Path(str(value)).name
    return env


def render(label: str, root: Path, template: str, key: str, context: dict[str, Any]) -> str:
    """Render ``templates/<template>``; template errors become a ``SpecError`` naming the spec
    file ``label`` and ``key``."""
    env = environment(root)
    try:
        text = env.get_template(template).render(**context)
    except jinja2.TemplateNotFound:
        raise SpecError([Problem(label, key, f"template templates/{template} does not exist")]) from None
    except jinja2.UndefinedError as exc:
        raise SpecError(
            [Problem(label, key, f"templates/{template} needs a value the spec does not give: {exc.message}")]
        ) from None
    except jinja2.TemplateError as exc:
        where = f" line {exc.lineno}" if getattr(exc, "lineno", None) else ""
        raise SpecError([Problem(label, key, f"templates/{template}{where}: {exc}")]) from None
    return text
