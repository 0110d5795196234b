"""CI builds a real image and runs a quickstart in it (marked `image`).

1. a minimal Debian bookworm base from debootstrap (scripts/make-base-image.sh; cached in
   buildah storage, so later runs on the same machine skip it);
2. the bert-large-bf16-training image on that base with buildah (`--base-image` override,
   the host CA bundle as the pip_cert build secret; layers cached between runs): its labels,
   its CycloneDX SBOM (schema-valid, tensorflow-cpu at the spec's pin, the same inside the
   image), no compilers or MPI headers, at most 2.2 GB;
3. inside the image, `image run ... -- bfloat16_squad_training_demo.sh` on a tiny generated
   google-format checkpoint and mini-dev-v1.1.json, to completion: predictions and metrics in
   OUTPUT_DIR (a host folder mounted at the same path).

Measured here (2 cores): base 35 s; image from scratch about 8 min (pip tensorflow-cpu from
PyPI, Horovod compiled in its build stage), about 10 s when the layers are cached (SBOM
included); the demo run about 25 s.
"""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from packager.commands.image import app
from packager.image import sbom
from packager.image.buildah import BuildahBuilder
from packager.package import load_package
from tests.packages import tiny_data
from tests.packages.helpers import write_checkpoint_dir

from .realbuild import BASE_IMAGE, CA_BUNDLE, REPO, buildah, ensure_base_image, skip_reason

pytestmark = [pytest.mark.image, pytest.mark.slow,
              pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")]

NAME = "bert-large-bf16-training"
TAG = f"localhost/modelpkg-test/{NAME}:ci"
SMALL_SQUAD = ["--max_seq_length=64", "--doc_stride=32", "--max_query_length=16"]


def _invoke(args, env=None):
    start = time.monotonic()
    result = CliRunner().invoke(app, args, env=env)
    return result, time.monotonic() - start


def test_build_bert_image_and_run_squad_demo_inside(tmp_path, monkeypatch, capsys, clean_proxy_env):
    monkeypatch.setenv("MODELPKG_ROOT", str(REPO))
    base_s = ensure_base_image()

    build_args = ["build", NAME, "--builder", "buildah", "--tag", TAG, "--base-image", BASE_IMAGE,
                  "-o", str(tmp_path / "sbom")]
    if CA_BUNDLE.is_file():
        build_args += ["--ca-bundle", str(CA_BUNDLE)]
    result, build_s = _invoke(build_args)
    assert result.exit_code == 0, f"image build failed:\n{result.output[-6000:]}\n{result.stderr}"
    assert f"built {TAG}" in result.output

    config = json.loads(buildah("inspect", "--type", "image", TAG).stdout)["OCIv1"]["config"]
    assert config["WorkingDir"] == f"/workspace/{NAME}"
    assert not any("proxy" in e.lower() for e in config.get("Env", []))
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == NAME
    assert {"created", "version", "licenses"} <= {k.rsplit(".", 1)[-1] for k in labels}
    # the SBOM: schema-valid CycloneDX listing the pinned TensorFlow, and the one in the image
    document = (tmp_path / "sbom" / f"{NAME}.sbom.cdx.json").read_text()
    sbom.validate_sbom(document)
    spec_tf = load_package(NAME, REPO).spec.image.build_args["TF_PACKAGE"].split("==")[1]
    assert sbom.find_component(document, "tensorflow-cpu", "pypi") == spec_tf
    assert sbom.find_component(document, "openmpi-bin", "deb")
    assert sbom.find_component(document, NAME, "application")
    shown = CliRunner().invoke(app, ["sbom", NAME, "--builder", "buildah", "--tag", TAG])
    assert shown.exit_code == 0 and json.loads(shown.output) == json.loads(document)
    # smaller images: no compilers or MPI headers in the runtime image, and the size is printed
    assert "image size:" in result.output
    image = BuildahBuilder()
    found = image.capture(TAG, ["sh", "-c", "ls /usr/include/x86_64-linux-gnu/mpi 2>/dev/null; command -v g++ || true"])
    assert found == "", found
    size = sum(layer.size for layer in image.layers(TAG))
    with capsys.disabled():
        print(f"\nimage size: {size / 1e9:.2f} GB")
    assert size <= 2.2e9, f"the image is {size / 1e9:.2f} GB (target <= 2.2 GB)"

    ckpt = tmp_path / "ckpt" / "uncased_L-2_H-64_A-2"
    write_checkpoint_dir(ckpt)  # the package tests' tiny google-format writer (subprocess)
    squad = tiny_data.write_squad_dir(tmp_path / "squad")
    out = tmp_path / "out"
    env = {"CHECKPOINT_DIR": str(ckpt), "DATASET_DIR": str(squad), "OUTPUT_DIR": str(out)}
    result, run_s = _invoke(["run", NAME, "--builder", "buildah", "--tag", TAG, "--",
                             "bfloat16_squad_training_demo.sh", *SMALL_SQUAD], env=env)
    with capsys.disabled():  # shown in the CI log even when the test passes
        print(f"\nimage timings: base {base_s:.1f} s, build {build_s:.1f} s, demo run {run_s:.1f} s")
    assert result.exit_code == 0, f"demo failed in the image:\n{result.output[-6000:]}\n{result.stderr}"
    # it ran inside the image (the package's copy under the image WORKDIR), on the mounted data
    assert f"/workspace/{NAME}/models/bert_large/tensorflow/run_squad.py" in result.output
    predictions = json.loads((out / "predictions.json").read_text())
    questions = {qa["id"] for art in json.loads((squad / "mini-dev-v1.1.json").read_text())["data"]
                 for par in art["paragraphs"] for qa in par["qas"]}
    assert set(predictions) == questions
    metrics = json.loads((out / "eval_results.json").read_text())
    assert {"exact_match", "f1"} <= set(metrics)
    assert list(out.glob("bfloat16_squad_training_demo_*.log"))
    # no working container left behind
    containers = buildah("containers", "--format", "{{.ImageName}}").stdout.split()
    assert TAG not in containers
