"""The mpirun options of Habana's BERT documents: --tag-output, --merge-stderr-to-stdout,
--output-filename, --map-by-socket-pe (--bind-to core --map-by socket:PE=N), the docker sshd
port 3022, the detected btl_tcp_if_include interface and the -x forwarding of Habana's
variables in every MPI run. Plan level (recorded lscpu fixtures, fake environments), plus the
command line for errors and one real mpirun with --map-by-socket-pe."""

import json
import math
import os
import shutil
import sys

import pytest

from models.common import launch
from tests.launch.test_launch_cli import FIXTURES, REPO, clean_env, run
from tests.launch.test_launch_plan import BIND, CMD, machine, plan

HABANA = ("TF_BF16_CONVERSION", "PYTHONPATH", "HOROVOD_HIERARCHICAL_ALLREDUCE", "GC_KERNEL_PATH",
          "HABANA_LOGS", "HABANA_VISIBLE_DEVICES")
# ip -o -4 addr show of a Gaudi server: loopback, the MPI network, a docker bridge
GAUDI_IFACES = (("lo", "127.0.0.1/8"), ("ens1f0", "192.10.100.174/24"),
                ("docker0", "172.17.0.1/16"))
GAUDI = launch.Tools(numactl="/usr/bin/numactl", mpirun="/usr/bin/mpirun", is_root=True,
                     python="python3", interfaces=GAUDI_IFACES)


def opt(argv, name, n=1):
    """The n values after option ``name`` in argv (all occurrences must agree)."""
    i = argv.index(name)
    return argv[i + 1:i + 1 + n] if n > 1 else argv[i + 1]


def mca(argv, key):
    values = [argv[i + 2] for i, a in enumerate(argv[:-2]) if a == "--mca" and argv[i + 1] == key]
    assert len(values) <= 1, values
    return values[0] if values else None


def forwarded(argv):
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-x"]


# -- --map-by-socket-pe ---------------------------------------------------------------------------

