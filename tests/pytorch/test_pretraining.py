"""End-to-end pretraining runs (subprocesses): quickstarts from the built package, precisions,
resume, validation messages, and DDP over mpirun."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.pytorch.conftest import REPO, child_env, have, run, summary

TRAIN = REPO / "models" / "bert_large" / "pytorch" / "run_pretraining.py"
pytestmark = pytest.mark.slow


def _window_losses(output: str) -> list[float]:
    return [float(x) for x in re.findall(r"^step \d+/\d+ loss ([0-9.]+)", output, re.M)]


def _quickstart_env(**extra: str) -> dict[str, str]:
    env = child_env(**extra)
    for name in ("PRECISION", "OUTPUT_DIR", "DATASET_DIR", "CONFIG_FILE", "CHECKPOINT_DIR",
                 "BATCH_SIZE", "MAX_STEPS", "MPI_NUM_PROCESSES", "DNNL_MAX_CPU_ISA", "DEVICE",
                 "CUDA_VISIBLE_DEVICES"):
        if name not in extra:
            env.pop(name, None)
    return env


def test_phase1_then_phase2_from_the_package(package_dir: Path, tiny_dataset, tmp_path: Path):
    dataset, config = tiny_dataset
    out1, out2 = tmp_path / "phase1", tmp_path / "phase2"
    p1 = run([package_dir / "quickstart" / "run_bert_pretrain_phase1.sh", "--log_freq=4"],
             env=_quickstart_env(PRECISION="fp32", OUTPUT_DIR=str(out1), DATASET_DIR=str(dataset),
                                 CONFIG_FILE=str(config), BATCH_SIZE="8", MAX_STEPS="12",
                                 LEARNING_RATE="1e-2"), cwd=tmp_path)
    # the launcher printed the command it ran, with the package's training script
    assert re.search(r"^\S*(numactl|python3?)\S* .*run_pretraining\.py --phase=1", p1.stdout, re.M), p1.stdout
    assert str(package_dir / "models" / "bert_large" / "pytorch" / "run_pretraining.py") in p1.stdout
    assert "new model from" in p1.stdout
    losses = _window_losses(p1.stdout)
    assert len(losses) == 3 and losses[-1] < losses[0], p1.stdout
    s1 = summary(out1)
    assert (s1["phase"], s1["steps"], s1["precision"], s1["max_seq_length"]) == (1, 12, "fp32", 128)
    assert s1["throughput_sequences_per_second"] > 0
    save = out1 / "model_save"
    assert {p.name for p in save.iterdir()} == {"config.json", "model.safetensors", "training_state.pt"}
    assert (out1 / "bert_pretrain_phase1.log").read_text().count("step ") >= 3
    assert re.search(r"throughput [0-9.]+ sequences/s", p1.stdout)

    # running the finished phase again changes nothing and keeps the first run's log
    weights = (save / "model.safetensors").read_bytes()
    again = run([package_dir / "quickstart" / "run_bert_pretrain_phase1.sh"],
                env=_quickstart_env(PRECISION="fp32", OUTPUT_DIR=str(out1), DATASET_DIR=str(dataset),
                                    CONFIG_FILE=str(config), BATCH_SIZE="8", MAX_STEPS="12"), cwd=tmp_path)
    assert "phase 1 already finished" in again.stdout and "nothing to do" in again.stdout
    assert summary(out1) == s1 and (save / "model.safetensors").read_bytes() == weights
    log = (out1 / "bert_pretrain_phase1.log").read_text()
    assert log.count("step 12/12") == 1 and "already finished" in log

    p2 = run([package_dir / "quickstart" / "run_bert_pretrain_phase2.sh", "--log_freq=2"],
             env=_quickstart_env(PRECISION="fp32", OUTPUT_DIR=str(out2), DATASET_DIR=str(dataset),
                                 CHECKPOINT_DIR=str(save), BATCH_SIZE="4", MAX_STEPS="4",
                                 LEARNING_RATE="1e-3"), cwd=tmp_path)
    assert f"initialised from {save}" in p2.stdout
    s2 = summary(out2)
    assert (s2["phase"], s2["steps"]) == (2, 4)
    # phase 2 starts where phase 1 ended, far below a fresh model's loss
    assert _window_losses(p2.stdout)[0] < losses[0]
    assert (out2 / "model_save" / "model.safetensors").is_file()


def test_bf16_and_bf32_train_and_the_loss_falls(tiny_dataset, tmp_path: Path):
    dataset, config = tiny_dataset
    for precision in ("bf16", "bf32"):
        out = tmp_path / precision
        proc = run([sys.executable, TRAIN, "--phase=1", f"--precision={precision}",
                    f"--input_dir={dataset}", f"--output_dir={out}", f"--bert_config_file={config}",
                    "--train_batch_size=8", "--gradient_accumulation_steps=2", "--max_steps=12",
                    "--learning_rate=1e-2", "--warmup_proportion=0.1", "--log_freq=4"])
        losses = _window_losses(proc.stdout)
        assert len(losses) == 3 and losses[-1] < losses[0], proc.stdout
        assert summary(out)["precision"] == precision
        assert "= 1 x 4 x 2 accumulation" in proc.stdout


def test_resumes_from_its_own_output_dir(tiny_dataset, tmp_path: Path):
    dataset, config = tiny_dataset
    args = [sys.executable, TRAIN, "--phase=1", f"--input_dir={dataset}", f"--output_dir={tmp_path}",
            f"--bert_config_file={config}", "--train_batch_size=4", "--log_freq=1"]
    run(args + ["--max_steps=3"])
    proc = run(args + ["--max_steps=5"])
    assert f"resuming from {tmp_path / 'model_save'}" in proc.stdout
    assert "steps 3..5" in proc.stdout
    assert re.findall(r"^step (\d+)/", proc.stdout, re.M) == ["4", "5"]
    assert summary(tmp_path)["steps"] == 5


def test_avx_fp32_unsets_dnnl_max_cpu_isa(package_dir: Path, tiny_dataset, tmp_path: Path):
    dataset, config = tiny_dataset
    proc = run([package_dir / "quickstart" / "run_bert_pretrain_phase1.sh"],
               env=_quickstart_env(PRECISION="avx-fp32", OUTPUT_DIR=str(tmp_path / "o"),
                                   DATASET_DIR=str(dataset), CONFIG_FILE=str(config), BATCH_SIZE="2",
                                   MAX_STEPS="1", DNNL_MAX_CPU_ISA="AVX512_CORE_AMX"))
    assert "DNNL_MAX_CPU_ISA unset" in proc.stdout
    assert summary(tmp_path / "o")["precision"] == "avx-fp32"
    # started without the launcher, the training script unsets it itself
    proc = run([sys.executable, TRAIN, "--phase=1", "--precision=avx-fp32", f"--input_dir={dataset}",
                f"--output_dir={tmp_path / 'direct'}", f"--bert_config_file={config}",
                "--train_batch_size=2", "--max_steps=1"],
               env=child_env(DNNL_MAX_CPU_ISA="AVX512_CORE_AMX"))
    assert "DNNL_MAX_CPU_ISA unset" in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    "script, drop, extra, message",
    [
        ("run_bert_pretrain_phase1.sh", "PRECISION", {}, "PRECISION is not set. Set PRECISION to one of fp32, avx-fp32, bf16, bf32, e.g. export PRECISION=bf16"),
        ("run_bert_pretrain_phase1.sh", None, {"PRECISION": "fp16"}, "PRECISION=fp16 is not supported here; use one of: fp32, avx-fp32, bf16, bf32"),
        ("run_bert_pretrain_phase1.sh", "OUTPUT_DIR", {}, "OUTPUT_DIR is not set. Set OUTPUT_DIR to"),
        ("run_bert_pretrain_phase1.sh", "DATASET_DIR", {}, "DATASET_DIR is not set. Set DATASET_DIR to"),
        ("run_bert_pretrain_phase1.sh", None, {"DATASET_DIR": "/nonexistent"}, "DATASET_DIR=/nonexistent is not a directory"),
        ("run_bert_pretrain_phase1.sh", "CONFIG_FILE", {}, "CONFIG_FILE is not set. Set CONFIG_FILE to the path to bert_config.json (see the README's Datasets section), e.g. export CONFIG_FILE=/path/to/bert_config.json"),
        ("run_bert_pretrain_phase1.sh", None, {"CONFIG_FILE": "/nonexistent.json"}, "CONFIG_FILE must point to bert_config.json"),
        ("run_bert_pretrain_phase1.sh", None, {"CONFIG_FILE": "/"}, "CONFIG_FILE=/ is a directory. Set CONFIG_FILE to the path to bert_config.json"),
        ("run_bert_pretrain_phase1.sh", None, {"BATCH_SIZE": "lots"}, "BATCH_SIZE=lots is not a positive integer"),
        ("run_bert_pretrain_phase1.sh", None, {"MAX_STEPS": "0"}, "MAX_STEPS=0 is not a positive integer"),
        ("run_bert_pretrain_phase1.sh", None, {"DEVICE": "tpu"}, "DEVICE=tpu is not a device. Set DEVICE to auto (the default: the NVIDIA GPUs when torch sees one, else the CPU), cuda or cpu"),
        ("run_bert_pretrain_phase2.sh", None, {"DEVICE": "cuda", "CUDA_VISIBLE_DEVICES": ""}, "DEVICE=cuda but no NVIDIA GPU is visible on this host (nvidia-smi -L and /proc/driver/nvidia/gpus list none, CUDA_VISIBLE_DEVICES=). Check the driver and start containers with --gpus all, or set DEVICE=cpu"),
        ("run_bert_pretrain_phase2.sh", "CHECKPOINT_DIR", {}, "CHECKPOINT_DIR is not set. Set CHECKPOINT_DIR to the model_save directory in phase 1's OUTPUT_DIR"),
        ("run_bert_pretrain_phase2.sh", None, {"CHECKPOINT_DIR": "."}, "model.safetensors not found: CHECKPOINT_DIR must point to the model_save directory written by phase 1"),
    ],
)
def test_quickstart_validation(package_dir: Path, tiny_dataset, tmp_path: Path, script, drop, extra, message):
    dataset, config = tiny_dataset
    (tmp_path / "config.json").write_text("{}")  # CHECKPOINT_DIR="." has config.json only
    values = {"PRECISION": "fp32", "OUTPUT_DIR": str(tmp_path / "out"), "DATASET_DIR": str(dataset),
              "CONFIG_FILE": str(config), "CHECKPOINT_DIR": str(tmp_path / "ckpt")}
    if drop:
        values.pop(drop)
    values.update(extra)
    proc = run([package_dir / "quickstart" / script], env=_quickstart_env(**values), cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stdout  # a usage error, found before any work
    assert message in proc.stdout
    assert not (tmp_path / "out").exists()  # nothing was done before the check


def _fake_phase1_output(root: Path) -> Path:
    """A phase 1 OUTPUT_DIR as far as the checks look: model_save/{config.json,model.safetensors}."""
    save = root / "phase1" / "model_save"
    save.mkdir(parents=True)
    (save / "config.json").write_text("{}")
    (save / "model.safetensors").write_bytes(b"")
    return save.parent


def test_phase2_quickstart_catches_mixed_up_directories(package_dir: Path, tiny_dataset, tmp_path: Path):
    """The seed's phase 2 recipe reuses OUTPUT_DIR/CHECKPOINT_DIR: the two easy slips are named."""
    dataset, _ = tiny_dataset
    phase1 = _fake_phase1_output(tmp_path)
    script = package_dir / "quickstart" / "run_bert_pretrain_phase2.sh"
    base = {"PRECISION": "fp32", "DATASET_DIR": str(dataset)}
    # CHECKPOINT_DIR=<phase 1 OUTPUT_DIR> instead of its model_save
    proc = run([script], env=_quickstart_env(**base, CHECKPOINT_DIR=str(phase1), OUTPUT_DIR=str(tmp_path / "p2")),
               check=False)
    assert proc.returncode == 2
    assert f"CHECKPOINT_DIR={phase1} is phase 1's OUTPUT_DIR" in proc.stdout
    assert f"export CHECKPOINT_DIR={phase1}/model_save" in proc.stdout
    # a TensorFlow checkpoint folder (the seed mentions MLCommons' TF checkpoints)
    tf_ckpt = tmp_path / "tf_ckpt"
    tf_ckpt.mkdir()
    for name in ("checkpoint", "model.ckpt-28252.index", "model.ckpt-28252.data-00000-of-00001"):
        (tf_ckpt / name).write_bytes(b"")
    proc = run([script], env=_quickstart_env(**base, CHECKPOINT_DIR=str(tf_ckpt), OUTPUT_DIR=str(tmp_path / "p2")),
               check=False)
    assert proc.returncode == 2
    assert f"CHECKPOINT_DIR={tf_ckpt} holds a TensorFlow checkpoint" in proc.stdout
    # OUTPUT_DIR left at phase 1's: phase 2 would overwrite the model it starts from
    proc = run([script], env=_quickstart_env(**base, CHECKPOINT_DIR=str(phase1 / "model_save"),
                                            OUTPUT_DIR=f"{phase1}/"), check=False)
    assert proc.returncode == 2
    assert "phase 2 would overwrite it. Set OUTPUT_DIR to a new directory for phase 2" in proc.stdout
    assert not (tmp_path / "p2").exists()


