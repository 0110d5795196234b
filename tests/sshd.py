"""Two "hosts" on this machine for real multi-host mpirun runs: an OpenSSH server started as a
subprocess (own config, host key and authorized key, all generated in a temp folder) listening
on 127.0.0.1 and 127.0.0.2 (both loopback; nothing on the machine is changed except that
``/run/sshd``, sshd's compiled-in privilege separation folder, is created when missing).

Open MPI starts its daemon locally for ``127.0.0.1`` (an address of ``lo``) and through ssh
for ``127.0.0.2``, which no interface lists as its own address, so the ranks on the second
"host" come through a real ssh login.

    from tests.sshd import two_loopback_hosts
    with two_loopback_hosts(tmp_path) as hosts:
        env = {**os.environ, **hosts.env}     # OMPI_MCA_plm_rsh_agent/_args (+ DOCKER_SSHD_PORT)
        launch.py --hosts hosts.hosts ...     # "127.0.0.1:1,127.0.0.2:1"

or the pytest fixture ``sshd_hosts`` (``from tests.sshd import sshd_hosts`` in a test module).
The port is 3022 (the launcher's default, Habana's docker sshd port) when it is free, else a
free one, given to the launcher as ``DOCKER_SSHD_PORT``. Where sshd is not installed the test
fails under CI (``CI=true``) and is skipped elsewhere, naming the package.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

SSHD_PORT = 3022
ADDRESSES = ("127.0.0.1", "127.0.0.2")
PRIVSEP_DIR = "/run/sshd"


@dataclasses.dataclass(frozen=True)
class SshHosts:
    env: Dict[str, str]  # add to the launcher's environment
    hosts: str  # --hosts / MULTI_HLS_IPS value, one slot each
    port: int
    log: Path  # sshd's log (LogLevel VERBOSE): "Accepted publickey for root from ..."
    ssh_config: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _sshd_binary() -> Optional[str]:
    found = shutil.which("sshd")
    if found:
        return found
    return "/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None


def require_sshd() -> str:
    """Path of sshd (with ssh and ssh-keygen); fails under CI, skips elsewhere, if missing."""
    sshd = _sshd_binary()
    missing = [name for name, path in (("sshd (openssh-server)", sshd),
                                       ("ssh (openssh-client)", shutil.which("ssh")),
                                       ("ssh-keygen (openssh-client)", shutil.which("ssh-keygen")))
               if not path]
    if missing:
        reason = (f"needs {', '.join(missing)}: bash scripts/setup-test-env.sh installs "
                  "openssh-server")
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return sshd  # type: ignore[return-value]


def _port_free(port: int) -> bool:
    for address in ADDRESSES:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as sshd does
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def _pick_port() -> int:
    if _port_free(SSHD_PORT):
        return SSHD_PORT
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if _port_free(port):
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1 and 127.0.0.2 for sshd")


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "modelpkg-test",
                    "-f", str(path)], check=True, capture_output=True, timeout=60)


def _listening(port: int) -> bool:
    for address in ADDRESSES:
        try:
            with socket.create_connection((address, port), timeout=1):
                pass
        except OSError:
            return False
    return True


@contextlib.contextmanager
def two_loopback_hosts(workdir: Optional[os.PathLike] = None,
                       timeout: float = 20.0) -> Iterator[SshHosts]:
    """Start sshd on 127.0.0.1 and 127.0.0.2, yield what mpirun needs to log in, stop it."""
    sshd = require_sshd()
    if not os.path.isdir(PRIVSEP_DIR):
        try:
            os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
        except OSError as exc:
            pytest.skip(f"sshd needs {PRIVSEP_DIR} and it cannot be created ({exc.strerror}); "
                        "run as root")
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="sshd-"))
        d = Path(workdir) / "sshd"
        d.mkdir(parents=True, exist_ok=True)
        _keygen(d / "host_key")
        _keygen(d / "client_key")
        shutil.copy(d / "client_key.pub", d / "authorized_keys")
        port = _pick_port()
        config = d / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}",
            *(f"ListenAddress {a}" for a in ADDRESSES),
            f"HostKey {d / 'host_key'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}",
            f"PidFile {d / 'sshd.pid'}",
            "PermitRootLogin yes",
            "StrictModes no",  # the temp folder's modes are not ~/.ssh's
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            "",
        ]))
        client = d / "ssh_config"
        client.write_text("\n".join([
            "Host *",
            f"  IdentityFile {d / 'client_key'}",
            "  IdentitiesOnly yes",
            "  StrictHostKeyChecking no",
            "  UserKnownHostsFile /dev/null",
            "  BatchMode yes",
            "  LogLevel ERROR",
            "",
        ]))
        log = d / "sshd.log"
        check = subprocess.run([sshd, "-t", "-f", str(config)], capture_output=True, text=True,
                               timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"sshd -t rejects the test config: {check.stderr.strip()}")
        with open(log, "wb") as log_fh:
            # sshd must be started by its absolute path (it re-executes itself)
            proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log_fh,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while not _listening(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not start on port {port}: "
                                       f"{log.read_text(errors='replace').strip()}")
                time.sleep(0.1)
            env = {
                "OMPI_MCA_plm_rsh_agent": "ssh",
                # the launcher keeps these and adds "-p PORT"
                "OMPI_MCA_plm_rsh_args": f"-F {client}",
            }
            if port != SSHD_PORT:
                env["DOCKER_SSHD_PORT"] = str(port)
            yield SshHosts(env=env, hosts=",".join(f"{a}:1" for a in ADDRESSES), port=port,
                           log=log, ssh_config=client)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def sshd_hosts(tmp_path) -> Iterator[SshHosts]:
    """pytest fixture form of :func:`two_loopback_hosts`."""
    with two_loopback_hosts(tmp_path) as hosts:
        yield hosts
