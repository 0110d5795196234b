"""Expected mpirun/numactl command lines and environments per machine shape and launch mode."""

import os

import pytest

from models.common import launch, platform_info

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
BIND = launch.BIND_SCRIPT
CMD = ["python", "train.py", "--flag=1"]
ROOT = launch.Tools(numactl="/usr/bin/numactl", mpirun="/usr/bin/mpirun", is_root=True,
                    python="python3")
USER = launch.Tools(numactl="/usr/bin/numactl", mpirun="/usr/bin/mpirun", is_root=False,
                    python="python3")
KMP = {"KMP_AFFINITY": "granularity=fine,compact,1,0", "KMP_BLOCKTIME": "1"}


def machine(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return platform_info.from_lscpu_text(fh.read(), source=name)


def plan(name, args=(), environ=None, tools=ROOT):
    environ = environ or {}
    opts = launch.parse_args([*args, "--", *CMD], environ)
    return launch.build_plan(opts, environ, machine(name), tools)


def threads_env(n, inter=1):
    return {"OMP_NUM_THREADS": str(n), "NUM_INTRA_THREADS": str(n),
            "NUM_INTER_THREADS": str(inter), **KMP}


def mpi_head(n, root=True):
    return ["/usr/bin/mpirun", *(["--allow-run-as-root"] if root else []), "-np", str(n)]


# -- one process ----------------------------------------------------------------------------------

def test_single_process_spans_all_physical_cores_of_both_sockets():
    p = plan("spr_2s_56c_ht.lscpu")
    assert p.argv == ["/usr/bin/numactl", "--physcpubind=0-111", "--localalloc", *CMD]
    assert p.env == threads_env(112)
    assert not p.unset and not p.warnings


def test_single_process_on_one_socket_binds_its_memory():
    p = plan("spr_2s_56c_ht.lscpu", ["--socket-id", "1"])
    assert p.argv == ["/usr/bin/numactl", "--physcpubind=56-111", "--membind=1", *CMD]
    assert p.env["OMP_NUM_THREADS"] == "56"


def test_num_cores_takes_the_first_cores_of_the_socket():
    p = plan("icx_2s_36c_noht.lscpu", ["--socket-id", "1", "--num-cores", "8",
                                       "--num-intra-threads", "6", "--num-inter-threads", "2"])
    assert p.argv[:3] == ["/usr/bin/numactl", "--physcpubind=36-43", "--membind=1"]
    assert p.env == threads_env(8) | {"NUM_INTRA_THREADS": "6", "NUM_INTER_THREADS": "2"}


def test_user_set_kmp_variables_are_kept():
    p = plan("vm_1s_2c_ht.lscpu", environ={"KMP_BLOCKTIME": "0", "KMP_AFFINITY": "disabled"})
    assert "KMP_BLOCKTIME" not in p.env and "KMP_AFFINITY" not in p.env
    assert p.argv == ["/usr/bin/numactl", "--physcpubind=0-1", "--membind=0", *CMD]
    assert p.env["OMP_NUM_THREADS"] == "2"


def test_without_numactl_the_bind_helper_sets_affinity():
    tools = launch.Tools(numactl=None, mpirun=None, is_root=False, python="python3")
    p = plan("vm_1s_2c_ht.lscpu", tools=tools)
    assert p.argv == ["python3", BIND, "--slot", "0-1:0", "--", *CMD]
    assert any("numactl not found" in w for w in p.warnings)


def test_container_cpuset_uses_only_allowed_cores():
    p = plan("clx_2s_20c_ht_host.lscpu", ["--cpuset", "16-23,56-63"])
    assert p.argv[:3] == ["/usr/bin/numactl", "--physcpubind=16-23", "--localalloc"]
    assert p.env["OMP_NUM_THREADS"] == "8"
    p = plan("clx_2s_20c_ht_host.lscpu", ["--cpuset", "16-23,56-63", "--socket-id", "0"])
    assert p.argv[:3] == ["/usr/bin/numactl", "--physcpubind=16-19", "--membind=0"]


# -- precision ------------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf32"])
def test_amx_machine_selects_amx_isa(precision):
    p = plan("spr_2s_56c_ht.lscpu", ["--precision", precision])
    assert p.env["DNNL_MAX_CPU_ISA"] == "AVX512_CORE_AMX"
    assert not p.warnings


def test_user_set_isa_is_kept():
    p = plan("spr_2s_56c_ht.lscpu", ["--precision", "bf16"],
             environ={"DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16"})
    assert "DNNL_MAX_CPU_ISA" not in p.env and not p.unset


def test_avx_fp32_unsets_isa():
    environ = {"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"}
    p = plan("spr_2s_56c_ht.lscpu", ["--precision", "avx-fp32"], environ=environ)
    assert "DNNL_MAX_CPU_ISA" not in p.env and p.unset == ["DNNL_MAX_CPU_ISA"]
    assert "DNNL_MAX_CPU_ISA" not in p.child_environ(environ)
    assert "unset DNNL_MAX_CPU_ISA" in p.shell_text()


def test_no_amx_no_isa_and_bf16_warns_when_emulated():
    p = plan("icx_2s_36c_noht.lscpu", ["--precision", "bf16"])
    assert "DNNL_MAX_CPU_ISA" not in p.env
    assert any("emulated" in w for w in p.warnings)


# -- N ranks on one host --------------------------------------------------------------------------

def test_one_rank_per_socket():
    p = plan("spr_2s_56c_ht.lscpu", ["--mpi-num-processes", "2", "--precision", "bf16"])
    assert p.argv == [*mpi_head(2), "--bind-to", "none", "--map-by", "slot", "python3", BIND,
                      "--slot", "0-55:0", "--slot", "56-111:1", "--", *CMD]
    assert p.env == threads_env(56) | {"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"}
    assert not p.warnings


def test_env_var_and_not_root_drops_allow_run_as_root():
    p = plan("icx_2s_36c_noht.lscpu", environ={"MPI_NUM_PROCESSES": "2"}, tools=USER)
    assert p.argv[:3] == mpi_head(2, root=False)
    assert "--allow-run-as-root" not in p.argv
    assert p.argv[p.argv.index("--slot"):] == ["--slot", "0-35:0", "--slot", "36-71:1", "--",
                                               *CMD]
    assert p.env["OMP_NUM_THREADS"] == "36"


def test_per_socket_count_splits_each_socket():
    p = plan("spr_2s_56c_ht.lscpu", environ={"MPI_NUM_PROCESSES": "4",
                                             "MPI_NUM_PROCESSES_PER_SOCKET": "2"})
    slots = p.argv[p.argv.index("--slot"):p.argv.index("--")]
    assert slots == ["--slot", "0-27:0", "--slot", "28-55:0", "--slot", "56-83:1",
                     "--slot", "84-111:1"]
    assert p.env["OMP_NUM_THREADS"] == "28"
    assert "-np" in p.argv and p.argv[p.argv.index("-np") + 1] == "4"


def test_per_socket_count_alone_fills_every_socket():
    p = plan("icx_2s_36c_noht.lscpu", ["--mpi-num-processes-per-socket", "2"])
    assert p.argv[p.argv.index("-np") + 1] == "4"
    assert p.env["OMP_NUM_THREADS"] == "18"


def test_sub_numa_ranks_bind_to_their_node():
    p = plan("spr_2s_56c_ht_snc4.lscpu", ["--mpi-num-processes", "8",
                                          "--mpi-num-processes-per-socket", "4"])
    slots = p.argv[p.argv.index("--slot"):p.argv.index("--")][1::2]
    assert slots == ["0-13:0", "14-27:1", "28-41:2", "42-55:3", "56-69:4", "70-83:5",
                     "84-97:6", "98-111:7"]
    p = plan("spr_2s_56c_ht_snc4.lscpu", ["--mpi-num-processes", "2"])
    assert p.argv[p.argv.index("--slot"):p.argv.index("--")][1::2] == ["0-55:local",
                                                                        "56-111:local"]


def test_two_ranks_on_a_one_socket_vm_split_the_cores():
    """The CI shape: MPI_NUM_PROCESSES=2 on 1 socket with 2 cores."""
    p = plan("vm_1s_2c_ht.lscpu", environ={"MPI_NUM_PROCESSES": "2"})
    assert p.argv == [*mpi_head(2), "--bind-to", "none", "--map-by", "slot", "python3", BIND,
                      "--slot", "0:0", "--slot", "1:0", "--", *CMD]
    assert p.env["OMP_NUM_THREADS"] == "1"
    assert p.warnings and "share" in p.warnings[0]


def test_per_socket_one_with_more_ranks_than_sockets_warns_and_splits():
    p = plan("vm_1s_2c_ht.lscpu", environ={"MPI_NUM_PROCESSES": "2",
                                           "MPI_NUM_PROCESSES_PER_SOCKET": "1"})
    assert p.argv[p.argv.index("--slot"):p.argv.index("--")][1::2] == ["0:0", "1:0"]
    assert any("splitting" in w for w in p.warnings)
    assert "--oversubscribe" not in p.argv


def test_more_ranks_than_cores_oversubscribes():
    p = plan("vm_1s_2c_ht.lscpu", ["--mpi-num-processes", "4"])
    assert "--oversubscribe" in p.argv
    assert p.argv[p.argv.index("--slot"):p.argv.index("--")][1::2] == ["0:0", "1:0", "0:0",
                                                                        "1:0"]
    assert p.env["OMP_NUM_THREADS"] == "1"


def test_container_cpuset_ranks_per_socket():
    p = plan("clx_2s_20c_ht_host.lscpu", ["--cpuset", "16-23,56-63", "--mpi-num-processes",
                                          "2"])
    assert p.argv[p.argv.index("--slot"):p.argv.index("--")][1::2] == ["16-19:0", "20-23:1"]
    assert p.env["OMP_NUM_THREADS"] == "4"


def test_tcp_include_on_one_host():
    p = plan("icx_2s_36c_noht.lscpu", environ={"MPI_NUM_PROCESSES": "2",
                                               "MPI_TCP_INCLUDE": "eth0"})
    i = p.argv.index("btl_tcp_if_include")
    assert p.argv[i - 1:i + 2] == ["--mca", "btl_tcp_if_include", "eth0"]
    assert "plm_rsh_args" not in p.argv and "-x" not in p.argv


# -- several hosts (Gaudi servers) ----------------------------------------------------------------

def test_multi_host_gaudi_servers():
    environ = {"MULTI_HLS_IPS": "192.10.100.174,10.10.100.101", "MPI_NUM_PROCESSES": "16",
               "MPI_TCP_INCLUDE": "192.10.100.174/24", "DOCKER_SSHD_PORT": "3022",
               "PYTHONPATH": "/workspace", "HOME": "/root", "HABANA_LOGS": "/tmp/logs"}
    p = plan("gaudi_host_2s_40c_ht.lscpu", ["--precision", "bf16"], environ=environ)
    slots = [f"{a}-{a + 9}:{a // 40}" for a in range(0, 80, 10)]
    expected = [*mpi_head(16), "-H", "192.10.100.174:8,10.10.100.101:8",
                "--bind-to", "none", "--map-by", "slot",
                "--mca", "btl_tcp_if_include", "192.10.100.174/24",
                "--mca", "plm_rsh_args", "-p 3022"]
    for name in ["HABANA_LOGS", "KMP_AFFINITY", "KMP_BLOCKTIME", "NUM_INTER_THREADS",
                 "NUM_INTRA_THREADS", "OMP_NUM_THREADS", "PYTHONPATH"]:
        expected += ["-x", name]
    expected += ["python3", BIND]
    for s in slots:
        expected += ["--slot", s]
    assert p.argv == [*expected, "--", *CMD]
    assert p.env == threads_env(10)
    assert "plm_rsh_args '-p 3022'" in p.shell_text()


def test_hosts_without_count_run_one_rank_per_socket_each():
    p = plan("icx_2s_36c_noht.lscpu", ["--hosts", "node1,node2"], tools=USER)
    assert p.argv[:5] == ["/usr/bin/mpirun", "-np", "4", "-H", "node1:2,node2:2"]
    # Habana's docker sshd port is the default with hosts (test_launch_habana.py)
    assert p.argv[p.argv.index("plm_rsh_args") + 1] == "-p 3022"


def test_explicit_host_slots_and_mpi_hostnames_alias():
    p = plan("icx_2s_36c_noht.lscpu", environ={"MPI_HOSTNAMES": "a:1, b:1",
                                               "MPI_ROOT": "/opt/ompi"})
    assert p.argv[3:6] == ["2", "-H", "a:1,b:1"]
    assert p.argv[p.argv.index("--prefix") + 1] == "/opt/ompi"
    assert p.env["OMP_NUM_THREADS"] == "36"  # one rank per host: a socket each


def test_avx_fp32_is_not_forwarded_to_remote_ranks():
    p = plan("spr_2s_56c_ht.lscpu", ["--hosts", "a,b", "--precision", "avx-fp32"],
             environ={"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"})
    assert "DNNL_MAX_CPU_ISA" not in p.argv


# -- malloc ---------------------------------------------------------------------------------------

def test_malloc_preloaded_when_found_never_required(tmp_path):
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    tools = launch.Tools(numactl=None, mpirun=None, is_root=False, python="python3",
                         malloc_dirs=(str(tmp_path),))
    lib = str(tmp_path / "libjemalloc.so.2")
    assert plan("vm_1s_2c_ht.lscpu", tools=tools).env["LD_PRELOAD"] == lib
    assert plan("vm_1s_2c_ht.lscpu", tools=tools,
                environ={"LD_PRELOAD": "/x.so"}).env["LD_PRELOAD"] == f"{lib}:/x.so"
    assert "LD_PRELOAD" not in plan("vm_1s_2c_ht.lscpu", ["--malloc", "none"], tools=tools).env
    assert "LD_PRELOAD" not in plan("vm_1s_2c_ht.lscpu", tools=tools,
                                    environ={"LD_PRELOAD": "/opt/libtcmalloc.so"}).env
    (tmp_path / "libtcmalloc.so.4").write_bytes(b"")
    assert plan("vm_1s_2c_ht.lscpu", tools=tools).env["LD_PRELOAD"].endswith("libtcmalloc.so.4")
    empty = launch.Tools(numactl=None, mpirun=None, is_root=False, python="python3")
    p = plan("vm_1s_2c_ht.lscpu", ["--malloc", "tcmalloc"], tools=empty)
    assert "LD_PRELOAD" not in p.env and any("tcmalloc" in w for w in p.warnings)


# -- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,environ,match", [
    (["--mpi-num-processes", "2"], {}, "install Open MPI \\(apt-get install openmpi-bin\\)"),
    (["--hosts", "a,b"], {}, "openmpi-bin"),
])
def test_mpirun_missing(args, environ, match):
    tools = launch.Tools(numactl="/usr/bin/numactl", mpirun=None, is_root=True)
    with pytest.raises(launch.LaunchError, match=match):
        plan("icx_2s_36c_noht.lscpu", args, environ, tools=tools)