@pytest.mark.mpi
@pytest.mark.skipif(not have("mpirun"), reason="needs mpirun (apt install openmpi-bin)")
@pytest.mark.parametrize("how", ["mpirun", "quickstart"])
def test_ddp_ends_with_identical_weights(how, package_dir: Path, tiny_dataset, tmp_path: Path):
    """Plain ``mpirun -np 2``, and the phase 1 quickstart with MPI_NUM_PROCESSES=2 (the launcher's mpirun)."""
    dataset, config = tiny_dataset
    port = str(29500 + (os.getpid() + len(how)) % 2000)
    if how == "mpirun":
        cmd = ["mpirun", "-np", "2", "--oversubscribe"]
        if os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
        cmd += [sys.executable, TRAIN, "--phase=1", f"--input_dir={dataset}", f"--output_dir={tmp_path}",
                f"--bert_config_file={config}", "--train_batch_size=8", "--gradient_accumulation_steps=2",
                "--max_steps=4", "--learning_rate=1e-2", "--log_freq=2"]
        proc = run(cmd, env=child_env(MASTER_PORT=port), timeout=300)
    else:
        proc = run([package_dir / "quickstart" / "run_bert_pretrain_phase1.sh", "--log_freq=2",
                    "--gradient_accumulation_steps=2"],
                   env=_quickstart_env(PRECISION="bf16", OUTPUT_DIR=str(tmp_path), DATASET_DIR=str(dataset),
                                       CONFIG_FILE=str(config), BATCH_SIZE="8", MAX_STEPS="4",
                                       MPI_NUM_PROCESSES="2", MASTER_PORT=port), timeout=300)
        assert re.search(r"^\S*mpirun .*-np 2 ", proc.stdout, re.M), proc.stdout  # printed by the launcher
    s = summary(tmp_path)
    assert s["world_size"] == 2 and s["backend"] == "gloo", proc.stdout
    assert s["global_batch_size"] == 16
    assert len(s["rank_weight_digests"]) == 2 and s["weights_identical_on_all_ranks"], s
    assert "world size 2 (gloo)" in proc.stdout


