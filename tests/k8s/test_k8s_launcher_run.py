"""The launcher command of a rendered MPIJob, run for real: the PyTorch package (built and
extracted as a user would) trains 2 steps as 2 MPI ranks on two "hosts" (127.0.0.1 and
127.0.0.2, the second reached through a real sshd, tests/sshd.py), the hosts read from a
hostfile in MPI Operator v2's format, as the operator writes it for the launcher pod."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import pytest
import yaml

from tests.k8s.conftest import modelpkg
from tests.pytorch.conftest import package_dir, tiny_dataset  # noqa: F401  (pytest fixtures)
from tests.sshd import sshd_hosts  # noqa: F401  (pytest fixture)

NAME = "pytorch-spr-bert-large-training"


def launcher(manifest: str) -> dict:
    job = [d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "MPIJob"][0]
    return job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_launcher_script_is_shellcheck_clean(tmp_path):
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed (scripts/setup-test-env.sh installs it)")
    for name in (NAME, "tensorflow-gaudi-bert-training"):
        code, out, err = modelpkg("k8s", name)
        assert code == 0, err
        script = tmp_path / f"{name}.sh"
        script.write_text("#!/usr/bin/env bash\n" + launcher(out)["command"][2])
        done = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout


def test_launcher_without_a_hostfile_says_so(tmp_path):
    code, out, _ = modelpkg("k8s", NAME)
    command = launcher(out)["command"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "OMPI_MCA_orte_default_hostfile": str(tmp_path / "none")})
    assert done.returncode == 2
    assert "is missing or empty: run this as the launcher of an MPIJob" in done.stderr


@pytest.mark.slow
@pytest.mark.mpi
def test_rendered_launcher_command_trains_on_two_hosts(package_dir, tiny_dataset, sshd_hosts, tmp_path):  # noqa: F811
    dataset, config = tiny_dataset
    data = tmp_path / "pvc"
    shutil.copytree(dataset, data / "dataset")
    shutil.copy(config, data / "bert_config.json")
    code, out, err = modelpkg(
        "k8s", NAME, "--workers", "2", "--slots-per-worker", "1", "--pvc", f"bert-data={data}",
        "--env", f"CONFIG_FILE={data}/bert_config.json", "--env", "BATCH_SIZE=4", "--env", "MAX_STEPS=2",
        "--env", f"MASTER_PORT={free_port()}", "--env", "OMP_NUM_THREADS=1", "--", "--log_freq=1")
    assert code == 0, err
    container = launcher(out)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MPI_NUM_PROCESSES"] == "2" and env["OUTPUT_DIR"] == f"{data}/output"
    # what MPI Operator v2 gives the launcher pod: the hostfile and the variable naming it
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("127.0.0.1 slots=1\n127.0.0.2 slots=1\n")
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI_", "PMIX_"))}
    run_env.update(env)
    run_env.update(sshd_hosts.env)  # ssh config of the test sshd (and its port when not 3022)
    run_env.update(OMPI_MCA_orte_default_hostfile=str(hostfile), PYTHONUNBUFFERED="1")
    # the container's workingDir is the package root: here the extracted package
    done = subprocess.run(container["command"], cwd=package_dir, env=run_env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=420)
    log = done.stdout + "\nsshd log:\n" + sshd_hosts.log_text()
    assert done.returncode == 0, log
    assert "hosts from " + str(hostfile) + ": 127.0.0.1:1,127.0.0.2:1 (MASTER_ADDR=127.0.0.1)" in done.stdout
    assert "-H 127.0.0.1:1,127.0.0.2:1" in done.stdout, done.stdout
    assert "Accepted publickey" in sshd_hosts.log_text(), log
    summary = json.loads((data / "output" / "summary.json").read_text())
    assert summary["steps"] == 2, summary
    assert summary["world_size"] == 2 and summary["backend"], summary