def test_mpirun_missing_in_dry_run_still_prints():
    tools = launch.Tools(numactl="/usr/bin/numactl", mpirun=None, is_root=True)
    p = plan("icx_2s_36c_noht.lscpu", ["--mpi-num-processes", "2", "--dry-run"], tools=tools)
    assert p.argv[0] == "mpirun" and any("openmpi-bin" in w for w in p.warnings)


@pytest.mark.parametrize("name,args,environ,match", [
    ("vm_1s_2c_ht.lscpu", ["--mpi-num-processes-per-socket", "4"], {},
     "4 processes per socket but socket 0 has only 2 usable physical core"),
    ("spr_2s_56c_ht.lscpu", ["--socket-id", "2"], {},
     "--socket-id 2 is out of range: this machine has socket\\(s\\) 0-1"),
    ("clx_2s_20c_ht_host.lscpu", ["--cpuset", "20-29", "--socket-id", "0"], {},
     "none of its CPUs"),
    ("vm_1s_2c_ht.lscpu", ["--num-cores", "3"], {}, "--num-cores 3 but this process has 2"),
    ("spr_2s_56c_ht.lscpu", ["--mpi-num-processes", "2", "--num-cores", "60"], {},
     "each rank has 56"),
    ("icx_2s_36c_noht.lscpu", ["--hosts", "a:1,b:1", "--mpi-num-processes", "4"], {},
     "hosts provide 2 slots"),
    ("icx_2s_36c_noht.lscpu", [], {"MPI_NUM_PROCESSES": "two"}, "MPI_NUM_PROCESSES"),
    ("icx_2s_36c_noht.lscpu", ["--cpuset", "500"], {}, "names no online CPU"),
])
def test_errors_say_what_to_do(name, args, environ, match):
    with pytest.raises(launch.LaunchError, match=match):
        plan(name, args, environ)


