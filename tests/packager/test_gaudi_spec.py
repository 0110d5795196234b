"""The Gaudi TensorFlow BERT package (specs/tensorflow-gaudi-bert-training.yaml): one package, two
images (hpu on Habana's TF 2.15 installer image, cpu on the project's TF stack), Habana's layout
at the package root, and a README made of the gaudi_bert_* parts.

`test_archive_root_is_habanas_bert_folder` needs the files of habana/bert_tensorflow/ (demo_bert,
download/, data_preprocessing/, ...) that other parts of the project add; it fails, naming
what is missing, until they are there.
"""

from __future__ import annotations

import json
import re
import tarfile

import pytest
from typer.testing import CliRunner

from packager.cli import app
from packager.dockerfile import render_part, select_image
from packager.errors import SpecError
from packager.package import load_package
from packager.plan import make_plan
from tests.packager.packager_fixtures import NAME as FIXTURE, REPO, base_spec

NAME = "tensorflow-gaudi-bert-training"
HABANA_BASE = ("vault.habana.ai/gaudi-docker/${SYNAPSE_AI_VERSION}/${OS}/habanalabs/"
               "tensorflow-installer-tf-cpu-${TF_VERSION}:${SYNAPSE_AI_VERSION}-${SYNAPSE_BUILT_REVISION}")
HPU_TAG = f"model-zoo:{NAME}-hpu"
CPU_TAG = f"model-zoo:{NAME}-cpu"
DOCKER_RUN = ("docker run -it --runtime=habana -e HABANA_VISIBLE_DEVICES=all "
              "-e OMPI_MCA_btl_vader_single_copy_mechanism=none --cap-add=sys_nice --net=host "
              "-v $HOME/hlogs:/root/hlogs -v $HOME/tmp:/root/tmp -v /data/tensorflow:/data/tensorflow "
              f"{HPU_TAG}")
