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


class _SavedImage:
    id = "sha256:" + "12" * 32
    attrs = {"RepoDigests": ["debian@sha256:" + "34" * 32]}

    def history(self):  # newest first, as the daemon returns it
        return [{"Size": 0, "CreatedBy": "LABEL x=y"},
                {"Size": 5_000_000, "CreatedBy": "/bin/sh -c #(nop) ADD file:abc in /workspace/"},
                {"Size": 1_500_000_000, "CreatedBy": "/bin/sh -c pip install tensorflow-cpu"}]

    def save(self, named):
        assert named  # the archive carries the image's name, so `docker load` tags it again
        return iter([b"chunk-1", b"chunk-2"])


class _ShippingImages:
    def __init__(self):
        self.loaded = None

    def get(self, ref):
        from docker.errors import ImageNotFound

        if ref == "missing:1":
            raise ImageNotFound("no such image")
        return _SavedImage()

    def load(self, data):
        self.loaded = data.read() if hasattr(data, "read") else data
        return [type("Image", (), {"tags": ["model-zoo:pytorch-ipex-spr"], "id": "sha256:ff"})()]


def test_docker_digest_layers_save_and_load_through_the_sdk(tmp_path):
    client = _Client()
    client.images = _ShippingImages()
    builder = DockerBuilder(client=client, cli=None)
    assert builder.image_digest("debian:bookworm-slim") == "sha256:" + "34" * 32  # the registry digest
    assert builder.image_digest("missing:1") is None
    layers = builder.layers("x")
    assert [layer.size for layer in layers] == [1_500_000_000, 5_000_000]  # bottom first, metadata steps left out
    dest = tmp_path / "image.tar"
    builder.save("x", dest, "docker", lambda line: None)
    assert dest.read_bytes() == b"chunk-1chunk-2"
    with pytest.raises(ImageError, match="--format oci needs --builder buildah"):
        builder.save("x", dest, "oci", lambda line: None)
    assert builder.load(dest, lambda line: None) == ["model-zoo:pytorch-ipex-spr"]
    assert client.images.loaded == b"chunk-1chunk-2"


def test_docker_build_passes_labels_and_source_date_epoch(tmp_path):
    client = _Client(chunks=[{"stream": "Step 1/1 : FROM debian\n"}, {"aux": {"ID": "sha256:abc"}}])
    builder = DockerBuilder(client=client, cli="/usr/bin/docker")
    request = BuildRequest(context_dir=_context(tmp_path), tag="t:1", labels={"org.opencontainers.image.created": "2023"},
                           timestamp=1700000000)
    builder.build(request, lambda line: None)
    assert client.api.kwargs["labels"] == {"org.opencontainers.image.created": "2023"}
    argv = builder.cli_build_argv(request, buildx=True)
    assert "org.opencontainers.image.created=2023" in argv and "SOURCE_DATE_EPOCH=1700000000" in argv
