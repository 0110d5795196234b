"""``modelpkg k8s NAME``: golden manifests per package, each valid against the MPIJob CRD and
the Kubernetes core schemas, and the facts a user relies on (ranks, devices, volumes, the
non-root user). Regenerate the goldens after an intended change with
``MODELPKG_UPDATE_GOLDEN=1 python3 -m pytest tests/k8s`` and review the diff."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import yaml

from packager.k8s_check import check_documents, crd_schemas, load_yaml_documents
from tests.k8s.conftest import REPO, modelpkg

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MODELPKG_UPDATE_GOLDEN") == "1"

CASES = {
    "bert-large-bf16-training": ["bert-large-bf16-training"],
    "bert-large-fp32-training-squad": [
        "bert-large-fp32-training", "--workers", "4", "--script", "fp32_squad_training.sh",
        "--env", "DATASET_DIR=/data/squad", "--env", "CHECKPOINT_DIR=/data/wwm_uncased_L-24_H-1024_A-16",
        "--env", "BATCH_SIZE=24", "--", "--num_train_epochs=1"],
    "pytorch-spr-bert-large-training": ["pytorch-spr-bert-large-training"],
    "pytorch-spr-bert-large-training-nonroot": [
        "pytorch-spr-bert-large-training", "--workers", "3", "--slots-per-worker", "1",
        "--script", "run_bert_pretrain_phase2.sh", "--namespace", "training",
        "--pvc", "bert-data=/mnt/bert", "--pvc", "bert-out=/mnt/out", "--pvc-example", "200Gi",
        "--user", "mpiuser", "--env", "PRECISION=bf16", "--env", "OUTPUT_DIR=/mnt/out/phase2",
        "--env", "CHECKPOINT_DIR=/mnt/out/phase1/model_save", "--cpu", "56", "--memory", "256Gi",
        "--image", "registry.example.com:5000/ml/pytorch-bert:1.0", "--", "--log_freq=10"],
    "tensorflow-gaudi-bert-training": ["tensorflow-gaudi-bert-training"],
    "tensorflow-gaudi-bert-training-mrpc": [
        "tensorflow-gaudi-bert-training", "--workers", "1", "--script", "run_classifier.py",
        "--env", "TF_BF16_CONVERSION=/workspace/tensorflow-gaudi-bert-training/bf16_config/bert.json",
        "--", "--task_name=MRPC", "--do_train=true", "--data_dir=/data/MRPC"],
}


@functools.cache
def render(case: str) -> str:
    code, out, err = modelpkg("k8s", *CASES[case])
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def schemas(crd):
    return crd_schemas(load_yaml_documents(crd, "--crd"), crd)


def manifest(case: str) -> dict:
    return [d for d in yaml.safe_load_all(render(case)) if d["kind"] == "MPIJob"][0]


def pod(job: dict, role: str) -> dict:
    return job["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]


def launcher_env(job: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod(job, "Launcher")["containers"][0]["env"]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifest_matches_its_golden_text(case):
    text = render(case)
    golden = GOLDEN / f"{case}.yaml"
    if UPDATE:
        golden.write_text(text)
    assert golden.is_file(), f"{golden} missing: MODELPKG_UPDATE_GOLDEN=1 python3 -m pytest tests/k8s"
    assert text == golden.read_text(), f"{golden} is stale; rerun with MODELPKG_UPDATE_GOLDEN=1 and review"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_rendered_manifest_is_valid(case, schemas):
    docs = [d for d in yaml.safe_load_all(render(case)) if d is not None]
    assert [d["kind"] for d in docs][-1] == "MPIJob"
    assert check_documents(docs, schemas) == []


def test_every_package_with_something_to_run_renders():
    code, out, _ = modelpkg("list")
    assert code == 0
    rendered = {args[0] for args in CASES.values()}
    # pytorch-ipex-spr is a base image: no quickstart, no entry script (a usage error, below)
    assert rendered == {n for n in ("bert-large-bf16-training", "bert-large-fp32-training",
                                    "pytorch-spr-bert-large-training", "tensorflow-gaudi-bert-training")}
    for name in rendered:
        assert name in out


def test_one_rank_per_socket_on_xeon_and_per_card_on_gaudi():
    xeon, gaudi = manifest("bert-large-bf16-training"), manifest("tensorflow-gaudi-bert-training")
    assert xeon["spec"]["slotsPerWorker"] == 2 and launcher_env(xeon)["MPI_NUM_PROCESSES"] == "4"
    assert gaudi["spec"]["slotsPerWorker"] == 8 and launcher_env(gaudi)["MPI_NUM_PROCESSES"] == "16"
    cards = pod(gaudi, "Worker")["containers"][0]["resources"]
    assert cards["requests"]["habana.ai/gaudi"] == 8 and cards["limits"]["habana.ai/gaudi"] == 8
    assert "habana.ai/gaudi" not in str(pod(xeon, "Worker"))
    assert manifest("pytorch-spr-bert-large-training-nonroot")["spec"]["slotsPerWorker"] == 1
    assert launcher_env(manifest("pytorch-spr-bert-large-training-nonroot"))["MPI_NUM_PROCESSES"] == "3"


def test_launcher_runs_a_script_the_package_ships():
    for case, shipped in (("bert-large-bf16-training", "quickstart/bfloat16_classifier_training.sh"),
                          ("pytorch-spr-bert-large-training", "quickstart/run_bert_pretrain_phase1.sh"),
                          ("tensorflow-gaudi-bert-training", "run_pretraining.py")):
        script = pod(manifest(case), "Launcher")["containers"][0]["command"][2]
        assert shipped in script, script
        assert "/etc/mpi/hostfile" in script and "MULTI_HLS_IPS" in script


def test_path_variables_live_on_the_mounted_claims():
    job = manifest("pytorch-spr-bert-large-training-nonroot")
    env = launcher_env(job)
    assert env["OUTPUT_DIR"] == "/mnt/out/phase2" and env["DATASET_DIR"] == "/mnt/bert/dataset"
    mounts = {m["mountPath"] for m in pod(job, "Worker")["containers"][0]["volumeMounts"]}
    assert {"/mnt/bert", "/mnt/out", "/dev/shm"} <= mounts
    claims = [d for d in yaml.safe_load_all(render("pytorch-spr-bert-large-training-nonroot"))
              if d["kind"] == "PersistentVolumeClaim"]
    assert [(c["metadata"]["name"], c["spec"]["resources"]["requests"]["storage"]) for c in claims] == [
        ("bert-data", "200Gi"), ("bert-out", "200Gi")]


def test_non_root_user_gets_its_ssh_dir_and_a_pod_level_fs_group():
    job = manifest("pytorch-spr-bert-large-training-nonroot")
    assert job["spec"]["sshAuthMountPath"] == "/home/mpiuser/.ssh"
    for role in ("Launcher", "Worker"):
        assert pod(job, role)["securityContext"]["fsGroup"] == 1000
        assert "fsGroup" not in str(pod(job, role)["containers"][0].get("securityContext", {}))
    assert pod(job, "Worker")["containers"][0]["command"] == [
        "/usr/sbin/sshd", "-De", "-f", "/home/mpiuser/.sshd_config"]
    assert manifest("bert-large-bf16-training")["spec"]["sshAuthMountPath"] == "/root/.ssh"


def test_output_file_holds_what_stdout_shows(tmp_path):
    target = tmp_path / "job.yaml"
    code, _, err = modelpkg("k8s", "bert-large-bf16-training", "-o", str(target))
    assert code == 0 and f"wrote {target}" in err
    assert target.read_text() == render("bert-large-bf16-training")


BAD = [
    (["bert-large-bf16-training", "--workers", "-1"], "--workers -1: must be a positive number of worker pods"),
    (["bert-large-bf16-training", "--workers", "0"], "--workers 0: must be a positive number"),
    (["bert-large-bf16-training", "--slots-per-worker", "0"], "--slots-per-worker 0: must be a positive number"),
    (["bert-large-bf16-training", "--pvc", "bert-data"], "--pvc bert-data: the mount path is missing"),
    (["bert-large-bf16-training", "--pvc", "bert-data="], "--pvc bert-data=: the mount path is missing"),
    (["bert-large-bf16-training", "--pvc", "bert-data=data"], "must be an absolute folder"),
    (["bert-large-bf16-training", "--pvc", "Bert_Data=/data"], "is not a DNS label"),
    (["bert-large-bf16-training", "--pvc", "a=/data", "--pvc", "b=/data/x"], "overlaps the mount of a"),
    (["bert-large-bf16-training", "--env", "1BAD=x"], "'1BAD' is not a valid environment variable name"),
    (["bert-large-bf16-training", "--env", "BAD-NAME=x"], "'BAD-NAME' is not a valid environment variable name"),
    (["bert-large-bf16-training", "--env", "NOVALUE"], "--env NOVALUE: give NAME=VALUE"),
    (["bert-large-bf16-training", "--env", "DATASET_DIR=/elsewhere"], "DATASET_DIR=/elsewhere is on no volume"),
    (["bert-large-bf16-training", "--env", "MPI_NUM_PROCESSES=3"], "--env MPI_NUM_PROCESSES is set by the manifest"),
    (["bert-large-bf16-training", "--script", "nope.sh"], "has no quickstart 'nope.sh'"),
    (["tensorflow-gaudi-bert-training", "--script", "demo_bert.py"], "its entry scripts: run_classifier.py, run_pretraining.py, run_squad.py"),
    (["bert-large-bf16-training", "--namespace", "Bad_NS"], "--namespace 'Bad_NS' is not a DNS label"),
    (["bert-large-bf16-training", "--cpu", "lots"], "--cpu 'lots' is not a Kubernetes quantity"),
    (["bert-large-bf16-training", "--user", "root"], "--user 'root': give the image's non-root user"),
    (["bert-large-bf16-training", "--image", "Not An Image"], "is not an image reference"),
    (["pytorch-ipex-spr"], "pytorch-ipex-spr has no quickstart and no run_*.py entry script"),
    (["no-such-package"], "no package named 'no-such-package'"),
    ([], "name a package"),
    (["bert-large-bf16-training", "--check", "x.yaml"], "not both"),
    (["bert-large-bf16-training", "--crd", "x.yaml"], "--crd goes with --check FILE"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_error_line_and_exit_2(args, message):
    code, out, err = modelpkg("k8s", *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]
    assert out == ""


def test_help_names_every_option():
    code, out, _ = modelpkg("k8s", "--help")
    assert code == 0
    for option in ("--workers", "--slots-per-worker", "--script", "--image", "--namespace", "--pvc",
                   "--env", "--output", "--check", "--crd", "--user", "--pvc-example"):
        assert option in out
