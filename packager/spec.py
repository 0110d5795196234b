"""The spec schema (``specs/<name>.yaml``) as frozen pydantic models, and YAML parsing.

Defaults live here and only here. ``parse_spec`` turns a YAML file into a ``Spec`` or raises
``SpecError`` listing every problem with its key path and what is allowed (unknown keys get a
"did you mean ...?"). Checks that need the file system (sources exist, templates exist,
destinations do not collide) live in ``packager.checks``.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from packager.errors import Problem, SpecError

NAME_PATTERN = r"^[a-z0-9][a-z0-9.-]*$"
PART_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
IMAGE_NAME_PATTERN = r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
PROXY_NAMES = frozenset(
    n for base in ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy") for n in (base, base.upper())
)

Framework = Literal["tensorflow", "pytorch"]
Precision = Literal["fp32", "bfloat16", "bf16", "avx-fp32", "bf32", "fp16", "int8", "mixed"]
Mode = Literal["training", "inference"]
Hardware = Literal["xeon", "xeon-spr", "gaudi"]


def _rel_path(value: str) -> str:
    """A path relative to the repository root: not absolute, no ``..``, normalised to posix."""
    text = str(value).strip()
    if not text:
        raise ValueError("path is empty; write a path relative to the repository root")
    if text.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:[\\/]", text):
        raise ValueError(f"path {text!r} is absolute; write it relative to the repository root")
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if ".." in parts:
        raise ValueError(f"path {text!r} contains '..'; write it from the repository root without '..'")
    parts = tuple(p for p in parts if p != ".")
    if not parts:
        raise ValueError(f"path {text!r} is the repository root itself; name a file or folder in it")
    return "/".join(parts)


RelPath = Annotated[str, AfterValidator(_rel_path)]
EnvName = Annotated[str, Field(pattern=ENV_PATTERN)]
PartName = Annotated[str, Field(pattern=PART_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Model):
    """``source`` (file or folder, repo-relative) copied to ``<name>/<destination>``."""

    source: RelPath
    destination: RelPath
    exclude: tuple[str, ...] = ()


class QuickstartEnv(_Model):
    required: tuple[EnvName, ...] = ()
    optional: tuple[EnvName, ...] = ()


class Quickstart(_Model):
    """A quickstart script, copied to ``<name>/quickstart/<basename>``."""

    script: RelPath
    description: str = Field(min_length=1)
    env: QuickstartEnv = QuickstartEnv()

    @field_validator("description")
    @classmethod
    def _one_line(cls, value: str) -> str:
        value = value.strip()
        if "\n" in value:
            raise ValueError("description must be one line (it becomes a table row in the README)")
        return value

    @property
    def basename(self) -> str:
        return PurePosixPath(self.script).name


class Image(_Model):
    name: str = Field(pattern=IMAGE_NAME_PATTERN)
    tag: str = Field(pattern=TAG_PATTERN)
    base_image: str = Field(default="debian:bookworm-slim", min_length=1)
    dockerfile: RelPath  # default dockerfiles/<name>.Dockerfile (filled in by Spec)
    parts: tuple[PartName, ...] = Field(min_length=1)
    build_args: dict[EnvName, str] = {}
    workdir: str  # default /workspace/<name> (filled in by Spec)
    env: dict[EnvName, str] = {}

    @field_validator("workdir")
    @classmethod
    def _absolute_workdir(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"workdir {value!r} must be an absolute path inside the image, e.g. /workspace/<name>")
        return value

    @field_validator("env", "build_args")
    @classmethod
    def _no_proxies(cls, value: dict[str, str]) -> dict[str, str]:
        proxies = sorted(set(value) & PROXY_NAMES)
        if proxies:
            raise ValueError(
                f"{', '.join(proxies)} must not be set in the spec: proxies are passed at build time "
                "(docker/buildah predefined build args) and never stored in the image or Dockerfile"
            )
        return value

    @property
    def reference(self) -> str:
        """``name:tag``."""
        return f"{self.name}:{self.tag}"


class WrapperRun(_Model):
    """What ``run.sh`` of a wrapper package needs (rendered by templates/wrapper/run.sh.j2)."""

    default_script: str = Field(min_length=1)
    required_env: tuple[EnvName, ...] = ()
    mounts: tuple[EnvName, ...] = ()
    forward_env: tuple[EnvName, ...] = ()
    shm_size: str | None = Field(default=None, pattern=r"^[0-9]+[bkmgBKMG]?$")


class Wrapper(_Model):
    """The container ("wrapper") package of seed 001."""

    enabled: bool = False
    base_image_spec: str | None = Field(default=None, pattern=NAME_PATTERN)
    run: WrapperRun | None = None
    vars: dict[str, Any] = {}


class Docs(_Model):
    readme: bool = True
    parts: tuple[PartName, ...] = Field(min_length=1)
    vars: dict[str, Any] = {}
    output: RelPath  # default docs/packages/<name>.md (filled in by Spec)


class Spec(_Model):
    name: str = Field(pattern=NAME_PATTERN, max_length=100)
    title: str = Field(min_length=1)
    framework: Framework
    precision: Precision | tuple[Precision, ...]
    mode: Mode
    hardware: Hardware
    description: str = ""
    files: tuple[FileEntry, ...] = ()
    quickstart: tuple[Quickstart, ...] = ()
    image: Image | None = None
    wrapper: Wrapper = Wrapper()
    docs: Docs | None = None
    licenses: tuple[RelPath, ...] = ()

    _root: Path | None = PrivateAttr(default=None)
    _spec_file: Path | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        """Defaults that depend on the name: dockerfile path, workdir, docs output."""
        if not isinstance(data, dict):
            return data
        name = data.get("name")
        if not (isinstance(name, str) and re.match(NAME_PATTERN, name)):
            return data
        data = dict(data)
        image = data.get("image")
        if isinstance(image, dict):
            data["image"] = {
                "dockerfile": f"dockerfiles/{name}.Dockerfile",
                "workdir": f"/workspace/{name}",
                **image,
            }
        docs = data.get("docs")
        if isinstance(docs, dict):
            data["docs"] = {"output": f"docs/packages/{name}.md", **docs}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "Spec":
        if self.wrapper.enabled and self.image is None:
            raise ValueError("wrapper.enabled needs an image section (the wrapper ships the Dockerfile)")
        if self.wrapper.enabled and self.wrapper.run is None:
            raise ValueError("wrapper.enabled needs wrapper.run (default_script, required_env, mounts, ...)")
        return self

    # --- where the spec came from (set by parse_spec; used to find sources) -------------
    @property
    def root(self) -> Path | None:
        return self._root

    @property
    def spec_file(self) -> Path | None:
        return self._spec_file

    @property
    def spec_label(self) -> str:
        """The spec path as shown in messages (repo-relative when possible)."""
        if self._spec_file is None:
            return f"specs/{self.name}.yaml"
        if self._root is not None:
            try:
                return self._spec_file.relative_to(self._root).as_posix()
            except ValueError:
                pass
        return str(self._spec_file)

    @property
    def precisions(self) -> tuple[str, ...]:
        return self.precision if isinstance(self.precision, tuple) else (self.precision,)

    @property
    def all_env(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(required, optional) env var names over all quickstarts, in first-seen order."""
        required: dict[str, None] = {}
        optional: dict[str, None] = {}
        for qs in self.quickstart:
            required.update(dict.fromkeys(qs.env.required))
        for qs in self.quickstart:
            optional.update(dict.fromkeys(v for v in qs.env.optional if v not in required))
        return tuple(required), tuple(optional)

    def summary(self) -> dict[str, Any]:
        """The resolved spec as plain data (defaults filled in), as ``show`` prints it."""
        data = self.model_dump(mode="json")
        return data


