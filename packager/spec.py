"""The spec schema as frozen pydantic models, and its error messages.

Defaults live here and only here. ``validate_spec`` turns one package's data (read from YAML
by ``packager.specfile``, variants and substitutions applied) into a ``Spec`` or raises
``SpecError`` listing every problem with its key path and what is allowed (unknown keys get a
"did you mean ...?"). Checks that need the repository (sources exist, templates exist,
destinations do not collide) happen when a package is planned (``packager.plan``).
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, Union

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

from models.common import precisions
from packager.conventions import OUTPUT_VARS, is_path_var, is_proxy_var
from packager.errors import Problem, SpecError

NAME_PATTERN = r"^[a-z0-9][a-z0-9.-]*$"
PART_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
# The key of one image in ``images`` (`modelpkg image build NAME --image KEY`, the Dockerfile name)
IMAGE_KEY_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"
ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
IMAGE_NAME_PATTERN = r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
# An image reference as docker/buildah take it: [host[:port]/]path[:tag][@sha256:digest]. It
# reaches a Dockerfile (ARG BASE_IMAGE) and a shell script (build.sh), so nothing else is allowed.
IMAGE_REF_PATTERN = (r"^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
                     r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$")
# An absolute path inside the image (WORKDIR): plain path characters only.
IMAGE_PATH_PATTERN = r"^/[A-Za-z0-9._/-]*$"
# Characters allowed in the path of a file the package ships (its name reaches tar, the
# MANIFEST, shell scripts and docs): letters, digits and ._+-@ within a segment.
SAFE_PATH_PATTERN = re.compile(r"^[A-Za-z0-9._+@-]+(/[A-Za-z0-9._+@-]+)*$")
MAX_PATH = 1024
MAX_SEGMENT = 255
MAX_GLOB = 256
# Newlines are allowed only in these (Markdown) values; no other control character anywhere.
MULTILINE_KEYS = ("description", "docs.vars")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

Framework = Literal["tensorflow", "pytorch"]
Mode = Literal["training", "inference"]
Hardware = Literal["xeon", "xeon-spr", "gaudi"]


def _known_precision(value: str) -> str:
    """Any spelling ``models/common/precisions.py`` knows (kept as written; see ``precisions``)."""
    try:
        precisions.canonical(value)
    except precisions.PrecisionError:
        spellings = [*precisions.CANONICAL, *precisions.ALIASES]
        message = (f"{value!r} is not allowed; use one of {', '.join(precisions.CANONICAL)} "
                   f"(aliases: {', '.join(f'{a}={c}' for a, c in precisions.ALIASES.items())})")
        close = difflib.get_close_matches(str(value).lower(), spellings, n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {close[0]!r}?"
        raise ValueError(message) from None
    return value


Precision = Annotated[str, AfterValidator(_known_precision)]


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
    joined = "/".join(parts)
    if len(joined) > MAX_PATH or any(len(p) > MAX_SEGMENT for p in parts):
        raise ValueError(f"path {joined[:60]!r}... is too long (at most {MAX_PATH} characters, "
                         f"{MAX_SEGMENT} per folder or file name)")
    if not SAFE_PATH_PATTERN.match(joined):
        bad = sorted({c for c in joined if not re.match(r"[A-Za-z0-9._+@/-]", c)})
        raise ValueError(f"path {joined!r} has characters a package path may not have ({', '.join(map(repr, bad))}); "
                         "use letters, digits and . _ + @ -")
    return joined


RelPath = Annotated[str, AfterValidator(_rel_path)]
PACKAGE_ROOT = "."  # a files destination: the folder's contents go to the package root


def _destination(value: str) -> str:
    """A path inside the package, or ``.`` (the package root itself: a folder's contents)."""
    text = str(value).strip()
    if text and not text.startswith("/") and not PurePosixPath(text.replace("\\", "/")).parts:  # ".", "./", "./."
        return PACKAGE_ROOT
    return _rel_path(text)


DestPath = Annotated[str, AfterValidator(_destination)]
EnvName = Annotated[str, Field(pattern=ENV_PATTERN)]
PartName = Annotated[str, Field(pattern=PART_PATTERN)]
ImageKey = Annotated[str, Field(pattern=IMAGE_KEY_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Model):
    """``source`` (file or folder, repo-relative) copied to ``<name>/<destination>``."""

    source: RelPath
    destination: DestPath  # "." = the package root (a folder's contents)
    exclude: tuple[Annotated[str, Field(min_length=1, max_length=MAX_GLOB)], ...] = Field(default=(), max_length=100)


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
    base_image: str = Field(default="debian:bookworm-slim", pattern=IMAGE_REF_PATTERN, max_length=255)
    # the package whose image this one builds on: base_image defaults to its image reference
    base_package: str | None = Field(default=None, pattern=NAME_PATTERN)
    # pins base_image: `modelpkg image build` fails, naming both digests, when the base image it
    # would build on has another manifest digest (checked for the spec's own base_image)
    base_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    dockerfile: RelPath  # default dockerfiles/<name>.Dockerfile (filled in by Spec)
    parts: tuple[PartName, ...] = Field(min_length=1)
    build_args: dict[EnvName, str] = {}
    workdir: str = Field(pattern=IMAGE_PATH_PATTERN, max_length=MAX_PATH)  # default /workspace/<name> (filled in by Spec)
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
        for key, text in value.items():
            if '"' in text or "\\" in text:
                raise ValueError(f"{key}: the value may not hold \" or \\ (it is written into the Dockerfile)")
        proxies = sorted(name for name in value if is_proxy_var(name))
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
    """What ``run.sh`` of a wrapper package needs (rendered by templates/wrapper/run.sh.j2).

    The variables it checks, mounts and passes in come from the quickstarts' ``env`` (see
    ``Spec.path_vars``/``Spec.forward_env``); ``extra_env`` names more to pass in when set.
    """

    default_script: str = Field(min_length=1)
    extra_env: tuple[EnvName, ...] = ()
    shm_size: str | None = Field(default=None, pattern=r"^[0-9]+[bkmgBKMG]?$")


class Wrapper(_Model):
    """The container ("wrapper") package: build.sh, run.sh, the Dockerfile, the model package."""

    enabled: bool = False
    run: WrapperRun | None = None


class Docs(_Model):
    readme: bool = True
    parts: tuple[PartName, ...] = Field(min_length=1)
    vars: dict[str, Any] = {}
    output: RelPath  # default docs/packages/<name>.md (filled in by Spec)

    @field_validator("vars")
    @classmethod
    def _no_moved_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "env_descriptions" in value:
            raise ValueError("env_descriptions moved to the spec's top-level env_help (one description per variable)")
        return value


def _one_line_text(value: str) -> str:
    value = " ".join(str(value).split())
    if not value:
        raise ValueError("must not be empty")
    return value


OneLine = Annotated[str, AfterValidator(_one_line_text)]


def _one_line_title(value: str) -> str:
    value = value.strip()
    if not value or "\n" in value:
        raise ValueError("must be one non-empty line (it becomes the README title and an image label)")
    return value


OneLineTitle = Annotated[str, AfterValidator(_one_line_title), Field(max_length=200)]


def control_characters(data: Any, path: str = "") -> list[tuple[str, str]]:
    """(key path, message) for each string holding a control character (a newline outside
    ``MULTILINE_KEYS``): such values would add lines to a generated Dockerfile or script, or
    cut an archive member name short."""
    found: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            found += control_characters(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += control_characters(value, f"{path}[{index}]")
    elif isinstance(data, str):
        multiline = any(path == k or path.startswith(k + ".") or path.startswith(k + "[") for k in MULTILINE_KEYS)
        text = data.replace("\n", "") if multiline else data
        match = _CONTROL.search(text) or (None if multiline else re.search("\n", text))
        if match:
            found.append((path, f"holds the control character {match.group(0)!r}; "
                                "write it on one line without control characters"))
    return found


class Spec(_Model):
    name: str = Field(pattern=NAME_PATTERN, max_length=100)
    title: OneLineTitle
    framework: Framework
    precision: Precision | Annotated[tuple[Precision, ...], Field(min_length=1)]
    mode: Mode
    hardware: Hardware
    description: str = ""
    filesets: tuple[PartName, ...] = ()  # named file lists of specs/shared/filesets.yaml, packed first
    files: tuple[FileEntry, ...] = ()
    quickstart: tuple[Quickstart, ...] = ()
    image: Image | None = None
    # several images of one package, by key; the first is the default (``image`` then is a
    # copy of it, filled in by ``validate_spec``). A spec gives ``image`` or ``images``.
    images: dict[ImageKey, Image] = Field(default={}, max_length=16)
    wrapper: Wrapper = Wrapper()
    docs: Docs | None = None
    licenses: tuple[RelPath, ...] = ()
    # what each quickstart variable is, written once: README, run.sh and messages use it
    env_help: dict[EnvName, OneLine] = {}

    _label: str | None = PrivateAttr(default=None)
    _image_key: str | None = PrivateAttr(default=None)  # which of ``images`` ``image`` is

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
        images = data.get("images")
        if isinstance(images, dict):
            data["images"] = {
                key: {"dockerfile": f"dockerfiles/{name}-{key}.Dockerfile", "workdir": f"/workspace/{name}", **block}
                if isinstance(block, dict) else block
                for key, block in images.items()
            }
        docs = data.get("docs")
        if isinstance(docs, dict):
            data["docs"] = {"output": f"docs/packages/{name}.md", **docs}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "Spec":
        framework_has = precisions.supported(self.framework)
        unsupported = [p for p in self.precisions if p not in framework_has]
        if unsupported:
            raise ValueError(
                f"precision {', '.join(unsupported)} is not run by the {self.framework} code; "
                f"{self.framework} packages support {', '.join(framework_has)}"
            )
        if self.images and self.image is not None:
            raise ValueError("give image (one image) or images (several, by key), not both")
        if self.images:
            for what, values in (("dockerfile", [i.dockerfile for i in self.images.values()]),
                                 ("reference", [i.reference for i in self.images.values()])):
                dupes = sorted({v for v in values if values.count(v) > 1})
                if dupes:
                    raise ValueError(f"images: two images have the same {what} ({', '.join(dupes)}); "
                                     f"give each image its own {'name:tag' if what == 'reference' else 'dockerfile'}")
        if self.wrapper.enabled and self.image is None and not self.images:
            raise ValueError("wrapper.enabled needs an image section (the wrapper ships the Dockerfile)")
        if self.wrapper.enabled and self.wrapper.run is None:
            raise ValueError("wrapper.enabled needs wrapper.run (default_script, required_env, mounts, ...)")
        return self

    @property
    def spec_label(self) -> str:
        """The spec file as shown in messages (repo-relative; ``FILE (variant NAME)`` for one
        package of a file with ``variants``)."""
        return self._label or f"specs/{self.name}.yaml"

    @property
    def image_key(self) -> str | None:
        """The key (in ``images``) of the image ``image`` is; None for a spec with one ``image``."""
        return self._image_key

    @property
    def image_key_path(self) -> str:
        """Where ``image`` is written in the spec, for messages: ``image`` or ``images.KEY``."""
        return "image" if self._image_key is None else f"images.{self._image_key}"

    def with_image(self, key: str) -> "Spec":
        """This spec with ``image`` = ``images[key]`` (what renders that image's Dockerfile,
        builds and runs it)."""
        if key not in self.images:
            known = ", ".join(self.images) or "none (the spec has one image section)"
            raise KeyError(f"no image {key!r} in {self.spec_label}; images: {known}")
        spec = self.model_copy(update={"image": self.images[key]})
        spec._image_key = key
        return spec

    @property
    def precisions(self) -> tuple[str, ...]:
        """The canonical precision names (``bfloat16`` -> ``bf16``), in spec order."""
        given = self.precision if isinstance(self.precision, tuple) else (self.precision,)
        return tuple(dict.fromkeys(precisions.canonical(p) for p in given))

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

    @property
    def common_required_env(self) -> tuple[str, ...]:
        """The variables every quickstart needs (what ``run.sh`` asks for before any script)."""
        required, _ = self.all_env
        return tuple(v for v in required if all(v in qs.env.required for qs in self.quickstart))

    @property
    def path_vars(self) -> tuple[str, ...]:
        """Quickstart variables that name host paths: mounted at the same path in containers."""
        required, optional = self.all_env
        return tuple(v for v in (*required, *optional) if is_path_var(v))

    @property
    def output_vars(self) -> tuple[str, ...]:
        return tuple(v for v in self.path_vars if v in OUTPUT_VARS)

    @property
    def forward_env(self) -> tuple[str, ...]:
        """Variables passed into a container when set: the quickstarts' own, then extras."""
        required, optional = self.all_env
        extra = self.wrapper.run.extra_env if self.wrapper.run is not None else ()
        return tuple(dict.fromkeys((*required, *optional, *extra)))

    def describe_env(self, var: str) -> str:
        """``env_help[var]``, or a generic phrase for a variable the spec does not describe."""
        return self.env_help.get(var, f"value for {var}")

    def summary(self) -> dict[str, Any]:
        """The resolved spec as plain data (defaults filled in), as ``show`` prints it."""
        data = self.model_dump(mode="json")
        if self.images:
            del data["image"]  # a copy of the first of images
        else:
            del data["images"]
        return data


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
    if kind == "literal_error" and isinstance(error.get("input"), (list, dict)):
        expected = error.get("ctx", {}).get("expected", "")
        return _format_loc(loc), f"must be one value, not a {type(error['input']).__name__}; use one of {expected}"
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
            IMAGE_KEY_PATTERN: "an image key such as cpu or hpu: lower-case letters, digits and '-', at most 40",
            ENV_PATTERN: "an environment variable name: letters, digits and '_', not starting with a digit",
            IMAGE_NAME_PATTERN: "an image repository such as intel/language-modeling (lower case)",
            IMAGE_REF_PATTERN: "an image reference such as debian:bookworm-slim or registry:5000/team/img:tag@sha256:...",
            IMAGE_PATH_PATTERN: "an absolute path in the image of letters, digits and . _ - /, e.g. /workspace/<name>",
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


def _problems(label: str, errors: list[dict[str, Any]]) -> list[Problem]:
    """One ``Problem`` per mistake, although pydantic may report one mistake twice:

    - a misspelt key is both "unknown key 'tga'" and "tag is required": keep the first, which
      already says "did you mean 'tag'?";
    - a bad scalar for a field that also takes a list (``precision``) fails both union members:
      keep the scalar's own error ("is not a precision; use one of ..."), drop "must be a list"
      (and for a list, the reverse: keep the per-item error).
    """
    described = [(error, *_describe(error)) for error in errors]
    typo_for: set[str] = set()  # key paths of required keys that a misspelt key stands for
    literal_at: set[str] = set()
    for error, key, message in described:
        if error["type"] == "extra_forbidden" and "did you mean '" in message:
            suggestion = message.split("did you mean '", 1)[1].split("'", 1)[0]
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            typo_for.add(f"{parent}.{suggestion}" if parent else suggestion)
        if error["type"] not in ("tuple_type", "list_type") and not isinstance(error.get("input"), (list, dict)):
            literal_at.add(key)  # a scalar's own error (bad value, wrong type)
    problems: list[Problem] = []
    for error, key, message in described:
        kind = error["type"]
        if (kind in ("literal_error", "string_type", "value_error") and isinstance(error.get("input"), (list, tuple))
                and any(other == key and e is not error or other.startswith(key + "[") for e, other, _ in described)):
            continue  # the per-item error of the list form says which item is wrong
        if kind == "missing" and key in typo_for:
            continue
        if kind in ("tuple_type", "list_type") and key in literal_at:
            continue
        problem = Problem(label, key, message)
        if problem not in problems:
            problems.append(problem)
    return problems


def validate_spec(data: Any, label: str) -> Spec:
    """One package's data as a ``Spec``; ``SpecError`` with every problem, named by ``label``."""
    if not isinstance(data, dict):
        raise SpecError([Problem(label, "", "the spec must be a YAML mapping with keys name, title, framework, ...")])
    controls = control_characters(data)
    if controls:
        raise SpecError([Problem(label, key, message) for key, message in controls])
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        # never an empty list: an error the dedup rules would all drop is still reported
        problems = _problems(label, exc.errors()) or [Problem(label, *_describe(e)) for e in exc.errors()]
        raise SpecError(problems) from None
    if spec.images:  # the first image is the default one: ``image`` is that image
        key = next(iter(spec.images))
        spec = spec.with_image(key)
    spec._label = label
    return spec
