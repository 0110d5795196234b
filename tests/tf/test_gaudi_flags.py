"""Habana's flags in the TF BERT scripts: the bf16 recipe (TF_BF16_CONVERSION /
--bf16_config_path), the device seam (--device with a stand-in sysfs and bridge), --profile,
--deterministic_run, --use_horovod, --dataset_path, --num_train_steps, --dllog_path and the
refused --amp / --use_xla."""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

import pytest

from models.bert_large.tensorflow import bf16_config, device, profiling
from models.bert_large.tensorflow import flags as tf_flags
from tests.tf.finetune_fixtures import make_bert_dir, model_args, run_script, write_mrpc

REPO = Path(__file__).resolve().parents[2]
SHIPPED_RECIPE = REPO / "habana" / "bert_tensorflow" / "bf16_config" / "bert.json"


# ---------------------------------------------------------------------------------------------
# bf16 recipe


def test_shipped_recipe_is_valid_and_keeps_matmuls_in_bf16():
    recipe = bf16_config.load(str(SHIPPED_RECIPE), "bert.json")
    assert "MatMul" in recipe["allowlists"]["allowlist"]
    assert "BatchMatMulV2" in recipe["allowlists"]["allowlist"]


@pytest.mark.parametrize("content, needle", [
    ("{", "not valid JSON (line 1"),
    ("[]", 'key "allowlists"'),
    ('{"allowlists": {"conditional_list": []}}', "allowlists.allowlist is missing"),
    ('{"allowlists": {"allowlist": "MatMul", "conditional_list": []}}',
     "allowlists.allowlist must be a list"),
    ('{"allowlists": {"allowlist": [], "conditional_list": [], '
     '"non_convertible_exceptions": [["x"]]}}', "non_convertible_exceptions[0] must be a pair"),
    ('{"allowlists": {"allowlist": [], "conditional_list": [], "allow_list": []}}',
     "unknown key(s) allowlists.allow_list"),
])
def test_malformed_recipe_names_file_and_key(tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(bf16_config.Bf16ConfigError) as err:
        bf16_config.load(str(path), "TF_BF16_CONVERSION")
    assert f"TF_BF16_CONVERSION={path}" in str(err.value)
    assert needle in str(err.value)


def test_precision_priority(tmp_path):
    recipe = str(SHIPPED_RECIPE)
    assert bf16_config.resolve(None, None, {})[0] == "fp32"
    assert bf16_config.resolve(None, None, {"TF_BF16_CONVERSION": recipe})[:2] == ("bf16", recipe)
    assert bf16_config.resolve(None, None, {"TF_BF16_CONVERSION": "1"})[:2] == ("bf16", None)
    assert bf16_config.resolve(None, None, {"TF_BF16_CONVERSION": "0"})[0] == "fp32"
    assert bf16_config.resolve(None, recipe, {})[:2] == ("bf16", recipe)
    # --precision decides, but a named recipe is still checked.
    assert bf16_config.resolve("fp32", None, {"TF_BF16_CONVERSION": recipe})[0] == "fp32"
    with pytest.raises(bf16_config.Bf16ConfigError, match="file not found"):
        bf16_config.resolve("fp32", None, {"TF_BF16_CONVERSION": str(tmp_path / "no.json")})


# ---------------------------------------------------------------------------------------------
# Device seam


def fake_sysfs(root: Path, *types: str) -> Path:
    for i, kind in enumerate(types):
        d = root / f"accel{i}" / "device"
        d.mkdir(parents=True)
        (d / "device_type").write_text(kind + "\n")
    root.mkdir(parents=True, exist_ok=True)
    return root


def fake_bridge(root: Path, marker: Path) -> Path:
    """A stand-in ``habana_frameworks.tensorflow`` whose load_habana_module() records the
    bf16 recipe it was handed."""
    pkg = root / "habana_frameworks" / "tensorflow"
    pkg.mkdir(parents=True)
    (root / "habana_frameworks" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text(
        "import json, os\n"
        "def load_habana_module():\n"
        f"    with open({str(marker)!r}, 'w') as f:\n"
        "        json.dump({'TF_BF16_CONVERSION': os.environ.get('TF_BF16_CONVERSION')}, f)\n")
    return root


def test_no_gaudi_means_cpu_in_auto_and_an_error_for_hpu(tmp_path):
    env = {device.SYSFS_ENV: str(fake_sysfs(tmp_path / "accel"))}
    chosen = device.select("auto", env)
    assert chosen.kind == "cpu" and "no Gaudi" in chosen.reason
    with pytest.raises(device.DeviceError, match="--device=hpu but no Gaudi"):
        device.select("hpu", env)
    assert device.select("cpu", env).kind == "cpu"


def test_gaudi_without_bridge_names_the_bridge(tmp_path, monkeypatch):
    env = {device.SYSFS_ENV: str(fake_sysfs(tmp_path / "accel", "GAUDI2", "GAUDI2"))}
    monkeypatch.setattr(device, "bridge_installed", lambda: False)
    assert device.gaudi_cards(env) == ("GAUDI2", "GAUDI2")
    assert device.select("auto", env).kind == "cpu"
    with pytest.raises(device.DeviceError, match="habana-tensorflow"):
        device.select("hpu", env)


def test_gaudi_with_bridge_is_hpu(tmp_path, monkeypatch):
    env = {device.SYSFS_ENV: str(fake_sysfs(tmp_path / "accel", "GAUDI", "other"))}
    monkeypatch.syspath_prepend(str(fake_bridge(tmp_path / "site", tmp_path / "m.json")))
    chosen = device.select("auto", env)
    assert chosen.is_hpu and chosen.cards == ("GAUDI",)


# ---------------------------------------------------------------------------------------------
# Flag parsing (no TensorFlow)


def test_profile_parse():
    assert profiling.parse("30,31") == (30, 31)
    assert profiling.parse("5") == (5, 5)
    for bad in ("31,30", "0,1", "a,b", "1,2,3"):
        with pytest.raises(ValueError, match="--profile"):
            profiling.parse(bad)


@pytest.mark.parametrize("text, value", [("true", True), ("True", True), ("1", True),
                                         ("false", False), ("False", False), ("0", False)])
def test_bool_spellings(text, value):
    from models.bert_large.tensorflow import run_classifier

    flags = tf_flags.parse_flags(run_classifier.build_parser(),
                                 [f"--use_horovod={text}", f"--deterministic_run={text}"])
    assert flags.horovod is value and flags.deterministic_run is value


def test_habana_spellings_parse():
    from models.bert_large.tensorflow import run_pretraining

    flags = tf_flags.parse_flags(run_pretraining.build_parser(),
                                 ["--horovod", "--noamp", "--nouse_xla", "--nouse_horovod",
                                  "--enable_scoped_allocator=False", "--deterministic_seed=7"])
    assert (flags.horovod, flags.amp, flags.use_xla, flags.enable_scoped_allocator,
            flags.seed) == (False, False, False, False, 7)
    assert not flags.ignored_flags


# ---------------------------------------------------------------------------------------------
# End to end (subprocesses)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_bert_dir(tmp_path_factory.mktemp("ckpt") / "uncased_L-2_H-64_A-4")


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory):
    return write_mrpc(tmp_path_factory.mktemp("glue") / "MRPC", num_train=16, num_dev=6)


def classifier_args(bert_dir, mrpc_dir, out, *extra):
    return ["--task_name=MRPC", "--do_train=true", "--do_eval=true",
            f"--dataset_path={mrpc_dir}", *model_args(bert_dir), "--max_seq_length=32",
            "--train_batch_size=4", "--num_train_steps=3", f"--output_dir={out}", *extra]


def one_error_line(proc, status):
    assert proc.returncode == status, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in proc.stderr, lines
    return lines[0]


@pytest.mark.slow
def test_classifier_with_habana_flags_traces_logs_and_uses_bf16(bert_dir, mrpc_dir, tmp_path):
    out = tmp_path / "out"
    dllog = tmp_path / "logs" / "dllog.json"
    proc = run_script("run_classifier.py", classifier_args(
        bert_dir, mrpc_dir, out, "--use_horovod=false", "--enable_scoped_allocator=False",
        "--noamp", "--nouse_xla", "--deterministic_run=true", "--deterministic_seed=7",
        "--profile=2,3", f"--dllog_path={dllog}", "--iterations_per_loop=1"),
        TF_BF16_CONVERSION=str(SHIPPED_RECIPE))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"precision bf16 \(TF_BF16_CONVERSION=.*bert.json\)", proc.stdout)
    assert "device: CPU" in proc.stdout
    assert "deterministic run" in proc.stdout
    assert glob.glob(str(out / "plugins" / "profile" / "*" / "*.xplane.pb"))
    records = [json.loads(line[5:]) for line in dllog.read_text().splitlines()]
    assert [r["step"] for r in records if isinstance(r["step"], int)] == [3]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_train_steps"] == 3 and summary["precision"] == "bf16"


