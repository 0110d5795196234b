"""Gradient averaging and weight broadcast across MPI ranks for TensorFlow training.

Engine: Horovod when ``import horovod.tensorflow`` works, otherwise MPI through mpi4py
(``scripts/build-horovod.sh`` builds Horovod 0.28.1 for the test environment, the images'
``horovod`` part for the TF images). ``$MODELPKG_COLLECTIVES`` forces one: ``horovod`` (an
error when it cannot be imported), ``mpi4py`` or ``auto`` (the default; with a collective
timeout ``auto`` picks mpi4py, the engine that implements it). Both engines do the same
arithmetic: the gradients of one step are cast to float32 (Horovod's TF allreduce has no
bfloat16), flattened into one buffer, summed with one allreduce and divided by the number of
ranks; the weight broadcast sends each dtype's bytes from rank 0. With two ranks a sum of two
floats does not depend on the order, so the two engines give bit-identical weights.
(``hvd.DistributedGradientTape`` and ``hvd.broadcast_variables`` are not used: both are
broken under Keras 3.)

Ranks come from the launcher's environment (``models.common.dist_env``); with one process
every function here is a cheap no-op and MPI is never initialised.

Launch (two ranks on one host)::

    mpirun --allow-run-as-root --oversubscribe -np 2 python run_squad.py ... \\
        --mpi_workers_sync_gradients=True

Collective timeout (``--collective_timeout`` / ``$COLLECTIVE_TIMEOUT``, read by
``models.common.runtime_env.collective_timeout``; off by default): with mpi4py every
collective is posted nonblocking (``Iallreduce``, ``Ibcast``, ``Iallgather(v)``,
``Ibarrier``) and polled against a deadline. A rank still waiting after the timeout asks every
other rank, on a duplicate communicator, to answer within a short grace period; the lowest
rank that is still alive prints one ``error: ...`` line naming the ranks that did not answer
(a frozen or stopped process) and the collective and step it was waiting in, then calls
``MPI_Abort`` so that mpirun ends the whole job (exit status 1). Horovod has its own stall
checks; the timeout applies to the mpi4py engine.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from models.bert_large.tensorflow.flags import (
    COLLECTIVES_ENGINES,
    COLLECTIVES_ENV,
    check_collectives_engine,
)
from models.common import dist_env

__all__ = ["Communicator", "get_communicator", "scaled_learning_rate"]

log = logging.getLogger("bert")
_CENSUS_TAG = 0x7E57  # point-to-point "I am alive" messages after a collective timed out


def scaled_learning_rate(lr: float, world_size: int) -> float:
    """Square-root learning-rate scaling for a global batch ``world_size`` times larger."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    return lr * math.sqrt(world_size)


def _flatten(tensors: Sequence[tf.Tensor]) -> tf.Tensor:
    return tf.concat([tf.reshape(tf.cast(tf.convert_to_tensor(t), tf.float32), [-1])
                      for t in tensors], axis=0)