# --- YAML loading -------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key written twice in one mapping (YAML keeps the last silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is written twice in one mapping; keep one", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        else:
            out += ("." if out else "") + str(item)
    return out


def _unwrap_models(annotation: Any) -> list[type[BaseModel]]:
    """Pydantic model classes reachable from an annotation (Optional, tuple[...], dict values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap_models(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType, tuple, list, dict) or origin is not None:
        for arg in typing.get_args(annotation):
            found += _unwrap_models(arg)
    return found


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class whose field list applies at ``loc`` (for "did you mean")."""
    model: type[BaseModel] | None = Spec
    for item in loc:
        if isinstance(item, int) or model is None:
            continue
        field = model.model_fields.get(str(item))
        if field is None:
            return None
        models = _unwrap_models(field.annotation)
        model = models[0] if models else None
    return model


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    loc = tuple(x for x in error["loc"] if not (isinstance(x, str) and x.startswith(("function-", "literal["))))
    # pydantic adds the union member tag (e.g. 'tuple[...]') to the loc of union errors; drop it
    loc = tuple(x for x in loc if not (isinstance(x, str) and ("[" in x or x in {"str", "list", "tuple"})))
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        model = _model_at(loc[:-1])
        allowed = sorted(model.model_fields) if model is not None else []
        message = f"unknown key {key!r}"
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {close[0]!r}?"
        if allowed:
            message += f" (allowed: {', '.join(allowed)})"
        return _format_loc(loc), message
    if kind == "missing":
        return _format_loc(loc), "is required but missing"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        message = f"{error['input']!r} is not allowed; use one of {expected}"
        values = re.findall(r"'([^']*)'", expected)
        close = difflib.get_close_matches(str(error["input"]), values, n=1, cutoff=0.6)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        return _format_loc(loc), message
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        hint = {
            NAME_PATTERN: "lower-case letters, digits, '.' and '-', starting with a letter or digit",
            PART_PATTERN: "a template part name: lower-case letters, digits, '_' and '-'",
            ENV_PATTERN: "an environment variable name: letters, digits and '_', not starting with a digit",
            IMAGE_NAME_PATTERN: "an image repository such as intel/language-modeling (lower case)",
            TAG_PATTERN: "an image tag: letters, digits, '_', '.', '-', at most 128 characters",
        }.get(pattern, f"a value matching {pattern}")
        return _format_loc(loc), f"{error['input']!r} is not allowed; use {hint}"
    plain = {
        "tuple_type": "must be a list, e.g. [a, b] or one '- item' per line",
        "list_type": "must be a list, e.g. [a, b] or one '- item' per line",
        "string_type": f"must be a string, got {error.get('input')!r}; quote it in YAML",
        "dict_type": "must be a mapping of key: value",
        "model_type": "must be a mapping of key: value",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "too_short": "must not be empty",
        "string_too_short": "must not be empty",
    }
    if kind in plain:
        return _format_loc(loc), plain[kind]
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return _format_loc(loc), message


