"""The Docker SDK builder against a fake client: streamed output, image id, failing step,
the BuildKit hand-off for secrets, and `run` keyword arguments."""

from __future__ import annotations

import pytest

from packager.image import BuildRequest, ImageBuildError, ImageError, Mount, RunRequest, Secret
from packager.image.docker import DockerBuilder, needs_buildkit


class _Api:
    def __init__(self, chunks):
        self.chunks = chunks
        self.kwargs = None

    def build(self, **kwargs):
        self.kwargs = kwargs
        return iter(self.chunks)


class _Images:
    def get(self, ref):
        return type("Image", (), {"id": "sha256:feed"})()


class _Container:
    def __init__(self, status):
        self.status = status
        self.removed = False

    def logs(self, stream, follow):
        return iter([b"line one\nline two\n"])

    def wait(self):
        return {"StatusCode": self.status}

    def remove(self, force):
        self.removed = True


class _Containers:
    def __init__(self, status):
        self.container = _Container(status)
        self.calls = []

    def run(self, image, **kwargs):
        self.calls.append((image, kwargs))
        return self.container


class _Client:
    def __init__(self, chunks=(), status=0):
        self.api = _Api(list(chunks))
        self.images = _Images()
        self.containers = _Containers(status)


def _context(tmp_path, text="FROM debian\nRUN echo hi\n"):
    (tmp_path / "Dockerfile").write_text(text)
    return tmp_path


def test_sdk_build_streams_output_and_returns_the_image_id(tmp_path):
    client = _Client([
        {"stream": "Step 1/2 : FROM debian\n"}, {"stream": " ---> abc\n"},
        {"stream": "Step 2/2 : RUN echo hi\n"}, {"stream": "hi\n"}, {"aux": {"ID": "sha256:1234"}},
    ])
    lines = []
    request = BuildRequest(context_dir=_context(tmp_path), tag="me/img:1",
                           build_args={"http_proxy": "http://p:1", "TF_PACKAGE": "tf"})
    result = DockerBuilder(client=client, cli="").build(request, lines.append)
    assert result.image_id == "sha256:1234" and result.tag == "me/img:1"
    assert lines == ["Step 1/2 : FROM debian", " ---> abc", "Step 2/2 : RUN echo hi", "hi"]
    kwargs = client.api.kwargs
    assert kwargs["decode"] is True and kwargs["tag"] == "me/img:1"
    assert kwargs["buildargs"] == {"http_proxy": "http://p:1", "TF_PACKAGE": "tf"}
    assert kwargs["pull"] is False and kwargs["nocache"] is False


def test_sdk_build_error_names_the_step_and_the_daemon_message(tmp_path):
    client = _Client([
        {"stream": "Step 1/2 : FROM debian\n"},
        {"stream": "Step 2/2 : RUN apt-get install nope\n"}, {"stream": "E: Unable to locate package nope\n"},
        {"error": "x", "errorDetail": {"message": "The command '/bin/sh -c apt-get install nope' returned a non-zero code: 100"}},
    ])
    with pytest.raises(ImageBuildError) as info:
        DockerBuilder(client=client, cli="").build(BuildRequest(_context(tmp_path), "t:1"), lambda _: None)
    message = str(info.value)
    assert "docker build failed at step: Step 2/2 : RUN apt-get install nope" in message
    assert "returned a non-zero code: 100" in message
    assert "E: Unable to locate package nope" in message


def test_secrets_need_buildkit_and_say_so_without_a_docker_cli(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    request = BuildRequest(_context(tmp_path), "t:1", secrets=(Secret("pip_cert", ca),))
    with pytest.raises(ImageError) as info:
        DockerBuilder(client=_Client(), cli="").build(request, lambda _: None)
    assert "does not support" in str(info.value) and "docker buildx build" in str(info.value)
    assert "--builder buildah" in str(info.value)


def test_buildkit_cli_argv_carries_secrets_and_build_args(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    request = BuildRequest(_context(tmp_path), "t:1", build_args={"A": "1"}, secrets=(Secret("pip_cert", ca),))
    argv = DockerBuilder(client=_Client(), cli="/usr/bin/docker").cli_build_argv(request, buildx=True)
    assert argv[:4] == ["/usr/bin/docker", "buildx", "build", "--load"]
    assert argv[argv.index("--secret") + 1] == f"id=pip_cert,src={ca}"
    assert argv[argv.index("--build-arg") + 1] == "A=1"
    assert argv[-1] == str(tmp_path)


def test_needs_buildkit_detects_run_mount():
    assert needs_buildkit("FROM x\nRUN --mount=type=secret,id=pip_cert true\n")
    assert needs_buildkit("FROM x\nRUN --network=none --mount=type=cache,target=/c true\n")
    assert not needs_buildkit("FROM x\nRUN echo --mount=nothing\n")


def test_run_uses_same_path_mounts_env_and_init(tmp_path):
    client = _Client(status=3)
    request = RunRequest(
        image="me/img:1", command=("/bin/bash", "quickstart/demo.sh", "--x"),
        env={"OUTPUT_DIR": str(tmp_path)}, mounts=(Mount(tmp_path, str(tmp_path)),),
    )
    lines = []
    code = DockerBuilder(client=client, cli="").run(request, lines.append)
    assert code == 3
    image, kwargs = client.containers.calls[0]
    assert image == "me/img:1"
    assert kwargs["command"] == ["/bin/bash", "quickstart/demo.sh", "--x"]
    assert kwargs["environment"] == {"OUTPUT_DIR": str(tmp_path)}
    assert kwargs["volumes"] == {str(tmp_path): {"bind": str(tmp_path), "mode": "rw"}}
    assert kwargs["init"] is True and kwargs["privileged"] is False
    assert "line two" in lines
    assert client.containers.container.removed


def test_buildkit_plain_progress_steps_are_recognised():
    from packager.image.base import OutputTracker

    tracker = OutputTracker(lambda _: None, tail_lines=3)
    for line in ["#1 [internal] load build definition", "#6 [2/5] RUN apt-get update",
                 "#6 0.5 Get:1 http://deb.debian.org", "#7 [3/5] RUN pip install x",
                 "#7 1.0 a", "#7 1.1 b", "#7 1.2 c", "#7 1.3 d"]:
        tracker.feed(line)
    assert tracker.step == "#7 [3/5] RUN pip install x"
    assert list(tracker.tail) == ["#7 1.1 b", "#7 1.2 c", "#7 1.3 d"]
