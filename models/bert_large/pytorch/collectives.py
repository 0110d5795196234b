"""Collectives that give up, and say which rank did not answer.

Without a limit a rank that freezes (SIGSTOP, a deadlock, a hung file system) stops every other
rank inside its next allreduce for as long as it stays frozen. ``--collective_timeout SECONDS``
(or ``$COLLECTIVE_TIMEOUT``; ``models.common.runtime_env.collective_timeout``) bounds that wait:

* ``open_store`` / ``join``: the ranks meet at a ``TCPStore`` that rank 0 hosts at
  ``MASTER_ADDR:MASTER_PORT``, with a generous limit (``JOIN_TIMEOUT_S``, or the collective
  timeout when larger), so ranks that start a few seconds apart still meet; the process group
  is then made on that store with ``timeout=`` the collective timeout.
* ``CollectiveMonitor``: the training code says where it is (``at("step 3: ...")``, local only,
  no communication). When a collective fails, ``diagnose`` posts this rank's status to the
  store and waits a grace period for the others' statuses: a rank that times out or fails
  posts one too, a frozen rank posts nothing, so the ranks without a status are the ones that
  did not answer. Store calls run in a helper thread with a bounded wait, since a frozen rank 0
  freezes the store it hosts as well: then rank 0 is the one named.

``diagnose`` returns one line for ``error: ...`` (exit 1). Without a timeout the monitor still
names the collective that failed (a rank that died makes the others' collectives fail at once).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import sys
import threading
import time

import torch.distributed as dist

from models.common import runtime_env

__all__ = ["JOIN_TIMEOUT_S", "CollectiveError", "CollectiveMonitor", "is_collective_failure",
           "open_store", "join", "ranks_text"]

JOIN_TIMEOUT_S = 300.0  # ranks must all have started within this long of each other
STORE_ANSWER_S = 3.0  # a store call that takes longer: its host (rank 0) does not answer
PREFIX = "modelpkg/"

_FAILURE_TEXT = ("gloo", "Gloo", "Timed out", "timed out", "Connection closed by peer",
                 "Connection reset by peer", "Broken pipe", "ProcessGroup", "oneCCL", "NCCL")


class CollectiveError(Exception):
    """The ranks could not meet or a collective failed; the message is one line naming ranks."""


def is_collective_failure(exc: BaseException) -> bool:
    """``exc`` comes from a collective or the store (gloo raises plain ``RuntimeError``s)."""
    if isinstance(exc, dist.DistError):
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc) for t in _FAILURE_TEXT)


def _first_line(exc: BaseException) -> str:
    """The gist of a c10d/gloo message: its first sentence, without the ``[file.cc:78] ``
    prefix (gloo appends advice and emoji after the first sentence)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = re.sub(r"^\[[^\]]*\]\s*", "", lines[0] if lines else type(exc).__name__)
    return text.split(". ")[0].rstrip(".")[:300]


