"""The shared quickstart shell library: each check stops with exit 1 and a message that names
the variable and what to set it to; print_and_run prints a pasteable command first."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "quickstart" / "common" / "lib.sh"


def run_lib(snippet: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    script = f'set -euo pipefail\nsource "{LIB}"\n{snippet}\necho REACHED\n'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, cwd=cwd)


@pytest.mark.parametrize(
    ("snippet", "env", "message"),
    [
        ('require_env OUTPUT_DIR "a writable folder"', {},
         "OUTPUT_DIR is not set. Set OUTPUT_DIR to a writable folder, e.g. export OUTPUT_DIR=/path/to/dir"),
        ('require_env PRECISION "fp32 or bf16" bf16', {},
         "e.g. export PRECISION=bf16"),
        ('require_env BATCH_SIZE "a number"', {}, "export BATCH_SIZE=<value>"),
        ('require_dir DATASET_DIR "the SQuAD folder"', {"DATASET_DIR": "/nonexistent"},
         "DATASET_DIR=/nonexistent is not a directory. Set DATASET_DIR to the SQuAD folder"),
        ('require_file CONFIG_FILE /tmp "bert_config.json"', {},
         "/tmp is a directory, not a file: CONFIG_FILE must point to bert_config.json"),
        ('require_file CHECKPOINT_DIR /nonexistent/vocab.txt "the model folder"', {},
         "/nonexistent/vocab.txt not found: CHECKPOINT_DIR must point to the model folder"),
        ("require_positive_int_or_unset BATCH_SIZE", {"BATCH_SIZE": "0"},
         "BATCH_SIZE=0 is not a positive integer"),
        ("require_one_of PRECISION fp32 bf16", {"PRECISION": "fp16"},
         "PRECISION=fp16 is not supported. Set PRECISION to one of: fp32 bf16"),
    ],
)
def test_failed_checks_exit_1_naming_the_variable(snippet, env, message):
    done = run_lib(snippet, env)
    assert done.returncode == 1
    assert message in done.stderr
    assert "REACHED" not in done.stdout


def test_passing_checks_go_on(tmp_path):
    done = run_lib(
        'require_dir DATASET_DIR "data"; require_positive_int_or_unset BATCH_SIZE; '
        "require_one_of PRECISION fp32 bf16; ensure_output_dir OUTPUT_DIR",
        {"DATASET_DIR": str(tmp_path), "PRECISION": "bf16",
         "OUTPUT_DIR": str(tmp_path / "new" / "out")},
    )
    assert done.returncode == 0, done.stderr
    assert "REACHED" in done.stdout
    assert (tmp_path / "new" / "out").is_dir()


def test_print_and_run_prints_a_quoted_command_then_runs_it(tmp_path):
    done = run_lib("print_and_run touch 'a file'", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == r"+ touch a\ file"
    assert (tmp_path / "a file").exists()
