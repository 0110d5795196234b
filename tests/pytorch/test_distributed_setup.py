"""Choosing the torch.distributed backend: oneCCL when its bindings import, else gloo, whatever
way the import fails (a wheel built for another torch raises OSError/undefined symbols, not
ImportError)."""

from __future__ import annotations

import sys

import pytest

from models.bert_large.pytorch import run_pretraining
from models.common.dist_env import DistEnv

TWO_RANKS = DistEnv(rank=0, world_size=2, local_rank=0, local_size=2, source="openmpi")


@pytest.fixture
def broken_oneccl(tmp_path, monkeypatch):
    """A oneccl_bindings_for_pytorch that fails to load like a mismatched binary wheel."""
    (tmp_path / "oneccl_bindings_for_pytorch.py").write_text(
        "raise OSError('liboneccl_bind.so: undefined symbol: _ZN3c104impl')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "oneccl_bindings_for_pytorch", raising=False)
    calls = []
    monkeypatch.setattr(run_pretraining.dist, "init_process_group",
                        lambda **kw: calls.append(kw))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # restored afterwards (setup sets defaults)
    monkeypatch.setenv("MASTER_PORT", "29999")
    return calls


def test_auto_falls_back_to_gloo_when_oneccl_does_not_load(broken_oneccl):
    assert run_pretraining.setup_distributed(TWO_RANKS, "auto") == "gloo"
    assert broken_oneccl[0]["backend"] == "gloo" and broken_oneccl[0]["world_size"] == 2


def test_asking_for_ccl_names_the_failure(broken_oneccl):
    """A usage error (exit 2 through ``run_main``): the flag asks for what is not installed."""
    with pytest.raises(run_pretraining.UsageError) as exc:
        run_pretraining.setup_distributed(TWO_RANKS, "ccl")
    err = str(exc.value)
    assert "--dist_backend=ccl needs oneccl_bindings_for_pytorch" in err
    assert "OSError: liboneccl_bind.so: undefined symbol" in err and "--dist_backend=gloo" in err
    assert broken_oneccl == []


def test_usage_errors_exit_2_and_failures_exit_1_with_one_line(monkeypatch, capsys):
    def fails_with(error):
        def main(argv=None):
            raise error
        return main

    monkeypatch.setattr(run_pretraining, "main", fails_with(run_pretraining.UsageError("bad flag")))
    assert run_pretraining.run_main([]) == 2
    assert capsys.readouterr().err == "error: bad flag\n"
    for error in (run_pretraining.RunError("loss became nan"),
                  run_pretraining.checkpoint.CheckpointError("cannot load the model in x")):
        monkeypatch.setattr(run_pretraining, "main", fails_with(error))
        assert run_pretraining.run_main([]) == 1
        assert capsys.readouterr().err == f"error: {error}\n"