def _yaml_message(exc: yaml.YAMLError) -> str:
    """One line: ``line L, column C: what is wrong`` (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or not problem:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    what = f"{problem} ({context})" if context and context != problem else problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}"


def _problems(label: str, errors: list[dict[str, Any]]) -> list[Problem]:
    """One ``Problem`` per mistake, although pydantic may report one mistake twice:

    - a misspelt key is both "unknown key 'tga'" and "tag is required": keep the first, which
      already says "did you mean 'tag'?";
    - a bad scalar for a field that also takes a list (``precision``) fails both union members:
      keep the "not allowed; use one of ..." error, drop "must be a list" (and for a list, the
      reverse: keep the per-item error).
    """
    described = [(error, *_describe(error)) for error in errors]
    typo_for: set[str] = set()  # key paths of required keys that a misspelt key stands for
    literal_at: set[str] = set()
    for error, key, message in described:
        if error["type"] == "extra_forbidden" and "did you mean '" in message:
            suggestion = message.split("did you mean '", 1)[1].split("'", 1)[0]
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            typo_for.add(f"{parent}.{suggestion}" if parent else suggestion)
        if error["type"] == "literal_error" and not isinstance(error.get("input"), (list, dict)):
            literal_at.add(key)
    problems: list[Problem] = []
    for error, key, message in described:
        kind = error["type"]
        if kind == "literal_error" and isinstance(error.get("input"), (list, dict)):
            continue  # the per-item error of the list form says which item is wrong
        if kind == "missing" and key in typo_for:
            continue
        if kind in ("tuple_type", "list_type") and key in literal_at:
            continue
        problem = Problem(label, key, message)
        if problem not in problems:
            problems.append(problem)
    return problems


def parse_spec(path: Path, root: Path | None = None) -> Spec:
    """Read and validate one spec file (schema only); raise ``SpecError`` with every problem."""
    label = path.as_posix()
    if root is not None:
        try:
            label = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem(label, "", f"cannot read the spec: {exc.strerror or exc}")]) from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError([Problem(label, "", f"not valid YAML: {_yaml_message(exc)}")]) from exc
    if not isinstance(data, dict):
        raise SpecError([Problem(label, "", "the spec must be a YAML mapping with keys name, title, framework, ...")])
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems(label, exc.errors())) from None
    if spec.name != path.stem:
        raise SpecError(
            [Problem(label, "name", f"{spec.name!r} must equal the file name; rename the file to specs/{spec.name}.yaml or set name: {path.stem}")]
        )
    spec._root = root
    spec._spec_file = path
    return spec