# Habana's "BERT Demo" table, row by row as it writes them
DEMO_ROWS = """\
| Model      | Task & Dataset                           | Batch Size                                                | Command Line                                                       |
|------------|------------------------------------------|-----------------------------------------------------------|--------------------------------------------------------------------|
| BERT BASE  | Fine-Tuning for MRPC                     | 256 (32 per worker)                                       | `./demo_bert finetuning -d bf16 -m base -t mrpc -b 32 -s 128 -v`   |
| BERT LARGE | Fine-Tuning for MRPC                     | 512 (32 per worker)                                       | `./demo_bert finetuning -d bf16 -m large -t mrpc -b 64 -s 128 -v`  |
| BERT BASE  | Fine-Tuning for SQuAD                    | 256 (32 per worker)                                       | `./demo_bert finetuning -d bf16 -m base -t squad -b 32 -s 384 -v`  |
| BERT LARGE | Fine-Tuning for SQuAD                    | 192 (24 per worker)                                       | `./demo_bert finetuning -d bf16 -m large -t squad -b 24 -s 384 -v` |
| BERT LARGE | Pre-Training on BookCorpus and Wikipedia | Phase I: 512 (64 per worker), Phase II: 64 (8 per worker) | `./demo_bert pretraining -d bf16 -m large -b 64 8 -v`              |
"""
SSHD_GOLDEN = """\
# sshd: the ssh server mpirun reaches in multi-server runs, on SSHD_PORT (the launcher's
# DOCKER_SSHD_PORT, 3022 as in Habana's images), root by key only; host keys made at build
# time (every container of this image shares them, so /etc/ssh/ssh_known_hosts trusts exactly
# those keys for any host name: MPIJob pods reach each other without a host key prompt).
# Needs openssh-server (the ssh part). Start it in each container with: /usr/sbin/sshd
# (MPIJob workers: /usr/sbin/sshd -De). SSHD_USER=NAME adds that non-root user (uid/gid
# SSHD_UID) with its own sshd: /usr/sbin/sshd -De -f /home/NAME/.sshd_config (keys in
# /home/NAME/.ssh, the MPIJob's sshAuthMountPath).
ARG SSHD_PORT=3022
ARG SSHD_USER=""
ARG SSHD_UID=1000
RUN case "${SSHD_PORT}" in ''|*[!0-9]*) echo "error: SSHD_PORT=${SSHD_PORT} is not a port number" >&2; exit 2;; esac && \\
    case "${SSHD_UID}" in ''|*[!0-9]*) echo "error: SSHD_UID=${SSHD_UID} is not a number" >&2; exit 2;; esac && \\
    case "${SSHD_USER}" in ''|[a-z_][a-z0-9_-]*) ;; *) echo "error: SSHD_USER=${SSHD_USER} is not a user name (a-z, 0-9, _ and -)" >&2; exit 2;; esac && \\
    mkdir -p /run/sshd /etc/ssh/sshd_config.d && \\
    if ! grep -qs '^Include /etc/ssh/sshd_config.d/' /etc/ssh/sshd_config; then \\
        sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config; \\
    fi && \\
    sed -i -E 's/^(Port|PermitRootLogin|PasswordAuthentication)[[:space:]]/#&/' /etc/ssh/sshd_config && \\
    printf 'Port %s\\nPermitRootLogin prohibit-password\\nPasswordAuthentication no\\n' "${SSHD_PORT}" \\
        > /etc/ssh/sshd_config.d/modelpkg.conf && \\
    ssh-keygen -A && \\
    for key in /etc/ssh/ssh_host_*_key.pub; do printf '* %s\\n' "$(cut -d' ' -f1,2 "${key}")"; done \\
        >> /etc/ssh/ssh_known_hosts && \\
    /usr/sbin/sshd -t && \\
    if [ -n "${SSHD_USER}" ]; then \\
        groupadd -g "${SSHD_UID}" "${SSHD_USER}" && \\
        useradd -m -s /bin/bash -u "${SSHD_UID}" -g "${SSHD_UID}" "${SSHD_USER}" && \\
        home="/home/${SSHD_USER}" && \\
        mkdir -p "${home}/.ssh" "${home}/.sshd" && \\
        cp /etc/ssh/ssh_host_ed25519_key "${home}/.sshd/" && \\
        printf 'Port %s\\nHostKey %s\\nPidFile %s\\nStrictModes no\\nPasswordAuthentication no\\nKbdInteractiveAuthentication no\\nSubsystem sftp internal-sftp\\n' \\
            "${SSHD_PORT}" "${home}/.sshd/ssh_host_ed25519_key" "${home}/.sshd/sshd.pid" > "${home}/.sshd_config" && \\
        chown -R "${SSHD_UID}:${SSHD_UID}" "${home}" && \\
        chmod 700 "${home}/.sshd" && chmod 600 "${home}/.sshd/ssh_host_ed25519_key" && \\
        /usr/sbin/sshd -t -f "${home}/.sshd_config"; \\
    fi
EXPOSE ${SSHD_PORT}
"""

runner = CliRunner()


@pytest.fixture(scope="module")
def plan():
    return make_plan(load_package(NAME, REPO))


def dockerfiles(plan) -> dict[str, str]:
    return {i.key: i.dockerfile for i in plan.images}


def test_spec_values(plan):
    spec = plan.package.spec
    assert (spec.framework, spec.hardware, spec.mode) == ("tensorflow", "gaudi", "training")
    assert spec.precisions == ("bf16", "fp32")
    assert list(spec.images) == ["hpu", "cpu"] and spec.image_key == "hpu"
    assert spec.images["hpu"].reference == HPU_TAG and spec.images["cpu"].reference == CPU_TAG
    assert spec.quickstart == () and spec.wrapper.enabled is False
    assert set(spec.licenses) >= {"licenses/third_party/tensorflow.txt", "licenses/third_party/tokenizers.txt",
                                  "licenses/third_party/openmpi.txt", "licenses/third_party/habana.txt"}
    info = json.loads(next(f for f in plan.model.files if f.path == "package_info.json").data)
    assert info["hardware"] == "gaudi" and info["images"] == {"hpu": HPU_TAG, "cpu": CPU_TAG}


