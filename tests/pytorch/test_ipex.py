"""The IPEX path of PyTorch pretraining, run for real: torch 2.8 + Intel Extension for PyTorch
2.8 live in ``<repo>/.venv-ipex`` (``bash scripts/setup-ipex-venv.sh``; the main environment's
torch has no IPEX build), so every run here is a subprocess in that interpreter. The package's
quickstarts find it as ``python3`` on PATH, as a user's activated venv would be found.

Checked: phase 1 -> phase 2 in bf16 with IPEX on; the learning rate the stepping optimizer
uses follows the schedule, also after a resume (issue 17's bug: ``ipex.optimize`` returned a
copy of the optimizer while the scheduler drove the original); avx-fp32 unsets
DNNL_MAX_CPU_ISA and fp32 hands it to oneDNN (seed 001); DDP over gloo with 2 ranks.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from models.bert_large.pytorch.optimization import poly_warmup_lambda
from tests.pytorch.conftest import REPO, child_env, have, run, summary

pytestmark = pytest.mark.slow

IPEX_PYTHON = REPO / ".venv-ipex" / "bin" / "python"
TRAIN = REPO / "models" / "bert_large" / "pytorch" / "run_pretraining.py"
LR_SCRIPT = Path(__file__).with_name("ipex_lr_script.py")
QUICKSTART_VARS = ("PRECISION", "OUTPUT_DIR", "DATASET_DIR", "CONFIG_FILE", "CHECKPOINT_DIR",
                   "BATCH_SIZE", "MAX_STEPS", "MPI_NUM_PROCESSES", "DNNL_MAX_CPU_ISA",
                   "LEARNING_RATE", "ONEDNN_VERBOSE", "DEVICE")


@pytest.fixture(scope="module")
def ipex_python() -> Path:
    """The IPEX venv's python; when it is missing, fail under ``CI=true`` (CI creates it) and
    skip elsewhere."""
    if not IPEX_PYTHON.exists():
        under_ci = os.environ.get("CI", "").lower() == "true"
        (pytest.fail if under_ci else pytest.skip)(
            f"the IPEX venv is missing ({IPEX_PYTHON}): create it with "
            "`bash scripts/setup-ipex-venv.sh` (setup-test-env.sh runs it)")
    return IPEX_PYTHON


def ipex_env(python: Path, **extra: str) -> dict[str, str]:
    """The venv first on PATH (the quickstarts run ``python3``); the quickstart variables only
    as given."""
    env = child_env(**extra)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    for name in QUICKSTART_VARS:
        if name not in extra:
            env.pop(name, None)
    return env


def window_losses(output: str) -> list[float]:
    return [float(x) for x in re.findall(r"^step \d+/\d+ loss ([0-9.]+)", output, re.M)]


def test_phase1_then_phase2_in_bf16_with_ipex(ipex_python, package_dir: Path, tiny_dataset,
                                              tmp_path: Path):
    dataset, config = tiny_dataset
    out1, out2 = tmp_path / "phase1", tmp_path / "phase2"
    p1 = run([package_dir / "quickstart" / "run_bert_pretrain_phase1.sh", "--log_freq=4"],
             env=ipex_env(ipex_python, PRECISION="bf16", OUTPUT_DIR=str(out1),
                          DATASET_DIR=str(dataset), CONFIG_FILE=str(config), BATCH_SIZE="8",
                          MAX_STEPS="12", LEARNING_RATE="1e-2"), cwd=tmp_path, timeout=300)
    assert "optimizer ipex-fused-lamb; ipex on" in p1.stdout, p1.stdout
    assert str(ipex_python.parent) in p1.stdout  # the launcher ran the venv's interpreter
    losses = window_losses(p1.stdout)
    assert len(losses) == 3 and losses[-1] < losses[0], p1.stdout
    s1 = summary(out1)
    assert (s1["phase"], s1["steps"], s1["precision"], s1["ipex"]) == (1, 12, "bf16", True)
    assert s1["optimizer"] == "ipex-fused-lamb"
    save = out1 / "model_save"

    p2 = run([package_dir / "quickstart" / "run_bert_pretrain_phase2.sh", "--log_freq=2"],
             env=ipex_env(ipex_python, PRECISION="bf16", OUTPUT_DIR=str(out2),
                          DATASET_DIR=str(dataset), CHECKPOINT_DIR=str(save), BATCH_SIZE="4",
                          MAX_STEPS="4", LEARNING_RATE="1e-3"), cwd=tmp_path, timeout=300)
    assert f"initialised from {save}" in p2.stdout and "ipex on" in p2.stdout, p2.stdout
    s2 = summary(out2)
    assert (s2["phase"], s2["steps"], s2["ipex"], s2["max_seq_length"]) == (2, 4, True, 128)
    # phase 2 starts from phase 1's trained weights, far below a fresh model's loss
    assert window_losses(p2.stdout)[0] < losses[0], p2.stdout


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_learning_rate_follows_the_schedule_with_ipex(ipex_python, tiny_dataset, tmp_path: Path):
    """The optimizer that steps (the one ``ipex.optimize`` hands back) gets the scheduled LR at
    every step; a run killed after a save resumes the optimizer state and the schedule."""
    dataset, config = tiny_dataset
    lr, steps, warmup = 1e-2, 6, 2  # --warmup_proportion 0.34 of 6 steps: 2 warmup steps
    expected = [lr * poly_warmup_lambda(steps, warmup, 0.5)(s) for s in range(steps)]
    record = tmp_path / "lr.jsonl"
    cmd = [ipex_python, LR_SCRIPT, "--phase=1", "--precision=bf16", f"--input_dir={dataset}",
           f"--output_dir={tmp_path / 'out'}", f"--bert_config_file={config}",
           "--train_batch_size=4", f"--max_steps={steps}", f"--learning_rate={lr}",
           "--warmup_proportion=0.34", "--save_steps=3", "--log_freq=1"]
    killed = run(cmd, env=child_env(LR_RECORD=str(record), STOP_BEFORE_STEP="5"), check=False)
    assert killed.returncode == 3, killed.stdout
    assert "optimizer ipex-fused-lamb; ipex on" in killed.stdout, killed.stdout
    first = _records(record)
    assert len(first) == 4
    for step, rec in enumerate(first):
        assert rec["lrs"] == pytest.approx([expected[step]] * 2, rel=1e-9), (step, first, expected)
    # the log shows the rate each step used
    logged = [float(x) for x in re.findall(r"^step \d+/\d+ .* lr ([0-9.e+-]+) ", killed.stdout, re.M)]
    assert logged == pytest.approx(expected[:4], rel=1e-3), killed.stdout

    record.unlink()
    resumed = run(cmd, env=child_env(LR_RECORD=str(record)))
    assert "steps 3..6" in resumed.stdout, resumed.stdout
    after = _records(record)
    assert [r["state_step"] for r in after] == [3, 4, 5]  # LAMB's moments came back
    for step, rec in zip(range(3, steps), after):
        assert rec["lrs"] == pytest.approx([expected[step]] * 2, rel=1e-9), (step, after, expected)
    assert summary(tmp_path / "out")["steps"] == steps


def test_avx_fp32_and_dnnl_max_cpu_isa_with_ipex(ipex_python, package_dir: Path, tiny_dataset,
                                                 tmp_path: Path):
    """Seed 001: avx-fp32 is fp32 with DNNL_MAX_CPU_ISA unset. oneDNN's verbose line shows the
    ISA it runs: with IPEX present, fp32 keeps the user's limit (AVX2 here), avx-fp32 drops it."""
    dataset, config = tiny_dataset
    common = dict(DATASET_DIR=str(dataset), CONFIG_FILE=str(config), BATCH_SIZE="2",
                  MAX_STEPS="1", DNNL_MAX_CPU_ISA="AVX2", ONEDNN_VERBOSE="1")
    isa = {}
    for precision in ("avx-fp32", "fp32"):
        proc = run([package_dir / "quickstart" / "run_bert_pretrain_phase1.sh"],
                   env=ipex_env(ipex_python, PRECISION=precision,
                                OUTPUT_DIR=str(tmp_path / precision), **common),
                   cwd=tmp_path, timeout=300)
        assert "ipex on" in proc.stdout, proc.stdout
        found = re.findall(r"^onednn_verbose,.*isa:(.*)$", proc.stdout, re.M)
        assert found, proc.stdout[-3000:]
        isa[precision] = found[0].strip()
        assert summary(tmp_path / precision)["precision"] == precision
        limit = "unset" if precision == "avx-fp32" else "AVX2"
        assert f"DNNL_MAX_CPU_ISA {limit}" in proc.stdout, proc.stdout
    assert isa["fp32"] == "Intel AVX2", isa
    assert isa["avx-fp32"] != "Intel AVX2", isa


