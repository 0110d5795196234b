"""The wrapper (container) package (Intel's layout: build.sh, run.sh, model_packages/): its tree, and build.sh / run.sh driven with a
fake ``docker`` on PATH that records every call."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.pytorch.conftest import SPEC, have

IMAGE = "model-zoo:pytorch-bert-large-training"
BASE = "model-zoo:pytorch-ipex-spr"
WORKDIR = f"/workspace/{SPEC}"

FAKE_DOCKER = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["FAKE_DOCKER_LOG"], "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd()}) + "\\n")
if sys.argv[1:2] == ["images"]:
    known = [i for i in os.environ.get("FAKE_DOCKER_IMAGES", "").split(",") if i]
    if sys.argv[-1] in known:
        print("fecc7096a11e")
"""


@pytest.fixture
def docker(tmp_path: Path):
    """(env, calls): an environment whose PATH starts with a recording fake docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    env = {k: v for k, v in os.environ.items()
           if k not in {"PRECISION", "OUTPUT_DIR", "DATASET_DIR", "CONFIG_FILE", "CHECKPOINT_DIR",
                        "BATCH_SIZE", "MAX_STEPS", "SCRIPT", "IMAGE", "BASE_IMAGE"}
           and not k.lower().endswith("_proxy")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_DOCKER_LOG=str(log),
               FAKE_DOCKER_IMAGES=f"{IMAGE},{BASE}")

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return env, calls


def _run(script: Path, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(script)], env=env, cwd=cwd, text=True, capture_output=True, timeout=60)


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    dataset = tmp_path / "data" / "dataset"
    (dataset / "seq_128").mkdir(parents=True)
    config = tmp_path / "data" / "bert_config.json"
    config.write_text("{}")
    ckpt = tmp_path / "phase1" / "model_save"
    ckpt.mkdir(parents=True)
    return {"dataset": dataset, "config": config, "ckpt": ckpt, "out": tmp_path / "out dir"}


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_wrapper_archive_has_the_container_package_tree(wrapper_dir: Path, package_dir: Path):
    top = sorted(p.name for p in wrapper_dir.iterdir())
    assert top == sorted(["README.md", "build.sh", "licenses", "model_packages",
                          f"{SPEC}.Dockerfile", "run.sh"])
    assert (wrapper_dir / "licenses" / "LICENSE").is_file()
    assert (wrapper_dir / "licenses" / "third_party").is_dir()
    assert [p.name for p in (wrapper_dir / "model_packages").iterdir()] == [f"{SPEC}.tar.gz"]
    for script in ("build.sh", "run.sh"):
        assert os.access(wrapper_dir / script, os.X_OK)
    with tarfile.open(wrapper_dir / "model_packages" / f"{SPEC}.tar.gz") as tar:
        names = tar.getnames()
    assert f"{SPEC}/quickstart/run_bert_pretrain_phase1.sh" in names
    assert f"{SPEC}/models/bert_large/pytorch/run_pretraining.py" in names
    dockerfile = (wrapper_dir / f"{SPEC}.Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={BASE}" in dockerfile
    assert f"ADD model_packages/{SPEC}.tar.gz /workspace/" in dockerfile
    assert "docker images | grep pytorch-ipex-spr" in (wrapper_dir / "README.md").read_text()


@pytest.mark.skipif(not have("shellcheck"), reason="needs shellcheck")
def test_scripts_pass_shellcheck(wrapper_dir: Path):
    qs = Path(__file__).resolve().parents[2] / "quickstart" / "bert_large" / "pytorch"
    scripts = [wrapper_dir / "build.sh", wrapper_dir / "run.sh", *sorted(qs.glob("*.sh"))]
    proc = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_build_sh_builds_on_the_base_image_with_proxies(wrapper_dir: Path, docker, tmp_path: Path):
    env, calls = docker
    env.update(http_proxy="http://proxy:3128", no_proxy="localhost")
    proc = _run(wrapper_dir / "build.sh", env, cwd=tmp_path)  # from another folder
    assert proc.returncode == 0, proc.stderr
    assert calls()[0]["argv"] == ["images", "-q", BASE]
    build = calls()[-1]
    argv = build["argv"]
    assert argv[0] == "build" and argv[-1] == "."
    assert build["cwd"] == str(wrapper_dir)  # the build context is the wrapper folder
    assert _pairs(argv, "-t") == [IMAGE]
    assert _pairs(argv, "-f") == [f"{SPEC}.Dockerfile"]
    assert _pairs(argv, "--build-arg") == [f"BASE_IMAGE={BASE}", "http_proxy=http://proxy:3128",
                                           "no_proxy=localhost"]
    assert f"Built {IMAGE}" in proc.stdout


def test_scripts_print_no_url_credentials(wrapper_dir: Path, docker, paths, tmp_path: Path):
    env, calls = docker
    env.update(http_proxy="http://alice:S3cret@proxy:3128", PRECISION="fp32", OUTPUT_DIR=str(paths["out"]),
               DATASET_DIR=str(paths["dataset"]), CONFIG_FILE=str(paths["config"]))
    for script in ("build.sh", "run.sh"):
        proc = _run(wrapper_dir / script, env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "S3cret" not in proc.stdout + proc.stderr
        assert "http_proxy=http://alice:***@proxy:3128" in proc.stdout, proc.stdout
        # docker itself still gets the real value
        assert any("http_proxy=http://alice:S3cret@proxy:3128" in a for a in calls()[-1]["argv"])


def test_build_sh_says_how_to_get_a_missing_base_image(wrapper_dir: Path, docker, tmp_path: Path):
    env, calls = docker
    env["FAKE_DOCKER_IMAGES"] = ""
    proc = _run(wrapper_dir / "build.sh", env, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"the base image {BASE} is missing" in proc.stderr
    assert "docker images | grep pytorch-ipex-spr" in proc.stderr
    assert "modelpkg image build pytorch-ipex-spr" in proc.stderr
    assert f"docker build -t {BASE} - < dockerfiles/pytorch-ipex-spr.Dockerfile" in proc.stderr
    assert "tar -xzf pytorch-ipex-spr.tar.gz && ./pytorch-ipex-spr/build.sh" in proc.stderr
    assert "docker load -i pytorch-ipex-spr.image.tar.gz  (modelpkg image save pytorch-ipex-spr writes it)" in proc.stderr
    assert [c["argv"][0] for c in calls()] == ["images"]  # no build started


def test_run_sh_phase1_by_default(wrapper_dir: Path, docker, paths, tmp_path: Path):
    env, calls = docker
    env.update(PRECISION="bf16", OUTPUT_DIR=str(paths["out"]), DATASET_DIR=str(paths["dataset"]),
               CONFIG_FILE=str(paths["config"]), BATCH_SIZE="32", MAX_STEPS="100",
               https_proxy="http://proxy:912")
    proc = _run(wrapper_dir / "run.sh", env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv = calls()[-1]["argv"]
    assert argv[:2] == ["run", "--rm"]
    assert "--privileged" in argv and "--init" in argv
    assert _pairs(argv, "--shm-size") == ["8G"]
    assert "-it" not in argv  # no terminal in tests
    out, data, cfg = (str(paths[k]) for k in ("out", "dataset", "config"))
    assert sorted(_pairs(argv, "-v")) == sorted([f"{out}:{out}", f"{data}:{data}", f"{cfg}:{cfg}"])
    assert sorted(_pairs(argv, "--env")) == sorted([
        "PRECISION=bf16", f"OUTPUT_DIR={out}", f"DATASET_DIR={data}", f"CONFIG_FILE={cfg}",
        "BATCH_SIZE=32", "MAX_STEPS=100", "https_proxy=http://proxy:912"])
    assert _pairs(argv, "-w") == [WORKDIR]
    assert argv[-3:] == [IMAGE, "/bin/bash", "quickstart/run_bert_pretrain_phase1.sh"]
    assert paths["out"].is_dir()  # created on the host before mounting
    assert "+ docker run" in proc.stdout  # the command is printed


def test_run_sh_passes_arguments_and_takes_the_precision_first(wrapper_dir: Path, docker, paths, tmp_path: Path):
    env, calls = docker
    env.update(OUTPUT_DIR=str(paths["out"]), DATASET_DIR=str(paths["dataset"]), CONFIG_FILE=str(paths["config"]))
    proc = subprocess.run([str(wrapper_dir / "run.sh"), "bf16", "--max_steps=3", "--seed=7"], env=env,
                          cwd=tmp_path, text=True, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    argv = calls()[-1]["argv"]
    assert "PRECISION=bf16" in _pairs(argv, "--env")
    assert argv[-5:] == [IMAGE, "/bin/bash", "quickstart/run_bert_pretrain_phase1.sh", "--max_steps=3", "--seed=7"]
    # PRECISION set and a different first argument: one error naming both, docker not started
    before = len(calls())
    env["PRECISION"] = "fp32"
    proc = subprocess.run([str(wrapper_dir / "run.sh"), "bf16"], env=env, cwd=tmp_path, text=True,
                          capture_output=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "error: PRECISION=fp32 and the argument bf16 disagree; give the precision once\n"
    assert len(calls()) == before


@pytest.mark.parametrize("script", ["run.sh", "build.sh"])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_wrapper_scripts_explain_themselves(wrapper_dir: Path, docker, tmp_path: Path, script, flag):
    env, calls = docker
    proc = subprocess.run([str(wrapper_dir / script), flag], env=env, cwd=tmp_path, text=True,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith(f"Usage: {'[SCRIPT=<script>] ./run.sh' if script == 'run.sh' else './build.sh'}")
    if script == "run.sh":
        # the precisions come from the spec; each variable once, with the spec's description
        assert "[fp32|avx-fp32|bf16|bf32]" in proc.stdout
        assert "PRECISION" in proc.stdout and "the precision to run: fp32, avx-fp32, bf16 or bf32 (required)" in proc.stdout
        assert "CONFIG_FILE" in proc.stdout and "the path to bert_config.json" in proc.stdout
    else:
        assert "BASE_IMAGE" in proc.stdout and BASE in proc.stdout
    assert calls() == []  # help starts nothing


def test_run_sh_phase2_with_relative_paths(wrapper_dir: Path, docker, paths, tmp_path: Path):
    env, calls = docker
    env.update(SCRIPT="run_bert_pretrain_phase2.sh", PRECISION="fp32", OUTPUT_DIR="out2",
               DATASET_DIR="data/dataset", CHECKPOINT_DIR="phase1/model_save")
    proc = _run(wrapper_dir / "run.sh", env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv = calls()[-1]["argv"]
    ckpt = str(paths["ckpt"])
    out = str(tmp_path / "out2")
    assert f"{ckpt}:{ckpt}" in _pairs(argv, "-v")  # relative paths become absolute, same inside
    assert f"{out}:{out}" in _pairs(argv, "-v")
    assert f"CHECKPOINT_DIR={ckpt}" in _pairs(argv, "--env")
    assert not any(e.startswith(("CONFIG_FILE=", "BATCH_SIZE=")) for e in _pairs(argv, "--env"))
    assert argv[-1] == "quickstart/run_bert_pretrain_phase2.sh"


@pytest.mark.parametrize(
    "script, drop, message",
    [
        (None, "PRECISION", "PRECISION is not set (needed by run_bert_pretrain_phase1.sh). Set PRECISION to the precision to run: fp32, avx-fp32, bf16 or bf32"),
        (None, "OUTPUT_DIR", "OUTPUT_DIR is not set (needed by run_bert_pretrain_phase1.sh). Set OUTPUT_DIR to a directory where log and model files"),
        (None, "DATASET_DIR", "DATASET_DIR is not set (needed by run_bert_pretrain_phase1.sh). Set DATASET_DIR to the preprocessed TF records directory"),
        (None, "CONFIG_FILE", "CONFIG_FILE is not set (needed by run_bert_pretrain_phase1.sh). Set CONFIG_FILE to the path to bert_config.json"),
        ("run_bert_pretrain_phase2.sh", "CHECKPOINT_DIR", "CHECKPOINT_DIR is not set (needed by run_bert_pretrain_phase2.sh). Set CHECKPOINT_DIR to the model_save directory in phase 1's OUTPUT_DIR"),
        ("run_bert_pretrain_phase3.sh", None, "SCRIPT=run_bert_pretrain_phase3.sh is not a quickstart script of pytorch-spr-bert-large-training. Set SCRIPT to one of: run_bert_pretrain_phase1.sh, run_bert_pretrain_phase2.sh"),
    ],
)
def test_run_sh_errors_name_the_variable(wrapper_dir: Path, docker, paths, tmp_path: Path, script, drop, message):
    env, calls = docker
    values = {"PRECISION": "fp32", "OUTPUT_DIR": str(paths["out"]), "DATASET_DIR": str(paths["dataset"]),
              "CONFIG_FILE": str(paths["config"]), "CHECKPOINT_DIR": str(paths["ckpt"])}
    if drop:
        values.pop(drop)
    if script:
        values["SCRIPT"] = script
    env.update(values)
    proc = _run(wrapper_dir / "run.sh", env, cwd=tmp_path)
    assert proc.returncode == 2  # a usage error: the variables are wrong
    assert message in proc.stderr
    assert calls() == []  # docker never called
    assert not paths["out"].exists()


def test_run_sh_other_errors(wrapper_dir: Path, docker, paths, tmp_path: Path):
    env, calls = docker
    env.update(PRECISION="fp16", OUTPUT_DIR=str(paths["out"]), DATASET_DIR=str(paths["dataset"]),
               CONFIG_FILE=str(paths["config"]))
    proc = _run(wrapper_dir / "run.sh", env, cwd=tmp_path)
    assert proc.returncode == 2 and "PRECISION=fp16 is not supported. Set PRECISION to one of: fp32, avx-fp32, bf16, bf32" in proc.stderr

    env.update(PRECISION="fp32", DATASET_DIR=str(tmp_path / "missing"))
    proc = _run(wrapper_dir / "run.sh", env, cwd=tmp_path)
    assert proc.returncode == 2 and f"DATASET_DIR={tmp_path / 'missing'} does not exist" in proc.stderr

    env.update(DATASET_DIR=str(paths["dataset"]), FAKE_DOCKER_IMAGES=BASE)
    proc = _run(wrapper_dir / "run.sh", env, cwd=tmp_path)
    assert proc.returncode == 1 and f"the image {IMAGE} is missing; build it with ./build.sh first" in proc.stderr
    assert [c["argv"][0] for c in calls()] == ["images"]
    assert not paths["out"].exists()


def test_scripts_without_docker_say_so(wrapper_dir: Path, tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "env"):
        if shutil.which(tool):
            os.symlink(shutil.which(tool), bin_dir / tool)
    env = {"PATH": str(bin_dir), "PRECISION": "fp32", "OUTPUT_DIR": str(tmp_path / "o"),
           "DATASET_DIR": str(tmp_path), "CONFIG_FILE": str(wrapper_dir / "README.md")}
    for script in ("build.sh", "run.sh"):
        proc = _run(wrapper_dir / script, env, cwd=tmp_path)
        assert proc.returncode == 1
        assert "docker is not on PATH. Install Docker" in proc.stderr
