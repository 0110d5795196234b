"""Plan an image build or run from a spec: the build context, build args, env and mounts.

Pure functions (plus writing the context folder) so tests check them without any builder.
The build context is what the rendered Dockerfile expects:

    <context>/Dockerfile
    <context>/model_packages/<name>.tar.gz
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from packager.conventions import OUTPUT_VARS, PIP_CERT_SECRET, PROXY_VARS, context_package_path
from packager.image.base import ImageError, Mount, RunRequest, Secret

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_key_values(items: Iterable[str], option: str) -> dict[str, str]:
    """`K=V` items (as given to --build-arg/--env) into a dict; `K` alone takes $K."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not _NAME.fullmatch(key):
            raise ImageError(f"{option} {item!r}: expected NAME=VALUE (NAME: letters, digits, _)")
        if not sep:
            if key not in os.environ:
                raise ImageError(f"{option} {item!r}: no '=VALUE' and ${key} is not set")
            value = os.environ[key]
        out[key] = value
    return out


def proxy_build_args(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The proxy variables set in the environment, as build args (never ENV: they stay out of
    the image config; Docker and buildah treat these names as predefined build args)."""
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in PROXY_VARS if environ.get(name)}


def build_args(
    spec_build_args: Mapping[str, str],
    overrides: Mapping[str, str],
    base_image: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Spec defaults < proxies from the environment < --build-arg < --base-image."""
    args = dict(spec_build_args)
    args.update(proxy_build_args(environ))
    args.update(overrides)
    if base_image:
        args["BASE_IMAGE"] = base_image
    return args


def secrets(secret_args: Iterable[str], ca_bundle: Path | None) -> tuple[Secret, ...]:
    """--secret values plus --ca-bundle (= --secret id=pip_cert,src=FILE)."""
    out = [Secret.parse(text) for text in secret_args]
    if ca_bundle is not None:
        if any(s.id == PIP_CERT_SECRET for s in out):
            raise ImageError(f"--ca-bundle and --secret id={PIP_CERT_SECRET},... both given; use one")
        bundle = Path(ca_bundle).expanduser().resolve()
        if not bundle.is_file():
            raise ImageError(
                f"--ca-bundle {ca_bundle} (or $MODELPKG_CA_BUNDLE): {bundle} is not a file; give a PEM "
                "CA bundle such as /etc/ssl/certs/ca-certificates.crt"
            )
        out.append(Secret(id=PIP_CERT_SECRET, src=bundle))
    ids = [s.id for s in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ImageError(f"--secret id {', '.join(dupes)} given twice")
    return tuple(out)


def write_context(context_dir: Path, dockerfile_text: str, archive: Path, name: str) -> Path:
    """Fill `context_dir` with the Dockerfile and the package archive; returns the Dockerfile."""
    context_dir.mkdir(parents=True, exist_ok=True)
    dockerfile = context_dir / "Dockerfile"
    dockerfile.write_text(dockerfile_text)
    target = context_dir / context_package_path(name)
    target.parent.mkdir(exist_ok=True)
    # A hard link is free and leaves the layer cache key (the content) unchanged.
    try:
        os.link(archive, target)
    except OSError:
        target.write_bytes(archive.read_bytes())
    return dockerfile


def parse_volume(text: str) -> Mount:
    """`HOST[:CONTAINER][:ro|rw]` (CONTAINER defaults to HOST: the same path in the container)."""
    parts = text.split(":")
    mode = "rw"
    if len(parts) > 1 and parts[-1] in ("ro", "rw"):
        mode = parts.pop()
    if not parts[0] or len(parts) > 2:
        raise ImageError(f"--volume {text!r}: expected HOST[:CONTAINER][:ro]")
    host = Path(parts[0]).expanduser().resolve()
    container = parts[1] if len(parts) == 2 else str(host)
    if not PurePosixPath(container).is_absolute():
        raise ImageError(f"--volume {text!r}: the container path must be absolute")
    if not host.exists():
        raise ImageError(f"--volume {text!r}: {host} does not exist on this machine")
    return Mount(host=host, container=container, read_only=mode == "ro")


def run_request(
    image: str,
    script: str,
    script_args: Iterable[str],
    *,
    required_env: Iterable[str],
    optional_env: Iterable[str],
    mount_vars: Iterable[str] = (),
    extra_env: Mapping[str, str] | None = None,
    volumes: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    privileged: bool = False,
    package: str | None = None,
) -> RunRequest:
    """What `docker run` / `buildah run` need for `/bin/bash quickstart/SCRIPT ARGS`.

    The quickstart's env vars that are set here are forwarded (a required one that is not set
    is an error naming it), proxies too; the folder variables are mounted at the same path.
    """
    environ = dict(os.environ if environ is None else environ)
    extra_env = dict(extra_env or {})
    lookup = {**environ, **extra_env}
    required = list(dict.fromkeys(required_env))
    missing = [name for name in required if not lookup.get(name)]
    if missing:
        raise ImageError(
            f"quickstart/{script} needs {', '.join(missing)}: set "
            + ", ".join(f"{m}=<path or value>" for m in missing)
            + " in the environment or pass --env NAME=VALUE"
        )
    env: dict[str, str] = {}
    for name in [*required, *optional_env]:
        if lookup.get(name):
            env[name] = lookup[name]
    env.update(proxy_build_args(environ))
    env.update(extra_env)

    mounts: list[Mount] = []
    seen: set[str] = set()
    for name in dict.fromkeys(mount_vars):
        value = env.get(name)
        if not value:
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise ImageError(f"{name}={value} must be an absolute path (it is mounted at the same path in the container)")
        if not path.exists():
            if name in OUTPUT_VARS:
                path.mkdir(parents=True, exist_ok=True)
            else:
                raise ImageError(f"{name}={value} does not exist; set {name} to an existing folder")
        mounts.append(Mount(host=path.resolve(), container=str(path)))
        seen.add(str(path))
    for text in volumes:
        mount = parse_volume(text)
        if mount.container not in seen:
            mounts.append(mount)
            seen.add(mount.container)

    script_name = PurePosixPath(script).name
    command = ("/bin/bash", f"quickstart/{script_name}", *script_args)
    return RunRequest(image=image, command=command, env=env, mounts=tuple(mounts), privileged=privileged,
                      package=package)
