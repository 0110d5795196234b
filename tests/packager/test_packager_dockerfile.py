"""Golden text per Dockerfile part, and the rules of the composed Dockerfile."""

from __future__ import annotations

import re

import pytest

from packager.dockerfile import render_dockerfile, render_part
from packager.package import load_package
from tests.packager.packager_fixtures import NAME, base_spec

ALL_PARTS = ["base", "python", "tensorflow", "pytorch", "openmpi", "numactl", "ssh", "apt_packages",
             "pip_packages", "model_package", "workdir", "env", "entrypoint"]

PIP_CERT = (
    "RUN --mount=type=secret,id=pip_cert,required=false \\\n"
    "    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi && \\\n"
)

GOLDEN = {
    "base": """\
# base: the image everything else builds on (override with --build-arg BASE_IMAGE=...)
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE} AS runtime

# only for this build: apt never asks questions; Python writes .pyc files that hold no build
# time (any SOURCE_DATE_EPOCH does that), so a rebuild's layers are the same
ARG DEBIAN_FRONTEND=noninteractive
ARG SOURCE_DATE_EPOCH=315532800
""",
    "python": """\
# python: Debian's python3 and a virtual environment at /opt/venv (Debian's own pip refuses
# system-wide installs); the venv sees apt-installed python3-* modules (e.g. python3-mpi4py)
RUN apt-get update && \\
    apt-get install -y --no-install-recommends python3 python3-venv ca-certificates && \\
    apt-get clean && \\
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/*.log /var/log/dpkg.log /var/log/alternatives.log /var/cache/ldconfig/aux-cache && \\
    python3 -m venv --system-site-packages /opt/venv
ENV VIRTUAL_ENV=/opt/venv \\
    PATH=/opt/venv/bin:$PATH \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PYTHONUNBUFFERED=1
""",
    "tensorflow": """\
# tensorflow: the pip requirement in TF_PACKAGE (e.g. tensorflow-cpu==2.21.0)
ARG TF_PACKAGE=tensorflow-cpu==2.21.0
""" + PIP_CERT + """\
    python3 -m pip install --no-cache-dir "${TF_PACKAGE}"
""",
    "pytorch": """\
# pytorch: TORCH_PACKAGE from pip, skipped when the base image already has torch
# (e.g. model-zoo:pytorch-ipex-spr); TORCH_PIP_ARGS e.g. "--index-url https://download.pytorch.org/whl/cpu"
ARG TORCH_PACKAGE=torch
ARG TORCH_PIP_ARGS=""
""" + PIP_CERT + """\
    python3 -c "import torch" 2>/dev/null || python3 -m pip install --no-cache-dir ${TORCH_PIP_ARGS} "${TORCH_PACKAGE}"
""",
    "openmpi": """\
# openmpi: mpirun and the mpi4py bindings (Debian's, matching its OpenMPI); the runtime only,
# no headers (the horovod part's build stage adds libopenmpi-dev for itself)
# Debian packages: openmpi-bin openmpi-common python3-mpi4py (in the image's shared apt layer)
""",
    "numactl": """\
# numactl: the launcher binds each process to its socket's cores and memory
# Debian packages: numactl (in the image's shared apt layer)
""",
    "ssh": """\
# ssh: client and server for multi-host MPI (mpirun starts remote ranks over ssh); the host keys
# openssh-server's install makes are removed (random, they would make this layer differ in
# every build): the sshd part makes the image's keys
# Debian packages: openssh-client openssh-server (in the image's shared apt layer)
""",
    "apt_packages": """\
# apt_packages: extra Debian packages from APT_PACKAGES (space separated)
ARG APT_PACKAGES=""
RUN if [ -n "${APT_PACKAGES}" ]; then \\
        apt-get update && \\
        apt-get install -y --no-install-recommends ${APT_PACKAGES} && \\
        apt-get clean && \\
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/*.log /var/log/dpkg.log /var/log/alternatives.log /var/cache/ldconfig/aux-cache; \\
    fi
""",
    "pip_packages": """\
# pip_packages: extra Python requirements from PIP_PACKAGES (space separated)
ARG PIP_PACKAGES="tokenizers==0.22.1 pyyaml"
""" + PIP_CERT + """\
    if [ -n "${PIP_PACKAGES}" ]; then python3 -m pip install --no-cache-dir ${PIP_PACKAGES}; fi
""",
    "model_package": """\
# model_package: the package from the build context, extracted to /workspace/demo-fp32-training
# (last, so a code change rebuilds only this layer)
ADD model_packages/demo-fp32-training.tar.gz /workspace/
WORKDIR /workspace/demo-fp32-training
""",
    "workdir": """\
# workdir: where `docker run <image> quickstart/<script>.sh` starts
WORKDIR /workspace/demo-fp32-training
""",
    "env": """\
# env: runtime environment from the spec's image.env
ENV B="x y" \\
    OMP_NUM_THREADS="4"
""",
    "entrypoint": """\
# entrypoint: an interactive shell in the package folder unless a command is given
CMD ["/bin/bash"]
""",
}


