"""The launcher as users run it: a file path from any directory, `python -m`, real processes,
exit codes, signals and a real 2-rank mpirun."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(REPO, "models", "common", "launch.py")
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
MPI_VARS = ("MPI_NUM_PROCESSES", "MPI_NUM_PROCESSES_PER_SOCKET", "MULTI_HLS_IPS",
            "MPI_HOSTNAMES", "MPI_TCP_INCLUDE", "DOCKER_SSHD_PORT", "KMP_AFFINITY",
            "KMP_BLOCKTIME", "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS", "NUM_INTRA_THREADS",
            "NUM_INTER_THREADS", "LD_PRELOAD")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in MPI_VARS}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def run(args, cwd, env=None, timeout=60):
    return subprocess.run([sys.executable, LAUNCH, *args], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_dry_run_json_from_another_directory(tmp_path):
    done = run(["--dry-run", "--json", "--lscpu-file",
                os.path.join(FIXTURES, "spr_2s_56c_ht.lscpu"), "--socket-id", "0",
                "--precision", "bf16", "--", "python", "train.py"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    obj = json.loads(done.stdout)  # exactly one JSON object, nothing else on stdout
    assert set(obj) == {"argv", "env", "ranks"}
    assert obj["argv"][-3:] == ["--membind=0", "python", "train.py"]
    assert obj["argv"][-4] == "--physcpubind=0-55"
    assert obj["env"]["OMP_NUM_THREADS"] == "56"
    assert obj["env"]["DNNL_MAX_CPU_ISA"] == "AVX512_CORE_AMX"
    [rank] = obj["ranks"]  # one process: it runs the command line itself
    assert rank["command"] == obj["argv"] and rank["cpus"] == "0-55" and rank["memory"] == "0"


def test_dry_run_json_lists_what_each_mpi_rank_runs(tmp_path):
    """A recorded 2-socket machine, 4 ranks: each rank's numactl command as bind.py execs it."""
    done = run(["--dry-run", "--json", "--lscpu-file",
                os.path.join(FIXTURES, "spr_2s_56c_ht.lscpu"), "--mpi-num-processes", "4",
                "--mpi-num-processes-per-socket", "2", "--", "/opt/py/bin/python", "train.py"],
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    obj = json.loads(done.stdout)
    numactl = shutil.which("numactl")
    expected = []
    for rank, (cpus, node) in enumerate([("0-27", "0"), ("28-55", "0"), ("56-83", "1"),
                                         ("84-111", "1")]):
        command = ([numactl, f"--physcpubind={cpus}", f"--membind={node}"] if numactl else [])
        expected.append({"rank": rank, "host": "localhost", "local_rank": rank, "cpus": cpus,
                         "memory": node if numactl else "unbound",
                         "bind": "numactl" if numactl else "sched_setaffinity",
                         "command": [*command, "/opt/py/bin/python", "train.py"]})
    assert obj["ranks"] == expected
    # mpirun itself starts bind.py, which picks the slot by local rank
    assert "--slot" in obj["argv"] and obj["argv"][-2:] == ["/opt/py/bin/python", "train.py"]


def test_printed_plan_has_one_line_per_rank_and_stays_pasteable(tmp_path):
    done = run(["--dry-run", "--lscpu-file", os.path.join(FIXTURES, "icx_2s_36c_noht.lscpu"),
                "--hosts", "node1,node2", "--", "python", "train.py"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    rank_lines = [line for line in lines if line.startswith("#   rank ")]
    assert [line.split(":", 1)[0] for line in rank_lines] == [
        "#   rank 0 on node1 (local rank 0)", "#   rank 1 on node1 (local rank 1)",
        "#   rank 2 on node2 (local rank 0)", "#   rank 3 on node2 (local rank 1)"]
    for line, cpus in zip(rank_lines, ["0-35", "36-71", "0-35", "36-71"]):
        assert line.endswith(" python train.py")
        assert f"--physcpubind={cpus}" in line or f"CPUs {cpus} by sched_setaffinity" in line
    assert lines[-1].startswith("mpirun") or "mpirun" in lines[-1].split()[0]
    assert all(line.startswith(("#", "export ", "unset ")) for line in lines[:-1])


@pytest.mark.parametrize("spelling", ["bfloat16", "BF16", "mixed_bfloat16"])
def test_precision_aliases_are_accepted(tmp_path, spelling):
    done = run(["--dry-run", "--json", "--lscpu-file",
                os.path.join(FIXTURES, "spr_2s_56c_ht.lscpu"), "--precision", spelling, "--",
                "python", "train.py"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["env"]["DNNL_MAX_CPU_ISA"] == "AVX512_CORE_AMX"


def test_help_lists_the_precisions_and_no_planning_words(tmp_path):
    from models.common import precisions
    done = run(["--help"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "{" + ",".join(precisions.CANONICAL) + "}" in text
    assert "bfloat16=bf16" in text and '"ranks"' in text
    for word in ("seed", "issue"):
        assert word not in done.stdout.lower()


def test_dry_run_prints_a_pasteable_script_and_warnings_go_to_stderr(tmp_path):
    done = run(["--dry-run", "--lscpu-file", os.path.join(FIXTURES, "vm_1s_2c_ht.lscpu"),
                "--", "python", "train.py", "--name=a b"], cwd=tmp_path,
               env=clean_env(MPI_NUM_PROCESSES="2"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "export OMP_NUM_THREADS=1" in lines
    # mpirun puts its own bin folder first on the ranks' PATH: the program is resolved here
    assert lines[-1].endswith(f"-- {shutil.which('python')} train.py '--name=a b'")
    assert "mpirun" in lines[-1] and "--slot 0:0 --slot 1:0" in lines[-1]
    assert "warning" in done.stderr and "warning" not in done.stdout


def test_module_form_works_from_repo_root():
    done = subprocess.run([sys.executable, "-m", "models.common.launch", "--dry-run", "--json",
                           "--", "true"], cwd=REPO, env=clean_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["argv"][-1] == "true"


def test_exit_code_of_the_command_is_returned(tmp_path):
    done = run(["--", sys.executable, "-c", "import os, sys; "
                "print('threads', os.environ['OMP_NUM_THREADS']); sys.exit(7)"], cwd=tmp_path)
    assert done.returncode == 7
    printed, ran = done.stdout.split("threads ")
    assert "export OMP_NUM_THREADS=" in printed  # printed before the command ran
    assert f"export OMP_NUM_THREADS={ran.strip()}" in printed


def test_missing_command_is_127(tmp_path):
    done = run(["--malloc", "none", "--", "no-such-program-xyz"], cwd=tmp_path)
    assert done.returncode == 127
    assert "'no-such-program-xyz' not found on PATH" in done.stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 3), (signal.SIGINT, 4)])
def test_signals_reach_the_command(tmp_path, sig, code):
    ready = tmp_path / "ready"
    child = (
        "import signal, sys, time, pathlib\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n"
        "try:\n"
        f"    pathlib.Path({str(ready)!r}).write_text('x')\n"
        "    time.sleep(30)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(4)\n")
    proc = subprocess.Popen([sys.executable, LAUNCH, "--", sys.executable, "-c", child],
                            cwd=tmp_path, env=clean_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "child not ready"
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == code


@pytest.mark.parametrize("args,environ,match", [
    (["--hosts", "a,,b"], {}, "entry 2 ('') is malformed"),
    (["--socket-id", "9"], {}, "--socket-id 9 is out of range"),
    (["--mpi-num-processes-per-socket", "64"], {}, "processes per socket but socket 0 has"),
    (["--precision", "fp8"], {}, "invalid choice"),
    ([], {}, None),
])
def test_errors_are_one_line_exit_2(tmp_path, args, environ, match):
    cmd = [] if match is None else ["--", "python", "x.py"]
    done = run(["--dry-run", "--lscpu-file", os.path.join(FIXTURES, "icx_2s_36c_noht.lscpu"),
                *args, *cmd], cwd=tmp_path, env=clean_env(**environ))
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("launch.py: error: ")
    assert (match or "no command given") in done.stderr


def test_recorded_machine_runs_only_as_a_dry_run(tmp_path):
    """--lscpu-file of a bigger machine would bind to CPUs that are not here: say so, run nothing."""
    done = run(["--lscpu-file", os.path.join(FIXTURES, "spr_2s_56c_ht.lscpu"), "--",
                sys.executable, "-c", "open('ran', 'w')"], cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "that this process cannot use" in done.stderr and "add --dry-run" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""
    assert not (tmp_path / "ran").exists()


def test_mpirun_not_installed_says_what_to_install(tmp_path):
    (tmp_path / "bin").mkdir()
    done = run(["--mpi-num-processes", "2", "--", "python", "x.py"], cwd=tmp_path,
               env=clean_env(PATH=str(tmp_path / "bin")))
    assert done.returncode == 2
    assert "apt-get install openmpi-bin" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


RANK_REPORT = (
    "import json, os\n"
    "from models.common import dist_env\n"
    "e = dist_env.from_environ()\n"
    "print('REPORT ' + json.dumps({'rank': e.rank, 'world': e.world_size,\n"
    "      'local_rank': e.local_rank, 'omp': os.environ['OMP_NUM_THREADS'],\n"
    "      'cpus': sorted(os.sched_getaffinity(0))}), flush=True)\n")


@pytest.mark.mpi
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun (openmpi-bin)")
def test_real_mpirun_two_ranks(tmp_path):
    script = tmp_path / "report.py"
    script.write_text(RANK_REPORT)
    done = run(["--", sys.executable, str(script)], cwd=tmp_path, timeout=120,
               env=clean_env(MPI_NUM_PROCESSES="2", PYTHONPATH=REPO))
    assert done.returncode == 0, done.stdout + done.stderr
    reports = [json.loads(line.split("REPORT ", 1)[1]) for line in done.stdout.splitlines()
               if "REPORT " in line]
    exported = [line for line in done.stdout.splitlines()
                if line.startswith("export OMP_NUM_THREADS=")]
    assert len(exported) == 1
    omp = exported[0].split("=", 1)[1]
    assert sorted(r["rank"] for r in reports) == [0, 1]
    assert all(r["world"] == 2 and r["omp"] == omp for r in reports)
    assert sorted(r["local_rank"] for r in reports) == [0, 1]
    cpus = [set(r["cpus"]) for r in sorted(reports, key=lambda r: r["rank"])]
    assert all(len(c) == int(omp) for c in cpus)  # each rank bound to its own cores
    assert not cpus[0] & cpus[1]


@pytest.mark.mpi
@pytest.mark.skipif(not (os.path.isfile("/bin/mpirun") and os.path.isfile("/usr/bin/mpirun")
                         and os.path.samefile("/bin/mpirun", "/usr/bin/mpirun")),
                    reason="needs Open MPI on a merged-/usr system (/bin -> usr/bin)")
def test_bin_before_usr_bin_on_path_still_runs_mpirun(tmp_path):
    """Open MPI reads its prefix from an absolute /bin/mpirun as "/" and refuses to start."""
    script = tmp_path / "report.py"
    script.write_text(RANK_REPORT)
    done = run(["--", sys.executable, str(script)], cwd=tmp_path, timeout=120,
               env=clean_env(MPI_NUM_PROCESSES="2", PYTHONPATH=REPO, PATH="/bin:/usr/bin"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("REPORT ") == 2
    assert "\n/usr/bin/mpirun " in done.stdout


def test_mpich_mpirun_is_refused_with_advice(tmp_path):
    fake = tmp_path / "bin" / "mpirun"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'HYDRA build details:'\n")
    fake.chmod(0o755)
    path = f"{fake.parent}:{os.environ.get('PATH', os.defpath)}"
    done = run(["--mpi-num-processes", "2", "--", "python", "x.py"], cwd=tmp_path,
               env=clean_env(PATH=path))
    assert done.returncode == 2
    assert "is not Open MPI's mpirun" in done.stderr and "openmpi-bin" in done.stderr
