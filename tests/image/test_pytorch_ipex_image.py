"""CI builds the PyTorch images for real and pretrains in them with IPEX (marked `image`).

1. `pytorch-ipex-spr`, the base image: torch 2.8 + intel-extension-for-pytorch 2.8 from PyPI
   (`--build-arg TORCH_PIP_ARGS=`: the spec's default CPU wheel index cannot be reached from
   here, so PyPI's torch, the CUDA build, goes in: about 3.9 GB of wheels, an 8.2 GB image);
2. `pytorch-spr-bert-large-training` on top of it (`--base-image` the image just built);
3. inside it, the phase 1 quickstart in bf16 on a tiny generated dataset, then phase 2 from
   phase 1's model_save: IPEX is active (its fused LAMB), the loss falls, phase 2 starts from
   phase 1's weights.

Measured here (2 cores): the base image about 5 min from scratch (apt, then the pip install
of torch and IPEX), seconds when buildah's layer cache has it; the package image seconds;
each phase about 7 s.
"""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from packager.commands.image import app
from tests.pytorch import pretraining_data

from .realbuild import BASE_IMAGE, CA_BUNDLE, REPO, ensure_base_image, skip_reason

pytestmark = [pytest.mark.image, pytest.mark.slow,
              pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")]

BASE = "pytorch-ipex-spr"
NAME = "pytorch-spr-bert-large-training"
BASE_TAG = f"localhost/modelpkg-test/{BASE}:ci"
TAG = f"localhost/modelpkg-test/{NAME}:ci"


def _invoke(args, env=None):
    start = time.monotonic()
    result = CliRunner().invoke(app, args, env=env)
    return result, time.monotonic() - start


def _build(name: str, tag: str, base: str, *extra: str) -> float:
    args = ["build", name, "--builder", "buildah", "--tag", tag, "--base-image", base, *extra]
    if CA_BUNDLE.is_file():
        args += ["--ca-bundle", str(CA_BUNDLE)]
    result, seconds = _invoke(args)
    assert result.exit_code == 0, f"{name} build failed:\n{result.output[-6000:]}\n{result.stderr}"
    return seconds


def _phase(script: str, env: dict) -> tuple[str, float]:
    result, seconds = _invoke(["run", NAME, "--builder", "buildah", "--tag", TAG, "--", script,
                               "--log_freq=2"], env=env)
    assert result.exit_code == 0, f"{script} failed in the image:\n{result.output[-6000:]}"
    return result.output, seconds


def test_ipex_images_build_and_pretrain_phase1_then_phase2_in_bf16(tmp_path, monkeypatch, capsys,
                                                                   clean_proxy_env):
    monkeypatch.setenv("MODELPKG_ROOT", str(REPO))
    ensure_base_image()
    base_s = _build(BASE, BASE_TAG, BASE_IMAGE, "--build-arg", "TORCH_PIP_ARGS=")
    image_s = _build(NAME, TAG, BASE_TAG)

    dataset = pretraining_data.make_dataset(tmp_path)
    out1, out2 = tmp_path / "phase1", tmp_path / "phase2"
    common = {"PRECISION": "bf16", "DATASET_DIR": str(dataset), "BATCH_SIZE": "8"}
    log1, run1_s = _phase("run_bert_pretrain_phase1.sh", {
        **common, "OUTPUT_DIR": str(out1), "CONFIG_FILE": str(tmp_path / "bert_config.json"),
        "MAX_STEPS": "6"})
    log2, run2_s = _phase("run_bert_pretrain_phase2.sh", {
        **common, "OUTPUT_DIR": str(out2), "CHECKPOINT_DIR": str(out1 / "model_save"),
        "MAX_STEPS": "4"})
    with capsys.disabled():  # shown in the CI log even when the test passes
        print(f"\nipex image timings: {BASE} build {base_s:.1f} s, {NAME} build {image_s:.1f} s, "
              f"phase 1 {run1_s:.1f} s, phase 2 {run2_s:.1f} s")

    # it ran inside the image (its venv and the package under the WORKDIR), with IPEX on
    assert f"/workspace/{NAME}/models/bert_large/pytorch/run_pretraining.py" in log1
    for log in (log1, log2):
        assert "optimizer ipex-fused-lamb; ipex on" in log and "precision bf16" in log
    s1 = json.loads((out1 / "summary.json").read_text())
    s2 = json.loads((out2 / "summary.json").read_text())
    assert s1["ipex"] is True and s2["ipex"] is True
    assert s1["final_loss"] < s1["first_loss"]
    assert f"initialised from {out1 / 'model_save'}" in log2
    assert (s1["steps"], s2["steps"]) == (6, 4)
