#!/usr/bin/env python3
"""Which layers of an image are bit-identical across two clean builds of one checkout.

Builds the image of a package (default bert-large-bf16-training) twice with buildah through
`modelpkg image build`, both times with --no-cache and the same SOURCE_DATE_EPOCH (buildah
--timestamp: the created time and the time of every file in the new layers), and compares the
two images layer by layer by their uncompressed digests (the config's rootfs.diff_ids).
Prints one row per layer (identical or not, size, the instruction that made it) and the count;
exits 1 when the model-package layer (the ADD of the package archive) differs, the target.

    python3 benchmarks/image_reproducibility.py [--name NAME] [--epoch 1700000000]

Two clean builds of the TF image take about 15 minutes on 2 cores (pip downloads TensorFlow
twice, Horovod is compiled twice). A layer that differs is explained by what made it: see
"Reproducible layers" in docs/DEVELOPING.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from packager.errors import ModelpkgError  # noqa: E402
from packager.image.actions import BuildOptions, build_image  # noqa: E402
from packager.image.buildah import BuildahBuilder  # noqa: E402
from packager.image.context import secrets as parse_secrets  # noqa: E402
from packager.package import load_package  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from image_layer_reuse import copy_repo  # noqa: E402


def diff_ids(image: str) -> list[tuple[str, int, str]]:
    """(uncompressed digest, size, made by) per layer, bottom first."""
    info = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True,
                                     text=True, check=True).stdout)
    ids = info["OCIv1"]["rootfs"]["diff_ids"]
    layers = BuildahBuilder().layers(image)
    return [(digest, layer.size, " ".join(layer.created_by.split())) for digest, layer in zip(ids, layers)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="bert-large-bf16-training")
    parser.add_argument("--epoch", type=int, default=1700000000, help="SOURCE_DATE_EPOCH of both builds")
    parser.add_argument("--base-image", default="localhost/modelpkg-base:bookworm",
                        help="BASE_IMAGE (made with scripts/make-base-image.sh when it is the default)")
    parser.add_argument("--ca-bundle", default=os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt",
                        help="extra CA bundle for pip in the build (build secret pip_cert)")
    args = parser.parse_args()

    if args.base_image == "localhost/modelpkg-base:bookworm":
        subprocess.run(["bash", str(REPO / "scripts/make-base-image.sh"), args.base_image], check=True)
    ca = Path(args.ca_bundle) if args.ca_bundle and Path(args.ca_bundle).is_file() else None
    builder = BuildahBuilder()
    # a snapshot of the checkout, so both builds package the same files
    snapshot = Path(tempfile.mkdtemp(prefix="modelpkg-repro-"))
    package = load_package(args.name, copy_repo(snapshot / "repo"))
    images = []
    tag = f"localhost/modelpkg-bench/{args.name}:repro"  # one name: the SBOM names the image
    for run in (1, 2):
        options = BuildOptions(tag=tag, base_image=args.base_image, secrets=parse_secrets([], ca), layers=False,
                               timestamp=args.epoch, out_dir=Path(os.environ.get("TMPDIR", "/tmp")))
        start = time.monotonic()
        try:
            build_image(package, builder, options, lambda line: None)
        except ModelpkgError as exc:
            print(f"error: build {run}: {exc}", file=sys.stderr)
            return 1
        print(f"clean build {run}: {time.monotonic() - start:.0f} s", flush=True)
        images.append(diff_ids(tag))

    shutil.rmtree(snapshot, ignore_errors=True)
    first, second = images
    if len(first) != len(second):
        print(f"error: the builds have {len(first)} and {len(second)} layers", file=sys.stderr)
        return 1
    same = 0
    package_layer_same = None
    print(f"\n{'layer':>5s} {'same':>5s} {'MB':>9s}  made by")
    for index, ((id1, size, made_by), (id2, _, _)) in enumerate(zip(first, second)):
        equal = id1 == id2
        same += equal
        if "ADD" in made_by and "/workspace/" in made_by:
            package_layer_same = equal
        print(f"{index:5d} {'yes' if equal else 'NO':>5s} {size / 1e6:9.1f}  {made_by.split('/bin/sh -c ')[-1][:90]}")
    total = sum(size for _, size, _ in first)
    same_bytes = sum(size for (a, size, _), (b, _, _) in zip(first, second) if a == b)
    print(f"\nidentical layers: {same} of {len(first)} ({same_bytes / 1e9:.2f} of {total / 1e9:.2f} GB)")
    print(f"model-package layer identical: {package_layer_same}")
    return 0 if package_layer_same else 1


if __name__ == "__main__":
    sys.exit(main())
