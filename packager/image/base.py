"""The small protocol every image builder implements, and the data passed to it.

Builders are plain classes with no Typer in them: `build()` turns a prepared build context
into an image, `run()` runs a command in an image. Console output goes through the `log`
callable (one line at a time) so the CLI decides how to show progress and tests can capture it.
"""

from __future__ import annotations

import collections
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from packager.conventions import is_proxy_var, mask_credentials
from packager.errors import ModelpkgError

LogFn = Callable[[str], None]

#: How many output lines a failed build shows.
TAIL_LINES = 25


class ImageError(ModelpkgError):
    """A failure the user can act on; the message says what to do. Exit code 1."""

    exit_code = 1


class BuilderUnavailableError(ImageError):
    """The requested builder (or, for `auto`, any builder) cannot be used here."""


class ImageUsageError(BuilderUnavailableError):
    """A wrong option value (unknown builder, isolation): exit 2 like other usage errors."""

    exit_code = 2


class ImageBuildError(ImageError):
    """A build step failed. Carries the failing step and the last output lines."""

    def __init__(self, builder: str, step: str | None, tail: Iterable[str], reason: str = ""):
        self.builder = builder
        self.step = step
        self.tail = list(tail)
        self.reason = reason
        where = f"at step: {step}" if step else "before the first step"
        lines = [f"{builder} build failed {where}"]
        if reason:
            lines.append(f"error: {reason}")
        if self.tail:
            lines.append(f"last {len(self.tail)} output lines:")
            lines.extend("  " + line for line in self.tail)
        super().__init__("\n".join(lines))


class ImageRunError(ImageError):
    """Starting or cleaning up a container failed (not: the script inside exited non-zero)."""


@dataclass(frozen=True)
class Secret:
    """A build secret: `id` as the Dockerfile's `RUN --mount=type=secret,id=...` names it,
    `src` the host file. Never copied into the context or a layer."""

    id: str
    src: Path

    @classmethod
    def parse(cls, text: str) -> Secret:
        """Parse the docker/buildah syntax `id=NAME,src=PATH` (`source=` also accepted)."""
        fields: dict[str, str] = {}
        for item in text.split(","):
            key, sep, value = item.partition("=")
            if not sep or not value:
                raise ImageError(f"--secret {text!r}: expected id=NAME,src=FILE")
            fields[key.strip()] = value.strip()
        unknown = set(fields) - {"id", "src", "source", "type"}
        if unknown:
            raise ImageError(
                f"--secret {text!r}: unknown field(s) {', '.join(sorted(unknown))}; "
                "expected id=NAME,src=FILE"
            )
        if fields.get("type", "file") != "file":
            raise ImageError(f"--secret {text!r}: only type=file secrets are supported")
        src = fields.get("src") or fields.get("source")
        if "id" not in fields or not src:
            raise ImageError(f"--secret {text!r}: expected id=NAME,src=FILE")
        path = Path(src).expanduser().resolve()
        if not path.is_file():
            raise ImageError(f"--secret {text!r}: {path} is not a file")
        return cls(id=fields["id"], src=path)

    def to_arg(self) -> str:
        return f"id={self.id},src={self.src}"


@dataclass(frozen=True)
class BuildRequest:
    """Everything a builder needs; the context dir already holds `dockerfile`."""

    context_dir: Path
    tag: str
    dockerfile: str = "Dockerfile"
    build_args: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[Secret, ...] = ()
    layers: bool = True  # reuse cached layers (False: buildah/docker --no-cache)
    pull: bool = False  # never contact a registry unless asked
    labels: Mapping[str, str] = field(default_factory=dict)  # set on the image (config only)
    timestamp: int | None = None  # SOURCE_DATE_EPOCH: created time and file times in new layers


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tag: str
    builder: str
    seconds: float


@dataclass(frozen=True)
class Layer:
    """One filesystem layer of a built image: its size and the instruction that made it."""

    size: int
    created_by: str


