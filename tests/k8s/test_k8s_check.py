"""``modelpkg k8s --check FILE [--crd CRD]``: a valid manifest passes, the classic mistakes
(an obsolete MPIJob API, ``fsGroup`` in a container securityContext, a wrong type in a core
object) fail with their path, and unusable input is a usage error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.k8s.conftest import modelpkg

NAME = "pytorch-spr-bert-large-training"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("k8s") / "job.yaml"
    code, _, err = modelpkg("k8s", NAME, "--pvc-example", "100Gi", "-o", str(path))
    assert code == 0, err
    return path


def edited(good: Path, tmp_path: Path, change) -> Path:
    docs = list(yaml.safe_load_all(good.read_text()))
    change(docs)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def worker_container(docs):
    return docs[-1]["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]


def test_rendered_manifest_passes(good, crd):
    code, out, err = modelpkg("k8s", "--check", str(good), "--crd", str(crd))
    assert code == 0, err
    assert f"ok  {good}: 2 document(s) valid" in out


@pytest.mark.parametrize("change, expected", [
    (lambda d: worker_container(d).update(securityContext={"fsGroup": 1000}),
     "spec.mpiReplicaSpecs.Worker.template.spec.containers[0].securityContext: unknown field 'fsGroup'"),
    (lambda d: d[-1].update(apiVersion="kubeflow.org/v1alpha2"),
     "apiVersion: 'kubeflow.org/v1alpha2' is not served by the MPIJob CRD (served: kubeflow.org/v2beta1)"),
    (lambda d: d[-1]["spec"].update(slotsPerWorker="two"), "spec.slotsPerWorker: 'two' is not of type 'integer'"),
    (lambda d: d[-1]["spec"]["runPolicy"].update(cleanPodPolicy=["All"]), "spec.runPolicy.cleanPodPolicy"),
    (lambda d: worker_container(d).update(volumeMounts=[{"name": "nowhere", "mountPath": "/x"}]),
     "containers[0].volumeMounts[0].name: 'nowhere' names no volume of the pod"),
    (lambda d: d[0]["spec"].update(accessModes="ReadWriteMany"),
     "document 1 (PersistentVolumeClaim pytorch-spr-bert-large-training-data): spec.accessModes"),
    (lambda d: d[-1]["metadata"].update(name="Not_A_Name"), "metadata.name: 'Not_A_Name' is not a valid object name"),
])
def test_mistakes_fail_with_their_path(good, crd, tmp_path, change, expected):
    path = edited(good, tmp_path, change)
    code, out, err = modelpkg("k8s", "--check", str(path), "--crd", str(crd))
    assert code == 1, (out, err)
    assert expected in err, err
    assert err.strip().splitlines()[-1].startswith(f"error: {path}: ")


def test_an_mpijob_needs_the_crd(good):
    code, _, err = modelpkg("k8s", "--check", str(good))
    assert code == 2 and "give its CRD with --crd FILE" in err and len(err.strip().splitlines()) == 1


def test_core_objects_alone_need_no_crd(good, tmp_path):
    pvc_only = tmp_path / "pvc.yaml"
    pvc_only.write_text(good.read_text().split("---\n")[0])
    code, out, err = modelpkg("k8s", "--check", str(pvc_only))
    assert code == 0, err
    assert "1 document(s) valid" in out


@pytest.mark.parametrize("content, crd_content, message", [
    ("kind: [unclosed\n", None, "is not valid YAML at line 2, column 1"),
    ("", None, "holds no YAML document"),
    (None, "kind: ConfigMap\napiVersion: v1\n", "holds no CustomResourceDefinition of MPIJob"),
])
def test_unusable_files_are_usage_errors(good, tmp_path, content, crd_content, message):
    manifest = good
    if content is not None:
        manifest = tmp_path / "m.yaml"
        manifest.write_text(content)
    args = ["k8s", "--check", str(manifest)]
    if crd_content is not None:
        (tmp_path / "crd.yaml").write_text(crd_content)
        args += ["--crd", str(tmp_path / "crd.yaml")]
    code, _, err = modelpkg(*args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_missing_manifest_is_a_usage_error(tmp_path):
    code, _, err = modelpkg("k8s", "--check", str(tmp_path / "absent.yaml"))
    assert code == 2 and "not found" in err
