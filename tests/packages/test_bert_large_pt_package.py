"""The PyTorch BERT Large pretraining package's quickstarts as a user calls them.

``modelpkg build`` → extract → ``./quickstart/run_bert_pretrain_phase1.sh [PRECISION] [flags]``
(the precision as the first argument, as Intel's scripts take it, or as PRECISION). A fake
``python3`` first on PATH records the command the quickstart starts; the precision questions go
to the real models/common/precisions.py. The real training runs are in tests/pytorch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.packages.helpers import explain, recorded_calls, with_fake_python

PHASES = ("run_bert_pretrain_phase1.sh", "run_bert_pretrain_phase2.sh")
ALL = "fp32, avx-fp32, bf16, bf32"
PT_ENV = ("PRECISION", "OUTPUT_DIR", "DATASET_DIR", "CONFIG_FILE", "CHECKPOINT_DIR", "BATCH_SIZE",
          "MAX_STEPS", "GRADIENT_ACCUMULATION_STEPS", "LEARNING_RATE", "MPI_NUM_PROCESSES")


@pytest.fixture()
def inputs(tmp_path) -> dict[str, str]:
    """What both phases check (names only: nothing is read by the fake python3)."""
    data = tmp_path / "data"
    for sub, name in (("seq_128", "part-00000-of-00500_128"), ("seq_512", "part-00000-of-00500")):
        (data / sub).mkdir(parents=True)
        (data / sub / name).write_bytes(b"")
    config = tmp_path / "bert_config.json"
    config.write_text("{}")
    save = tmp_path / "phase1" / "model_save"
    save.mkdir(parents=True)
    (save / "config.json").write_text("{}")
    (save / "model.safetensors").write_bytes(b"")
    return {"DATASET_DIR": str(data), "CONFIG_FILE": str(config), "CHECKPOINT_DIR": str(save),
            "OUTPUT_DIR": str(tmp_path / "out")}


def run_phase(package: Path, script: str, env: dict[str, str], *args: str
              ) -> subprocess.CompletedProcess:
    return subprocess.run([str(package / "quickstart" / script), *args], cwd=package, env=env,
                          capture_output=True, text=True, timeout=120)


def pt_env(fake_python, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PT_ENV and k != "PYTHONPATH"}
    env.update(values)
    return with_fake_python(fake_python, env)


def launch_call(fake_python) -> tuple[list[str], list[str]]:
    """(launcher options, training command) of the one recorded launch.py call."""
    [call] = recorded_calls(fake_python)
    argv = call[1:]  # call[0] is PYTHONPATH=...
    assert argv[0].endswith("/models/common/launch.py"), argv
    sep = argv.index("--")
    return argv[1:sep], argv[sep + 1:]


@pytest.mark.parametrize("script", PHASES)
@pytest.mark.parametrize("args", [["-h"], ["--help"], ["bf16", "--help"]])
def test_help_names_the_variables_and_exits_0(pt_package, fake_python, script, args):
    proc = run_phase(pt_package, script, pt_env(fake_python), *args)
    assert proc.returncode == 0, explain(proc)
    text = proc.stdout
    assert text.startswith(f"Usage: ./quickstart/{script} [PRECISION] [run_pretraining.py flags ...]")
    model_var = "CONFIG_FILE" if script.endswith("1.sh") else "CHECKPOINT_DIR"
    for var in ("PRECISION", "OUTPUT_DIR", "DATASET_DIR", model_var, "BATCH_SIZE", "MAX_STEPS",
                "GRADIENT_ACCUMULATION_STEPS", "LEARNING_RATE", "MPI_NUM_PROCESSES"):
        assert f"\n  {var} " in text, f"{script} --help does not describe {var}"
    assert f"PRECISION          {ALL} (aliases such as bfloat16 are accepted)" in text
    assert "default 224" in text if model_var == "CONFIG_FILE" else "default 28" in text
    assert "pretraining phase" in text.split("Required")[0]
    assert "PRECISION is not set" not in proc.stdout + proc.stderr
    assert "seed" not in text.lower() and "issue" not in text.lower()
    assert recorded_calls(fake_python) == []


@pytest.mark.parametrize("given, canonical", [("bf16", "bf16"), ("bfloat16", "bf16"),
                                              ("avx-fp32", "avx-fp32")])
def test_precision_as_the_first_argument(pt_package, fake_python, inputs, given, canonical):
    env = pt_env(fake_python, **inputs)
    proc = run_phase(pt_package, "run_bert_pretrain_phase1.sh", env, given, "--log_freq=4",
                     "--seed=7")
    assert proc.returncode == 0, explain(proc)
    options, train = launch_call(fake_python)
    assert options == ["--precision", canonical, "--device", "auto"]
    assert train[1].endswith("/models/bert_large/pytorch/run_pretraining.py")
    assert f"--precision={canonical}" in train and "--phase=1" in train
    assert train[-2:] == ["--log_freq=4", "--seed=7"]  # the rest pass through, last


def test_precision_from_the_environment_and_the_same_argument(pt_package, fake_python, inputs):
    env = pt_env(fake_python, PRECISION="bfloat16", **inputs)
    proc = run_phase(pt_package, "run_bert_pretrain_phase2.sh", env, "bf16")
    assert proc.returncode == 0, explain(proc)
    options, train = launch_call(fake_python)
    assert options == ["--precision", "bf16", "--device", "auto"]
    assert f"--init_checkpoint={inputs['CHECKPOINT_DIR']}" in train and "--phase=2" in train
    assert train[-1] == "--warmup_proportion=0.128"  # no argument left to pass through


def test_flags_only_take_the_precision_from_the_environment(pt_package, fake_python, inputs):
    env = pt_env(fake_python, PRECISION="fp32", **inputs)
    proc = run_phase(pt_package, "run_bert_pretrain_phase1.sh", env, "--log_freq=2")
    assert proc.returncode == 0, explain(proc)
    options, train = launch_call(fake_python)
    assert options == ["--precision", "fp32", "--device", "auto"] and train[-1] == "--log_freq=2"
    assert "--train_batch_size=224" in train and "--max_steps=7038" in train


def test_conflicting_precisions_name_both(pt_package, fake_python, inputs):
    env = pt_env(fake_python, PRECISION="fp32", **inputs)
    proc = run_phase(pt_package, "run_bert_pretrain_phase1.sh", env, "bf16")
    assert proc.returncode == 2, explain(proc)
    assert "PRECISION=fp32 is set but the first argument is bf16" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert recorded_calls(fake_python) == [] and not Path(inputs["OUTPUT_DIR"]).exists()


@pytest.mark.parametrize("where", ["argument", "environment"])
def test_unsupported_precision_lists_the_allowed_ones(pt_package, fake_python, inputs, where):
    values = dict(inputs, PRECISION="fp16") if where == "environment" else inputs
    args = ["fp16"] if where == "argument" else []
    proc = run_phase(pt_package, "run_bert_pretrain_phase1.sh", pt_env(fake_python, **values), *args)
    assert proc.returncode == 2, explain(proc)
    assert proc.stderr.strip() == f"error: PRECISION=fp16 is not supported here; use one of: {ALL}"
    assert recorded_calls(fake_python) == [] and not Path(inputs["OUTPUT_DIR"]).exists()


def test_unset_precision_says_both_ways_to_give_it(pt_package, fake_python, inputs):
    proc = run_phase(pt_package, "run_bert_pretrain_phase2.sh", pt_env(fake_python, **inputs))
    assert proc.returncode == 2, explain(proc)
    assert (f"PRECISION is not set. Set PRECISION to one of {ALL}, e.g. export PRECISION=bf16, or "
            "give it as the first argument: ./quickstart/run_bert_pretrain_phase2.sh bf16") in proc.stderr


def test_package_precisions_drive_what_is_accepted(pt_package, fake_python, inputs, tmp_path):
    """A package built for fewer precisions (package_info.json) accepts and lists only those."""
    pkg = tmp_path / "pkg"
    shutil.copytree(pt_package, pkg, symlinks=True)
    info = json.loads((pkg / "package_info.json").read_text())
    (pkg / "package_info.json").write_text(json.dumps({**info, "precisions": ["fp32", "avx-fp32"]}))
    env = pt_env(fake_python, **inputs)
    proc = run_phase(pkg, "run_bert_pretrain_phase1.sh", env, "bf16")
    assert proc.returncode == 2, explain(proc)
    assert "PRECISION=bf16 is not supported here; use one of: fp32, avx-fp32" in proc.stderr
    proc = run_phase(pkg, "run_bert_pretrain_phase1.sh", env, "--help")
    assert "PRECISION          fp32, avx-fp32 (aliases" in proc.stdout
    assert "./quickstart/run_bert_pretrain_phase1.sh fp32" in proc.stdout  # the example fits
    proc = run_phase(pkg, "run_bert_pretrain_phase1.sh", env, "avx-fp32")
    assert proc.returncode == 0, explain(proc)


@pytest.mark.parametrize("change, message", [
    ({"DATASET_DIR": "/nonexistent"}, "DATASET_DIR=/nonexistent is not a directory"),
    ({"CONFIG_FILE": "/nonexistent.json"}, "CONFIG_FILE must point to bert_config.json"),
    ({"BATCH_SIZE": "lots"}, "BATCH_SIZE=lots is not a positive integer"),
])
def test_usage_errors_exit_2_before_any_work(pt_package, fake_python, inputs, change, message):
    proc = run_phase(pt_package, "run_bert_pretrain_phase1.sh",
                     pt_env(fake_python, **{**inputs, **change}), "fp32")
    assert proc.returncode == 2, explain(proc)
    assert message in proc.stderr
    assert recorded_calls(fake_python) == [] and not Path(inputs["OUTPUT_DIR"]).exists()


def test_training_failure_is_the_scripts_exit_code(pt_package, fake_python, inputs):
    env = pt_env(fake_python, **inputs, FAKE_PYTHON_RC="1")
    proc = run_phase(pt_package, "run_bert_pretrain_phase1.sh", env, "bf16")
    assert proc.returncode == 1, explain(proc)
    assert len(recorded_calls(fake_python)) == 1


def test_packaged_scripts_find_their_package_and_are_shellcheck_clean(pt_package):
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed; run scripts/setup-test-env.sh")
    packaged = sorted(str(p) for p in (pt_package / "quickstart").glob("*.sh"))
    assert len(packaged) == 4  # lib.sh, the common part, two phases
    proc = subprocess.run([shellcheck, "-x", *packaged], cwd=pt_package, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