def formula(name, local_ranks):
    """The brief's rule, computed from the fixture: usable physical cores per socket // ranks
    per socket (ranks spread over the sockets, rounded up), at least 1."""
    m = machine(name)
    sockets = m.usable_sockets()
    per_socket = min(len(m.physical_cores(s)) for s in sockets)
    return max(1, per_socket // math.ceil(local_ranks / len(sockets))), per_socket


@pytest.mark.parametrize("name,ranks,cores_per_socket,pe", [
    ("spr_2s_56c_ht.lscpu", 8, 56, 14),
    ("gaudi_host_2s_40c_ht.lscpu", 8, 40, 10),
    ("icx_2s_36c_noht.lscpu", 8, 36, 9),
    ("icx_2s_36c_noht.lscpu", 3, 36, 18),  # 2 + 1 ranks: the fuller socket decides
    ("clx_2s_20c_ht_host.lscpu", 2, 20, 20),
    ("spr_2s_56c_ht_snc4.lscpu", 8, 56, 14),
    ("vm_1s_2c_ht.lscpu", 2, 2, 1),
])
def test_auto_pe_is_the_formula_for_each_recorded_machine(name, ranks, cores_per_socket, pe):
    assert formula(name, ranks) == (pe, cores_per_socket)
    p = plan(name, ["--mpi-num-processes", str(ranks), "--map-by-socket-pe", "auto"])
    assert p.argv[:4] == ["/usr/bin/mpirun", "--allow-run-as-root", "-np", str(ranks)]
    assert opt(p.argv, "--bind-to") == "core" and opt(p.argv, "--map-by") == f"socket:PE={pe}"
    assert p.argv[-len(CMD):] == CMD and BIND not in p.argv and "--slot" not in p.argv
    assert p.env["OMP_NUM_THREADS"] == str(pe)
    assert f"PE={pe} (auto: {cores_per_socket} usable physical cores per socket" in p.summary
    assert not p.warnings


def test_habana_8_hpu_command_line():
    """'Run training on 8 HPUs - Horovod' on the Gaudi host: PE=10 (40 cores / 4 per socket)."""
    environ = {"MPI_NUM_PROCESSES": "8", "MPI_MAP_BY_SOCKET_PE": "auto",
               "PYTHONPATH": "/root/Model-References", "TF_BF16_CONVERSION": "/x/bf16.json",
               "HABANA_LOGS": "/tmp/logs", "GC_KERNEL_PATH": "/usr/lib/habanalabs/libtpc.so",
               "HOROVOD_HIERARCHICAL_ALLREDUCE": "1", "HABANA_VISIBLE_DEVICES": "all",
               "HOME": "/root"}
    p = plan("gaudi_host_2s_40c_ht.lscpu", ["--tag-output", "--merge-stderr-to-stdout",
                                            "--output-filename", "/root/tmp/bert_log/"],
             environ=environ)
    expected = ["/usr/bin/mpirun", "--allow-run-as-root", "-np", "8",
                "--bind-to", "core", "--map-by", "socket:PE=10",
                "--tag-output", "--merge-stderr-to-stdout", "--output-filename",
                "/root/tmp/bert_log/"]
    for name in sorted(HABANA):
        expected += ["-x", name]
    assert p.argv == [*expected, *CMD]
    assert p.make_dirs == ["/root/tmp/bert_log/"]
    # mpirun places ranks round robin over the sockets, PE cores each
    assert [(r["cpus"], r["bind"], r["memory"]) for r in p.ranks[:4]] == [
        ("0-9", "mpirun", "local"), ("40-49", "mpirun", "local"), ("10-19", "mpirun", "local"),
        ("50-59", "mpirun", "local")]
    assert p.ranks[7]["cpus"] == "70-79" and p.ranks[7]["command"] == CMD
    assert "CPUs 0-9 (cores) by mpirun --bind-to core" in p.rank_lines()[0]


def test_given_pe_and_per_socket_count():
    p = plan("spr_2s_56c_ht.lscpu", ["--mpi-num-processes-per-socket", "2",
                                     "--map-by-socket-pe", "7"])
    assert opt(p.argv, "-np") == "4" and opt(p.argv, "--map-by") == "socket:PE=7"
    assert p.env["OMP_NUM_THREADS"] == "7" and "PE=7 (given" in p.summary
    assert [r["cpus"] for r in p.ranks] == ["0-6", "56-62", "7-13", "63-69"]


def test_pe_on_several_hosts_uses_the_ranks_of_one_host():
    """Habana's 32 ranks on 4 servers: 8 per host, PE=7 given, as in the document."""
    hosts = "192.10.100.174:8,10.10.100.101:8,10.10.100.102:8,10.10.100.103:8"
    p = plan("gaudi_host_2s_40c_ht.lscpu", ["--map-by-socket-pe", "7"],
             environ={"MULTI_HLS_IPS": hosts, "MPI_NUM_PROCESSES": "32",
                      "MPI_ROOT": "/usr/local/openmpi"}, tools=GAUDI)
    assert opt(p.argv, "-np") == "32" and opt(p.argv, "-H") == hosts
    assert opt(p.argv, "--map-by") == "socket:PE=7" and opt(p.argv, "--bind-to") == "core"
    assert mca(p.argv, "btl_tcp_if_include") == "ens1f0"
    assert mca(p.argv, "plm_rsh_args") == "-p 3022"
    assert opt(p.argv, "--prefix") == "/usr/local/openmpi"
    assert p.ranks[8]["host"] == "10.10.100.101" and p.ranks[8]["cpus"] == "0-6"
    assert p.argv[-len(CMD):] == CMD and BIND not in p.argv
    auto = plan("gaudi_host_2s_40c_ht.lscpu", ["--map-by-socket-pe", "auto"],
                environ={"MULTI_HLS_IPS": hosts}, tools=GAUDI)
    assert opt(auto.argv, "-np") == "32" and opt(auto.argv, "--map-by") == "socket:PE=10"
    bare = plan("gaudi_host_2s_40c_ht.lscpu", ["--map-by-socket-pe", "auto"],
                environ={"MULTI_HLS_IPS": "192.10.100.174,10.10.100.101"}, tools=GAUDI)
    assert opt(bare.argv, "-np") == "4"  # no slots: a rank per socket on each host
    assert opt(bare.argv, "--map-by") == "socket:PE=40"


def test_pe_with_one_process_has_no_effect():
    p = plan("spr_2s_56c_ht.lscpu", ["--map-by-socket-pe", "auto", "--tag-output",
                                     "--merge-stderr-to-stdout", "--output-filename",
                                     "/nonexist/x"])
    assert p.argv == ["/usr/bin/numactl", "--physcpubind=0-111", "--localalloc", *CMD]
    assert not p.warnings and not p.make_dirs


@pytest.mark.parametrize("name,args,environ,match", [
    ("spr_2s_56c_ht.lscpu", ["--map-by-socket-pe", "57"], {"MPI_NUM_PROCESSES": "2"},
     "--map-by-socket-pe 57 but a socket has 56 usable physical core"),
    ("spr_2s_56c_ht.lscpu", ["--map-by-socket-pe", "15"], {"MPI_NUM_PROCESSES": "8"},
     "4 rank\\(s\\) per socket x PE=15 needs 60 cores but a socket has 56"),
    ("vm_1s_2c_ht.lscpu", ["--map-by-socket-pe", "auto"], {"MPI_NUM_PROCESSES": "3"},
     "3 rank\\(s\\) per socket x PE=1 needs 3 cores but a socket has 2"),
    ("clx_2s_20c_ht_host.lscpu", ["--cpuset", "16-23,56-63", "--map-by-socket-pe", "5"],
     {"MPI_NUM_PROCESSES": "2"}, "a socket has 4 usable physical core"),
    ("spr_2s_56c_ht.lscpu", ["--map-by-socket-pe", "4", "--num-cores", "4"],
     {"MPI_NUM_PROCESSES": "2"}, "give only --map-by-socket-pe"),
])
def test_pe_that_does_not_fit_is_refused(name, args, environ, match):
    with pytest.raises(launch.LaunchError, match=match):
        plan(name, args, environ)


# -- mpirun output options ----------------------------------------------------------------------

def test_output_options_on_one_host_with_bind_py(tmp_path):
    out = tmp_path / "logs"
    p = plan("icx_2s_36c_noht.lscpu", ["--mpi-num-processes", "2", "--tag-output",
                                       "--output-filename", str(out)])
    assert p.argv[:8] == ["/usr/bin/mpirun", "--allow-run-as-root", "-np", "2", "--bind-to",
                          "none", "--map-by", "slot"]
    assert p.argv[8:11] == ["--tag-output", "--output-filename", str(out)]
    assert "--merge-stderr-to-stdout" not in p.argv
    assert p.argv[11:13] == ["python3", BIND]
    assert not out.exists()  # planning creates nothing


def test_output_filename_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(launch.LaunchError, match="exists and is not a folder"):
        plan("icx_2s_36c_noht.lscpu", ["--mpi-num-processes", "2", "--output-filename",
                                       str(tmp_path / "f")])


# -- multi-host: ssh port, TCP interface ----------------------------------------------------------

@pytest.mark.parametrize("args,environ,rsh", [
    ([], {}, "-p 3022"),
    (["--ssh-port", "2222"], {}, "-p 2222"),
    ([], {"DOCKER_SSHD_PORT": "2022"}, "-p 2022"),
    ([], {"OMPI_MCA_plm_rsh_args": "-F /tmp/cfg"}, "-F /tmp/cfg -p 3022"),
    ([], {"OMPI_MCA_plm_rsh_args": "-F /tmp/cfg -p 22"}, "-F /tmp/cfg -p 22"),
    (["--ssh-port", "2222"], {"OMPI_MCA_plm_rsh_args": "-p 22 -F '/a b'"},
     "-F '/a b' -p 2222"),
])
def test_ssh_port_defaults_to_habana_docker_sshd(args, environ, rsh):
    p = plan("icx_2s_36c_noht.lscpu", ["--hosts", "a,b", *args], environ)
    assert mca(p.argv, "plm_rsh_args") == rsh
    assert p.argv.count("plm_rsh_args") == 1


def test_no_ssh_port_on_one_host():
    p = plan("icx_2s_36c_noht.lscpu", ["--mpi-num-processes", "2"],
             {"OMPI_MCA_plm_rsh_args": "-F /tmp/cfg"})
    assert mca(p.argv, "plm_rsh_args") is None


def test_tcp_interface_is_the_one_holding_a_listed_host():
    p = plan("gaudi_host_2s_40c_ht.lscpu", ["--hosts", "10.10.100.101,192.10.100.174"],
             tools=GAUDI)
    assert mca(p.argv, "btl_tcp_if_include") == "ens1f0"
    assert "MPI TCP over ens1f0 (holds 192.10.100.174, 192.10.100.174/24)" in p.summary
    assert not p.warnings
    # the user's choice wins, no detection
    p = plan("gaudi_host_2s_40c_ht.lscpu", ["--hosts", "192.10.100.174,10.10.100.101",
                                            "--tcp-include", "192.10.100.0/24"], tools=GAUDI)
    assert mca(p.argv, "btl_tcp_if_include") == "192.10.100.0/24"


def test_no_listed_host_here_emits_nothing_and_warns():
    p = plan("gaudi_host_2s_40c_ht.lscpu", ["--hosts", "10.10.100.101,node2,192.10.100.175"],
             tools=GAUDI)
    assert mca(p.argv, "btl_tcp_if_include") is None
    [warning] = p.warnings
    assert "none of the hosts" in warning and "is an address of this machine" in warning


def test_loopback_answers_its_subnet_other_interfaces_only_their_address():
    ifaces = GAUDI_IFACES
    assert launch.interface_for_hosts(["127.0.0.2", "x"], ifaces) == ("lo", "127.0.0.2",
                                                                      "127.0.0.1/8")
    assert launch.interface_for_hosts(["192.10.100.17"], ifaces) is None  # same subnet only
    assert launch.interface_for_hosts(["node", "172.17.0.1"], ifaces)[0] == "docker0"
    assert launch.interface_for_hosts(["127.0.0.1"], ()) is None
    p = plan("vm_1s_2c_ht.lscpu", ["--hosts", "127.0.0.1:1,127.0.0.2:1", "--no-bind"],
             tools=GAUDI)
    assert mca(p.argv, "btl_tcp_if_include") == "lo"


def test_this_machines_interfaces_are_read():
    found = launch.read_interfaces()
    assert all(isinstance(n, str) and "/" in c for n, c in found)
    assert "127.0.0.1/8" in [c for _, c in found]  # every Linux machine has lo
    by_ioctl = launch._ioctl_interfaces()  # the fallback without `ip`
    assert sorted(found) == sorted(by_ioctl)


# -- -x forwarding --------------------------------------------------------------------------------

def test_habana_variables_forwarded_on_one_host_only_when_set():
    environ = {"PYTHONPATH": "/w", "HABANA_LOGS": "/l", "TF_BF16_CONVERSION": "",
               "HOME": "/root", "PATH": "/bin"}
    p = plan("icx_2s_36c_noht.lscpu", ["--mpi-num-processes", "2"], environ)
    assert forwarded(p.argv) == ["HABANA_LOGS", "PYTHONPATH"]
    assert p.argv.index("-x") < p.argv.index(BIND)


def test_forwarding_on_several_hosts_has_no_duplicates():
    environ = {name: "1" for name in HABANA} | {"PATH": "/bin", "TF_CPP_MIN_LOG_LEVEL": "2"}
    p = plan("icx_2s_36c_noht.lscpu", ["--hosts", "a,b"], environ)
    names = forwarded(p.argv)
    assert len(names) == len(set(names))
    assert set(HABANA) | {"PATH", "TF_CPP_MIN_LOG_LEVEL", "OMP_NUM_THREADS"} <= set(names)


# -- the command line -----------------------------------------------------------------------------

@pytest.mark.parametrize("args,environ,match", [
    (["--map-by-socket-pe", "0"], {},
     "must be a positive integer (cores per rank) or auto, got '0'"),
    (["--map-by-socket-pe", "x"], {}, "got 'x'"),
    ([], {"MPI_MAP_BY_SOCKET_PE": "-3"}, "got '-3'"),
    (["--map-by-socket-pe", "99", "--mpi-num-processes", "2"], {},
     "--map-by-socket-pe 99 but a socket has 36 usable physical core"),
    (["--map-by-socket-pe", "2", "--no-bind"], {}, "drop --no-bind"),
    (["--mpi-num-processes", "2", "--output-filename", "FILE"], {}, "is not a folder"),
])
def test_bad_values_are_one_line_exit_2(tmp_path, args, environ, match):
    (tmp_path / "FILE").write_text("")
    done = run(["--dry-run", "--lscpu-file", os.path.join(FIXTURES, "icx_2s_36c_noht.lscpu"),
                *args, "--", "python", "x.py"], cwd=tmp_path, env=clean_env(**environ))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("launch.py: error: ") and match in done.stderr


def test_help_and_docstring_name_every_option(tmp_path):
    done = run(["--help"], cwd=tmp_path)
    assert done.returncode == 0
    for name in ("--tag-output", "--merge-stderr-to-stdout", "--output-filename",
                 "--map-by-socket-pe", "MPI_MAP_BY_SOCKET_PE", "--ssh-port", "3022"):
        assert name in done.stdout, name
        assert name in launch.__doc__, name


def test_dry_run_json_shows_it_all(tmp_path):
    out = tmp_path / "logs"
    done = run(["--dry-run", "--json", "--lscpu-file",
                os.path.join(FIXTURES, "gaudi_host_2s_40c_ht.lscpu"), "--hosts",
                "127.0.0.1:8,10.10.100.101:8", "--map-by-socket-pe", "auto", "--tag-output",
                "--merge-stderr-to-stdout", "--output-filename", str(out), "--", "python3",
                "run_pretraining.py"], cwd=tmp_path,
               env=clean_env(PYTHONPATH="/w", HABANA_LOGS="/l"))
    assert done.returncode == 0, done.stderr
    obj = json.loads(done.stdout)
    argv = obj["argv"]
    assert opt(argv, "--map-by") == "socket:PE=10" and mca(argv, "btl_tcp_if_include") == "lo"
    assert mca(argv, "plm_rsh_args") == "-p 3022"
    assert {"--tag-output", "--merge-stderr-to-stdout"} <= set(argv)
    assert opt(argv, "--output-filename") == str(out)
    assert {"PYTHONPATH", "HABANA_LOGS"} <= set(forwarded(argv))
    assert obj["ranks"][1]["bind"] == "mpirun" and obj["ranks"][1]["cpus"] == "40-49"
    assert not out.exists()  # a dry run creates nothing
    text = run(["--dry-run", "--lscpu-file", os.path.join(FIXTURES, "gaudi_host_2s_40c_ht.lscpu"),
                "--mpi-num-processes", "8", "--map-by-socket-pe", "auto", "--", "python3", "x"],
               cwd=tmp_path)
    assert text.returncode == 0 and text.stderr == ""
    assert "--map-by socket:PE=10 (auto: 40 usable physical cores per socket // 4" in text.stdout


def test_single_process_with_mpi_output_options_prints_nothing_odd(tmp_path):
    done = run(["--tag-output", "--merge-stderr-to-stdout", "--output-filename",
                str(tmp_path / "logs"), "--no-bind", "--", sys.executable, "-c", "print('hi')"],
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout.splitlines()[-1] == "hi"
    assert not (tmp_path / "logs").exists()


@pytest.mark.mpi
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun (openmpi-bin)")
def test_real_mpirun_map_by_socket_pe_and_output_filename(tmp_path):
    """mpirun accepts the options as emitted: ranks bound by mpirun to PE cores each, tagged
    output, per-rank files under the created --output-filename folder."""
    out = tmp_path / "logs" / "bert"
    script = ("import os; os.write(1, ('CPUS %s %s %s\\n' % (sorted(os.sched_getaffinity(0)), "
              "os.environ['OMPI_COMM_WORLD_RANK'], os.environ['OMP_NUM_THREADS'])).encode())")
    done = run(["--map-by-socket-pe", "auto", "--tag-output", "--merge-stderr-to-stdout",
                "--output-filename", str(out), "--", sys.executable, "-c", script],
               cwd=tmp_path, env=clean_env(MPI_NUM_PROCESSES="2", PYTHONPATH=REPO),
               timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [ln for ln in done.stdout.splitlines() if "<stdout>:CPUS" in ln]
    assert sorted(ln.split("<stdout>:")[0] for ln in lines) == ["[1,0]", "[1,1]"]
    pe = int(lines[0].split()[-1])
    cpus = [set(json.loads(ln.split("CPUS ")[1].rsplit(" ", 2)[0])) for ln in lines]
    assert pe >= 1 and all(cpus)  # every rank has its own bound core(s)
    if (os.cpu_count() or 1) >= 2:
        assert not cpus[0] & cpus[1]
    assert out.is_dir() and sorted(p.name for p in out.rglob("stdout")) == ["stdout", "stdout"]
