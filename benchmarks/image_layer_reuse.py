#!/usr/bin/env python3
"""Layer reuse of an image rebuild after a model code change.

Builds the image of a package (default bert-large-bf16-training) from a copy of the
repository, appends a comment to one model source file in the copy, and builds again. Prints
both build times and, for each build, how many steps reused a cached layer. The dependency
steps (everything before the model package is added) must all be reused by the second build;
otherwise this exits 1.

    python3 benchmarks/image_layer_reuse.py [--builder buildah] [--storage-driver vfs]

With buildah, the base image comes from scripts/make-base-image.sh (debootstrap; cached), and
pip in the build trusts the host CA bundle (--ca-bundle, default $PIP_CERT) via a build secret.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from packager.errors import ModelpkgError  # noqa: E402
from packager.image.actions import BuildOptions, build_image  # noqa: E402
from packager.image.context import secrets as parse_secrets  # noqa: E402
from packager.image.select import select_builder  # noqa: E402
from packager.package import load_package  # noqa: E402

_STEP = re.compile(r"^(?:(?:\[\d+/\d+\] )?STEP (\d+)/(\d+):|Step (\d+)/(\d+) :)\s*(.*)")  # [stage] in multi-stage builds
_CACHED = re.compile(r"^\s*-+>\s+Using cache\b")


@dataclass
class StepLog:
    """Collects build output: which steps there were and which reused a cached layer."""

    steps: list[str] = field(default_factory=list)
    cached: set[int] = field(default_factory=set)
    quiet: bool = True

    def __call__(self, line: str) -> None:
        match = _STEP.match(line)
        if match:
            self.steps.append(match.group(5))
        elif _CACHED.match(line) and self.steps:
            self.cached.add(len(self.steps) - 1)
        if not self.quiet or match:
            print(f"    {line}" if not match else f"  {line[:110]}", flush=True)

    def dependency_steps(self) -> list[int]:
        """Indices of the steps before the model package is added (ADD/COPY model_packages/)."""
        end = next((index for index, step in enumerate(self.steps)
                    if re.match(r"(ADD|COPY)\s+\S*model_packages/", step)), len(self.steps))
        # FROM (each stage's first step) is never "cached": there is nothing to build
        return [index for index in range(end) if not self.steps[index].startswith("FROM ")]


def copy_repo(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", "output", ".pytest_cache", "*.egg-info")
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="bert-large-bf16-training")
    parser.add_argument("--builder", default="auto", choices=["auto", "docker", "buildah"])
    parser.add_argument("--storage-driver", default=os.environ.get("MODELPKG_STORAGE_DRIVER"))
    parser.add_argument("--base-image", default="localhost/modelpkg-base:bookworm",
                        help="BASE_IMAGE for the build ('' keeps the spec's); made with "
                             "scripts/make-base-image.sh when it is the default and buildah builds")
    parser.add_argument("--ca-bundle", default=os.environ.get("PIP_CERT"),
                        help="extra CA bundle for pip in the build (build secret pip_cert)")
    parser.add_argument("--change", default="models/bert_large/tensorflow/run_squad.py",
                        help="model source file (repository path) to change between the builds")
    parser.add_argument("--tag", default=None, help="image reference (default: a benchmark tag)")
    parser.add_argument("--verbose", action="store_true", help="print all build output")
    args = parser.parse_args()

    try:
        builder = select_builder(args.builder, storage_driver=args.storage_driver)
    except ModelpkgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if builder.name == "buildah" and args.base_image == "localhost/modelpkg-base:bookworm":
        start = time.monotonic()
        subprocess.run(["bash", str(REPO / "scripts/make-base-image.sh"), args.base_image], check=True)
        print(f"base image: {time.monotonic() - start:.1f} s")

    tag = args.tag or f"localhost/modelpkg-bench/{args.name}:layer-reuse"
    ca = Path(args.ca_bundle) if args.ca_bundle and Path(args.ca_bundle).is_file() else None
    options = BuildOptions(tag=tag, base_image=args.base_image or None, secrets=parse_secrets([], ca))

    with tempfile.TemporaryDirectory(prefix="modelpkg-layer-reuse-") as tmp:
        root = copy_repo(Path(tmp) / "repo")
        changed = root / args.change
        if not changed.is_file():
            print(f"error: --change {args.change}: no such file in the repository", file=sys.stderr)
            return 1
        results = []
        for label in ("first build", "rebuild after a model code change"):
            if results:
                with changed.open("a") as handle:
                    handle.write(f"\n# layer-reuse benchmark edit {time.time_ns()}\n")
            log = StepLog(quiet=not args.verbose)
            print(f"{label}:" + (f" (appended a comment to {args.change})" if results else ""))
            try:
                package = load_package(args.name, root)
                result = build_image(package, builder, options, log)
            except ModelpkgError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            results.append((label, result.seconds, log))

    print()
    print(f"{'build':36s} {'seconds':>8s} {'steps':>6s} {'reused':>7s}")
    for label, seconds, log in results:
        print(f"{label:36s} {seconds:8.1f} {len(log.steps):6d} {len(log.cached):7d}")
    _, _, second = results[-1]
    deps = second.dependency_steps()
    missed = [i for i in deps if i not in second.cached]
    print(f"dependency steps (before the model package): {len(deps)}, reused: {len(deps) - len(missed)}")
    if missed:
        for index in missed:
            print(f"  NOT reused: {second.steps[index][:100]}", file=sys.stderr)
        print("error: the dependency layers were rebuilt after a model code change", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
