"""The BERT Large TensorFlow training packages as a new user meets them.

``modelpkg build`` → extract → set CHECKPOINT_DIR / DATASET_DIR / OUTPUT_DIR → run a
quickstart from the extracted folder. Fast tests put a fake ``python3`` first on PATH that
records the command the quickstart starts; slow tests run the real training on a tiny model.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.packages.helpers import REPO, explain, recorded_calls, run_modelpkg, with_fake_python

SPECS = ("bert-large-bf16-training", "bert-large-fp32-training")
QS_ENV = ("CHECKPOINT_DIR", "DATASET_DIR", "OUTPUT_DIR", "MPI_NUM_PROCESSES", "BATCH_SIZE",
          "PYTHONPATH", "MPI_NUM_PROCESSES_PER_SOCKET", "MULTI_HLS_IPS", "MPI_HOSTNAMES")

# Pass-through flags that keep real runs small (the scripts' defaults are BERT Large sized).
SMALL_SQUAD = ["--max_seq_length=64", "--doc_stride=32", "--max_query_length=16"]
SMALL_CLASSIFIER = ["--max_seq_length=48"]


def quickstart_env(**values: str | os.PathLike) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in QS_ENV}
    env.update({k: str(v) for k, v in values.items()})
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_quickstart(package: Path, script: str, env: dict[str, str], *args: str,
                   cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(package / "quickstart" / script), *args], cwd=cwd or package,
                          env=env, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------------------------
# Fast: a fake checkpoint folder (names only) and a fake python3 (the fake_python fixture)
# --------------------------------------------------------------------------------------------
@pytest.fixture()
def fake_ckpt(tmp_path) -> Path:
    """The files google ships, empty: enough for the quickstart's checks, never loaded."""
    d = tmp_path / "uncased_L-24_H-1024_A-16"
    d.mkdir()
    for name in ("vocab.txt", "bert_config.json", "bert_model.ckpt.index",
                 "bert_model.ckpt.data-00000-of-00001", "bert_model.ckpt.meta"):
        (d / name).write_text("")
    return d


def fake_env(fake_python, **values) -> dict[str, str]:
    return with_fake_python(fake_python, quickstart_env(**values))