#: Archive formats of ``save``: a ``docker load``-able archive, or an OCI image layout archive.
ARCHIVE_FORMATS = ("docker", "oci")


@dataclass(frozen=True)
class Mount:
    host: Path
    container: str
    read_only: bool = False

    def to_arg(self) -> str:
        return f"{self.host}:{self.container}" + (":ro" if self.read_only else "")


@dataclass(frozen=True)
class RunRequest:
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    workdir: str | None = None  # None: the image's WORKDIR
    privileged: bool = False
    package: str | None = None  # the spec name, for "build it first" messages

    def build_hint(self, builder: str) -> str:
        return f"`modelpkg image build {self.package or 'NAME'} --builder {builder}`"


@runtime_checkable
class Builder(Protocol):
    name: str

    def build(self, request: BuildRequest, log: LogFn) -> BuildResult: ...

    def run(self, request: RunRequest, log: LogFn) -> int:
        """Run the command; returns its exit status."""
        ...

    def capture(self, image: str, command: Sequence[str]) -> str:
        """Run ``command`` in a throw-away container of ``image``; its stdout (ImageRunError
        when it exits non-zero)."""
        ...

    def image_digest(self, image: str) -> str | None:
        """The manifest digest (``sha256:...``) of a local image; None when it is not here."""
        ...

    def pull(self, image: str, log: LogFn) -> None: ...

    def layers(self, image: str) -> list[Layer]:
        """The image's filesystem layers, bottom first."""
        ...

    def save(self, image: str, dest: Path, fmt: str, log: LogFn) -> None:
        """Write ``image`` as an uncompressed archive in format ``fmt`` (ARCHIVE_FORMATS) to ``dest``."""
        ...

    def load(self, archive: Path, log: LogFn) -> list[str]:
        """Load an archive written by ``save`` (gzip-compressed or not); the names loaded."""
        ...


def printable_argv(argv: Iterable[str]) -> str:
    """``argv`` as a shell command a user can copy (quoted), with the values of proxy variables
    (``--build-arg``/``--env``/``-e`` NAME_proxy=...) hidden and the credentials of every other
    URL masked (``mask_credentials``)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            key = arg.partition("=")[0]
            if is_proxy_var(key) and "=" in arg:
                arg = f"{key}=***"
            hide_next = False
        elif arg in ("--build-arg", "--env", "-e"):
            hide_next = True
        out.append(mask_credentials(arg))
    return shlex.join(out)


# "STEP 3/12: RUN ..." (buildah; "[2/3] STEP 3/12: ..." in a multi-stage build) and
# "Step 3/12 : RUN ..." (docker classic builder); BuildKit's plain progress prints
# "#7 [3/12] RUN ...".
_STEP_RE = re.compile(r"^(?:(?:\[\d+/\d+\] )?STEP \d+(?:/\d+)?:|Step \d+/\d+ :|#\d+ \[[^\]]*\d+/\d+\])")


class OutputTracker:
    """Remembers the current build step and the last output lines for error messages."""

    def __init__(self, log: LogFn, tail_lines: int = TAIL_LINES):
        self._log = log
        self.step: str | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if _STEP_RE.match(line):
            self.step = line.strip()
            self.tail.clear()
        line = mask_credentials(line)
        self.tail.append(line)
        self._log(line)


def run_streamed_build(argv: list[str], builder: str, what: str, log: LogFn,
                       env: Mapping[str, str] | None = None) -> float:
    """Run a build command, streaming its output through ``log``; return the seconds taken.
    On failure raise ImageBuildError with the failing step and the last output lines."""
    log("$ " + printable_argv(argv))
    tracker = OutputTracker(log)
    start = time.monotonic()
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace", bufsize=1, env=None if env is None else dict(env),
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tracker.feed(line)
        code = proc.wait()
    if code != 0:
        raise ImageBuildError(builder, tracker.step, tracker.tail, f"{what} exited {code}")
    return time.monotonic() - start