def test_bad_flags_fail_before_training(tiny_dataset, tmp_path: Path):
    """Usage errors: "error: ..." on stderr and exit 2, no traceback, nothing written."""
    dataset, config = tiny_dataset

    def usage_error(cmd, message, env=None):
        proc = run(cmd, env=env, check=False)
        assert proc.returncode == 2, proc.stdout
        assert message in proc.stdout and "Traceback" not in proc.stdout, proc.stdout

    usage_error([sys.executable, TRAIN, "--phase=2", f"--input_dir={dataset}", f"--output_dir={tmp_path}"],
                "error: phase 2 needs --init_checkpoint (CHECKPOINT_DIR)")
    usage_error([sys.executable, TRAIN, "--phase=1", f"--input_dir={dataset}", f"--output_dir={tmp_path}",
                 f"--bert_config_file={config}", "--train_batch_size=6", "--gradient_accumulation_steps=4"],
                "must be a multiple of --gradient_accumulation_steps=4")
    phase1_args = [sys.executable, TRAIN, "--phase=1", f"--input_dir={dataset}", f"--output_dir={tmp_path}",
                   f"--bert_config_file={config}"]
    usage_error(phase1_args + ["--precision=fp16"],
                "--precision=fp16 is not supported here; use one of: fp32, avx-fp32, bf16, bf32")
    usage_error(phase1_args + ["--no_such_flag"], "unrecognized arguments: --no_such_flag")
    usage_error(phase1_args, "error: NUM_INTER_THREADS='two' is not a thread count",
                env=child_env(NUM_INTER_THREADS="two"))
    usage_error(phase1_args, "error: NUM_INTRA_THREADS='-4' is not a thread count",
                env=child_env(NUM_INTRA_THREADS="-4"))
    assert not (tmp_path / "model_save").exists()

    phase1 = _fake_phase1_output(tmp_path / "runs")
    phase2 = [sys.executable, TRAIN, "--phase=2", f"--input_dir={dataset}"]
    usage_error(phase2 + [f"--init_checkpoint={phase1}", f"--output_dir={tmp_path / 'p2'}"],
                f"use --init_checkpoint={phase1 / 'model_save'}")
    usage_error(phase2 + [f"--init_checkpoint={phase1 / 'model_save'}", f"--output_dir={phase1}"],
                "would overwrite the model_save it starts from")
    assert not (tmp_path / "p2").exists()


