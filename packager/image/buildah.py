"""Daemonless builds with `buildah bud` and runs with `buildah run` (subprocess).

`--isolation chroot` works where neither a daemon nor user namespaces exist (CI sandboxes);
the storage driver (`overlay`, `vfs`) is configurable because overlay needs kernel support.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from packager.image.base import (
    BuilderUnavailableError,
    BuildRequest,
    BuildResult,
    ImageRunError,
    ImageUsageError,
    LogFn,
    RunRequest,
    printable_argv,
    run_streamed_build,
)

ISOLATIONS = ("chroot", "oci", "rootless")


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
            f"--layers={'true' if request.layers else 'false'}",
            f"--pull={'true' if request.pull else 'false'}",
            "--file",
            str(Path(request.context_dir) / request.dockerfile),
            "--tag",
            request.tag,
        ]
        for key, value in request.build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
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
        container = self._capture(["from", "--pull-never", "--quiet", request.image])
        try:
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
        finally:
            subprocess.run(
                self._global_args() + ["rm", container], capture_output=True, check=False
            )
