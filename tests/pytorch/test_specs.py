"""The PyTorch specs: the image-only base image spec and the ipex Dockerfile part."""

from __future__ import annotations

from packager.dockerfile import render_dockerfile, render_part
from packager.package import load_package
from packager.plan import make_plan
from tests.pytorch.conftest import REPO, SPEC

IPEX_PART = '''\
# ipex: Intel Extension for PyTorch and friends from IPEX_PACKAGES (space separated, e.g.
# "intel-extension-for-pytorch==2.8.0", matching the torch version); empty skips it, since the
# training code uses IPEX only when it imports. IPEX_PIP_ARGS e.g. "--extra-index-url URL".
ARG IPEX_PACKAGES=intel-extension-for-pytorch==2.8.0
ARG IPEX_PIP_ARGS=""
RUN --mount=type=secret,id=pip_cert,required=false \\
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi && \\
    if [ -n "${IPEX_PACKAGES}" ]; then python3 -m pip install --no-cache-dir ${IPEX_PIP_ARGS} ${IPEX_PACKAGES}; fi
'''


def test_ipex_part_golden_text():
    package = load_package("pytorch-ipex-spr", REPO)
    assert render_part(package, "ipex") == IPEX_PART


def test_base_image_spec_is_image_only():
    plan = make_plan(load_package("pytorch-ipex-spr", REPO))
    assert plan.package.spec.image.reference == "model-zoo:pytorch-ipex-spr"
    files = [f.path for f in plan.model.files]
    assert not any(f.startswith("models/") for f in files)
    dockerfile = plan.dockerfile
    assert "ADD model_packages" not in dockerfile
    # torch and IPEX versions are pinned as a pair (IPEX 2.8 pairs with torch 2.8)
    assert "ARG TORCH_PACKAGE=torch==2.8.0" in dockerfile
    assert "ARG IPEX_PACKAGES=intel-extension-for-pytorch==2.8.0" in dockerfile


def test_training_image_builds_on_the_base_image():
    package = load_package(SPEC, REPO)
    spec = package.spec
    assert spec.image.reference == "model-zoo:pytorch-bert-large-training"
    assert spec.image.base_image == load_package("pytorch-ipex-spr", REPO).spec.image.reference
    assert spec.image.base_package == "pytorch-ipex-spr"
    dockerfile = render_dockerfile(package)
    # the training code's runtime needs beyond torch
    assert 'ARG PIP_PACKAGES="numpy safetensors crc32c scipy==1.15.3"' in dockerfile
    # the last instruction before the labels block
    assert dockerfile.rstrip().split("\n\n")[-2].endswith('CMD ["/bin/bash"]')