def flag_value(argv: list[str], flag: str) -> str:
    """The value of the last ``--flag=value`` (the one the Python flag parser keeps)."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag}=")]
    assert values, f"--{flag} not passed in {argv}"
    return values[-1]


def test_package_contents(bf16_package):
    pkg = bf16_package
    for script in ("bfloat16_classifier_training.sh", "bfloat16_squad_training.sh",
                   "bfloat16_squad_training_demo.sh"):
        path = pkg / "quickstart" / script
        assert path.is_file() and path.stat().st_mode & stat.S_IXUSR, f"{script} missing or not executable"
    for rel in ("quickstart/lib.sh", "quickstart/bert_large_tf_common.sh", "models/common/launch.py",
                "models/common/dist_env.py", "models/bert_large/config.py",
                "models/bert_large/tensorflow/run_squad.py",
                "models/bert_large/tensorflow/run_classifier.py",
                "models/bert_large/tensorflow/squad_evaluate.py", "README.md", "licenses/LICENSE",
                "licenses/third_party/tensorflow.txt", "licenses/third_party/openmpi.txt",
                "licenses/third_party/tokenizers.txt"):
        assert (pkg / rel).is_file(), f"{rel} missing from the package"
    assert not list(pkg.rglob("__pycache__")), "caches were packed"


def test_squad_script_runs_launcher_with_seed_defaults(bf16_package, fake_ckpt, squad_dir,
                                                       fake_python, tmp_path):
    out = tmp_path / "new" / "output"  # created by the script
    env = fake_env(fake_python, CHECKPOINT_DIR=fake_ckpt, DATASET_DIR=squad_dir, OUTPUT_DIR=out)
    proc = run_quickstart(bf16_package, "bfloat16_squad_training.sh", env, "--max_seq_length=64")
    assert proc.returncode == 0, explain(proc)
    assert out.is_dir()
    [call] = recorded_calls(fake_python)
    pythonpath, argv = call[0], call[1:]
    assert pythonpath.split("=", 1)[1].split(os.pathsep)[0] == str(bf16_package)
    sep = argv.index("--")
    assert argv[0] == str(bf16_package / "models/common/launch.py")
    assert argv[1:sep] == ["--precision", "bf16"]
    train = argv[sep + 1:]
    # the training command uses the interpreter's absolute path (mpirun changes PATH)
    assert train[:2] == [str(fake_python[0] / "python3"),
                         str(bf16_package / "models/bert_large/tensorflow/run_squad.py")]
    assert flag_value(train, "vocab_file") == str(fake_ckpt / "vocab.txt")
    assert flag_value(train, "bert_config_file") == str(fake_ckpt / "bert_config.json")
    assert flag_value(train, "init_checkpoint") == str(fake_ckpt / "bert_model.ckpt")
    assert flag_value(train, "train_file") == str(squad_dir / "train-v1.1.json")
    assert flag_value(train, "predict_file") == str(squad_dir / "dev-v1.1.json")
    assert flag_value(train, "do_train") == "True" and flag_value(train, "do_predict") == "True"
    assert flag_value(train, "train_batch_size") == "24"
    assert flag_value(train, "learning_rate") == "3e-5"
    assert flag_value(train, "num_train_epochs") == "2"
    assert flag_value(train, "doc_stride") == "128"
    assert flag_value(train, "do_lower_case") == "True"
    assert flag_value(train, "precision") == "bf16"
    assert flag_value(train, "output_dir") == str(out)
    assert flag_value(train, "mpi_workers_sync_gradients") == "False"
    # the pass-through argument comes last, so it wins over the default 384
    assert train[-1] == "--max_seq_length=64" and flag_value(train, "max_seq_length") == "64"
    # the command is printed before it runs, and a log is kept in OUTPUT_DIR
    assert f"launch.py --precision bf16 -- {fake_python[0] / 'python3'}" in proc.stdout
    assert list(out.glob("bfloat16_squad_training_*.log"))


def test_demo_uses_mini_dev_and_batch_size(bf16_package, fake_ckpt, squad_dir, fake_python,
                                          tmp_path):
    env = fake_env(fake_python, CHECKPOINT_DIR=fake_ckpt, DATASET_DIR=squad_dir,
                   OUTPUT_DIR=tmp_path / "out", BATCH_SIZE="8")
    proc = run_quickstart(bf16_package, "bfloat16_squad_training_demo.sh", env)
    assert proc.returncode == 0, explain(proc)
    [call] = recorded_calls(fake_python)
    mini = str(squad_dir / "mini-dev-v1.1.json")
    assert flag_value(call, "train_file") == mini and flag_value(call, "predict_file") == mini
    assert flag_value(call, "num_train_epochs") == "0.01"
    assert flag_value(call, "train_batch_size") == "8"


def test_demo_without_mini_dev_says_how_to_make_it(bf16_package, fake_ckpt, squad_dir,
                                                   fake_python, tmp_path):
    # A user with the SQuAD download (train/dev) but not the demo's mini-dev-v1.1.json.
    data = _without(squad_dir, tmp_path, "mini-dev-v1.1.json")
    env = fake_env(fake_python, CHECKPOINT_DIR=fake_ckpt, DATASET_DIR=data,
                   OUTPUT_DIR=tmp_path / "out")
    proc = run_quickstart(bf16_package, "bfloat16_squad_training_demo.sh", env)
    assert proc.returncode == 2, explain(proc)
    assert "DATASET_DIR must point to the folder holding mini-dev-v1.1.json" in proc.stderr
    assert "bfloat16_squad_training.sh for the full SQuAD training" in proc.stderr
    assert recorded_calls(fake_python) == []
    # The command the message suggests makes a file the demo accepts.
    command = proc.stderr.split("To cut one from your dev-v1.1.json: ")[1].split(" - or run")[0]
    subprocess.run(command, shell=True, check=True, env=quickstart_env())
    mini = json.loads((data / "mini-dev-v1.1.json").read_text())
    assert mini["data"] == json.loads((data / "dev-v1.1.json").read_text())["data"][:2]
    proc = run_quickstart(bf16_package, "bfloat16_squad_training_demo.sh", env)
    assert proc.returncode == 0, explain(proc)


@pytest.mark.parametrize("point_at", ["glue", "mrpc"])
def test_classifier_accepts_glue_or_mrpc_dir(bf16_package, fake_ckpt, glue_dir, fake_python,
                                             tmp_path, point_at):
    dataset = glue_dir if point_at == "glue" else glue_dir / "MRPC"
    env = fake_env(fake_python, CHECKPOINT_DIR=fake_ckpt, DATASET_DIR=dataset,
                   OUTPUT_DIR=tmp_path / "out")
    proc = run_quickstart(bf16_package, "bfloat16_classifier_training.sh", env)
    assert proc.returncode == 0, explain(proc)
    [call] = recorded_calls(fake_python)
    assert call[call.index("--") + 2].endswith("models/bert_large/tensorflow/run_classifier.py")
    assert flag_value(call, "data_dir") == str(glue_dir / "MRPC")
    assert flag_value(call, "task_name") == "MRPC"
    assert flag_value(call, "do_train") == "True" and flag_value(call, "do_eval") == "True"
    assert flag_value(call, "train_batch_size") == "32"
    assert flag_value(call, "learning_rate") == "2e-5"
    assert flag_value(call, "num_train_epochs") == "3"
    assert flag_value(call, "max_seq_length") == "128"


def test_fp32_scripts_pass_fp32(fp32_package, fake_ckpt, squad_dir, fake_python, tmp_path):
    env = fake_env(fake_python, CHECKPOINT_DIR=fake_ckpt, DATASET_DIR=squad_dir,
                   OUTPUT_DIR=tmp_path / "out")
    proc = run_quickstart(fp32_package, "fp32_squad_training_demo.sh", env)
    assert proc.returncode == 0, explain(proc)
    [call] = recorded_calls(fake_python)
    assert call[1:call.index("--")][-2:] == ["--precision", "fp32"]
    assert flag_value(call, "precision") == "fp32"


def test_cased_checkpoint_turns_lower_casing_off(bf16_package, fake_ckpt, squad_dir, fake_python,
                                                 tmp_path):
    cased = fake_ckpt.rename(fake_ckpt.parent / "wwm_cased_L-24_H-1024_A-16")
    env = fake_env(fake_python, CHECKPOINT_DIR=cased, DATASET_DIR=squad_dir,
                   OUTPUT_DIR=tmp_path / "out")
    proc = run_quickstart(bf16_package, "bfloat16_squad_training_demo.sh", env)
    assert proc.returncode == 0, explain(proc)
    assert "cased checkpoint" in proc.stdout
    [call] = recorded_calls(fake_python)
    assert flag_value(call, "do_lower_case") == "False"


def test_relative_paths_and_any_working_directory(bf16_package, fake_ckpt, squad_dir, fake_python,
                                                  tmp_path):
    """Variables relative to the user's cwd become absolute; the script finds its package."""
    shutil.copytree(fake_ckpt, tmp_path / "ckpt")
    shutil.copytree(squad_dir, tmp_path / "data")
    env = fake_env(fake_python, CHECKPOINT_DIR="ckpt", DATASET_DIR="data", OUTPUT_DIR="out")
    proc = run_quickstart(bf16_package, "bfloat16_squad_training_demo.sh", env, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    [call] = recorded_calls(fake_python)
    assert flag_value(call, "vocab_file") == str(tmp_path / "ckpt" / "vocab.txt")
    assert flag_value(call, "output_dir") == str(tmp_path / "out")
    assert call[1] == str(bf16_package / "models/common/launch.py")


def test_training_failure_is_the_scripts_exit_code(bf16_package, fake_ckpt, squad_dir,
                                                   fake_python, tmp_path):
    env = fake_env(fake_python, CHECKPOINT_DIR=fake_ckpt, DATASET_DIR=squad_dir,
                   OUTPUT_DIR=tmp_path / "out", FAKE_PYTHON_RC="3")
    proc = run_quickstart(bf16_package, "bfloat16_squad_training_demo.sh", env)
    assert proc.returncode == 3, explain(proc)


def test_warns_when_output_dir_was_used_by_another_script(bf16_package, fake_ckpt, squad_dir,
                                                          glue_dir, fake_python, tmp_path):
    out = tmp_path / "out"
    squad_env = fake_env(fake_python, CHECKPOINT_DIR=fake_ckpt, DATASET_DIR=squad_dir, OUTPUT_DIR=out)
    first = run_quickstart(bf16_package, "bfloat16_squad_training_demo.sh", squad_env)
    assert first.returncode == 0 and "warning" not in first.stderr, explain(first)
    again = run_quickstart(bf16_package, "bfloat16_squad_training_demo.sh", squad_env)
    assert again.returncode == 0 and "warning" not in again.stderr, explain(again)

    mrpc_env = fake_env(fake_python, CHECKPOINT_DIR=fake_ckpt, DATASET_DIR=glue_dir, OUTPUT_DIR=out)
    other = run_quickstart(bf16_package, "bfloat16_classifier_training.sh", mrpc_env)
    assert other.returncode == 0, explain(other)  # a warning, not an error
    assert "warning" in other.stderr and "bfloat16_squad_training_demo.sh" in other.stderr
    assert "new empty OUTPUT_DIR" in other.stderr


def test_warns_about_checkpoints_of_an_unknown_run(bf16_package, fake_ckpt, squad_dir,
                                                   fake_python, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-10"\n')
    env = fake_env(fake_python, CHECKPOINT_DIR=fake_ckpt, DATASET_DIR=squad_dir, OUTPUT_DIR=out)
    proc = run_quickstart(bf16_package, "bfloat16_squad_training_demo.sh", env)
    assert proc.returncode == 0, explain(proc)
    assert "warning" in proc.stderr and "already holds checkpoints" in proc.stderr


def test_help_needs_no_environment(bf16_package, fake_python):
    proc = run_quickstart(bf16_package, "bfloat16_classifier_training.sh", fake_env(fake_python), "--help")
    assert proc.returncode == 0, explain(proc)
    for var in ("CHECKPOINT_DIR", "DATASET_DIR", "OUTPUT_DIR", "MPI_NUM_PROCESSES", "BATCH_SIZE", "MRPC"):
        assert var in proc.stdout
    assert recorded_calls(fake_python) == []


TF_SCRIPTS = [(package, f"{prefix}_{task}.sh")
              for package, prefix in (("bf16_package", "bfloat16"), ("fp32_package", "fp32"))
              for task in ("classifier_training", "squad_training", "squad_training_demo")]


@pytest.mark.parametrize("package, script", TF_SCRIPTS)
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_quickstart_has_help(request, fake_python, package, script, flag):
    pkg = request.getfixturevalue(package)
    proc = run_quickstart(pkg, script, fake_env(fake_python), flag)
    assert proc.returncode == 0, explain(proc)
    assert proc.stderr == ""
    text = proc.stdout
    assert text.startswith(f"Usage: CHECKPOINT_DIR=... DATASET_DIR=... OUTPUT_DIR=... ./quickstart/{script}")
    for var in ("CHECKPOINT_DIR", "DATASET_DIR", "OUTPUT_DIR", "MPI_NUM_PROCESSES", "BATCH_SIZE"):
        assert f"\n  {var} " in text, f"{script} --help does not describe {var}"
    assert "Required environment:" in text and "Optional:" in text
    # what it does, and the precisions the package was built for (from package_info.json)
    assert ("SQuAD" if "squad" in script else "MRPC") in text.split("Required")[0]
    built_for = "bf16" if package == "bf16_package" else "fp32"
    assert f"this package's precisions: {built_for})" in text
    assert "seed" not in text.lower() and "issue" not in text.lower()
    assert recorded_calls(fake_python) == []


def test_script_of_a_precision_the_package_lacks_is_refused(bf16_package, fp32_package, fake_ckpt,
                                                           squad_dir, fake_python, tmp_path):
    """package_info.json decides: the fp32 demo copied into the bf16 package stops with exit 2."""
    pkg = tmp_path / "bf16pkg"
    shutil.copytree(bf16_package, pkg, symlinks=True)
    shutil.copy(fp32_package / "quickstart" / "fp32_squad_training_demo.sh", pkg / "quickstart")
    out = tmp_path / "out"
    env = fake_env(fake_python, CHECKPOINT_DIR=fake_ckpt, DATASET_DIR=squad_dir, OUTPUT_DIR=out)
    proc = run_quickstart(pkg, "fp32_squad_training_demo.sh", env)
    assert proc.returncode == 2, explain(proc)
    assert "precision=fp32 is not supported here; use one of: bf16" in proc.stderr
    assert "fp32_squad_training_demo.sh trains in fp32, which this package was not built for" in proc.stderr
    assert recorded_calls(fake_python) == [] and not out.exists()


def _without(directory: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / f"no_{name.replace('*', '')}"
    shutil.copytree(directory, copy)
    for path in copy.glob(name):
        path.unlink()
    return copy


@pytest.mark.parametrize(
    "script, change, expected",
    [
        ("bfloat16_squad_training.sh", {"CHECKPOINT_DIR": None}, "CHECKPOINT_DIR is not set"),
        ("bfloat16_squad_training.sh", {"CHECKPOINT_DIR": "/nonexistent/ckpt"},
         "CHECKPOINT_DIR=/nonexistent/ckpt is not a directory"),
        ("bfloat16_squad_training.sh", {"CHECKPOINT_DIR": "-vocab.txt"}, "vocab.txt not found: CHECKPOINT_DIR"),
        ("bfloat16_squad_training.sh", {"CHECKPOINT_DIR": "-bert_config.json"},
         "bert_config.json not found: CHECKPOINT_DIR"),
        ("bfloat16_squad_training.sh", {"CHECKPOINT_DIR": "-bert_model.ckpt.index"},
         "bert_model.ckpt.index not found: CHECKPOINT_DIR"),
        ("bfloat16_squad_training.sh", {"CHECKPOINT_DIR": "-bert_model.ckpt.data-*"},
         "bert_model.ckpt.data-00000-of-00001 not found"),
        ("bfloat16_squad_training.sh", {"DATASET_DIR": None}, "DATASET_DIR is not set"),
        ("bfloat16_squad_training.sh", {"DATASET_DIR": "-train-v1.1.json"},
         "train-v1.1.json not found: DATASET_DIR"),
        ("bfloat16_squad_training.sh", {"DATASET_DIR": "-dev-v1.1.json"},
         "dev-v1.1.json not found: DATASET_DIR"),
        ("bfloat16_squad_training_demo.sh", {"DATASET_DIR": "-mini-dev-v1.1.json"},
         "mini-dev-v1.1.json not found: DATASET_DIR"),
        ("bfloat16_classifier_training.sh", {}, "has no MRPC data"),
        ("bfloat16_squad_training.sh", {"OUTPUT_DIR": None}, "OUTPUT_DIR is not set"),
        ("bfloat16_squad_training.sh", {"MPI_NUM_PROCESSES": "two"}, "MPI_NUM_PROCESSES=two is not a positive integer"),
        ("bfloat16_squad_training.sh", {"BATCH_SIZE": "0"}, "BATCH_SIZE=0 is not a positive integer"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.endswith(".sh") else None,
)
def test_bad_environment_stops_before_any_work(bf16_package, fake_ckpt, squad_dir, fake_python,
                                               tmp_path, script, change, expected):
    out = tmp_path / "out"
    values: dict[str, object] = {"CHECKPOINT_DIR": fake_ckpt, "DATASET_DIR": squad_dir, "OUTPUT_DIR": out}
    for var, value in change.items():
        if value is None:
            values.pop(var)
        elif value.startswith("-"):
            values[var] = _without(Path(values[var]), tmp_path, value[1:])
        else:
            values[var] = value
    proc = run_quickstart(bf16_package, script, fake_env(fake_python, **values))
    assert proc.returncode == 2, explain(proc)  # a usage error: exit 2, nothing started
    assert expected in proc.stderr, explain(proc)
    var = next(iter(change), "DATASET_DIR")
    assert var in proc.stderr  # the message names the variable to fix
    assert recorded_calls(fake_python) == [], "python3 ran although the environment was wrong"
    assert not out.exists(), "OUTPUT_DIR was created although the environment was wrong"


def test_shellcheck_clean(bf16_package):
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed; run scripts/setup-test-env.sh")
    sources = sorted((REPO / "quickstart/bert_large/tensorflow").glob("*.sh"))
    assert len(sources) == 10  # 6 training + 3 inference quickstarts + the common file
    proc = subprocess.run([shellcheck, "-x", *map(str, sources)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    packaged = sorted(str(p) for p in (bf16_package / "quickstart").glob("*.sh"))
    proc = subprocess.run([shellcheck, "-x", *packaged], cwd=bf16_package, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------
# Dockerfile and README
# --------------------------------------------------------------------------------------------
def test_dockerfiles_and_docs_are_fresh():
    run_modelpkg("dockerfile", *SPECS, "--check")
    run_modelpkg("docs", *SPECS, "--check")


@pytest.mark.parametrize("name, tag", [
    ("bert-large-bf16-training", "tf-latest-bert-large-bfloat16-training"),
    ("bert-large-fp32-training", "tf-latest-bert-large-fp32-training"),
])
def test_dockerfile_has_what_the_quickstarts_need(name, tag):
    text = (REPO / "dockerfiles" / f"{name}.Dockerfile").read_text()
    lowered = text.lower()
    for needle in ("tensorflow-cpu", "tokenizers", "mpi4py", "openmpi", "numactl",
                   "openssh-server", "openssh-client"):
        assert needle in lowered, f"{name}.Dockerfile does not install {needle}"
    assert f"WORKDIR /workspace/{name}" in text
    # dependency layers come before the package layer, so a code change keeps them cached
    assert lowered.index("tensorflow-cpu") < lowered.index(f"/workspace/{name}")


@pytest.mark.parametrize("name, prefix, image", [
    ("bert-large-bf16-training", "bfloat16", "intel/language-modeling:tf-latest-bert-large-bfloat16-training"),
    ("bert-large-fp32-training", "fp32", "intel/language-modeling:tf-latest-bert-large-fp32-training"),
])
def test_readme_has_seed_sections(name, prefix, image):
    text = (REPO / "docs" / "packages" / f"{name}.md").read_text()
    for heading in ("## Description", "## Datasets", "## Quick Start Scripts", "## Bare Metal",
                    "## Docker", "## License"):
        assert heading in text, f"{name}.md lacks {heading}"
    for script in ("classifier_training.sh", "squad_training.sh", "squad_training_demo.sh"):
        assert f"{prefix}_{script}" in text
    for needle in (image, "MPI_NUM_PROCESSES", "mpi_workers_sync_gradients", "CHECKPOINT_DIR",
                   "mini-dev-v1.1.json", "MRPC", f"modelpkg build {name}"):
        assert needle in text, f"{name}.md does not mention {needle}"


def test_packaged_readme_is_the_committed_one(bf16_package):
    committed = (REPO / "docs/packages/bert-large-bf16-training.md").read_text()
    assert (bf16_package / "README.md").read_text() == committed


# --------------------------------------------------------------------------------------------
# Slow: real training on a tiny model, from the extracted package
# --------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _squad_ids(path: Path) -> set[str]:
    data = _read_json(path)["data"]
    return {qa["id"] for article in data for p in article["paragraphs"] for qa in p["qas"]}


def assert_squad_outputs(out: Path, predict_file: Path, proc: subprocess.CompletedProcess) -> None:
    predictions = out / "predictions.json"
    assert predictions.is_file(), f"no predictions.json in {sorted(os.listdir(out))}\n{explain(proc)}"
    assert set(_read_json(predictions)) == _squad_ids(predict_file)
    assert (out / "nbest_predictions.json").is_file()
    assert '"exact_match"' in proc.stdout and '"f1"' in proc.stdout, explain(proc)
    metrics = _read_json(out / "eval_results.json")
    assert 0.0 <= metrics["exact_match"] <= 100.0 and 0.0 <= metrics["f1"] <= 100.0


@pytest.mark.slow
def test_bf16_squad_demo_end_to_end(bf16_package, checkpoint_dir, squad_dir, tmp_path):
    out = tmp_path / "out"
    env = quickstart_env(CHECKPOINT_DIR=checkpoint_dir, DATASET_DIR=squad_dir, OUTPUT_DIR=out,
                         BATCH_SIZE="4")
    proc = run_quickstart(bf16_package, "bfloat16_squad_training_demo.sh", env, *SMALL_SQUAD)
    assert proc.returncode == 0, explain(proc)
    if shutil.which("numactl"):  # the launcher printed the numactl command it ran
        assert "numactl --physcpubind=" in proc.stdout, explain(proc)
    assert_squad_outputs(out, squad_dir / "mini-dev-v1.1.json", proc)


@pytest.mark.slow
def test_bf16_squad_training_end_to_end(bf16_package, checkpoint_dir, squad_dir, tmp_path):
    out = tmp_path / "out"
    env = quickstart_env(CHECKPOINT_DIR=checkpoint_dir, DATASET_DIR=squad_dir, OUTPUT_DIR=out,
                         BATCH_SIZE="8")
    proc = run_quickstart(bf16_package, "bfloat16_squad_training.sh", env, *SMALL_SQUAD,
                          "--num_train_epochs=1")
    assert proc.returncode == 0, explain(proc)
    assert_squad_outputs(out, squad_dir / "dev-v1.1.json", proc)


@pytest.mark.slow
def test_bf16_classifier_end_to_end(bf16_package, checkpoint_dir, glue_dir, tmp_path):
    out = tmp_path / "out"
    env = quickstart_env(CHECKPOINT_DIR=checkpoint_dir, DATASET_DIR=glue_dir, OUTPUT_DIR=out,
                         BATCH_SIZE="8")
    proc = run_quickstart(bf16_package, "bfloat16_classifier_training.sh", env, *SMALL_CLASSIFIER,
                          "--num_train_epochs=1")
    assert proc.returncode == 0, explain(proc)
    results = out / "eval_results.json"
    assert results.is_file(), f"no eval_results.json in {sorted(os.listdir(out))}\n{explain(proc)}"
    result = _read_json(results)
    assert 0.0 <= result["eval_accuracy"] <= 1.0
    assert result["eval_examples"] == 12  # every dev.tsv row was scored


@pytest.mark.slow
def test_fp32_squad_demo_end_to_end(fp32_package, checkpoint_dir, squad_dir, tmp_path):
    out = tmp_path / "out"
    env = quickstart_env(CHECKPOINT_DIR=checkpoint_dir, DATASET_DIR=squad_dir, OUTPUT_DIR=out,
                         BATCH_SIZE="4")
    proc = run_quickstart(fp32_package, "fp32_squad_training_demo.sh", env, *SMALL_SQUAD)
    assert proc.returncode == 0, explain(proc)
    assert_squad_outputs(out, squad_dir / "mini-dev-v1.1.json", proc)


@pytest.mark.slow
@pytest.mark.mpi
def test_bf16_squad_demo_two_mpi_ranks(bf16_package, checkpoint_dir, squad_dir, tmp_path):
    out = tmp_path / "out"
    env = quickstart_env(CHECKPOINT_DIR=checkpoint_dir, DATASET_DIR=squad_dir, OUTPUT_DIR=out,
                         BATCH_SIZE="4", MPI_NUM_PROCESSES="2")
    proc = run_quickstart(bf16_package, "bfloat16_squad_training_demo.sh", env, *SMALL_SQUAD)
    assert proc.returncode == 0, explain(proc)
    assert "mpirun" in proc.stdout, "the launcher did not print the mpirun command"
    # independent ranks (the default): rank 0 in OUTPUT_DIR, rank 1 in OUTPUT_DIR/rank_1, both
    # predict and score, and rank 0 reports the best rank
    for folder in (out, out / "rank_1"):
        assert_squad_outputs(folder, squad_dir / "mini-dev-v1.1.json", proc)
    assert "[rank 1/2]" in proc.stdout
    best = _read_json(out / "best_rank.json")
    assert best["best_rank"] in (0, 1)
