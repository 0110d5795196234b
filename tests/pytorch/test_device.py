"""The device seam (models/bert_large/pytorch/device.py) and what run_pretraining does with it,
on a machine without a GPU: the CUDA branch's decisions are pure functions of the device, tested
here with the device given; the CUDA runs themselves need a GPU host."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

from models.bert_large.pytorch import checkpoint, run_pretraining
from models.bert_large.pytorch import device as devices
from models.common.dist_env import DistEnv
from tests.pytorch.conftest import REPO, child_env, run, summary

TRAIN = REPO / "models" / "bert_large" / "pytorch" / "run_pretraining.py"
CPU = devices.Device("cpu", "test")
GPU3 = devices.Device("cuda", "test", index=3, count=8)
NO_CUDA = (0, "torch 9.9 is a CPU-only build", "install a CUDA build of torch")


# -- choosing the device ------------------------------------------------------------------------

def test_unknown_device_names_the_choices():
    for bad in ("tpu", "gpu", ""):
        with pytest.raises(devices.DeviceError, match=r"--device=.*: choose one of auto, cuda, cpu"):
            devices.check_choice(bad)
    assert devices.check_choice("CUDA") == "cuda"


def test_cuda_without_a_gpu_says_none_is_visible():
    with pytest.raises(devices.DeviceError) as exc:
        devices.select("cuda", cuda=NO_CUDA)
    assert str(exc.value) == ("--device=cuda (DEVICE=cuda) but no CUDA device is visible: torch 9.9 "
                              "is a CPU-only build; install a CUDA build of torch, or use --device=cpu")
    auto = devices.select("auto", cuda=NO_CUDA)
    assert auto.kind == "cpu" and "no CUDA device is visible" in auto.reason


def test_each_local_rank_takes_its_own_gpu():
    # all 4 GPUs visible (torchrun, bare mpirun): local rank 5 of a host with 4 takes cuda:1
    d = devices.select("auto", local_rank=5, cuda=(4, "", ""))
    assert (d.kind, d.index, d.torch_device) == ("cuda", 1, torch.device("cuda", 1))
    # the launcher's ranks see one GPU each (CUDA_VISIBLE_DEVICES): always cuda:0
    assert devices.select("cuda", local_rank=7, cuda=(1, "", "")).index == 0


def test_cpu_only_runs_stay_on_the_cpu_or_refuse_cuda():
    why = "intel_extension_for_pytorch is in use, which runs on the CPU only"
    d = devices.select("auto", cpu_only=why, cuda=(8, "", ""))
    assert d.kind == "cpu" and "8 CUDA device(s) visible, but intel_extension" in d.reason
    with pytest.raises(devices.DeviceError, match=r"^--device=cuda \(DEVICE=cuda\): intel_extension"):
        devices.select("cuda", cpu_only=why, cuda=(8, "", ""))
    assert devices.select("cpu", cpu_only=why).kind == "cpu"


def test_this_machine_probes_as_cpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    assert devices.select("auto").kind == "cpu"
    with pytest.raises(devices.DeviceError, match="no CUDA device is visible"):
        devices.select("cuda")


# -- what the device changes ---------------------------------------------------------------------

def test_autocast_is_bf16_on_the_runs_device():
    with devices.autocast(CPU, "bf16"):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with devices.autocast(CPU, "fp32"):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": built, not entered
        ctx = devices.autocast(GPU3, "bf16")
    assert isinstance(ctx, torch.autocast) and (ctx.device, ctx.fast_dtype) == ("cuda", torch.bfloat16)


def test_batches_are_pinned_and_copied_non_blocking_only_for_cuda():
    assert devices.transfer_policy(GPU3) == (True, True)
    assert devices.transfer_policy(CPU) == (False, False)
    batch = {"input_ids": torch.arange(6).view(2, 3), "w": torch.ones(2)}
    same = devices.move_batch(batch, torch.device("cpu"))
    assert all(same[k] is batch[k] for k in batch)  # nothing copied on the CPU
    moved = devices.move_batch(batch, torch.device("meta"), non_blocking=True)
    assert {t.device.type for t in moved.values()} == {"meta"}
    assert moved["input_ids"].shape == (2, 3) and moved["input_ids"].dtype == torch.int64


def test_device_batches_pass_through_on_cpu_and_raise_in_turn():
    def source():
        yield {"x": torch.zeros(1)}
        raise ValueError("record 2 is corrupt")

    it = devices.DeviceBatches(source(), CPU)
    assert torch.equal(next(it)["x"], torch.zeros(1))
    with pytest.raises(ValueError, match="record 2 is corrupt"):
        next(it)


def test_ddp_backend_follows_the_device():
    assert devices.ddp_backend("cuda", "auto", ccl_importable=True) == "nccl"
    assert devices.ddp_backend("cuda", "nccl", ccl_importable=False) == "nccl"
    assert devices.ddp_backend("cuda", "gloo", ccl_importable=False) == "gloo"
    assert devices.ddp_backend("cpu", "auto", ccl_importable=False) == "gloo"
    assert devices.ddp_backend("cpu", "auto", ccl_importable=True) == "ccl"
    assert devices.ddp_backend("cpu", "gloo", ccl_importable=True) == "gloo"
    with pytest.raises(devices.DeviceError, match="--dist_backend=nccl needs --device=cuda"):
        devices.ddp_backend("cpu", "nccl", ccl_importable=False)
    with pytest.raises(devices.DeviceError, match="--dist_backend=ccl runs on the CPU only"):
        devices.ddp_backend("cuda", "ccl", ccl_importable=True)
    assert devices.ddp_kwargs(GPU3) == {"device_ids": [3], "output_device": 3}
    assert devices.ddp_kwargs(CPU) == {}


def test_setup_distributed_starts_nccl_on_the_rank_gpu(monkeypatch):
    calls = []
    monkeypatch.setattr(run_pretraining.dist, "init_process_group", lambda **kw: calls.append(kw))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29998")
    two = DistEnv(rank=1, world_size=2, local_rank=1, local_size=2, source="openmpi")
    assert run_pretraining.setup_distributed(two, "auto", device=GPU3) == "nccl"
    assert calls[0]["backend"] == "nccl" and calls[0]["device_id"] == torch.device("cuda", 3)
    with pytest.raises(run_pretraining.UsageError, match="--dist_backend=nccl needs --device=cuda"):
        run_pretraining.setup_distributed(two, "nccl", device=CPU)


# -- run_pretraining.py ---------------------------------------------------------------------------

def _phase1(dataset: Path, config: Path, out: Path, *extra: str) -> list:
    return [sys.executable, TRAIN, "--phase=1", f"--input_dir={dataset}", f"--output_dir={out}",
            f"--bert_config_file={config}", "--train_batch_size=4", "--log_freq=1", *extra]


@pytest.mark.parametrize("flag, message", [
    ("--device=tpu", "error: --device=tpu: choose one of auto, cuda, cpu (DEVICE in the quickstarts)"),
    ("--device=cuda", "error: --device=cuda (DEVICE=cuda) but no CUDA device is visible: torch "),
])
def test_bad_or_missing_device_is_one_line_exit_2(tiny_dataset, tmp_path: Path, flag, message):
    if flag == "--device=cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    dataset, config = tiny_dataset
    proc = run(_phase1(dataset, config, tmp_path / "out", flag, "--max_steps=1"), check=False)
    assert proc.returncode == 2, proc.stdout
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()]  # one line, no traceback
    assert proc.stdout.startswith(message), proc.stdout
    assert not (tmp_path / "out").exists()


def test_cpu_checkpoint_loads_with_map_location_and_resumes(tiny_dataset, tmp_path: Path):
    """A model_save written by --device=cpu holds only CPU tensors: it loads on whatever device
    map_location names, and a resumed run (--device=auto, here the CPU) takes it up."""
    dataset, config = tiny_dataset
    out = tmp_path / "run"
    first = run(_phase1(dataset, config, out, "--device=cpu", "--max_steps=2"))
    assert "device: CPU (--device=cpu)" in first.stdout and summary(out)["device"] == "cpu"
    save = out / checkpoint.MODEL_SAVE
    locations = []

    def record(storage, location):
        locations.append(location)
        return storage

    state = checkpoint.load_state(save, map_location=record)
    assert state["step"] == 2 and locations and set(locations) == {"cpu"}
    meta = checkpoint.load_state(save, map_location=torch.device("meta"))
    moments = [s["exp_avg"] for s in meta["optimizer"]["state"].values()]
    assert moments and all(t.device.type == "meta" for t in moments)
    model = checkpoint.load_model(save)
    opt, _, _ = run_pretraining.create_optimizer(model, lr=1e-3, total_steps=4, warmup_steps=0)
    opt.load_state_dict(checkpoint.load_state(save)["optimizer"])
    assert all(s["exp_avg"].device == p.device for p, s in opt.state.items())
    resumed = run(_phase1(dataset, config, out, "--max_steps=3"))
    assert f"resuming from {save}" in resumed.stdout and summary(out)["steps"] == 3


@pytest.mark.slow
def test_torch_compile_trains(tiny_dataset, tmp_path: Path):
    dataset, config = tiny_dataset
    proc = run(_phase1(dataset, config, tmp_path, "--device=cpu", "--torch_compile",
                       "--max_steps=2", "--learning_rate=1e-2"), timeout=900)
    s = summary(tmp_path)
    assert s["torch_compile"] is True and s["steps"] == 2, proc.stdout
    assert "torch.compile on" in proc.stdout
