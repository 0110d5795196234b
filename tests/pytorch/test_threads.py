"""PyTorch's thread pools come from the launcher's variables through models/common/runtime_env.py
(intra-op: NUM_INTRA_THREADS, else OMP_NUM_THREADS; inter-op: NUM_INTER_THREADS)."""

from __future__ import annotations

import pytest
import torch

from models.bert_large.pytorch import run_pretraining
from models.common.runtime_env import ThreadSettingError


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_intra_op_threads_follow_the_launcher(monkeypatch, restore_threads):
    monkeypatch.setenv("NUM_INTRA_THREADS", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("NUM_INTER_THREADS", raising=False)
    assert run_pretraining.setup_threads() == (2, None)
    assert torch.get_num_threads() == 2
    monkeypatch.delenv("NUM_INTRA_THREADS")
    assert run_pretraining.setup_threads() == (1, None)  # OMP_NUM_THREADS when it is unset
    assert torch.get_num_threads() == 1


def test_a_bad_thread_variable_is_a_usage_error(monkeypatch, tmp_path):
    monkeypatch.setenv("NUM_INTRA_THREADS", "lots")
    with pytest.raises(ThreadSettingError, match="NUM_INTRA_THREADS='lots'"):
        run_pretraining.setup_threads()
    (tmp_path / "data").mkdir()
    args = ["--phase=1", f"--input_dir={tmp_path / 'data'}", f"--output_dir={tmp_path / 'out'}",
            f"--bert_config_file={tmp_path / 'c.json'}"]
    with pytest.raises(run_pretraining.UsageError, match="NUM_INTRA_THREADS='lots' is not a thread count"):
        run_pretraining.parse_args(args)
    assert not (tmp_path / "out").exists()


def test_precision_flag_takes_the_pytorch_list_and_aliases(tmp_path, capsys):
    from models.common import precisions

    assert run_pretraining.PRECISIONS == precisions.SUPPORTED["pytorch"]
    assert run_pretraining._precision("BFloat16") == "bf16"
    with pytest.raises(SystemExit) as exc:
        run_pretraining.parse_args(["--phase=1", f"--input_dir={tmp_path}", f"--output_dir={tmp_path}",
                                    "--precision=int8"])
    assert exc.value.code == 2
    assert "--precision=int8 is not supported here; use one of: fp32, avx-fp32, bf16, bf32" in \
        capsys.readouterr().err
