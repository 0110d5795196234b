"""A real two-host launch: sshd on 127.0.0.1 and 127.0.0.2 (tests/sshd.py), the launcher's
``--hosts 127.0.0.1:1,127.0.0.2:1`` with its default ssh port (3022) and detected TCP
interface (lo); rank 1 must come through an ssh login, rank 0 not."""

import json
import shutil
import subprocess
import sys

import pytest

from tests.launch.test_launch_cli import LAUNCH, REPO, clean_env
from tests.sshd import sshd_hosts  # noqa: F401  (pytest fixture)

pytestmark = [pytest.mark.slow, pytest.mark.mpi]

REPORT = (
    "import json, os, socket\n"
    "line = 'REPORT ' + json.dumps({'rank': int(os.environ['OMPI_COMM_WORLD_RANK']),\n"
    "      'size': int(os.environ['OMPI_COMM_WORLD_SIZE']), 'host': socket.gethostname(),\n"
    "      'ssh': os.environ.get('SSH_CONNECTION'), 'omp': os.environ.get('OMP_NUM_THREADS'),\n"
    "      'marker': os.environ.get('HABANA_LOGS')})\n"
    "os.write(1, (line + '\\n').encode())  # one write: mpirun tags whole lines\n")


def launcher_env(hosts):
    env = clean_env(PYTHONPATH=REPO, HABANA_LOGS="/tmp/habana-logs-marker", **hosts.env)
    for name in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "OMPI_MCA_btl_tcp_if_include"):
        env.pop(name, None)
    return env


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun (openmpi-bin)")
def test_rank_on_the_second_host_comes_through_ssh(sshd_hosts, tmp_path):  # noqa: F811
    script = tmp_path / "report.py"
    script.write_text(REPORT)
    done = subprocess.run([sys.executable, LAUNCH, "--hosts", sshd_hosts.hosts, "--no-bind",
                           "--tag-output", "--", sys.executable, str(script)],
                          cwd=tmp_path, env=launcher_env(sshd_hosts), capture_output=True,
                          text=True, timeout=180)
    out = done.stdout + done.stderr + "\nsshd log:\n" + sshd_hosts.log_text()
    assert done.returncode == 0, out
    command = [ln for ln in done.stdout.splitlines() if "mpirun" in ln.split(" ", 1)[0]]
    assert len(command) == 1, out
    # the launcher's own choices: the rsh args from the environment plus the port, lo for TCP
    assert f"--mca plm_rsh_args '-F {sshd_hosts.ssh_config} -p {sshd_hosts.port}'" in command[0]
    assert "--mca btl_tcp_if_include lo" in command[0]
    assert "-x HABANA_LOGS" in command[0] and "--tag-output" in command[0]
    reports = {}
    for line in done.stdout.splitlines():
        if "REPORT " in line:
            r = json.loads(line.split("REPORT ", 1)[1])
            assert line.startswith(f"[1,{r['rank']}]<stdout>:"), line
            reports[r["rank"]] = r
    assert sorted(reports) == [0, 1], out
    assert all(r["size"] == 2 and r["omp"] for r in reports.values())
    assert reports[0]["ssh"] is None, out  # started by mpirun here, no ssh
    # rank 1's orted was started by sshd on 127.0.0.2: SSH_CONNECTION = client port server port
    ssh = (reports[1]["ssh"] or "").split()
    assert ssh[2:] == ["127.0.0.2", str(sshd_hosts.port)], out
    assert reports[1]["marker"] == "/tmp/habana-logs-marker"  # -x forwarding over ssh
    log = sshd_hosts.log_text()
    assert "Accepted publickey for root from 127.0.0.1" in log, log
    assert f"on 127.0.0.2 port {sshd_hosts.port}" in log, log


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun (openmpi-bin)")
def test_without_the_ssh_config_the_remote_rank_cannot_start(sshd_hosts, tmp_path):  # noqa: F811
    """The ssh login is really needed: with the wrong port mpirun cannot reach 127.0.0.2."""
    env = launcher_env(sshd_hosts)
    env["DOCKER_SSHD_PORT"] = "1"  # nothing listens there
    done = subprocess.run([sys.executable, LAUNCH, "--hosts", sshd_hosts.hosts, "--no-bind",
                           "--", sys.executable, "-c", "print('R' + 'AN')"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "-p 1'" in done.stdout
    assert "RAN" not in done.stdout


@pytest.mark.parametrize("ci,outcome", [("true", "Failed"), ("", "Skipped")])
def test_missing_sshd_fails_in_ci_and_skips_locally(monkeypatch, ci, outcome):
    from tests import sshd

    monkeypatch.setattr(sshd, "_sshd_binary", lambda: None)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(BaseException) as caught:
        sshd.require_sshd()
    assert type(caught.value).__name__ == outcome
    assert "openssh-server" in str(caught.value)
