"""Spec files: YAML reading, variants, named file sets and ``{{ name }}`` substitutions.

A file ``specs/<name>.yaml`` describes one package, named like the file. A file with a
``variants:`` mapping describes one package per variant instead: the variant's key is the
package name and its values (strings) fill ``{{ key }}`` anywhere in the file's other
values, so packages that differ in a few words share one source (see docs/spec-format.md)::

    variants:
      bert-large-bf16-training: {precision: bfloat16, precision_title: BFloat16}
      bert-large-fp32-training: {precision: fp32, precision_title: FP32}
    title: BERT Large {{ precision_title }} training

Every spec can also use ``{{ name }}`` (the package name) and ``{{ precisions }}`` (its
canonical precisions as text: ``fp32, avx-fp32, bf16 or bf32``). A ``{{ key }}`` that is not
defined is a problem naming the key path.

``filesets: [NAME, ...]`` takes named lists of ``files`` entries from
``specs/shared/filesets.yaml`` (so the same entries are not written in every spec).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from models.common import precisions
from packager.errors import Problem, SpecError
from packager.spec import NAME_PATTERN, FileEntry, _problems, validate_spec, Spec

SPECS_DIR = "specs"
FILESETS_FILE = "specs/shared/filesets.yaml"
VARIANTS_KEY = "variants"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key written twice in one mapping (YAML keeps the last silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain name, not a list or mapping", key_node.start_mark
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is written twice in one mapping; keep one", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_message(exc: yaml.YAMLError) -> str:
    """One line: ``line L, column C: what is wrong`` (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or not problem:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    what = f"{problem} ({context})" if context and context != problem else problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}"


MAX_SPEC_BYTES = 1 << 20  # 1 MiB: a spec is a page of YAML
MAX_DEPTH = 32  # mappings and lists nested deeper than any spec needs
MAX_NODES = 100_000  # values after YAML aliases are expanded (an alias bomb stops here)


def _check_shape(data: Any, label: str) -> None:
    """Refuse what no spec needs and what would make validation slow or deep: nesting beyond
    ``MAX_DEPTH``, more than ``MAX_NODES`` values once aliases are expanded, mapping keys that
    are not strings. Iterative, and stops at the first limit, so a billion-laughs document
    costs ``MAX_NODES`` steps, not its expansion."""
    stack: list[tuple[Any, int, str]] = [(data, 0, "")]
    seen = 0
    while stack:
        value, depth, key = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise SpecError([Problem(label, "", f"has more than {MAX_NODES} values once YAML aliases are expanded; "
                                     "write the spec without alias chains")])
        if depth > MAX_DEPTH:
            raise SpecError([Problem(label, key, f"is nested more than {MAX_DEPTH} levels deep; a spec needs a few")])
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise SpecError([Problem(label, key, f"has a key {k!r} that is not a string; write keys as plain names")])
                stack.append((v, depth + 1, f"{key}.{k}" if key else k))
        elif isinstance(value, list):
            stack.extend((v, depth + 1, f"{key}[{i}]") for i, v in enumerate(value))


def read_yaml(path: Path, label: str) -> Any:
    """The YAML document in ``path``; ``SpecError`` (one line, naming ``label``) when it cannot
    be read, is not UTF-8 or YAML, or is larger, deeper or wider than a spec can be."""
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError([Problem(label, "", f"is larger than {MAX_SPEC_BYTES // 1024} KiB; a spec is a page of YAML")])
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SpecError([Problem(label, "", f"cannot read the file: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(label, "", f"is not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
                                 "save it as UTF-8")]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError([Problem(label, "", f"not valid YAML: {_yaml_message(exc)}")]) from exc
    except RecursionError:
        raise SpecError([Problem(label, "", f"is nested more than {MAX_DEPTH} levels deep; a spec needs a few")]) from None
    _check_shape(data, label)
    return data


# --- substitutions --------------------------------------------------------------------------


def _format_key(path: tuple[Any, ...]) -> str:
    out = ""
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else ("." if out else "") + str(item)
    return out


def substitute(data: Any, values: dict[str, str], *, strict: bool, label: str,
               problems: list[Problem], path: tuple[Any, ...] = ()) -> Any:
    """``data`` with each ``{{ key }}`` in its string values replaced from ``values``.

    ``strict=False`` leaves unknown keys in place (a later round fills them); ``strict=True``
    records each unknown one as a problem at its key path.
    """
    if isinstance(data, dict):
        return {k: substitute(v, values, strict=strict, label=label, problems=problems, path=(*path, k))
                for k, v in data.items()}
    if isinstance(data, list):
        return [substitute(v, values, strict=strict, label=label, problems=problems, path=(*path, i))
                for i, v in enumerate(data)]
    if not isinstance(data, str):
        return data

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        if strict:
            problems.append(Problem(label, _format_key(path),
                                    f"{{{{ {key} }}}} is not defined; defined here: {', '.join(sorted(values))}"))
        return match.group(0)

    return _PLACEHOLDER.sub(fill, data)


def _precision_text(value: Any) -> str:
    """``{{ precisions }}``: the canonical names of a spec's ``precision`` value, as text."""
    given = value if isinstance(value, list) else [value]
    names: list[str] = []
    for item in given:
        try:
            names.append(precisions.canonical(str(item)))
        except precisions.PrecisionError:
            names.append(str(item))  # the schema check reports it
    return precisions.human_list(list(dict.fromkeys(names)))


# --- spec files -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecSource:
    """Where one package is defined: its spec file and, for a file with variants, the variant."""

    name: str
    path: Path
    label: str  # as shown in messages: specs/x.yaml, or specs/x.yaml (variant NAME)
    variant: dict[str, str] | None = None


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _variant_values(label: str, raw: Any, problems: list[Problem]) -> dict[str, dict[str, str]]:
    if not isinstance(raw, dict) or not raw:
        problems.append(Problem(label, VARIANTS_KEY, "must be a mapping of package name: {key: value, ...}"))
        return {}
    out: dict[str, dict[str, str]] = {}
    for name, values in raw.items():
        key = f"{VARIANTS_KEY}.{name}"
        if not (isinstance(name, str) and re.match(NAME_PATTERN, name) and len(name) <= 100):
            problems.append(Problem(label, key, f"{name!r} is not a package name; use lower-case letters, digits, '.' and '-'"))
            continue
        values = values or {}
        if not isinstance(values, dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float))
                                                   and not isinstance(v, bool) for k, v in values.items()):
            problems.append(Problem(label, key, "must map names to strings, e.g. {precision: fp32}"))
            continue
        reserved = sorted({"name", "precisions"} & set(values))
        if reserved:
            problems.append(Problem(label, key, f"{', '.join(reserved)} is filled in by modelpkg; choose another key"))
            continue
        out[name] = {k: str(v) for k, v in values.items()}
    return out


