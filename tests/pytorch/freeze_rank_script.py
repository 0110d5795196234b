"""Runs run_pretraining.py as ``__main__`` after wrapping the model's forward so that rank
``$FREEZE_RANK`` freezes at its ``$FREEZE_AT``-th forward call: ``SIGSTOP`` to itself
(``FREEZE_HOW=stop``, the default) or a long sleep (``FREEZE_HOW=sleep``). Used by
test_hardening.py to check that ``--collective_timeout`` names the frozen rank."""

from __future__ import annotations

import os
import runpy
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "models" / "bert_large" / "pytorch" / "run_pretraining.py"
sys.path.insert(0, str(REPO))

from models.bert_large.pytorch import modeling  # noqa: E402

RANK = int(os.environ["RANK"])
FREEZE_RANK = int(os.environ.get("FREEZE_RANK", "1"))
FREEZE_AT = int(os.environ.get("FREEZE_AT", "2"))
FREEZE_HOW = os.environ.get("FREEZE_HOW", "stop")
_forward = modeling.BertForPreTraining.forward
_calls = 0


def forward(self, *args, **kwargs):
    global _calls
    _calls += 1
    if RANK == FREEZE_RANK and _calls == FREEZE_AT:
        print(f"rank {RANK} freezes in forward call {_calls}", flush=True)
        if FREEZE_HOW == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        else:
            time.sleep(3600)
    return _forward(self, *args, **kwargs)


modeling.BertForPreTraining.forward = forward
sys.argv = [str(TRAIN)] + sys.argv[1:]
runpy.run_path(str(TRAIN), run_name="__main__")