@pytest.mark.parametrize("hosts", ["a,,b", "a b", "a:0", "a:x", "-bad", "a,", "a:"])
def test_malformed_host_entry(hosts):
    with pytest.raises(launch.LaunchError, match="is malformed; use comma-separated"):
        launch.parse_hosts(hosts)


def test_good_host_lists():
    assert launch.parse_hosts("10.0.0.1, host-2.example.com:8,[fe80::1]:2") == [
        ("10.0.0.1", None), ("host-2.example.com", 8), ("[fe80::1]", 2)]


def test_cpu_quota_below_planned_threads_warns():
    import dataclasses
    opts = launch.parse_args(["--", *CMD], {})
    limited = dataclasses.replace(machine("spr_2s_56c_ht.lscpu"), cpu_quota=4.0)
    p = launch.build_plan(opts, {}, limited, ROOT)
    assert any("may use 4 CPU(s)" in w and "--num-cores 4" in w for w in p.warnings)
    opts = launch.parse_args(["--num-cores", "4", "--", *CMD], {})
    assert not launch.build_plan(opts, {}, limited, ROOT).warnings


def test_no_bind_keeps_thread_settings():
    p = plan("icx_2s_36c_noht.lscpu", ["--no-bind", "--socket-id", "0"])
    assert p.argv == CMD and p.env["OMP_NUM_THREADS"] == "36"
    p = plan("icx_2s_36c_noht.lscpu", ["--no-bind", "--mpi-num-processes", "2"])
    assert p.argv[-4:] == ["slot", *CMD] and BIND not in p.argv


