"""--num-instances / --numa-cores-per-instance: the core split on recorded machines, the
dry run's per-instance commands, the aggregate of results, and a real run of two pinned
instances on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from models.common import launch
from tests.launch.test_launch_plan import CMD, ROOT, machine, plan

LAUNCH = launch.__file__


def _instances(p):
    return [(i["cpus"], i["memory"]) for i in p.instances]


def test_cores_per_instance_fills_both_sockets_with_local_memory():
    p = plan("spr_2s_56c_ht.lscpu", ["--numa-cores-per-instance", "4"])
    assert len(p.instances) == 28 and not p.warnings
    assert _instances(p)[:2] == [("0-3", "0"), ("4-7", "0")]
    assert _instances(p)[14] == ("56-59", "1")
    assert p.instances[3]["command"] == ["/usr/bin/numactl", "--physcpubind=12-15",
                                         "--membind=0", *CMD]
    assert p.env["OMP_NUM_THREADS"] == "4" and p.env["NUM_INTRA_THREADS"] == "4"
    envs = [i["env"] for i in p.instances]
    assert [e["LAUNCH_INSTANCE"] for e in envs] == [str(i) for i in range(28)]
    assert {e["LAUNCH_NUM_INSTANCES"] for e in envs} == {"28"}


def test_auto_is_four_cores_or_a_small_sockets_cores():
    """Intel's realtime default (4 cores per instance) on a big server; on a 2-core VM one
    instance of its 2 cores instead of an error, with a warning that says why."""
    p = plan("spr_2s_56c_ht.lscpu", ["--numa-cores-per-instance", "auto"])
    assert len(p.instances) == 28 and _instances(p)[0] == ("0-3", "0") and not p.warnings
    p = plan("vm_1s_2c_ht.lscpu", ["--numa-cores-per-instance", "auto"])
    assert len(p.instances) == 1 and p.instances[0]["cpus"] in ("0-1", "0,1")
    assert any("auto: 2 core(s) per instance" in w for w in p.warnings)


def test_instances_stay_inside_a_numa_node_and_idle_cores_are_named():
    # SNC4: 14 cores per node; 4-core instances never straddle two nodes
    p = plan("spr_2s_56c_ht_snc4.lscpu", ["--numa-cores-per-instance", "4"])
    assert len(p.instances) == 24
    assert _instances(p)[2:4] == [("8-11", "0"), ("14-17", "1")]
    assert any("16 usable physical core(s) stay idle" in w for w in p.warnings)


def test_num_instances_alone_splits_sockets_evenly():
    p = plan("icx_2s_36c_noht.lscpu", ["--num-instances", "4"])
    assert _instances(p) == [("0-17", "0"), ("18-35", "0"), ("36-53", "1"), ("54-71", "1")]
    per_socket = plan("icx_2s_36c_noht.lscpu", ["--numa-cores-per-instance", "socket"])
    assert _instances(per_socket) == [("0-35", "0"), ("36-71", "1")]
    one_socket = plan("icx_2s_36c_noht.lscpu", ["--socket-id", "1", "--num-instances", "2",
                                                "--numa-cores-per-instance", "8"])
    assert _instances(one_socket) == [("36-43", "1"), ("44-51", "1")]


@pytest.mark.parametrize("args, message", [
    (["--num-instances", "30", "--numa-cores-per-instance", "4"], "at most 28"),
    (["--numa-cores-per-instance", "57"], "at most 56"),
    (["--num-instances", "2", "--mpi-num-processes", "2"], "do not combine with MPI"),
    (["--num-instances", "0"], "positive integer"),
    (["--numa-cores-per-instance", "4", "--num-cores", "4"], "give one"),
])
def test_impossible_splits_are_usage_errors(args, message):
    with pytest.raises(launch.LaunchError, match=message):
        plan("spr_2s_56c_ht.lscpu", args)


def test_without_numactl_each_instance_binds_itself():
    tools = launch.Tools(numactl=None, mpirun=None, is_root=True, python="python3")
    p = plan("vm_1s_2c_ht.lscpu", ["--num-instances", "2"], tools=tools)
    assert [i["bind"] for i in p.instances] == ["sched_setaffinity"] * 2
    assert p.instances[1]["command"] == ["python3", launch.BIND_SCRIPT, "--slot",
                                         f"{p.instances[1]['cpus']}:0", "--", *CMD]


def test_dry_run_prints_every_instance(capsys):
    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "icx_2s_36c_noht.lscpu")
    rc = launch.main(["--dry-run", "--json", "--lscpu-file", fixture, "--num-instances", "2",
                      "--", *CMD], environ={}, tools=ROOT)
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [i["command"][1] for i in out["instances"]] == ["--physcpubind=0-35",
                                                          "--physcpubind=36-71"]
    assert out["argv"] == [] and len(out["ranks"]) == 2
    rc = launch.main(["--dry-run", "--lscpu-file", fixture, "--num-instances", "2", "--", *CMD],
                     environ={}, tools=ROOT)
    text = capsys.readouterr().out
    assert "#   instance 1 on localhost: /usr/bin/numactl --physcpubind=36-71" in text
    assert text.count(" &\n") == 2 and text.rstrip().endswith("wait")


def test_aggregate_sums_throughput_and_pools_latencies():
    agg = launch.aggregate_results([
        {"examples_per_sec": 10.0, "latencies_ms": [1.0, 2.0], "batch_size": 1, "mode": "b"},
        {"examples_per_sec": 5.0, "latencies_ms": [3.0, 4.0], "batch_size": 1, "mode": "b"},
        None])
    assert agg["examples_per_sec"] == 15.0 and agg["instances"] == 3
    assert agg["instances_reporting"] == 2 and agg["batch_size"] == 1
    assert agg["latency_ms"]["p50"] == pytest.approx(2.5)
    assert agg["latency_ms"]["max"] == 4.0


INSTANCE = textwrap.dedent("""
    import json, os, sys
    i = int(os.environ["LAUNCH_INSTANCE"])
    print("instance says", i, sorted(os.sched_getaffinity(0)), os.environ["OMP_NUM_THREADS"])
    json.dump({"examples_per_sec": 1.5 + i, "latencies_ms": [10.0 * (i + 1)]},
              open(os.environ["LAUNCH_RESULT_FILE"], "w"))
    sys.exit(3 if os.environ.get("FAIL") == str(i) else 0)
""")


def test_two_pinned_instances_run_and_their_aggregate_is_printed(tmp_path):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 usable CPUs")
    script = tmp_path / "inst.py"
    script.write_text(INSTANCE)
    agg = tmp_path / "agg.json"
    cmd = [sys.executable, LAUNCH, "--num-instances", "2", "--aggregate-file", str(agg), "--",
           sys.executable, str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    said = sorted(line for line in lines if "instance says" in line)
    cpus = sorted(os.sched_getaffinity(0))
    assert said == [f"[instance 0] instance says 0 [{cpus[0]}] 1",
                    f"[instance 1] instance says 1 [{cpus[1]}] 1"]
    assert "launch.py: aggregate over 2 instance(s): throughput 4.000 examples/sec" in proc.stdout
    assert json.loads(agg.read_text())["latency_ms"]["max"] == 20.0
    failed = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "FAIL": "1"})
    assert failed.returncode == 3
    assert failed.stderr.strip().splitlines()[-1] == ("launch.py: error: instance(s) 1 failed "
                                                      "(exit 3)")
