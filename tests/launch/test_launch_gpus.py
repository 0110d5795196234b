"""The launcher on NVIDIA GPU hosts (``--device cuda|auto``): one rank per GPU, each with its own
CUDA_VISIBLE_DEVICES, GPUs read from a recorded ``nvidia-smi -L`` (a DGX H100: 2 x 56-core
Sapphire Rapids, 8 GPUs), never from torch."""

import json
import os
import subprocess
import sys

import pytest

from models.common import gpus, launch, platform_info

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SMI = os.path.join(FIXTURES, "dgx_h100_8gpu.nvidia-smi-L")
LSCPU = os.path.join(FIXTURES, "spr_2s_56c_ht.lscpu")
LAUNCH = launch.__file__
CMD = ["python", "train.py", "--flag=1"]
TOOLS = launch.Tools(numactl="/usr/bin/numactl", mpirun="/usr/bin/mpirun", is_root=False,
                     python="python3")


def dgx(environ=None) -> gpus.GpuHost:
    return gpus.detect(environ or {}, smi_file=SMI)


def plan(args=(), environ=None, host=None):
    environ = environ or {}
    with open(LSCPU, encoding="utf-8") as fh:
        machine = platform_info.from_lscpu_text(fh.read(), source="dgx")
    opts = launch.parse_args([*args, "--", *CMD], environ)
    return launch.build_plan(opts, environ, machine, TOOLS, host if host is not None else dgx(environ))


def cli(*args, env=None):
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("MPI_", "OMPI_", "CUDA_VISIBLE"))}
    base.update(env or {})
    return subprocess.run([sys.executable, LAUNCH, *args], capture_output=True, text=True,
                          env=base, timeout=60)


def test_nvidia_smi_list_is_parsed_and_mig_lines_skipped():
    text = ("GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-aaaa1111-0000)\n"
            "  MIG 3g.40gb     Device  0: (UUID: MIG-bbbb)\n"
            "GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-cccc2222-0000)\n")
    found = gpus.parse_nvidia_smi_list(text)
    assert [(g.index, g.name, g.uuid) for g in found] == [
        ("0", "NVIDIA A100-SXM4-80GB", "GPU-aaaa1111-0000"),
        ("1", "NVIDIA A100-SXM4-80GB", "GPU-cccc2222-0000")]


def test_driver_proc_folder_is_read_when_nvidia_smi_is_missing(tmp_path):
    for bus in ("0000:1b:00.0", "0000:0a:00.0"):
        (tmp_path / bus).mkdir()
        (tmp_path / bus / "information").write_text(f"Model: \t\t NVIDIA H200\nBus Location: {bus}\n")
    host = gpus.detect({"PATH": str(tmp_path)}, proc_root=str(tmp_path))  # no nvidia-smi on PATH
    assert host.ids == ["0", "1"] and host.gpus[0].name == "NVIDIA H200"
    assert host.source == str(tmp_path)


def test_cuda_visible_devices_narrows_the_list():
    assert dgx({"CUDA_VISIBLE_DEVICES": "6,2"}).ids == ["6", "2"]
    assert dgx({"CUDA_VISIBLE_DEVICES": "1,9,3"}).ids == ["1"]  # CUDA stops at an unknown id
    assert dgx({"CUDA_VISIBLE_DEVICES": ""}).ids == []
    uuid = dgx().gpus[4].uuid
    assert dgx({"CUDA_VISIBLE_DEVICES": uuid}).ids == [uuid]


def test_eight_gpus_give_eight_ranks_each_with_its_gpu():
    p = plan(["--device", "cuda"])
    assert p.argv[:4] == ["/usr/bin/mpirun", "-np", "8", "--bind-to"]
    assert [r["gpu"] for r in p.ranks] == [str(i) for i in range(8)]
    assert [r["local_rank"] for r in p.ranks] == list(range(8))
    wrapper = ["python3", gpus.SCRIPT, "--gpus", "0,1,2,3,4,5,6,7", "--"]
    for r in p.ranks:  # numactl binds each rank's cores, gpus.py sets its GPU, then the command
        assert r["bind"] == "numactl" and r["command"][-len(CMD) - 5:] == [*wrapper, *CMD]
    assert p.ranks[5]["cpus"] == "70-83" and p.ranks[5]["memory"] == "1"
    assert "one rank per GPU: 8 GPU(s) (NVIDIA H100 80GB HBM3" in p.summary
    assert "CUDA_VISIBLE_DEVICES" not in p.env  # per rank, not for all
    lines = p.shell_text().splitlines()
    assert "#   rank 3 on localhost (local rank 3, CUDA_VISIBLE_DEVICES=3): /usr/bin/numactl " \
           "--physcpubind=42-55 --membind=0 python3 " in "\n".join(lines)