# -- what each rank runs (the per-rank list of the printed and JSON plans) ------------------------

def test_ranks_one_per_socket_with_numactl():
    p = plan("spr_2s_56c_ht.lscpu", ["--mpi-num-processes", "2"])
    assert p.ranks == [
        {"rank": 0, "host": "localhost", "local_rank": 0, "cpus": "0-55", "memory": "0",
         "bind": "numactl",
         "command": ["/usr/bin/numactl", "--physcpubind=0-55", "--membind=0", *CMD]},
        {"rank": 1, "host": "localhost", "local_rank": 1, "cpus": "56-111", "memory": "1",
         "bind": "numactl",
         "command": ["/usr/bin/numactl", "--physcpubind=56-111", "--membind=1", *CMD]},
    ]
    text = p.shell_text()
    assert ("#   rank 1 on localhost (local rank 1): /usr/bin/numactl --physcpubind=56-111 "
            "--membind=1 python train.py --flag=1") in text


def test_ranks_match_what_bind_py_runs_for_its_slots():
    """The launcher's per-rank commands come from bind.py's own functions and --slot list."""
    from models.common import bind
    p = plan("spr_2s_56c_ht_snc4.lscpu", ["--mpi-num-processes", "4"])
    cut = p.argv.index("--")
    slots = [bind.parse_slot(v) for v in p.argv[p.argv.index("--slot"):cut][1::2]]
    for r in p.ranks:
        expected = bind.rank_argv(bind.pick_slot(slots, r["local_rank"]), p.argv[cut + 1:],
                                  "/usr/bin/numactl")
        assert r["command"] == expected
    assert [r["memory"] for r in p.ranks] == ["local", "local", "local", "local"]
    assert "--localalloc" in p.ranks[0]["command"]