@pytest.mark.mpi
@pytest.mark.skipif(not have("mpirun"), reason="needs mpirun (apt install openmpi-bin)")
def test_ddp_with_ipex_bf16_ends_with_identical_weights(ipex_python, package_dir: Path,
                                                        tiny_dataset, tmp_path: Path):
    dataset, config = tiny_dataset
    port = str(31500 + os.getpid() % 2000)
    proc = run([package_dir / "quickstart" / "run_bert_pretrain_phase1.sh", "--log_freq=2",
                "--gradient_accumulation_steps=2", "--dist_backend=gloo"],
               env=ipex_env(ipex_python, PRECISION="bf16", OUTPUT_DIR=str(tmp_path),
                            DATASET_DIR=str(dataset), CONFIG_FILE=str(config), BATCH_SIZE="8",
                            MAX_STEPS="4", MPI_NUM_PROCESSES="2", MASTER_PORT=port),
               timeout=400)
    assert re.search(r"^\S*mpirun .*-np 2 ", proc.stdout, re.M), proc.stdout
    assert "world size 2 (gloo); optimizer ipex-fused-lamb; ipex on" in proc.stdout, proc.stdout
    s = summary(tmp_path)
    assert (s["world_size"], s["backend"], s["ipex"], s["precision"]) == (2, "gloo", True, "bf16")
    assert len(s["rank_weight_digests"]) == 2 and s["weights_identical_on_all_ranks"], s


def test_ipex_refuses_cuda_with_one_line(ipex_python: Path, tiny_dataset, tmp_path: Path):
    """IPEX runs on the CPU only: --device=cuda with IPEX in use is a usage error (exit 2, one
    line, nothing written); --no_ipex would leave the choice to CUDA itself."""
    dataset, config = tiny_dataset
    proc = run([ipex_python, TRAIN, "--phase=1", "--device=cuda", f"--input_dir={dataset}",
                f"--output_dir={tmp_path / 'out'}", f"--bert_config_file={config}",
                "--max_steps=1", "--train_batch_size=2"], env=ipex_env(ipex_python), check=False)
    assert proc.returncode == 2, proc.stdout
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert errors == ["error: --device=cuda (DEVICE=cuda): intel_extension_for_pytorch is in use, "
                      "which runs on the CPU only; add --no_ipex to train on the GPU, or use "
                      "--device=cpu"], proc.stdout
    assert "Traceback" not in proc.stdout and not (tmp_path / "out").exists()
