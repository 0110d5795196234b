"""The TensorFlow stacks the TF BERT code runs on, and their interpreters.

- ``tf2.21``: this interpreter (TensorFlow 2.21 + Keras 3);
- ``tf2.15``: ``<repo>/.venv-tf215/bin/python`` (tensorflow-cpu 2.15.1 + Keras 2.15, the
  version Habana's Gaudi bridge pins), made by ``bash scripts/setup-test-env.sh``.

``require_horovod()``: Horovod (``scripts/build-horovod.sh``) in the main interpreter.
"""

from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TF215_PYTHON = os.path.join(REPO, ".venv-tf215", "bin", "python")
STACKS = ("tf2.21", "tf2.15")


def require_tf215() -> str:
    """The TF 2.15 venv's python; when it is missing, fail under ``CI=true`` (CI installs it)
    and skip elsewhere."""
    if os.path.exists(TF215_PYTHON):
        return TF215_PYTHON
    message = (f"the TF 2.15 / Keras 2 venv is missing ({TF215_PYTHON}): create it with "
               "`bash scripts/setup-test-env.sh`")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def stack_python_for(stack: str) -> str:
    """The interpreter of ``stack`` (one of ``STACKS``)."""
    return sys.executable if stack == "tf2.21" else require_tf215()


_HOROVOD_CHECK = ("import horovod, horovod.tensorflow as hvd; "
                  "assert hvd.mpi_built(); print(horovod.__version__)")
_horovod_versions: dict[str, str | None] = {}


def _is_tf215(python: str) -> bool:
    venv = os.path.dirname(os.path.dirname(TF215_PYTHON))
    here = sys.prefix if python == sys.executable else os.path.dirname(os.path.dirname(python))
    return os.path.exists(venv) and os.path.samefile(here, venv)


def require_horovod(python: str | None = None) -> str:
    """``python`` (default: this interpreter) when ``horovod.tensorflow`` imports there (built
    by ``scripts/build-horovod.sh``, which setup-test-env.sh runs for the main interpreter);
    otherwise fail under ``CI=true`` and skip elsewhere. The TF 2.15 venv gets no Horovod
    (Habana's image brings its own; the engine code has no Keras 2/3 branch): skipped there.
    Checked in a subprocess (once per interpreter)."""
    import subprocess  # noqa: PLC0415

    python = python or sys.executable
    if python not in _horovod_versions:
        proc = subprocess.run([python, "-c", _HOROVOD_CHECK], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        _horovod_versions[python] = proc.stdout.strip() if proc.returncode == 0 else None
    if _horovod_versions[python]:
        return python
    message = (f"horovod.tensorflow does not import in {python}: build it with "
               f"`bash scripts/build-horovod.sh {python}` (setup-test-env.sh runs it)")
    if os.environ.get("CI", "").lower() == "true" and not _is_tf215(python):
        pytest.fail(message)
    pytest.skip(message)