def file_sources(path: Path, root: Path) -> list[SpecSource]:
    """The packages one spec file defines (one, or one per variant)."""
    label = _relative(path, root)
    data = read_yaml(path, label)
    if isinstance(data, dict) and VARIANTS_KEY in data:
        problems: list[Problem] = []
        if "name" in data:
            problems.append(Problem(label, "name", "a file with variants names its packages by the variant keys; drop name"))
        variants = _variant_values(label, data[VARIANTS_KEY], problems)
        if problems:
            raise SpecError(problems)
        return [SpecSource(name, path, f"{label} (variant {name})", values) for name, values in variants.items()]
    return [SpecSource(path.stem, path, label)]


def spec_files(root: Path) -> list[Path]:
    return sorted((root / SPECS_DIR).glob("*.yaml"))


def spec_index(root: Path) -> tuple[dict[str, SpecSource], list[Problem]]:
    """Every package name of the repository with its source, and the problems of files that
    could not be read (so one broken file does not hide the others)."""
    index: dict[str, SpecSource] = {}
    problems: list[Problem] = []
    for path in spec_files(root):
        try:
            sources = file_sources(path, root)
        except SpecError as exc:
            problems += exc.problems
            continue
        for source in sources:
            other = index.get(source.name)
            if other is not None:
                problems.append(Problem(source.label, "", f"package {source.name!r} is also defined by {other.label}; "
                                        "each package name is defined once"))
                continue
            index[source.name] = source
    return index, problems


def load_filesets(root: Path) -> dict[str, tuple[FileEntry, ...]]:
    """``specs/shared/filesets.yaml``: name -> files entries (empty when the file is absent)."""
    path = root / FILESETS_FILE
    if not path.is_file():
        return {}
    data = read_yaml(path, FILESETS_FILE)
    try:
        return TypeAdapter(dict[str, tuple[FileEntry, ...]]).validate_python(data)
    except ValidationError as exc:
        raise SpecError(_problems(FILESETS_FILE, exc.errors())) from None


def fileset_entries(spec: Spec, root: Path) -> list[tuple[str, FileEntry]]:
    """(origin key, entry) of every ``files`` entry the spec's ``filesets`` name, in order."""
    if not spec.filesets:
        return []
    sets = load_filesets(root)
    out: list[tuple[str, FileEntry]] = []
    problems: list[Problem] = []
    for i, name in enumerate(spec.filesets):
        if name not in sets:
            close = difflib.get_close_matches(name, list(sets), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(Problem(spec.spec_label, f"filesets[{i}]",
                                    f"no file set {name!r} in {FILESETS_FILE}{hint} Defined: {', '.join(sorted(sets)) or 'none'}"))
            continue
        out += [(f"filesets[{i}] ({name}: {FILESETS_FILE}[{j}])", entry) for j, entry in enumerate(sets[name])]
    if problems:
        raise SpecError(problems)
    return out


def parse_source(source: SpecSource, root: Path) -> Spec:
    """Read, substitute and validate the package ``source`` describes."""
    data = read_yaml(source.path, source.label)
    if not isinstance(data, dict):
        raise SpecError([Problem(source.label, "", "the spec must be a YAML mapping with keys name, title, framework, ...")])
    problems: list[Problem] = []
    if source.variant is not None:
        data = {k: v for k, v in data.items() if k != VARIANTS_KEY}
        data["name"] = source.name
        data = substitute(data, {**source.variant, "name": source.name}, strict=False,
                          label=source.label, problems=problems)
    values = {**(source.variant or {}), "name": str(data.get("name", source.name)),
              "precisions": _precision_text(data.get("precision"))}
    data = substitute(data, values, strict=True, label=source.label, problems=problems)
    if problems:
        raise SpecError(problems)
    spec = validate_spec(data, source.label)
    if source.variant is None and spec.name != source.path.stem:
        raise SpecError([Problem(source.label, "name",
                                 f"{spec.name!r} must equal the file name; rename the file to specs/{spec.name}.yaml "
                                 f"or set name: {source.path.stem}")])
    return spec
