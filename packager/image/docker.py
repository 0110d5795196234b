"""Builds and runs through a Docker daemon with the Docker SDK (`docker` package).

The SDK drives the daemon's classic builder (`APIClient.build`), which has no BuildKit
features: no build secrets and no `RUN --mount=...`. When a build needs them (a `--secret`,
or a Dockerfile with `RUN --mount`), this builder hands the build to the Docker CLI with
BuildKit (`docker buildx build --load`, or `DOCKER_BUILDKIT=1 docker build`) and reads the
resulting image back through the SDK; without a Docker CLI it says so and suggests buildah.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from packager.conventions import mask_credentials
from packager.image.base import (
    BuilderUnavailableError,
    BuildRequest,
    BuildResult,
    ImageBuildError,
    ImageError,
    ImageRunError,
    ImageUsageError,
    Layer,
    LogFn,
    OutputTracker,
    RunRequest,
    run_streamed_build,
)

PING_TIMEOUT_S = 3

_BUILDKIT_ONLY = re.compile(r"^\s*RUN\s+(?:--\w+(?:=\S+)?\s+)*--mount=", re.MULTILINE | re.IGNORECASE)


def docker_client(timeout: int = PING_TIMEOUT_S) -> Any:
    """A `docker.DockerClient` for DOCKER_HOST (or the default socket) whose daemon answered
    a ping, or None."""
    try:
        import docker
    except ImportError:  # pragma: no cover - docker is a declared dependency
        return None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception:  # DockerException, but also requests/urllib3 errors and bad DOCKER_HOST values
        return None
    return client


def needs_buildkit(dockerfile_text: str) -> bool:
    """True when the Dockerfile uses BuildKit-only syntax the classic builder rejects."""
    return bool(_BUILDKIT_ONLY.search(dockerfile_text))


class DockerBuilder:
    name = "docker"

    def __init__(self, client: Any = None, cli: str | None = None):
        client = client if client is not None else docker_client()
        if client is None:
            host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            raise BuilderUnavailableError(
                f"no Docker daemon answers at {host}; start one, set DOCKER_HOST to a daemon "
                "that runs (e.g. DOCKER_HOST=ssh://user@host), or use --builder buildah"
            )
        self.client = client
        self.cli = cli if cli is not None else shutil.which("docker")

    # -- build -------------------------------------------------------------------------
    def build(self, request: BuildRequest, log: LogFn) -> BuildResult:
        dockerfile = Path(request.context_dir) / request.dockerfile
        if request.secrets or needs_buildkit(dockerfile.read_text()):
            return self._build_cli(request, log)
        return self._build_sdk(request, log)

    def _build_sdk(self, request: BuildRequest, log: LogFn) -> BuildResult:
        tracker = OutputTracker(log)
        start = time.monotonic()
        image_id: str | None = None
        stream = self.client.api.build(
            path=str(request.context_dir),
            dockerfile=request.dockerfile,
            tag=request.tag,
            buildargs=dict(request.build_args),
            rm=True,
            forcerm=True,
            pull=request.pull,
            nocache=not request.layers,
            labels=dict(request.labels) or None,
            decode=True,
        )
        for chunk in stream:
            if "stream" in chunk:
                for line in chunk["stream"].splitlines():
                    if line.strip():
                        tracker.feed(line)
            elif "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise ImageBuildError(self.name, tracker.step, tracker.tail, detail.strip())
            elif "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            elif "status" in chunk:
                tracker.feed(chunk["status"])
        if image_id is None:
            image_id = self.client.images.get(request.tag).id
        return BuildResult(image_id, request.tag, self.name, time.monotonic() - start)

    def cli_build_argv(self, request: BuildRequest, buildx: bool) -> list[str]:
        assert self.cli
        argv = [self.cli] + (["buildx", "build", "--load"] if buildx else ["build"])
        argv += ["--progress", "plain", "--file", str(Path(request.context_dir) / request.dockerfile)]
        argv += ["--tag", request.tag]
        if not request.layers:
            argv.append("--no-cache")
        if request.pull:
            argv.append("--pull")
        for key, value in request.build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        for key, value in request.labels.items():
            argv += ["--label", f"{key}={value}"]
        if request.timestamp is not None:
            # BuildKit (>= 0.11) takes the image's created time and history times from it
            argv += ["--build-arg", f"SOURCE_DATE_EPOCH={request.timestamp}"]
        for secret in request.secrets:
            argv += ["--secret", secret.to_arg()]
        argv.append(str(request.context_dir))
        return argv

    def _build_cli(self, request: BuildRequest, log: LogFn) -> BuildResult:
        if not self.cli:
            raise ImageError(
                "this build needs BuildKit (build secrets or RUN --mount), which the Docker "
                "SDK's classic builder does not support, and no `docker` CLI is on PATH to run "
                "`docker buildx build`; install the Docker CLI with the buildx plugin, or use "
                "--builder buildah"
            )
        buildx = subprocess.run(
            [self.cli, "buildx", "version"], capture_output=True, check=False
        ).returncode == 0
        argv = self.cli_build_argv(request, buildx)
        env = dict(os.environ, DOCKER_BUILDKIT="1")
        seconds = run_streamed_build(argv, self.name, "docker build", log, env=env)
        image_id = self.client.images.get(request.tag).id
        return BuildResult(image_id, request.tag, self.name, seconds)

    # -- inspect, pull, save, load -------------------------------------------------------
    def _image(self, image: str) -> Any:
        from docker.errors import ImageNotFound

        try:
            return self.client.images.get(image)
        except ImageNotFound:
            return None

    def image_digest(self, image: str) -> str | None:
        """The registry digest Docker recorded when it pulled ``image`` (``RepoDigests``); a
        locally built image has none, so its image id stands in."""
        found = self._image(image)
        if found is None:
            return None
        digests = [d.partition("@")[2] for d in found.attrs.get("RepoDigests") or []]
        return digests[0] if digests else found.id

    def pull(self, image: str, log: LogFn) -> None:
        from docker.errors import DockerException

        log(f"docker pull {image}")
        try:
            self.client.images.pull(image)
        except DockerException as exc:
            raise ImageError(f"docker could not pull {image}: {exc}") from exc

    def layers(self, image: str) -> list[Layer]:
        found = self._image(image)
        if found is None:
            raise ImageRunError(f"image {image} is not known to the Docker daemon")
        # history() is newest first; entries of size 0 are metadata steps (ENV, LABEL, ...)
        return [Layer(int(h["Size"]), h.get("CreatedBy", "")) for h in reversed(found.history()) if h.get("Size")]

    def capture(self, image: str, command: Sequence[str]) -> str:
        from docker.errors import DockerException

        try:
            out = self.client.containers.run(image, list(command), remove=True, stdout=True, stderr=False)
        except DockerException as exc:
            raise ImageRunError(f"`{' '.join(command[:2])} ...` failed in {image}: {exc}") from exc
        return out.decode("utf-8", "replace").strip()

    def save(self, image: str, dest: Path, fmt: str, log: LogFn) -> None:
        if fmt != "docker":
            raise ImageUsageError(
                "--format oci needs --builder buildah; `docker save` (Docker >= 25 writes an archive "
                "that is also an OCI layout) is --format docker"
            )
        found = self._image(image)
        if found is None:
            raise ImageRunError(f"image {image} is not known to the Docker daemon; build it first")
        log(f"docker save {image}")
        with open(dest, "wb") as handle:
            for chunk in found.save(named=True):
                handle.write(chunk)

    def load(self, archive: Path, log: LogFn) -> list[str]:
        from docker.errors import DockerException

        log(f"docker load -i {archive}")
        try:
            with open(archive, "rb") as handle:  # streamed: an image archive can be GBs
                images = self.client.images.load(handle)
        except DockerException as exc:
            raise ImageError(f"docker could not load {archive}: {exc}") from exc
        return [tag for img in images for tag in (img.tags or [img.id])]

    # -- run ---------------------------------------------------------------------------
    def run_kwargs(self, request: RunRequest) -> dict[str, Any]:
        """Keyword arguments for `client.containers.run` (pure; unit-tested)."""
        kwargs: dict[str, Any] = {
            "command": list(request.command),
            "environment": dict(request.env),
            "volumes": {
                str(m.host): {"bind": m.container, "mode": "ro" if m.read_only else "rw"}
                for m in request.mounts
            },
            "init": True,
            "privileged": request.privileged,
            "detach": True,
        }
        if request.workdir:
            kwargs["working_dir"] = request.workdir
        return kwargs

    def run(self, request: RunRequest, log: LogFn) -> int:
        from docker.errors import DockerException, ImageNotFound

        try:
            self.client.images.get(request.image)
        except ImageNotFound:
            raise ImageRunError(
                f"image {request.image} is not known to the Docker daemon; build it first with "
                f"{request.build_hint('docker')}"
            ) from None
        kwargs = self.run_kwargs(request)
        log(mask_credentials(f"docker run {request.image} {' '.join(request.command)}"))
        try:
            container = self.client.containers.run(request.image, **kwargs)
        except DockerException as exc:
            raise ImageRunError(f"docker could not start {request.image}: {exc}") from exc
        try:
            for chunk in container.logs(stream=True, follow=True):
                for line in chunk.decode("utf-8", "replace").splitlines():
                    log(line)
            return int(container.wait().get("StatusCode", 1))
        finally:
            try:
                container.remove(force=True)
            except DockerException:
                pass
