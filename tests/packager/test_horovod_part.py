"""The Horovod recipe lives in two places that must agree: scripts/build-horovod.sh (the test
environment) and the `horovod` Dockerfile part (the TF images: a build stage with the
compilers and MPI headers; the runtime stage gets only the wheel). Same version, same build variables, same dropped CMake line; the part sits in every
TF Xeon image after the tensorflow and openmpi parts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build-horovod.sh"
PART = REPO / "templates" / "dockerfile" / "horovod.Dockerfile.j2"
XLA_LINE = 'list(APPEND TF_SOURCES "${PROJECT_SOURCE_DIR}/horovod/tensorflow/xla_mpi_ops.cc")'


def _build_vars(text: str) -> set[str]:
    return set(re.findall(r"\b(HOROVOD_(?:WITH|WITHOUT)_[A-Z]+=1|HOROVOD_CPU_OPERATIONS=MPI)",
                          text))


def test_script_and_part_build_the_same_wheel():
    script, part = SCRIPT.read_text(), PART.read_text()
    assert _build_vars(script) == _build_vars(part) == {
        "HOROVOD_WITH_TENSORFLOW=1", "HOROVOD_WITH_MPI=1", "HOROVOD_WITHOUT_PYTORCH=1",
        "HOROVOD_WITHOUT_MXNET=1", "HOROVOD_WITHOUT_GLOO=1", "HOROVOD_CPU_OPERATIONS=MPI"}
    assert f"xla_line='{XLA_LINE}'" in script and f"xla_line='{XLA_LINE}'" in part
    for text in (script, part):
        assert 'grep -qxF "${xla_line}"' in text and 'grep -vxF "${xla_line}"' in text
        assert "--no-build-isolation" in text and "--no-binary :all:" in text
    version = re.search(r'HOROVOD_VERSION="\$\{HOROVOD_VERSION:-([0-9.]+)\}"', script)
    assert version and f'arg("HOROVOD_VERSION", "{version.group(1)}")' in part


def test_part_builds_in_its_own_stage_and_installs_only_the_wheel():
    part = PART.read_text()
    assert part.splitlines()[0] == "{# part: dependency #}"
    build_stage = part[:part.index("{{ resume_runtime() }}")]
    runtime = part[part.index("{{ resume_runtime() }}"):]
    assert "FROM {{ build_from() }} AS horovod-build" in build_stage
    assert 'apt_install("cmake g++ make python3-dev libopenmpi-dev")' in build_stage
    assert "pip wheel" in build_stage and "-w /horovod-dist" in build_stage
    # the runtime stage: the wheel from the build stage, installed and removed; no compilers
    assert "COPY --from=horovod-build /horovod-dist/ /tmp/horovod-dist/" in runtime
    assert "rm -rf /tmp/horovod-dist" in runtime
    assert "apt" not in runtime and "g++" not in runtime


def test_runtime_images_carry_no_compilers_or_mpi_headers():
    """The rendered Xeon TF Dockerfile: libopenmpi-dev and the compilers only in the
    horovod-build stage; the final stage starts FROM the runtime stage, not from the build."""
    text = (REPO / "dockerfiles" / "bert-large-bf16-training.Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    names = [s.split("\n", 1)[0] for s in stages]
    assert names == ["${BASE_IMAGE} AS runtime", "runtime AS horovod-build", "runtime AS runtime-1"]
    for index, stage in enumerate(stages):
        installs = " ".join(re.findall(r"apt-get install -y --no-install-recommends ([^&\\]*)", stage)).split()
        has_dev = "libopenmpi-dev" in installs or "g++" in installs
        assert has_dev == (index == 1), (names[index], installs)


@pytest.mark.parametrize("spec, key", [("bert-large-training.yaml", None),
                                       ("tensorflow-gaudi-bert-training.yaml", "cpu")])
def test_tf_xeon_images_have_horovod_after_tensorflow_and_openmpi(spec, key):
    data = yaml.safe_load((REPO / "specs" / spec).read_text())
    parts = (data["images"][key] if key else data["image"])["parts"]
    assert parts.index("tensorflow") < parts.index("horovod")
    assert parts.index("openmpi") < parts.index("horovod") < parts.index("model_package")


@pytest.mark.parametrize("name", ["bert-large-bf16-training",
                                  "tensorflow-gaudi-bert-training-cpu"])
def test_rendered_dockerfiles_build_horovod(name):
    text = (REPO / "dockerfiles" / f"{name}.Dockerfile").read_text()
    assert "ARG HOROVOD_VERSION=0.28.1" in text
    assert text.index("tensorflow-cpu==2.21.0") < text.index("pip wheel --no-cache-dir "
                                                                "--no-build-isolation")


def test_script_answers_help_and_refuses_extra_arguments():
    out = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "build-horovod.sh [PYTHON]" in out.stdout
    bad = subprocess.run(["bash", str(SCRIPT), "python3", "extra"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: usage:")
    missing = subprocess.run(["bash", str(SCRIPT), "/nonexistent/python"], capture_output=True,
                             text=True)
    assert missing.returncode == 2 and "no Python interpreter" in missing.stderr