def test_auto_is_cuda_with_gpus_and_cpu_without():
    assert plan(["--device", "auto"]).ranks == plan(["--device", "cuda"]).ranks
    empty = gpus.GpuHost(gpus=(), source="nvidia-smi -L")
    cpu = plan(["--device", "auto"], host=empty)
    assert cpu.argv[0] == "/usr/bin/numactl" and "gpu" not in cpu.ranks[0]
    assert cpu.argv == plan([], host=empty).argv == plan(["--device", "cpu"]).argv


def test_fewer_ranks_and_narrowed_gpus():
    p = plan(["--device", "cuda"], environ={"CUDA_VISIBLE_DEVICES": "4,5,6,7", "MPI_NUM_PROCESSES": "2"})
    assert p.argv[:3] == ["/usr/bin/mpirun", "-np", "2"] and [r["gpu"] for r in p.ranks] == ["4", "5"]
    one = plan(["--device", "cuda"], environ={"CUDA_VISIBLE_DEVICES": "3"})
    assert one.argv[0] == "/usr/bin/numactl" and one.env["CUDA_VISIBLE_DEVICES"] == "3"
    assert one.ranks[0]["gpu"] == "3" and "GPU 3 of 1 GPU(s)" in one.summary


def test_more_ranks_than_gpus_or_no_gpu_is_a_usage_error():
    with pytest.raises(launch.LaunchError, match=r"16 ranks on a host with 8 GPU\(s\).*at most 8"):
        plan(["--device", "cuda"], environ={"MPI_NUM_PROCESSES": "16"})
    with pytest.raises(launch.LaunchError, match=r"--device cuda but no NVIDIA GPU"):
        plan(["--device", "cuda"], host=gpus.GpuHost(gpus=(), source="nvidia-smi -L"))


def test_cli_dry_run_json_shows_eight_ranks(tmp_path):
    done = cli("--dry-run", "--json", "--device", "cuda", "--nvidia-smi-file", SMI,
               "--lscpu-file", LSCPU, "--", "python3", "train.py")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [(r["rank"], r["local_rank"], r["gpu"]) for r in data["ranks"]] == \
        [(i, i, str(i)) for i in range(8)]
    assert data["argv"][data["argv"].index("-np") + 1] == "8"


def test_cli_cuda_without_gpus_is_one_line_exit_2(tmp_path):
    empty = tmp_path / "none.txt"
    empty.write_text("No devices were found\n")
    done = cli("--dry-run", "--device", "cuda", "--nvidia-smi-file", str(empty),
               "--lscpu-file", LSCPU, "--", "python3", "train.py")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("launch.py: error: --device cuda but no NVIDIA GPU "
                                  f"is visible: {empty} list(s) none")
    assert len(done.stderr.strip().splitlines()) == 1
    bad = cli("--dry-run", "--device", "tpu", "--", "python3", "train.py")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "invalid choice: 'tpu'" in bad.stderr


def test_gpu_wrapper_sets_the_rank_gpu():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI_"))}
    env.update(OMPI_COMM_WORLD_RANK="6", OMPI_COMM_WORLD_SIZE="8", OMPI_COMM_WORLD_LOCAL_RANK="2",
               OMPI_COMM_WORLD_LOCAL_SIZE="4")
    done = subprocess.run([sys.executable, gpus.SCRIPT, "--gpus", "4,5,6,7", "--", sys.executable,
                           "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], "
                           "os.environ['LOCAL_RANK'])"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["6", "2"], done.stderr


def test_a_device_variable_alone_changes_nothing():
    """Only the flag turns GPU placement on (the PyTorch quickstarts pass their DEVICE as
    --device): a DEVICE variable meant for something else never changes another package's run."""
    assert "gpu" not in plan(environ={"DEVICE": "cuda"}).ranks[0]
    assert "gpu" not in plan(environ={"DEVICE": "tpu"}).ranks[0]
