"""bind.py: each MPI rank picks its slot by local rank and binds to it."""

import argparse
import os
import shutil
import subprocess
import sys

import pytest

from models.common import bind

BIND = bind.__file__
CPUS = sorted(os.sched_getaffinity(0))
REPORT = "import os; print(sorted(os.sched_getaffinity(0)), os.environ.get('X_MARK'))"


def test_slot_syntax():
    assert bind.parse_slot("0-27:0") == ("0-27", "0")
    assert bind.parse_slot("0-3,8-11:local") == ("0-3,8-11", "local")
    for bad in ("0-27", ":0", "0-3:", "a-b:0"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            bind.parse_slot(bad)


def test_rank_argv():
    assert bind.rank_argv(("0-3", "1"), ["python", "t.py"], "/usr/bin/numactl") == [
        "/usr/bin/numactl", "--physcpubind=0-3", "--membind=1", "python", "t.py"]
    assert bind.rank_argv(("0-3,8", "local"), ["t"], "numactl")[2] == "--localalloc"
    assert bind.rank_argv(("0-3", "0"), ["t"], None) == ["t"]


def run_rank(local_rank, path=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI_"))}
    env.update(OMPI_COMM_WORLD_RANK=str(local_rank), OMPI_COMM_WORLD_SIZE="2",
               OMPI_COMM_WORLD_LOCAL_RANK=str(local_rank), OMPI_COMM_WORLD_LOCAL_SIZE="2",
               X_MARK="kept")
    if path is not None:
        env["PATH"] = path
    slots = ["--slot", f"{CPUS[0]}:0", "--slot", f"{CPUS[-1]}:0"]
    return subprocess.run([sys.executable, BIND, *slots, "--", sys.executable, "-c", REPORT],
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 usable CPUs")
@pytest.mark.parametrize("with_numactl", [True, False])
def test_each_local_rank_gets_its_slot(tmp_path, with_numactl):
    if with_numactl and not shutil.which("numactl"):
        pytest.skip("numactl not installed")
    path = None if with_numactl else str(tmp_path)  # no numactl: sched_setaffinity
    for local_rank, cpu in ((0, CPUS[0]), (1, CPUS[-1])):
        done = run_rank(local_rank, path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [f"[{cpu}]", "kept"]


def test_pick_slot_shares_round_robin():
    slots = [("0-3", "0"), ("4-7", "1")]
    assert [bind.pick_slot(slots, r) for r in range(3)] == [slots[0], slots[1], slots[0]]


def test_rank_binding_says_how_the_rank_is_bound():
    assert bind.rank_binding(("0-3", "1"), ["t"], "/usr/bin/numactl") == {
        "cpus": "0-3", "memory": "1", "bind": "numactl",
        "command": ["/usr/bin/numactl", "--physcpubind=0-3", "--membind=1", "t"]}
    assert bind.rank_binding(("0-3", "1"), ["t"], None, can_set_affinity=True) == {
        "cpus": "0-3", "memory": "unbound", "bind": "sched_setaffinity", "command": ["t"]}
    assert bind.rank_binding(("0-3", "1"), ["t"], None, can_set_affinity=False)["bind"] == "none"