def test_hpu_dockerfile_builds_on_habanas_image_without_installing_tensorflow(plan):
    text = dockerfiles(plan)["hpu"]
    for line in ("ARG SYNAPSE_AI_VERSION=1.14.0", "ARG OS=ubuntu22.04", "ARG TF_VERSION=2.15.0",
                 "ARG SYNAPSE_BUILT_REVISION=493", f"ARG BASE_IMAGE={HABANA_BASE}", "ARG SSHD_PORT=3022",
                 "ARG PIP_PACKAGES=\"tokenizers==0.23.3 scipy==1.15.3\"", f"WORKDIR /workspace/{NAME}"):
        assert line + "\n" in text, line
    # the version args are declared before the one FROM, which uses them through BASE_IMAGE
    assert text.count("FROM ") == 1 and text.index("ARG SYNAPSE_AI_VERSION") < text.index("FROM ${BASE_IMAGE}")
    assert "TF_PACKAGE" not in text
    assert not re.search(r"pip install[^\n]*tensorflow", text)
    assert "/opt/venv" not in text  # Habana's Python, not the python part's venv
    assert text.index("sshd -t") < text.index("ADD model_packages/")


def test_cpu_dockerfile_is_the_tensorflow_stack_with_sshd(plan):
    text = dockerfiles(plan)["cpu"]
    assert "ARG BASE_IMAGE=debian:bookworm-slim\n" in text
    assert "ARG TF_PACKAGE=tensorflow-cpu==2.21.0\n" in text
    assert "ARG PIP_PACKAGES=\"tokenizers==0.23.3 scipy==1.15.3\"\n" in text
    assert "openmpi-bin" in text and "numactl" in text and "ARG SSHD_PORT=3022\n" in text
    assert "vault.habana.ai" not in text


def test_cpu_image_repeats_the_tensorflow_image_steps_in_order(plan):
    """Same parts in the same order as the TF BERT image up to ssh, so the two share the work
    of those steps (a layer cache hit also needs the same LABEL, see the base part)."""
    tf = make_plan(load_package("bert-large-bf16-training", REPO)).dockerfile
    ours = dockerfiles(plan)["cpu"]

    def steps(text: str) -> list[str]:
        body = "\n".join(line for line in text.split("# model_package:")[0].splitlines()
                          if line.strip() and not line.startswith("#"))
        return [step.strip() for step in re.split(r"\n(?=[A-Z]+ )", body) if not step.startswith("LABEL")]

    theirs = steps(tf)
    assert steps(ours)[: len(theirs)] == theirs


def test_sshd_part_golden_text(plan):
    assert render_part(select_image(plan.package, "cpu"), "sshd") == SSHD_GOLDEN


def test_sshd_port_is_a_build_arg(repo):
    data = base_spec()
    data["image"]["parts"] = ["base", "ssh", "sshd", "model_package"]
    data["image"]["build_args"] = {"SSHD_PORT": "4022"}
    repo.write_spec(data)
    assert "ARG SSHD_PORT=4022\n" in make_plan(load_package(FIXTURE, repo.root)).dockerfile


def hpu_fixture(repo, **build_args) -> list[str]:
    data = base_spec()
    data["image"] = {"name": "intel/demo", "tag": "hpu", "parts": ["habana_base", "model_package"],
                     "base_image": "vault.habana.ai/gaudi-docker/1.14.0/ubuntu22.04/habanalabs/"
                                   "tensorflow-installer-tf-cpu-2.15.0:1.14.0-493",
                     "build_args": {"SYNAPSE_AI_VERSION": "1.14.0", "OS": "ubuntu22.04", "TF_VERSION": "2.15.0",
                                    "SYNAPSE_BUILT_REVISION": "493", **build_args}}
    data["image"]["build_args"] = {k: v for k, v in data["image"]["build_args"].items() if v is not None}
    data["docs"]["parts"] = ["title"]
    repo.write_spec(data)
    try:
        make_plan(load_package(FIXTURE, repo.root))
    except SpecError as exc:
        return [f"{p.key}: {p.message}" for p in exc.problems]
    return []


