"""Builder selection: a daemon answers / only buildah / nothing, and the error texts."""

from __future__ import annotations

import socket
import time

import pytest

from packager.image import BuilderUnavailableError, select_builder
from packager.image.buildah import BuildahBuilder
from packager.image.docker import DockerBuilder, docker_client


class _Client:
    def ping(self):
        return True


def test_auto_prefers_docker_when_a_daemon_answers():
    builder = select_builder("auto", client_factory=_Client, which=lambda _: "/usr/bin/buildah")
    assert isinstance(builder, DockerBuilder)


def test_auto_falls_back_to_buildah_without_a_daemon():
    builder = select_builder(
        "auto", storage_driver="vfs", isolation="chroot",
        client_factory=lambda: None, which=lambda _: "/usr/bin/buildah",
    )
    assert isinstance(builder, BuildahBuilder)
    assert builder.storage_driver == "vfs"
    assert builder.executable == "/usr/bin/buildah"


def test_auto_with_nothing_says_what_to_install_and_which_docker_host(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://build-host:2375")
    with pytest.raises(BuilderUnavailableError) as info:
        select_builder("auto", client_factory=lambda: None, which=lambda _: None)
    message = str(info.value)
    assert "tcp://build-host:2375" in message
    assert "DOCKER_HOST" in message
    assert "apt-get install -y buildah" in message


def test_docker_without_daemon_suggests_docker_host_or_buildah(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    with pytest.raises(BuilderUnavailableError) as info:
        select_builder("docker", client_factory=lambda: None, which=lambda _: "/usr/bin/buildah")
    assert "unix:///var/run/docker.sock" in str(info.value)
    assert "--builder buildah" in str(info.value)


def test_buildah_requested_but_missing_says_how_to_install():
    with pytest.raises(BuilderUnavailableError, match="apt-get install -y buildah"):
        select_builder("buildah", client_factory=_Client, which=lambda _: None)


def test_buildah_requested_is_used_even_when_a_daemon_answers():
    builder = select_builder("buildah", client_factory=_Client, which=lambda _: "/usr/bin/buildah")
    assert isinstance(builder, BuildahBuilder)


def test_unknown_builder_and_isolation_are_rejected():
    with pytest.raises(BuilderUnavailableError, match="auto, docker, buildah"):
        select_builder("podman")
    with pytest.raises(BuilderUnavailableError, match="chroot"):
        select_builder("buildah", isolation="bogus", client_factory=lambda: None,
                       which=lambda _: "/usr/bin/buildah")


def test_docker_client_is_none_quickly_when_nothing_listens(tmp_path, monkeypatch):
    # A unix socket that exists but never accepts: the ping must give up, not hang.
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    try:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        start = time.monotonic()
        assert docker_client(timeout=1) is None
        assert time.monotonic() - start < 10
    finally:
        server.close()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    assert docker_client(timeout=1) is None