def test_precision_aliases_are_accepted(tiny_dataset, tmp_path: Path):
    dataset, config = tiny_dataset
    out = tmp_path / "alias"
    run([sys.executable, TRAIN, "--phase=1", "--precision=bfloat16", f"--input_dir={dataset}",
         f"--output_dir={out}", f"--bert_config_file={config}", "--train_batch_size=2", "--max_steps=1"])
    assert summary(out)["precision"] == "bf16"


def test_bad_inputs_are_one_line_errors(tiny_dataset, tmp_path: Path):
    """Missing or corrupt data, a broken config or OUTPUT_DIR, found before any work: exit 2; a
    model that does not load, or data that breaks during training: exit 1. "error: ...", no
    traceback either way."""
    dataset, config = tiny_dataset
    (tmp_path / "empty").mkdir()
    corrupt = tmp_path / "corrupt" / "seq_128"
    corrupt.mkdir(parents=True)
    (corrupt / "part-00000-of-00001_128").write_bytes(b"this is not a TFRecord file" * 4)
    (tmp_path / "bad.json").write_text('{"vocab_size": 10')
    save = tmp_path / "broken_save"
    save.mkdir()
    (save / "config.json").write_text(config.read_text())
    (save / "model.safetensors").write_bytes(b"junk")
    # the first file is fine (checked up front), the second breaks while training reads it
    late = tmp_path / "late" / "seq_128"
    late.mkdir(parents=True)
    first, second = sorted((dataset / "seq_128").iterdir())
    (late / first.name).write_bytes(first.read_bytes())
    raw = second.read_bytes()
    (late / second.name).write_bytes(raw[:16] + bytes(b ^ 0xFF for b in raw[16:64]) + raw[64:])
    import torch

    phase2_out = tmp_path / "phase2_out" / "model_save"
    phase2_out.mkdir(parents=True)
    torch.save({"phase": 2, "step": 3}, phase2_out / "training_state.pt")
    phase1 = [sys.executable, TRAIN, "--phase=1", f"--output_dir={tmp_path / 'out'}"]
    cases = [
        ([sys.executable, TRAIN, "--phase=1", f"--output_dir={phase2_out.parent}", f"--input_dir={dataset}",
          f"--bert_config_file={config}"],
         f"{phase2_out} already holds phase 2's model, which this phase 1 run would overwrite", 2),
        (phase1 + [f"--input_dir={tmp_path / 'empty'}", f"--bert_config_file={config}"],
         "no TFRecord files match", 2),
        (phase1 + [f"--input_dir={tmp_path / 'corrupt'}", f"--bert_config_file={config}"],
         "CRC mismatch", 2),
        (phase1 + [f"--input_dir={dataset}", f"--bert_config_file={tmp_path / 'bad.json'}"],
         "cannot read BERT config", 2),
        ([sys.executable, TRAIN, "--phase=2", f"--input_dir={dataset}", f"--init_checkpoint={save}",
          f"--output_dir={tmp_path / 'out2'}"], f"cannot load the model in {save}", 1),
        ([sys.executable, TRAIN, "--phase=1", f"--output_dir={tmp_path / 'late_out'}",
          f"--input_dir={tmp_path / 'late'}", f"--bert_config_file={config}", "--train_batch_size=8",
          "--max_steps=20"], str(late / second.name), 1),
    ]
    for cmd, message, code in cases:
        proc = run(cmd, check=False)
        assert proc.returncode == code, proc.stdout
        assert message in proc.stdout and "Traceback" not in proc.stdout, proc.stdout
        assert proc.stdout.strip().splitlines()[-1].startswith("error: "), proc.stdout
    assert not (tmp_path / "out").exists()  # the checks ran before anything was written


