"""Platform detection: recorded lscpu outputs of real machine shapes, sysfs and /proc fallbacks."""

import os

import pytest

from models.common import platform_info as pi

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def load(name, usable=None):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return pi.from_lscpu_text(fh.read(), usable=usable, source=name)


def test_cpu_list_round_trip():
    assert pi.parse_cpu_list("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert pi.parse_cpu_list("0-6:2") == [0, 2, 4, 6]
    assert pi.format_cpu_list([11, 0, 1, 2, 3, 8, 10]) == "0-3,8,10-11"
    assert pi.format_cpu_list([]) == ""


@pytest.mark.parametrize("name,sockets,cores,threads,nodes,flags", [
    ("spr_2s_56c_ht.lscpu", 2, 56, 2, {0: "0-55,112-167", 1: "56-111,168-223"},
     {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
    ("icx_2s_36c_noht.lscpu", 2, 36, 1, {0: "0-35", 1: "36-71"}, {"avx512f"}),
    ("vm_1s_2c_ht.lscpu", 1, 2, 2, {0: "0-3"}, {"avx512f"}),
    ("clx_2s_20c_ht_host.lscpu", 2, 20, 2, {0: "0-19,40-59", 1: "20-39,60-79"}, {"avx512f"}),
    ("gaudi_host_2s_40c_ht.lscpu", 2, 40, 2, {0: "0-39,80-119", 1: "40-79,120-159"},
     {"avx512f"}),
])
def test_machine_shapes(name, sockets, cores, threads, nodes, flags):
    p = load(name)
    assert len(p.sockets) == sockets
    assert p.cores_per_socket == cores
    assert p.threads_per_core == threads
    assert {n: pi.format_cpu_list(c) for n, c in p.numa_nodes.items()} == nodes
    assert flags == p.flags & set(pi.ISA_FLAGS) - {"amx_int8", "avx512_fp16"}
    # one CPU per physical core, the first hardware thread, socket by socket
    assert pi.format_cpu_list(p.physical_cores()) == f"0-{sockets * cores - 1}"
    assert p.has_amx == ("amx_tile" in flags)


def test_summary_only_gives_the_same_topology_as_parse_section():
    with open(os.path.join(FIXTURES, "spr_2s_56c_ht.lscpu"), encoding="utf-8") as fh:
        text = fh.read()
    summary_only = text.split("# The following is the parsable format")[0]
    assert summary_only != text
    assert pi.from_lscpu_text(summary_only).cpus == pi.from_lscpu_text(text).cpus


def test_sub_numa_clustering_keeps_sockets_apart_from_nodes():
    p = load("spr_2s_56c_ht_snc4.lscpu")
    assert len(p.sockets) == 2 and len(p.numa_nodes) == 8
    assert p.physical_cores(1)[:3] == [56, 57, 58]
    assert p.node_of(14) == 1 and p.node_of(126) == 1


def test_cpuset_restricted_container():
    with open(os.path.join(FIXTURES, "clx_container.cpuset"), encoding="utf-8") as fh:
        cpuset = pi.parse_cpu_list(fh.read().strip())
    p = load("clx_2s_20c_ht_host.lscpu", usable=cpuset)
    assert p.physical_cores(0) == [16, 17, 18, 19]
    assert p.physical_cores(1) == [20, 21, 22, 23]
    assert p.physical_cores(usable_only=False)[-1] == 39
    assert p.usable_sockets() == [0, 1]
    only_socket1 = p.with_usable(range(20, 30))
    assert only_socket1.usable_sockets() == [1]


def test_garbage_is_a_clear_error():
    with pytest.raises(ValueError, match="lscpu"):
        pi.from_lscpu_text("hello\n")


def _write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def test_sysfs_fallback_without_lscpu(tmp_path):
    root = str(tmp_path)
    # 2 sockets x 2 cores x 2 threads, siblings numbered +4, core_id per socket
    _write(root, "sys/devices/system/cpu/online", "0-7\n")
    for cpu in range(8):
        core = cpu % 4
        _write(root, f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id",
               f"{core // 2}\n")
        _write(root, f"sys/devices/system/cpu/cpu{cpu}/topology/core_id", f"{core % 2}\n")
    _write(root, "sys/devices/system/node/node0/cpulist", "0-1,4-5\n")
    _write(root, "sys/devices/system/node/node1/cpulist", "2-3,6-7\n")
    _write(root, "proc/cpuinfo", "processor\t: 0\nmodel name\t: Test CPU\n"
           "flags\t\t: fpu avx512f amx_tile amx_bf16\n\n")
    p = pi.detect(root=root, use_lscpu=False, usable=range(8))
    assert p.source == "sysfs"
    assert (len(p.sockets), p.cores_per_socket, p.threads_per_core) == (2, 2, 2)
    assert p.physical_cores() == [0, 1, 2, 3]
    assert p.node_of(6) == 1 and p.has_amx and p.model_name == "Test CPU"


def test_proc_cpuinfo_fallback_without_sysfs(tmp_path):
    blocks = []
    for cpu in range(4):
        blocks.append(f"processor\t: {cpu}\nmodel name\t: Old CPU\nphysical id\t: {cpu // 2}\n"
                      f"core id\t\t: {cpu % 2}\nflags\t\t: fpu avx2\n")
    _write(str(tmp_path), "proc/cpuinfo", "\n".join(blocks))
    p = pi.detect(root=str(tmp_path), use_lscpu=False, usable=[0, 1, 2, 3])
    assert p.source == "/proc/cpuinfo"
    assert len(p.sockets) == 2 and p.physical_cores(1) == [2, 3] and not p.has_amx


def test_cgroup_v2_cpuset_is_read(tmp_path):
    root = str(tmp_path)
    _write(root, "proc/self/cgroup", "0::/docker/abc\n")
    _write(root, "sys/fs/cgroup/docker/abc/cpuset.cpus.effective", "2-3,6\n")
    assert pi._cgroup_cpuset(root) == [2, 3, 6]
    mine = sorted(os.sched_getaffinity(0))
    _write(root, "sys/fs/cgroup/docker/abc/cpuset.cpus.effective", f"{mine[0]}\n")
    assert pi.usable_cpus(root) == [mine[0]]


def test_live_machine_lscpu_and_sysfs_agree():
    live = pi.detect()
    fallback = pi.detect(use_lscpu=False)
    assert live.physical_cores() and set(live.usable) <= {c.cpu for c in live.cpus}
    assert (len(live.sockets), live.cores_per_socket, live.threads_per_core) == \
        (len(fallback.sockets), fallback.cores_per_socket, fallback.threads_per_core)
    assert live.physical_cores() == fallback.physical_cores()
    assert set(live.usable) == set(os.sched_getaffinity(0))
