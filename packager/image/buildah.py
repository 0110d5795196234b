"""Daemonless builds with `buildah bud` and runs with `buildah run` (subprocess).

`--isolation chroot` works where neither a daemon nor user namespaces exist (CI sandboxes);
the storage driver (`overlay`, `vfs`) is configurable because overlay needs kernel support.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from packager.image.base import (
    BuilderUnavailableError,
    BuildRequest,
    BuildResult,
    ImageError,
    ImageRunError,
    ImageUsageError,
    Layer,
    LogFn,
    RunRequest,
    printable_argv,
    run_streamed_build,
)

ISOLATIONS = ("chroot", "oci", "rootless")


def _uncompressed(archive: Path, tmp: Path) -> Path:
    """``archive`` itself, or its gunzipped copy in ``tmp``."""
    with open(archive, "rb") as handle:
        if handle.read(2) != b"\x1f\x8b":
            return archive
    plain = tmp / "image.tar"
    with gzip.open(archive, "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return plain


class BuildahBuilder:
    name = "buildah"

    def __init__(
        self,
        executable: str | None = None,
        storage_driver: str | None = None,
        isolation: str = "chroot",
    ):
        exe = executable or shutil.which("buildah")
        if not exe:
            raise BuilderUnavailableError(
                "buildah is not installed; install it (Debian/Ubuntu: apt-get install -y buildah) "
                "or use --builder docker with a running Docker daemon"
            )
        if isolation not in ISOLATIONS:
            raise ImageUsageError(
                f"--isolation {isolation!r} is not one of {', '.join(ISOLATIONS)}"
            )
        self.executable = exe
        self.storage_driver = storage_driver
        self.isolation = isolation

    # -- argv (pure; unit-tested) -------------------------------------------------------
    def _global_args(self) -> list[str]:
        args = [self.executable]
        if self.storage_driver:
            args += ["--storage-driver", self.storage_driver]
        return args

    def build_argv(self, request: BuildRequest) -> list[str]:
        argv = self._global_args() + [
            "bud",
            "--isolation",
            self.isolation,
            # one layer per step either way (--layers=false would squash the build into one);
            # --no-cache builds every step again
            "--layers=true",
            *([] if request.layers else ["--no-cache"]),
            f"--pull={'true' if request.pull else 'false'}",
            "--file",
            str(Path(request.context_dir) / request.dockerfile),
            "--tag",
            request.tag,
        ]
        for key, value in request.build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        for key, value in request.labels.items():
            argv += ["--label", f"{key}={value}"]
        if request.timestamp is not None:
            # created time, history times and the times of every file in the new layers
            argv += ["--timestamp", str(request.timestamp)]
        for secret in request.secrets:
            argv += ["--secret", secret.to_arg()]
        argv.append(str(request.context_dir))
        return argv

    def run_argv(self, container: str, request: RunRequest) -> list[str]:
        argv = self._global_args() + ["run", "--isolation", self.isolation]
        for mount in request.mounts:
            argv += ["--volume", mount.to_arg()]
        for key, value in request.env.items():
            argv += ["--env", f"{key}={value}"]
        if request.workdir:
            argv += ["--workingdir", request.workdir]
        argv += [container, "--", *request.command]
        return argv

    # -- subprocess -----------------------------------------------------------------------
    def _capture(self, args: Sequence[str]) -> str:
        proc = subprocess.run(
            self._global_args() + list(args), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise ImageRunError(
                f"`buildah {' '.join(args)}` failed (exit {proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc.stdout.strip()

    def image_id(self, image: str) -> str:
        return self._capture(["inspect", "--type", "image", "--format", "{{.FromImageID}}", image])

    def image_exists(self, image: str) -> bool:
        proc = subprocess.run(
            self._global_args() + ["inspect", "--type", "image", image],
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def image_digest(self, image: str) -> str | None:
        proc = subprocess.run(
            self._global_args() + ["inspect", "--type", "image", "--format", "{{.FromImageDigest}}", image],
            capture_output=True, text=True, check=False,
        )
        return (proc.stdout.strip() or None) if proc.returncode == 0 else None

    def pull(self, image: str, log: LogFn) -> None:
        run_streamed_build(self._global_args() + ["pull", image], self.name, "buildah pull", log)

    def layers(self, image: str) -> list[Layer]:
        info = json.loads(self._capture(["inspect", "--type", "image", image]))
        manifest = info["Manifest"]
        manifest = json.loads(manifest) if isinstance(manifest, str) else manifest
        made_by = [h.get("created_by", "") for h in info.get("History") or [] if not h.get("empty_layer")]
        sizes = [int(layer.get("size", 0)) for layer in manifest.get("layers", [])]
        made_by = [""] * (len(sizes) - len(made_by)) + made_by[-len(sizes):] if sizes else []
        return [Layer(size, by) for size, by in zip(sizes, made_by)]

    def capture(self, image: str, command: Sequence[str]) -> str:
        with self._container(image) as container:
            return self._capture(["run", "--isolation", self.isolation, container, "--", *command])

    def save(self, image: str, dest: Path, fmt: str, log: LogFn) -> None:
        transport = {"docker": "docker-archive", "oci": "oci-archive"}[fmt]
        # the archive names the image, so `docker load` / `buildah pull` tag it again
        argv = self._global_args() + ["push", "--quiet", image, f"{transport}:{dest}:{image}"]
        run_streamed_build(argv, self.name, "buildah push", log)

    def load(self, archive: Path, log: LogFn) -> list[str]:
        with tempfile.TemporaryDirectory(prefix="modelpkg-load-") as tmp:
            plain = _uncompressed(archive, Path(tmp))  # buildah reads no gzip archives
            errors = []
            for transport in ("docker-archive", "oci-archive"):
                argv = self._global_args() + ["pull", "--quiet", f"{transport}:{plain}"]
                log("$ " + printable_argv(argv))
                proc = subprocess.run(argv, capture_output=True, text=True, check=False)
                if proc.returncode == 0:
                    image_id = proc.stdout.strip().splitlines()[-1]
                    break
                errors.append(f"{transport}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            else:
                raise ImageError(f"{archive} is neither a docker nor an OCI image archive ({'; '.join(errors)})")
        names = self._capture(["images", "--noheading", "--format", "{{.Name}}:{{.Tag}}", image_id]).split()
        return [n for n in names if n != "<none>:<none>"] or [image_id]

    def build(self, request: BuildRequest, log: LogFn) -> BuildResult:
        argv = self.build_argv(request)
        seconds = run_streamed_build(argv, self.name, "buildah bud", log)
        return BuildResult(self.image_id(request.tag), request.tag, self.name, seconds)

    def run(self, request: RunRequest, log: LogFn) -> int:
        if not self.image_exists(request.image):
            raise ImageRunError(
                f"image {request.image} is not in buildah storage; build it first with "
                f"{request.build_hint('buildah')}"
            )
        with self._container(request.image) as container:
            argv = self.run_argv(container, request)
            log("$ " + printable_argv(argv))
            # stdout+stderr go through `log`, like the docker builder's log stream
            with subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                text=True, errors="replace", bufsize=1,
            ) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    log(line.rstrip("\r\n"))
                return proc.wait()

    @contextlib.contextmanager
    def _container(self, image: str) -> Iterator[str]:
        """A working container of ``image`` (``buildah from``), removed afterwards."""
        container = self._capture(["from", "--pull-never", "--quiet", image])
        try:
            yield container
        finally:
            subprocess.run(self._global_args() + ["rm", container], capture_output=True, check=False)
