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