@pytest.mark.slow
def test_deterministic_runs_agree(bert_dir, mrpc_dir, tmp_path):
    results = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        proc = run_script("run_classifier.py", classifier_args(
            bert_dir, mrpc_dir, out, "--deterministic_run=True", "--deterministic_seed=3"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append(json.loads((out / "eval_results.json").read_text())["eval_loss"])
    assert results[0] == results[1]


@pytest.mark.slow
def test_hpu_branch_loads_the_bridge_with_the_recipe(bert_dir, mrpc_dir, tmp_path):
    marker = tmp_path / "bridge_loaded.json"
    site = fake_bridge(tmp_path / "site", marker)
    sysfs = fake_sysfs(tmp_path / "accel", "GAUDI2")
    proc = run_script("run_classifier.py", classifier_args(
        bert_dir, mrpc_dir, tmp_path / "out", "--device=hpu",
        f"--bf16_config_path={SHIPPED_RECIPE}"),
        MODELPKG_ACCEL_SYSFS=str(sysfs),
        PYTHONPATH=f"{REPO}:{site}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "device: HPU (1 Gaudi card(s) (GAUDI2)" in proc.stdout
    assert json.loads(marker.read_text()) == {"TF_BF16_CONVERSION": str(SHIPPED_RECIPE)}


@pytest.mark.parametrize("extra, env, needle", [
    (["--device=hpu"], {}, "--device=hpu but no Gaudi"),
    (["--amp=True"], {}, "--amp=True"),
    (["--use_xla"], {}, "--use_xla=True"),
    (["--profile=3,1"], {}, "--profile=3,1"),
    ([], {"TF_BF16_CONVERSION": "/nonexistent/bert.json"},
     "TF_BF16_CONVERSION=/nonexistent/bert.json: file not found"),
    (["--bf16_config_path=/nonexistent.json"], {}, "--bf16_config_path=/nonexistent.json"),
    (["--num_train_steps=0"], {}, "--num_train_steps=0"),
])
def test_bad_habana_flags_are_one_line(bert_dir, mrpc_dir, tmp_path, extra, env, needle):
    env = {"MODELPKG_ACCEL_SYSFS": str(fake_sysfs(tmp_path / "accel")), **env}
    proc = run_script("run_classifier.py",
                      classifier_args(bert_dir, mrpc_dir, tmp_path / "out", *extra), **env)
    assert needle in one_error_line(proc, 2)