@pytest.fixture
def spec(repo):
    data = base_spec()
    data["image"]["parts"] = ALL_PARTS
    data["image"]["build_args"]["PIP_PACKAGES"] = "tokenizers==0.22.1 pyyaml"
    data["image"]["env"] = {"OMP_NUM_THREADS": "4", "B": "x y"}
    repo.write_spec(data)
    return load_package(NAME, repo.root)


def test_every_generic_part_has_a_golden_text(repo):
    on_disk = sorted(p.name.removesuffix(".Dockerfile.j2") for p in (repo.root / "templates/dockerfile").glob("*.j2"))
    assert sorted(GOLDEN) == sorted(ALL_PARTS)
    assert set(GOLDEN) <= set(on_disk)


@pytest.mark.parametrize("part", ALL_PARTS)
def test_part_golden_text(spec, part):
    assert render_part(spec, part) == GOLDEN[part]


def test_parts_without_pip_secret(spec):
    text = render_part(spec, "tensorflow", pip_cert_secret=False)
    assert text.endswith('RUN python3 -m pip install --no-cache-dir "${TF_PACKAGE}"\n')
    assert "--mount" not in render_dockerfile(spec, pip_cert_secret=False)


def test_env_part_without_env_is_only_a_comment(repo):
    data = base_spec()
    data["image"]["parts"] = ["base", "env"]
    data["image"]["build_args"] = {}
    repo.write_spec(data)
    assert render_part(load_package(NAME, repo.root), "env") == "# env: runtime environment from the spec's image.env\n"


def test_composed_dockerfile(spec):
    text = render_dockerfile(spec)
    assert text.startswith(f"# Generated by modelpkg from specs/{NAME}.yaml; do not edit.\n")
    lines = text.splitlines()
    instructions = [line for line in lines if line and not line.startswith((" ", "#"))]
    assert instructions[0] == "ARG BASE_IMAGE=debian:bookworm-slim"
    assert instructions[1] == "FROM ${BASE_IMAGE} AS runtime"
    # dependency layers before the model package
    assert text.index("ADD model_packages/") > text.index('pip install --no-cache-dir "${TF_PACKAGE}"')
    assert text.index("ADD model_packages/") > text.index("openssh-server")
    # proxies never become ENV (they are predefined build args)
    assert not re.search(r"^ENV .*proxy", text, flags=re.M | re.I)
    assert "proxy" not in text.lower()
    # parts in order, separated by one blank line
    for part in ALL_PARTS:
        assert GOLDEN[part] in text


def test_base_image_default_from_spec(repo):
    data = base_spec()
    data["image"]["base_image"] = "model-zoo:pytorch-ipex-spr"
    repo.write_spec(data)
    text = render_dockerfile(load_package(NAME, repo.root))
    assert "ARG BASE_IMAGE=model-zoo:pytorch-ipex-spr\nFROM ${BASE_IMAGE} AS runtime\n" in text


SHARED_APT = """\
# apt: the Debian packages of the parts openmpi, numactl, ssh, in one layer
RUN apt-get update && \\
    apt-get install -y --no-install-recommends openmpi-bin openmpi-common python3-mpi4py numactl openssh-client openssh-server && \\
    apt-get clean && \\
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/*.log /var/log/dpkg.log /var/log/alternatives.log /var/cache/ldconfig/aux-cache && \\
    mkdir -p /run/sshd && \\
    rm -f /etc/ssh/ssh_host_*
"""


def test_parts_debian_packages_share_one_apt_layer_before_the_first_of_them(spec):
    """openmpi, numactl and ssh declare packages: one RUN (one apt-get update, one cache)
    installs them all, placed before the openmpi part; python keeps its own layer (the same
    in every image, so the pip layers after it are shared)."""
    text = render_dockerfile(spec)
    assert SHARED_APT in text
    assert text.count("apt-get update") == 3  # python's, the shared layer, apt_packages' (conditional)
    assert text.index(SHARED_APT) < text.index("# openmpi:") < text.index("# ssh:")
    assert text.index('pip install --no-cache-dir "${TF_PACKAGE}"') < text.index(SHARED_APT)


def test_static_labels_come_last(spec):
    """Labels after every layer: images that differ only in title share all their layers."""
    text = render_dockerfile(spec)
    assert text.endswith(
        'LABEL org.opencontainers.image.title="demo-fp32-training" \\\n'
        '      org.opencontainers.image.description="Demo FP32 training" \\\n'
        '      org.opencontainers.image.licenses="Apache-2.0"\n')
    assert text.count("LABEL ") == 1


def test_build_context_line_says_what_the_dockerfile_adds(repo):
    data = base_spec()
    data["image"]["parts"] = ["base", "python", "entrypoint"]
    data["image"]["build_args"] = {}
    repo.write_spec(data)
    text = render_dockerfile(load_package(NAME, repo.root))
    assert "# Build context: none: nothing is ADDed or COPYed from it (docker build - < this file)\n" in text
    assert "ADD " not in text
