"""Choose a builder: `docker` (a daemon answers), `buildah` (daemonless), or `auto`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

from packager.image.base import Builder, BuilderUnavailableError, ImageUsageError
from packager.image.buildah import BuildahBuilder
from packager.image.docker import DockerBuilder, docker_client

BUILDER_NAMES = ("auto", "docker", "buildah")


def select_builder(
    name: str = "auto",
    *,
    storage_driver: str | None = None,
    isolation: str = "chroot",
    client_factory: Callable[[], Any] = docker_client,
    which: Callable[[str], str | None] = shutil.which,
) -> Builder:
    """Return a ready builder or raise `BuilderUnavailableError` saying what to install/set.

    `auto`: docker when a daemon answers a ping (short timeout), else buildah when installed.
    """
    if name not in BUILDER_NAMES:
        raise ImageUsageError(f"--builder {name!r}: choose one of {', '.join(BUILDER_NAMES)}")
    if name in ("auto", "docker"):
        client = client_factory()
        if client is not None:
            return DockerBuilder(client=client)
        if name == "docker":
            return _no_daemon()
    buildah = which("buildah")
    if buildah:
        return BuildahBuilder(executable=buildah, storage_driver=storage_driver, isolation=isolation)
    if name == "buildah":
        raise BuilderUnavailableError(
            "buildah is not installed; install it (Debian/Ubuntu: apt-get install -y buildah; "
            "Fedora: dnf install -y buildah) or use --builder docker with a running Docker daemon"
        )
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    raise BuilderUnavailableError(
        f"no image builder available: no Docker daemon answers at {host} and buildah is not "
        "installed. Either start Docker (or set DOCKER_HOST to a daemon that runs, e.g. "
        "DOCKER_HOST=ssh://user@host), or install buildah (apt-get install -y buildah) for "
        "daemonless builds"
    )


def _no_daemon() -> Builder:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    raise BuilderUnavailableError(
        f"--builder docker: no Docker daemon answers at {host}; start the daemon, set DOCKER_HOST "
        "to one that runs (e.g. DOCKER_HOST=ssh://user@host or tcp://host:2375), or use "
        "--builder buildah (daemonless)"
    )
