"""models/common/runtime_env.py: the one reader of the launcher's thread variables (standard
library; the TF scripts and PyTorch's run_pretraining.py both use it)."""

from __future__ import annotations

import pytest

from models.common import runtime_env
from models.common.runtime_env import ThreadSettingError, thread_settings

LAUNCHER = {"NUM_INTRA_THREADS": "8", "NUM_INTER_THREADS": "2", "OMP_NUM_THREADS": "8"}


def test_flags_win_over_the_environment():
    assert thread_settings(None, None, LAUNCHER) == (8, 2)
    assert thread_settings(4, None, LAUNCHER) == (4, 2)
    assert thread_settings(None, 1, LAUNCHER) == (8, 1)
    assert thread_settings(3, 3, LAUNCHER) == (3, 3)


def test_unset_or_empty_means_the_framework_default():
    assert thread_settings(environ={}) == (None, None)
    assert thread_settings(environ={"NUM_INTRA_THREADS": " ", "NUM_INTER_THREADS": ""}) == \
        (None, None)
    # 0 is TensorFlow's "pick for me", from a flag or a variable alike
    assert thread_settings(0, 0, LAUNCHER) == (None, None)
    assert thread_settings(environ={"NUM_INTRA_THREADS": "0", "OMP_NUM_THREADS": "6"},
                           omp_fallback=True) == (None, None)


def test_omp_num_threads_is_the_intra_op_fallback_only_when_asked():
    env = {"OMP_NUM_THREADS": "6"}
    assert thread_settings(environ=env) == (None, None)
    assert thread_settings(environ=env, omp_fallback=True) == (6, None)
    assert thread_settings(environ=dict(env, NUM_INTRA_THREADS="3"), omp_fallback=True) == \
        (3, None)
    assert thread_settings(2, environ=env, omp_fallback=True) == (2, None)


def test_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("NUM_INTRA_THREADS", "5")
    monkeypatch.setenv("NUM_INTER_THREADS", "1")
    assert thread_settings() == (5, 1)


@pytest.mark.parametrize("kwargs, message", [
    ({"environ": {"NUM_INTRA_THREADS": "many"}},
     "NUM_INTRA_THREADS='many' is not a thread count"),
    ({"environ": {"NUM_INTER_THREADS": "-1"}}, "NUM_INTER_THREADS='-1' is not a thread count"),
    ({"environ": {"OMP_NUM_THREADS": "4.5"}, "omp_fallback": True},
     "OMP_NUM_THREADS='4.5' is not a thread count"),
    ({"flag_intra": -2, "environ": {}}, "--num_intra_threads=-2 is not a thread count"),
    ({"flag_inter": -1, "environ": {}}, "--num_inter_threads=-1 is not a thread count"),
])
def test_bad_values_name_the_variable_or_flag(kwargs, message):
    with pytest.raises(ThreadSettingError, match=message) as info:
        thread_settings(**kwargs)
    assert isinstance(info.value, ValueError)
    assert "integer >= 0" in str(info.value)


def test_the_fix_is_named():
    with pytest.raises(ThreadSettingError, match="unset NUM_INTRA_THREADS or set it to"):
        thread_settings(environ={"NUM_INTRA_THREADS": "x"})
    with pytest.raises(ThreadSettingError, match=f"pass {runtime_env.INTER_FLAG}=N"):
        thread_settings(None, -1, {})
