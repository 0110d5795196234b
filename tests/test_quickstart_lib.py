"""The shared quickstart shell library: each check stops with exit 2 (a usage error, before any
work) and a message that names the variable and what to set it to; qs_die (a failure during the
work) exits 1; qs_package_dir finds the package root in a package and in the source checkout;
precisions come from models/common/precisions.py; print_and_run prints a pasteable command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "quickstart" / "common" / "lib.sh"
PRECISIONS_PY = REPO / "models" / "common" / "precisions.py"
# python3 first on PATH is the one running the tests (the precision query needs python3)
PATH = os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"])


def run_lib(snippet: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    script = f'set -euo pipefail\nsource "{LIB}"\n{snippet}\necho REACHED\n'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          env={"PATH": PATH, **(env or {})}, cwd=cwd)


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
        ("require_one_of TASK squad classifier", {"TASK": "ner"},
         "TASK=ner is not supported. Set TASK to one of: squad classifier"),
        ("ensure_output_dir OUTPUT_DIR", {"OUTPUT_DIR": "/proc/no/such/dir"},
         "cannot create OUTPUT_DIR=/proc/no/such/dir; set OUTPUT_DIR to a writable directory"),
        ('qs_usage_error "BATCH_SIZE and MAX_STEPS disagree"', {}, "error: BATCH_SIZE and MAX_STEPS"),
    ],
)
def test_failed_checks_exit_2_naming_the_variable(snippet, env, message):
    done = run_lib(snippet, env)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "REACHED" not in done.stdout


def test_failures_during_the_work_exit_1():
    done = run_lib('qs_die "training stopped: disk full"')
    assert done.returncode == 1
    assert done.stderr == "error: training stopped: disk full\n"


def test_header_states_the_exit_convention():
    header = "\n".join(LIB.read_text().splitlines()[:15])
    assert "2  usage error" in header and "1  a failure while the work runs" in header
    assert "0  success, and -h/--help" in header


def test_passing_checks_go_on(tmp_path):
    done = run_lib(
        'require_dir DATASET_DIR "data"; require_positive_int_or_unset BATCH_SIZE; '
        "require_one_of TASK squad classifier; ensure_output_dir OUTPUT_DIR",
        {"DATASET_DIR": str(tmp_path), "TASK": "squad",
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


@pytest.mark.parametrize("first", ["-h", "--help"])
def test_wants_help(first):
    done = run_lib(f'if qs_wants_help {first} x; then echo HELP; fi; qs_wants_help x -h || echo NO')
    assert done.stdout.split() == ["HELP", "NO", "REACHED"]


# -- the package root ------------------------------------------------------------------------------

CALLER = """#!/usr/bin/env bash
set -euo pipefail
source "{lib}"
pkg="$(qs_package_dir)"
echo "PKG=${{pkg}}"
"""


def _caller(path: Path, lib: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CALLER.format(lib=lib))
    path.chmod(0o755)
    return path


def _run(script: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(script)], capture_output=True, text=True, cwd=cwd,
                          env={"PATH": PATH, **env})


def test_package_dir_in_an_extracted_package(tmp_path):
    """<pkg>/quickstart/{lib.sh,script}: the root is <pkg>, from any working directory."""
    pkg = tmp_path / "bert-large-bf16-training"
    (pkg / "models" / "common").mkdir(parents=True)
    (pkg / "models" / "common" / "launch.py").write_text("")
    (pkg / "quickstart").mkdir()
    shutil.copy(LIB, pkg / "quickstart" / "lib.sh")
    script = _caller(pkg / "quickstart" / "run.sh", pkg / "quickstart" / "lib.sh")
    (tmp_path / "elsewhere").mkdir()
    done = _run(script, tmp_path / "elsewhere")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"PKG={pkg}"


def test_package_dir_in_the_source_checkout(tmp_path):
    """quickstart/<model>/<framework>/script with quickstart/common/lib.sh: the repository."""
    script = _caller(tmp_path / "qs_probe.sh", LIB)
    # a script beside the real quickstarts finds this repository
    probe = REPO / "quickstart" / "bert_large" / "pytorch" / f".probe_{os.getpid()}.sh"
    try:
        shutil.copy(script, probe)
        done = _run(probe, tmp_path)
    finally:
        probe.unlink()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"PKG={REPO}"


def test_package_dir_missing_is_a_usage_error(tmp_path):
    script = _caller(tmp_path / "lonely" / "run.sh", LIB)
    done = _run(script, tmp_path)
    assert done.returncode == 2
    assert "models/common/launch.py not found in " in done.stderr
    assert "extracted model package" in done.stderr


def test_common_scripts_use_the_one_package_dir_function():
    for common in ("tensorflow/bert_large_tf_common.sh", "pytorch/bert_large_pt_common.sh"):
        text = (REPO / "quickstart" / "bert_large" / common).read_text()
        assert '"$(qs_package_dir)"' in text, common
        assert "models/common/launch.py\" ]]" not in text  # no walk of its own


# -- precisions ------------------------------------------------------------------------------------

def _package_with_precisions(tmp_path: Path, names: list[str] | None) -> Path:
    pkg = tmp_path / "pkg"
    (pkg / "models" / "common").mkdir(parents=True)
    shutil.copy(PRECISIONS_PY, pkg / "models" / "common" / "precisions.py")
    if names is not None:
        (pkg / "package_info.json").write_text(json.dumps({"precisions": names}))
    return pkg


@pytest.mark.parametrize(("value", "framework", "canonical"), [
    ("bf16", "pytorch", "bf16"), ("bfloat16", "tensorflow", "bf16"), ("FP32", "pytorch", "fp32"),
    ("avx-fp32", "pytorch", "avx-fp32"),
])
def test_resolve_precision_prints_the_canonical_name(tmp_path, value, framework, canonical):
    pkg = _package_with_precisions(tmp_path, None)
    done = run_lib(f'p="$(qs_resolve_precision {value} {framework} "{pkg}")"; echo "P=$p"')
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [f"P={canonical}", "REACHED"]


def test_resolve_precision_unsupported_is_exit_2_listing_the_allowed(tmp_path):
    pkg = _package_with_precisions(tmp_path, None)
    done = run_lib(f'p="$(qs_resolve_precision avx-fp32 tensorflow "{pkg}")"')
    assert done.returncode == 2
    assert done.stderr.strip() == "error: PRECISION=avx-fp32 is not supported here; use one of: fp32, bf16"
    assert "REACHED" not in done.stdout


def test_package_info_decides_what_is_accepted(tmp_path):
    pkg = _package_with_precisions(tmp_path, ["bf16"])
    done = run_lib(f'p="$(qs_resolve_precision fp32 pytorch "{pkg}" precision "use the bf16 script")"')
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: precision=fp32 is not supported here; use one of: bf16",
        "error: use the bf16 script"]
    done = run_lib(f'echo "LIST=$(qs_precision_list pytorch "{pkg}")"')
    assert done.stdout.splitlines()[0] == "LIST=bf16"


def test_precision_list_is_the_frameworks_without_package_info(tmp_path):
    pkg = _package_with_precisions(tmp_path, None)
    done = run_lib(f'echo "LIST=$(qs_precision_list pytorch "{pkg}")"; '
                   f'echo "ONE=$(qs_precision_list tensorflow "{pkg}" " | ")"')
    assert done.stdout.splitlines()[:2] == ["LIST=fp32, avx-fp32, bf16, bf32", "ONE=fp32 | bf16"]


def test_no_hard_coded_precision_tables_in_the_quickstarts():
    for path in (REPO / "quickstart").rglob("*.sh"):
        text = path.read_text()
        assert "bfloat16) " not in text and "require_one_of PRECISION" not in text, path
        assert "avx-fp32 bf16" not in text and "fp32 | avx-fp32" not in text, path