def test_ranks_without_numactl_bind_with_sched_setaffinity():
    tools = launch.Tools(numactl=None, mpirun="/usr/bin/mpirun", is_root=False, python="python3")
    p = plan("vm_1s_2c_ht.lscpu", ["--mpi-num-processes", "2"], tools=tools)
    assert [(r["cpus"], r["memory"], r["bind"], r["command"]) for r in p.ranks] == [
        ("0", "unbound", "sched_setaffinity", CMD), ("1", "unbound", "sched_setaffinity", CMD)]
    assert "#   rank 1 on localhost (local rank 1): CPUs 1 by sched_setaffinity, memory " \
           "unbound: python train.py --flag=1" in p.shell_text()
    single = plan("vm_1s_2c_ht.lscpu", tools=tools)
    assert single.ranks == [{"rank": 0, "host": "localhost", "local_rank": 0, "cpus": "0-1",
                             "memory": "unbound", "bind": "sched_setaffinity", "command": CMD}]


def test_ranks_on_several_hosts_fill_each_host_in_turn():
    environ = {"MULTI_HLS_IPS": "192.10.100.174,10.10.100.101", "MPI_NUM_PROCESSES": "16"}
    p = plan("gaudi_host_2s_40c_ht.lscpu", environ=environ)
    assert [(r["rank"], r["host"], r["local_rank"]) for r in p.ranks] == [
        (i, "192.10.100.174" if i < 8 else "10.10.100.101", i % 8) for i in range(16)]
    assert [r["cpus"] for r in p.ranks[8:]] == [f"{a}-{a + 9}" for a in range(0, 80, 10)]
    assert p.ranks[15]["command"] == ["/usr/bin/numactl", "--physcpubind=70-79", "--membind=1",
                                      *CMD]


def test_ranks_fewer_than_host_slots_and_no_bind():
    p = plan("icx_2s_36c_noht.lscpu", ["--hosts", "a:2,b:2", "--mpi-num-processes", "3"])
    assert [(r["host"], r["local_rank"], r["cpus"]) for r in p.ranks] == [
        ("a", 0, "0-35"), ("a", 1, "36-71"), ("b", 0, "0-35")]
    p = plan("icx_2s_36c_noht.lscpu", ["--no-bind", "--mpi-num-processes", "2"])
    assert [(r["cpus"], r["memory"], r["bind"], r["command"][1:]) for r in p.ranks] == [
        (None, None, "none", CMD[1:])] * 2
    assert "unbound: " in p.rank_lines()[0]


def test_precision_alias_is_canonical_in_the_plan():
    p = plan("icx_2s_36c_noht.lscpu", ["--precision", "bfloat16"])
    assert any("emulated" in w for w in p.warnings)  # the bf16 rule applies to its alias
    assert launch.parse_args(["--precision", "FP32", "--", "x"], {}).precision == "fp32"