def _unflatten(flat: tf.Tensor, like: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    sizes = [int(np.prod(t.shape)) for t in like]
    parts = tf.split(flat, sizes) if len(sizes) > 1 else [flat]
    return [tf.cast(tf.reshape(p, t.shape), t.dtype) for p, t in zip(parts, like)]


class Communicator:
    """Collectives for one training process. ``engine`` is "none", "mpi4py" or "horovod"."""

    def __init__(self, env: dist_env.DistEnv, engine: str, backend: Any = None,
                 timeout: float | None = None):
        self.env = env
        self.engine = engine
        self._backend = backend  # mpi4py COMM_WORLD or the horovod.tensorflow module
        # Seconds one collective may wait (mpi4py engine; None = for ever).
        self.timeout = timeout if engine == "mpi4py" and timeout else None
        # The training step in progress, named when a collective times out; loops set it.
        self.step: int | None = None
        # A duplicate of COMM_WORLD for the "who is alive" messages of a timeout, so they
        # never match a message of the training's own collectives. Dup is collective: made
        # by every mpi4py rank, whatever its timeout, so ranks that disagree cannot hang here.
        self._census = backend.Dup() if engine == "mpi4py" else None

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    # -- gradients -------------------------------------------------------------------------
    def allreduce_mean(self, grads: Sequence[tf.Tensor | tf.IndexedSlices | None]) -> list:
        """Average ``grads`` over all ranks. Works eagerly and inside ``tf.function``.

        ``None`` entries stay ``None``; IndexedSlices (embedding lookups) are made dense."""
        if self.world_size == 1:
            return list(grads)
        present = [i for i, g in enumerate(grads) if g is not None]
        dense = [tf.convert_to_tensor(grads[i]) for i in present]
        flat = _flatten(dense)
        if self.engine == "horovod":
            summed = self._backend.allreduce(flat, op=self._backend.Sum,
                                             name="gradient_allreduce")
        else:
            summed = tf.numpy_function(self._allreduce_sum_np, [flat], tf.float32,
                                       stateful=True, name="mpi_allreduce")
        summed.set_shape(flat.shape)
        reduced = _unflatten(summed / float(self.world_size), dense)
        out = list(grads)
        for i, g in zip(present, reduced):
            out[i] = g
        return out

    def _allreduce_sum_np(self, flat: np.ndarray) -> np.ndarray:
        from mpi4py import MPI

        flat = np.ascontiguousarray(flat, dtype=np.float32)
        result = np.empty_like(flat)
        if self.timeout:
            self._wait(self._backend.Iallreduce(flat, result, op=MPI.SUM),
                       "the gradient allreduce")
        else:
            self._backend.Allreduce(flat, result, op=MPI.SUM)
        return result

    # -- timeouts (mpi4py) -------------------------------------------------------------------
    def _wait(self, request, what: str) -> None:
        """Poll ``request`` until it completes or ``self.timeout`` passes (then the job is
        stopped: :meth:`_timed_out`)."""
        deadline = time.monotonic() + self.timeout
        pause = 0.0
        while not request.Test():
            if time.monotonic() >= deadline:
                self._timed_out(what)
            time.sleep(pause)
            pause = min(0.005, pause * 2 or 5e-5)

    def _timed_out(self, what: str) -> None:
        """Find the ranks that do not answer, report them (lowest live rank) and abort."""
        from mpi4py import MPI  # noqa: PLC0415

        comm, me = self._census, self.rank
        others = [r for r in range(self.world_size) if r != me]
        mine = np.array([me, -1 if self.step is None else self.step], np.int64)
        sends = [comm.Isend(mine, dest=r, tag=_CENSUS_TAG) for r in others]
        bufs = {r: np.zeros(2, np.int64) for r in others}
        recvs = {r: comm.Irecv(bufs[r], source=r, tag=_CENSUS_TAG) for r in others}
        grace = min(max(self.timeout, 1.0), 10.0)
        deadline = time.monotonic() + grace
        answered: set[int] = set()
        while len(answered) < len(others) and time.monotonic() < deadline:
            answered.update(r for r, req in recvs.items() if r not in answered and req.Test())
            time.sleep(0.01)
        missing = [r for r in others if r not in answered]
        where = f"{what} at step {self.step}" if self.step is not None else what
        if missing:
            text = (f"collective timeout: rank(s) {', '.join(map(str, missing))} of "
                    f"{self.world_size} did not answer within {self.timeout:g}s (rank {me} was "
                    f"waiting in {where}); a rank is frozen or stopped. Stopping the job "
                    "(--collective_timeout / $COLLECTIVE_TIMEOUT)")
        else:
            text = (f"collective timeout: {where} did not complete within {self.timeout:g}s "
                    "although every rank answers (ranks waiting in different collectives?). "
                    "Stopping the job (--collective_timeout / $COLLECTIVE_TIMEOUT)")
        reporter = min([me, *answered])
        if me == reporter:  # one line for the whole job
            print(f"error: {text}", file=sys.stderr)
        else:
            if log.hasHandlers():  # (never Python's last-resort handler: that is stderr)
                log.error("%s", text)
            time.sleep(grace)  # the reporter's abort ends this process; if not, abort here
        sys.stdout.flush()
        sys.stderr.flush()
        self._census_sends = sends  # keep the requests alive until the abort
        MPI.COMM_WORLD.Abort(1)

    # -- variables -------------------------------------------------------------------------
    def broadcast_variables(self, variables: Sequence[tf.Variable], root: int = 0) -> None:
        """Overwrite ``variables`` on every rank with the values of rank ``root``."""
        if self.world_size == 1 or not variables:
            return
        # One buffer per dtype (float weights, integer RNG states), sent as its bytes: exact
        # bits, and every dtype (Horovod broadcasts no uint32 or bfloat16). Not
        # hvd.broadcast_variables: under Keras 3 it cannot assign to the variables.
        values = [np.asarray(v.numpy()) for v in variables]
        groups: dict[str, list[int]] = {}
        for i, a in enumerate(values):
            groups.setdefault(a.dtype.name, []).append(i)
        for name in sorted(groups):
            idx = groups[name]
            buf = np.ascontiguousarray(np.concatenate([values[i].ravel() for i in idx]))
            data = buf.view(np.uint8)
            if self.engine == "horovod":
                data = self._backend.broadcast(tf.constant(data), root_rank=root,
                                               name=f"broadcast_{name}").numpy()
            elif self.timeout:
                self._wait(self._backend.Ibcast(data, root=root),
                           f"the weight broadcast from rank {root}")
            else:
                self._backend.Bcast(data, root=root)
            buf = data.view(buf.dtype)
            offset = 0
            for i in idx:
                size = values[i].size
                variables[i].assign(buf[offset:offset + size].reshape(values[i].shape))
                offset += size

    # -- small Python objects (metrics, fingerprints) ---------------------------------------
    def allgather(self, obj: Any) -> list:
        """Every rank's ``obj`` (picklable), in rank order."""
        if self.world_size == 1:
            return [obj]
        if self.engine == "horovod":
            return list(self._backend.allgather_object(obj))
        if self.timeout:
            return self._allgather_with_timeout(obj)
        return self._backend.allgather(obj)

    def _allgather_with_timeout(self, obj: Any) -> list:
        from mpi4py import MPI  # noqa: PLC0415

        data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
        sizes = np.zeros(self.world_size, np.int64)
        self._wait(self._backend.Iallgather(np.array([data.size], np.int64), sizes),
                   "an allgather (metrics / checkpoint state)")
        out = np.empty(int(sizes.sum()), np.uint8)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self._wait(self._backend.Iallgatherv([data, MPI.BYTE],
                                               [out, (sizes, offsets), MPI.BYTE]),
                   "an allgather (metrics / checkpoint state)")
        return [pickle.loads(out[o:o + n].tobytes()) for o, n in zip(offsets, sizes)]

    def barrier(self) -> None:
        if self.world_size == 1:
            return
        if self.engine == "horovod":
            self._backend.allreduce(tf.constant(0.0), op=self._backend.Sum)
        elif self.timeout:
            self._wait(self._backend.Ibarrier(), "a barrier")
        else:
            self._backend.Barrier()

    def all_equal(self, value: Any) -> bool:
        """True when ``value`` is the same on every rank."""
        values = self.allgather(value)
        return all(v == values[0] for v in values)


def _hierarchical_allreduce() -> str:
    """``HOROVOD_HIERARCHICAL_ALLREDUCE`` as this rank's Horovod read it at ``hvd.init()``
    (``strtol(value) > 0``; the launcher forwards the variable to every rank). Horovod applies
    it across several hosts with NCCL only; a CPU build keeps its flat MPI allreduce."""
    raw = os.environ.get("HOROVOD_HIERARCHICAL_ALLREDUCE")
    if raw is None:
        return "not requested"
    number = re.match(r"\s*[+-]?\d+", raw)  # what strtol(raw, NULL, 10) reads
    asked = number is not None and int(number.group()) > 0
    return (f"{'requested' if asked else 'not requested'} (HOROVOD_HIERARCHICAL_ALLREDUCE="
            f"{raw}{'; used across hosts with NCCL only' if asked else ''})")


def _try_horovod() -> Any:
    try:
        import horovod.tensorflow as hvd  # noqa: PLC0415 - optional engine
    except ImportError:
        return None
    return hvd


def get_communicator(engine: str | None = None,
                     env: dist_env.DistEnv | None = None,
                     horovod_import: Callable[[], Any] = _try_horovod,
                     timeout: float | None = None) -> Communicator:
    """Communicator for this process. ``engine``: "auto" (Horovod if importable, else mpi4py;
    mpi4py when a ``timeout`` is set), "horovod" or "mpi4py"; None reads
    ``$MODELPKG_COLLECTIVES`` (``flags.check_collectives_engine``). A single process never
    touches MPI. ``timeout``: seconds one collective may wait before the job is stopped naming
    the rank(s) that did not answer (``runtime_env.collective_timeout()``; None = no limit;
    mpi4py engine only). The chosen engine and why are logged."""
    env = env or dist_env.from_environ()
    if engine is None:
        engine = check_collectives_engine()
    if engine not in COLLECTIVES_ENGINES:
        raise ValueError(f"engine must be auto, horovod or mpi4py, got {engine!r}")
    if env.world_size == 1:
        return Communicator(env, "none")
    if engine == "auto" and timeout:
        log.info("collectives: mpi4py (the collective timeout of %gs needs it; set %s=horovod "
                 "for Horovod without it)", timeout, COLLECTIVES_ENV)
        engine = "mpi4py"
    if engine in ("auto", "horovod"):
        hvd = horovod_import()
        if hvd is not None:
            hvd.init()
            if hvd.size() != env.world_size:
                raise RuntimeError(f"Horovod sees {hvd.size()} ranks but the launcher set "
                                   f"{env.world_size}; launch with mpirun/horovodrun")
            if timeout:
                log.warning("the collective timeout (%gs) applies to the mpi4py engine only; "
                            "with Horovod use its stall check (HOROVOD_STALL_SHUTDOWN_TIME_"
                            "SECONDS)", timeout)
            log.info("collectives: Horovod %s (%s; MPI %s; hierarchical allreduce %s)",
                     getattr(sys.modules.get("horovod"), "__version__", "?"),
                     "requested" if engine == "horovod" else "importable",
                     "built" if hvd.mpi_built() else "not built",
                     _hierarchical_allreduce())
            return Communicator(env, "horovod", hvd)
        if engine == "horovod":
            raise RuntimeError(f"engine 'horovod' requested (${COLLECTIVES_ENV}) but "
                               "horovod.tensorflow cannot be imported; run "
                               "scripts/build-horovod.sh or use engine 'mpi4py'")
        log.info("collectives: mpi4py (horovod.tensorflow is not importable)")
    else:
        log.info("collectives: mpi4py (requested)")
    try:
        from mpi4py import MPI  # noqa: PLC0415
    except ImportError as err:
        raise RuntimeError(f"{env.world_size} ranks need mpi4py for gradient exchange "
                           f"(pip install mpi4py): {err}") from err
    comm = MPI.COMM_WORLD
    if comm.Get_size() != env.world_size or comm.Get_rank() != env.rank:
        raise RuntimeError(f"MPI reports rank {comm.Get_rank()}/{comm.Get_size()} but the "
                           f"environment says {env.rank}/{env.world_size}; start the ranks "
                           "with mpirun")
    return Communicator(env, "mpi4py", comm, timeout=timeout)
