"""The launcher's thread settings, read the way both frameworks' training code uses them
(standard library only).

``models/common/launch.py`` exports ``NUM_INTRA_THREADS`` (the intra-op pool: one thread per
physical core of the rank), ``NUM_INTER_THREADS`` (the inter-op pool, 1 by default) and
``OMP_NUM_THREADS`` (the OpenMP threads, equal to the cores). The TensorFlow runtime
(``models/bert_large/tensorflow/runtime.py``) and the PyTorch pretraining script apply what
:func:`thread_settings` returns; nothing else reads these variables.

Precedence, per pool: the command-line flag (TensorFlow's ``--num_intra_threads`` /
``--num_inter_threads``) when given, else the variable, else ``None`` (the framework's own
default). ``omp_fallback=True`` also takes the intra-op count from ``OMP_NUM_THREADS`` when
``NUM_INTRA_THREADS`` is unset (PyTorch's intra-op pool is its OpenMP pool). A count of 0 means
"the framework's default" (TensorFlow's meaning of 0) and comes back as ``None``.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Tuple

NUM_INTRA_THREADS = "NUM_INTRA_THREADS"
NUM_INTER_THREADS = "NUM_INTER_THREADS"
OMP_NUM_THREADS = "OMP_NUM_THREADS"
INTRA_FLAG = "--num_intra_threads"
INTER_FLAG = "--num_inter_threads"


class ThreadSettingError(ValueError):
    """A thread count that is not a non-negative integer; the message names the flag or the
    variable and what to set instead."""


def _count(value: object, what: str, fix: str) -> Optional[int]:
    """``value`` as a thread count (``None`` for 0: the framework's default)."""
    try:
        number = int(str(value).strip())
    except ValueError:
        number = -1
    if number < 0:
        raise ThreadSettingError(f"{what}={value!r} is not a thread count (an integer >= 0, "
                                 f"0 = the framework's default); {fix}")
    return number or None


def _from_environ(environ: Mapping[str, str], *names: str) -> Optional[int]:
    for name in names:
        raw = environ.get(name, "").strip()
        if raw:
            return _count(raw, name, f"unset {name} or set it to a thread count")
    return None


def thread_settings(flag_intra: Optional[int] = None, flag_inter: Optional[int] = None,
                    environ: Optional[Mapping[str, str]] = None, *,
                    omp_fallback: bool = False) -> Tuple[Optional[int], Optional[int]]:
    """``(intra, inter)`` thread counts; ``None`` leaves the framework's default.

    A flag value (not ``None``) wins over the environment; otherwise ``NUM_INTRA_THREADS``
    (then ``OMP_NUM_THREADS`` with ``omp_fallback``) and ``NUM_INTER_THREADS`` are read from
    ``environ`` (default ``os.environ``). Raises :class:`ThreadSettingError` naming the flag or
    variable whose value is not an integer >= 0.
    """
    environ = os.environ if environ is None else environ
    if flag_intra is not None:
        intra = _count(flag_intra, INTRA_FLAG, f"pass {INTRA_FLAG}=N or leave it out")
    else:
        names = (NUM_INTRA_THREADS, OMP_NUM_THREADS) if omp_fallback else (NUM_INTRA_THREADS,)
        intra = _from_environ(environ, *names)
    if flag_inter is not None:
        inter = _count(flag_inter, INTER_FLAG, f"pass {INTER_FLAG}=N or leave it out")
    else:
        inter = _from_environ(environ, NUM_INTER_THREADS)
    return intra, inter


# --- collective timeout ----------------------------------------------------------------------

COLLECTIVE_TIMEOUT = "COLLECTIVE_TIMEOUT"  # seconds; unset or 0 = wait for ever (the default)
COLLECTIVE_TIMEOUT_FLAG = "--collective_timeout"


def collective_timeout(flag_value: Optional[float] = None,
                       environ: Optional[Mapping[str, str]] = None) -> Optional[float]:
    """Seconds a rank waits in one collective (allreduce, broadcast, barrier) before the job is
    stopped naming the rank that did not answer; ``None`` = no limit. The flag
    (``--collective_timeout``) wins over ``$COLLECTIVE_TIMEOUT``. Raises ``ValueError`` naming
    the flag or variable when the value is not a number >= 0."""
    environ = os.environ if environ is None else environ
    if flag_value is not None:
        raw, what = str(flag_value), COLLECTIVE_TIMEOUT_FLAG
    else:
        raw, what = environ.get(COLLECTIVE_TIMEOUT, "").strip(), COLLECTIVE_TIMEOUT
        if not raw:
            return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{what}={raw!r} is not a timeout in seconds (a number >= 0, 0 = no limit)")
    return seconds or None
