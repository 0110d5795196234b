"""flags.py imports no TensorFlow: a bad flag of any TF script fails in a fraction of a
second, before the slow imports (checked in fresh interpreters with ``-X importtime``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.tf.conftest import make_config_dict, make_vocab_file
from tests.tf.finetune_fixtures import REPO_ROOT, TF_DIR, script_env

HEAVY = ("tensorflow", "keras", "numpy")


def _imported(stderr: str) -> set[str]:
    """Top-level package names in ``-X importtime`` lines (``import time: a | b | name``)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-X", "importtime", *args], cwd=REPO_ROOT,
                          env=script_env(), capture_output=True, text=True, timeout=120)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")]
    assert "Traceback" not in proc.stderr, proc.stderr
    return lines[-1]


def test_importing_the_flags_module_imports_no_tensorflow():
    proc = _run("-c", "import models.bert_large.tensorflow.flags")
    assert proc.returncode == 0, proc.stderr
    assert "models" in _imported(proc.stderr)  # the parser sees the import lines
    assert not _imported(proc.stderr) & set(HEAVY), sorted(_imported(proc.stderr) & set(HEAVY))


@pytest.mark.parametrize("script, args, message", [
    ("run_squad.py", ["--do_train=True", "--num_train_epoch=1"],
     "(did you mean --num_train_epochs?)"),
    ("run_squad.py", ["--precision=fp16"], "use one of: fp32, bf16"),
    ("run_classifier.py", ["--no_such_flag"], "unknown argument(s): --no_such_flag"),
    ("run_pretraining.py", ["--no_such_flag=1"], "unknown argument(s): --no_such_flag=1"),
    ("run_pretraining.py", ["--do_train=maybe"], "expected True/False"),
])
def test_a_bad_flag_exits_2_before_tensorflow_is_imported(script, args, message):
    proc = _run(str(TF_DIR / script), *args)
    assert proc.returncode == 2, proc.stderr
    assert message in _error_line(proc)
    assert "tensorflow" not in _imported(proc.stderr)


def test_a_bad_flag_value_found_by_validation_imports_no_tensorflow(tmp_path):
    """Checks that read the vocab and bert_config.json run before TensorFlow is imported."""
    vocab = make_vocab_file(tmp_path / "vocab.txt")
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(make_config_dict()))
    common = [f"--vocab_file={vocab}", f"--bert_config_file={config}",
              f"--output_dir={tmp_path / 'out'}"]
    proc = _run(str(TF_DIR / "run_squad.py"), *common, "--do_predict=True",
                f"--predict_file={tmp_path / 'missing.json'}")
    assert proc.returncode == 2
    assert _error_line(proc).startswith(f"error: --predict_file={tmp_path / 'missing.json'}")
    assert "tensorflow" not in _imported(proc.stderr)

    proc = _run(str(TF_DIR / "run_squad.py"), *common, "--do_predict=True",
                f"--predict_file={vocab}", "--max_seq_length=4096")
    assert proc.returncode == 2 and "max_position_embeddings" in _error_line(proc)
    assert "tensorflow" not in _imported(proc.stderr)

    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(TF_DIR / "run_pretraining.py"),
         f"--bert_config_file={config}", f"--output_dir={tmp_path / 'pt'}", "--do_eval=True",
         f"--eval_files_dir={tmp_path}"], cwd=REPO_ROOT,
        env=script_env(NUM_INTER_THREADS="two"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "NUM_INTER_THREADS='two'" in _error_line(proc)
    assert "tensorflow" not in _imported(proc.stderr)
    assert not (tmp_path / "out").exists() and not (tmp_path / "pt").exists()


@pytest.mark.parametrize("value, engine", [(None, "auto"), ("", "auto"), (" horovod ", "horovod"),
                                           ("MPI4PY", "mpi4py"), ("auto", "auto")])
def test_collectives_engine_variable(value, engine):
    from models.bert_large.tensorflow.flags import check_collectives_engine

    environ = {} if value is None else {"MODELPKG_COLLECTIVES": value}
    assert check_collectives_engine(environ) == engine


def test_unknown_collectives_engine_names_the_variable():
    from models.bert_large.tensorflow.flags import FlagError, check_collectives_engine

    with pytest.raises(FlagError, match=r"MODELPKG_COLLECTIVES='gloo' is not a collectives "
                                        r"engine: use auto, horovod, mpi4py"):
        check_collectives_engine({"MODELPKG_COLLECTIVES": "gloo"})