def test_habana_base_needs_the_version_args(repo):
    assert hpu_fixture(repo) == []
    found = hpu_fixture(repo, SYNAPSE_BUILT_REVISION=None)
    assert len(found) == 1 and found[0].startswith("image.parts[0]:")
    assert "the habana_base part needs image.build_args.SYNAPSE_BUILT_REVISION" in found[0]


def test_habana_base_image_must_agree_with_the_args(repo):
    found = hpu_fixture(repo, TF_VERSION="2.13.1")
    assert len(found) == 1
    assert ("set image.base_image to vault.habana.ai/gaudi-docker/1.14.0/ubuntu22.04/habanalabs/"
            "tensorflow-installer-tf-cpu-2.13.1:1.14.0-493") in found[0]


def test_habana_base_values_are_validated_through_the_base_image(repo):
    """base_image is a checked image reference and the args must compose it, so no value with a
    space, quote or shell syntax reaches the Dockerfile's FROM."""
    for bad in ("ubuntu 22.04", "$(id)", "a/../b"):
        found = hpu_fixture(repo, OS=bad)
        assert len(found) == 1 and "composes the base image from the build args" in found[0], (bad, found)


def test_readme_has_the_docker_run_lines_and_the_demo_table(plan):
    readme = plan.readme
    assert DOCKER_RUN + "\n" in readme
    assert f"-v /data/tensorflow:/data/tensorflow {CPU_TAG}\n" in readme
    assert DEMO_ROWS in readme
    for text in ("create_datasets_from_start.sh wiki_books", "--horovod", "MULTI_HLS_IPS", "MPI_TCP_INCLUDE",
                 "DOCKER_SSHD_PORT=3022", "--device hpu|cpu|auto", "TF_BF16_CONVERSION=$PKG/bf16_config/bert.json",
                 "--bf16_config_path", "--profile START,STOP", "download/download_pretrained_model.py",
                 f"modelpkg image build {NAME} --image hpu", f"modelpkg image build {NAME} --image cpu"):
        assert text in readme, text
    # no Model-References paths left: the package folder replaces them
    assert "/root/Model-References/TensorFlow/nlp/bert/" not in readme.replace(
        "`/root/Model-References/TensorFlow/nlp/bert` replaced", "")
    packed = next(f for f in plan.model.files if f.path == "README.md")
    assert packed.data.decode() == readme


def test_committed_readme_and_dockerfiles_are_the_rendered_ones(plan):
    assert (REPO / f"docs/packages/{NAME}.md").read_text() == plan.readme
    for key, text in dockerfiles(plan).items():
        assert (REPO / f"dockerfiles/{NAME}-{key}.Dockerfile").read_text() == text


def test_list_and_show_include_the_package():
    result = runner.invoke(app, ["--root", str(REPO), "list", "--json"])
    assert result.exit_code == 0, result.output
    row = next(r for r in json.loads(result.output) if r["name"] == NAME)
    assert row["hardware"] == "gaudi" and row["image"] == HPU_TAG
    result = runner.invoke(app, ["--root", str(REPO), "show", NAME])
    assert result.exit_code == 0, result.output
    assert f"image hpu (default): {HPU_TAG}" in result.output and f"image cpu: {CPU_TAG}" in result.output


def test_archive_root_is_habanas_bert_folder(tmp_path):
    result = runner.invoke(app, ["--root", str(REPO), "build", NAME, "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    with tarfile.open(tmp_path / f"{NAME}.tar.gz") as tar:
        members = {m.name.removeprefix(f"{NAME}/"): m for m in tar.getmembers()}
    expected_files = ["run_pretraining.py", "run_classifier.py", "run_squad.py", "demo_bert", "demo_bert.py",
                      "bf16_config/bert.json", "requirements.txt", "models/bert_large/tensorflow/run_pretraining.py",
                      "models/common/launch.py", "licenses/third_party/habana.txt", "README.md"]
    expected_dirs = ["download", "data_preprocessing", "models/bert_large/tensorflow"]
    missing = [p for p in expected_files if p not in members]
    missing += [d for d in expected_dirs if not any(n.startswith(d + "/") for n in members)]
    assert not missing, f"not in the archive (habana/bert_tensorflow/ not complete yet?): {missing}"
    assert members["demo_bert"].mode == 0o755