def test_phase1_quickstart_trains_on_packed_data(package_dir: Path, tmp_path: Path):
    """Short sequences packed by the package's own packer (no TensorFlow): the phase 1
    quickstart takes the packed DATASET_DIR as it is, detects the metadata, divides the
    accumulation by the sequences per row and learns."""
    from tests.pytorch import pretraining_data

    dataset = pretraining_data.make_dataset(tmp_path / "short", n128=96, files=2,
                                            lengths128=(12, 40))
    config = tmp_path / "short" / "bert_config.json"
    packed = tmp_path / "packed"
    run([sys.executable, package_dir / "models" / "bert_large" / "pack_pretraining_data_tfrec.py",
         "--input-glob", dataset / "seq_128", "--output-dir", packed / "seq_128",
         "--max-sequence-length", "128", "--max-predictions-per-sequence", "20"],
        env=child_env(PYTHONPATH=str(package_dir)))
    meta = (packed / "seq_128_metadata.json").read_text()
    assert '"avg_seq_per_sample"' in meta
    out = tmp_path / "out"
    proc = run([package_dir / "quickstart" / "run_bert_pretrain_phase1.sh", "--log_freq=2",
                "--gradient_accumulation_steps=4"],
               env=_quickstart_env(PRECISION="fp32", OUTPUT_DIR=str(out), DATASET_DIR=str(packed),
                                   CONFIG_FILE=str(config), BATCH_SIZE="16", MAX_STEPS="8",
                                   LEARNING_RATE="1e-2"), cwd=tmp_path)
    assert "packed data (" in proc.stdout and "seq_128_metadata.json" in proc.stdout
    assert re.search(r"--gradient_accumulation_steps 4 -> [12] ", proc.stdout), proc.stdout
    s = summary(out)
    assert s["packed_data"].endswith("seq_128_metadata.json") and s["avg_sequences_per_row"] > 2
    losses = _window_losses(proc.stdout)
    assert len(losses) == 4 and losses[-1] < losses[0], proc.stdout