@contextlib.contextmanager
def _quiet_stderr():
    """c10d logs a C++ stack trace on stderr for a store call to a peer that has gone; the line
    ``diagnose`` returns says that already, so stderr (fd 2) is muted during the store calls."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def ranks_text(ranks) -> str:
    ranks = sorted(ranks)
    return f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ", ".join(map(str, ranks))


def _seconds(value: float) -> str:
    return f"{value:g}"


# ----------------------------------------------------------------------------- meeting

def open_store(rank: int, world_size: int, host: str, port: int, timeout_s: float):
    """The ``TCPStore`` of the job: rank 0 hosts it, the others connect (retrying up to
    ``max(JOIN_TIMEOUT_S, timeout_s)``). ``CollectiveError`` when that fails."""
    wait = max(JOIN_TIMEOUT_S, timeout_s)
    try:
        return dist.TCPStore(host, port, world_size, rank == 0,
                             timeout=datetime.timedelta(seconds=wait), wait_for_workers=False)
    except (RuntimeError, OSError) as exc:
        if rank == 0:
            raise CollectiveError(
                f"rank 0 cannot host the rendezvous store on {host}:{port} ({_first_line(exc)}); "
                "set MASTER_PORT to a free port (MASTER_ADDR to this host's address)") from None
        raise CollectiveError(
            f"rank {rank} cannot reach rank 0's rendezvous store at {host}:{port} within "
            f"{_seconds(wait)} s ({_first_line(exc)}); check that rank 0 started and that "
            "MASTER_ADDR and MASTER_PORT name its host and a port open to the other hosts") from None


def join(store, rank: int, world_size: int, timeout_s: float) -> None:
    """Wait until every rank has reached the store (``CollectiveError`` naming the missing
    ranks after ``max(JOIN_TIMEOUT_S, timeout_s)``)."""
    wait = max(JOIN_TIMEOUT_S, timeout_s)
    keys = [f"{PREFIX}joined/{r}" for r in range(world_size)]
    try:
        store.set(keys[rank], str(time.time()))
        store.wait(keys, datetime.timedelta(seconds=wait))
    except (RuntimeError, OSError) as exc:
        try:
            missing = [r for r, key in enumerate(keys) if not store.check([key])]
        except (RuntimeError, OSError):
            missing = []
        who = f"{ranks_text(missing)} did not join" if missing else "the ranks did not all meet"
        raise CollectiveError(f"rank {rank}: {who} within {_seconds(wait)} s ({_first_line(exc)}); "
                              "check that every rank started with the same MASTER_ADDR, "
                              "MASTER_PORT and world size") from None


# ----------------------------------------------------------------------------- diagnosis

class CollectiveMonitor:
    """Where this rank is, and, when a collective fails, which ranks did not answer."""

    def __init__(self, rank: int, world_size: int, timeout_s: float | None = None, store=None,
                 store_address: str = "", grace_s: float | None = None):
        self.rank = rank
        self.world_size = world_size
        self.timeout_s = timeout_s
        self.store = store
        self.store_address = store_address
        # victims time out up to about one timeout apart (they entered the collective at
        # different times); a rank that has not posted by then is taken as not answering
        self.grace_s = grace_s if grace_s is not None else min(timeout_s or 10.0, 10.0)
        self.where = "the start-up"

    def at(self, where: str) -> None:
        """Record what this rank does now (named in the message if a collective fails)."""
        self.where = where

    def _key(self, rank: int) -> str:
        return f"{PREFIX}status/{rank}"

    def _exchange(self, status: str, grace_s: float) -> tuple[dict[int, str], str | None]:
        """Post ``status``, collect the others' for up to ``grace_s``. Returns (statuses,
        problem): problem is None, "silent" (the store did not answer) or an error text."""
        box: dict = {"statuses": {}, "error": None}
        posted, finished = threading.Event(), threading.Event()
        others = [r for r in range(self.world_size) if r != self.rank]

        def work() -> None:
            try:
                self.store.set(self._key(self.rank), status)
                posted.set()
                deadline = time.monotonic() + grace_s
                pending = set(others)
                while pending:
                    for r in sorted(pending):
                        if self.store.check([self._key(r)]):
                            value = self.store.get(self._key(r))
                            box["statuses"][r] = bytes(value).decode("utf-8", "replace")
                    pending -= set(box["statuses"])
                    if not pending or time.monotonic() >= deadline:
                        break
                    time.sleep(0.1)
            except Exception as exc:  # noqa: BLE001 - the store is gone: reported, not raised
                box["error"] = _first_line(exc)
            finally:
                posted.set()
                finished.set()

        threading.Thread(target=work, name="collective-diagnosis", daemon=True).start()
        if not posted.wait(STORE_ANSWER_S):
            return {}, "silent"
        if not finished.wait(grace_s + STORE_ANSWER_S) and box["error"] is None:
            return dict(box["statuses"]), "silent"
        return dict(box["statuses"]), box["error"]

    def report(self, status: str) -> None:
        """Tell the other ranks why this one stops (e.g. ``stopped: error: ...``); bounded.
        Rank 0 hosts the store, so it stays until the others have posted their own status
        (they read this one right after) or the grace period is over."""
        if self.store is None:
            return
        done = threading.Event()
        others = [r for r in range(self.world_size) if r != self.rank]

        def work() -> None:
            try:
                self.store.set(self._key(self.rank), status[:400])
                if self.rank == 0:
                    deadline = time.monotonic() + self.grace_s + STORE_ANSWER_S
                    while (time.monotonic() < deadline
                           and not all(self.store.check([self._key(r)]) for r in others)):
                        time.sleep(0.1)
                    time.sleep(0.5)  # the last one to post reads rank 0's status next
            except Exception:  # noqa: BLE001 - best effort: this rank is stopping anyway
                pass
            finally:
                done.set()

        with _quiet_stderr():
            threading.Thread(target=work, name="collective-report", daemon=True).start()
            done.wait(STORE_ANSWER_S + (self.grace_s + STORE_ANSWER_S + 1 if self.rank == 0 else 0))

    def diagnose(self, exc: BaseException) -> str:
        """One line: this rank, the collective that failed, and the ranks that did not answer
        (as far as the store can tell)."""
        detail = _first_line(exc)
        timed_out = "timed out" in detail.lower() or "timeout" in detail.lower()
        if timed_out and self.timeout_s:
            head = (f"rank {self.rank} timed out after {_seconds(self.timeout_s)} s "
                    f"({runtime_env.COLLECTIVE_TIMEOUT_FLAG}) in {self.where}")
        else:
            head = f"rank {self.rank}: {self.where} failed ({detail})"
        if self.store is None:
            hint = ("" if self.timeout_s else
                    f"; with {runtime_env.COLLECTIVE_TIMEOUT_FLAG}=SECONDS (or "
                    f"${runtime_env.COLLECTIVE_TIMEOUT}) a stuck rank stops the job and is named")
            return (f"{head}: another rank has stopped or does not answer; see the other ranks' "
                    f"output{hint}")
        mine = ("timed out" if timed_out else "failed") + f" in {self.where}"
        with _quiet_stderr():
            statuses, problem = self._exchange(mine, self.grace_s if timed_out else
                                               min(self.grace_s, 2.0))
        if problem is not None and self.rank != 0:
            if problem == "silent":
                return (f"{head}: rank 0 did not answer, nor did the rendezvous store it hosts at "
                        f"{self.store_address}; rank 0 is frozen, stuck or overloaded")
            return (f"{head}: rank 0 has left the job (its rendezvous store at "
                    f"{self.store_address}: {problem}); see rank 0's output")
        others = [r for r in range(self.world_size) if r != self.rank]
        silent = [r for r in others if r not in statuses]
        parts = []
        if silent:
            parts.append(f"{ranks_text(silent)} did not answer (frozen, stuck or far slower than "
                         "the others)")
        stopped = {r: s for r, s in statuses.items() if s.startswith("stopped")}
        parts += [f"rank {r} {s}" for r, s in sorted(stopped.items())]
        waiting = sorted(r for r in statuses if r not in stopped)
        if waiting:
            summary = "; ".join(f"rank {r} {statuses[r]}" for r in waiting[:3])
            more = f"; and {len(waiting) - 3} more" if len(waiting) > 3 else ""
            parts.append(f"{summary}{more}")
        if not silent and not stopped:
            parts.append("no rank is known to be stuck")
        return f"{head}: " + "; ".join(parts)
