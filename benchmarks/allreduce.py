"""Gradient allreduce on 2 local MPI ranks: Horovod against mpi4py, the two engines of
models/bert_large/tensorflow/distributed.py, for BERT-Large's gradient size (340M float32
values, 1.36 GB) and a smaller one (10M).

    python benchmarks/allreduce.py                     # both sizes, both engines
    python benchmarks/allreduce.py --sizes 10M --iters 20 --json

Launches ``mpirun -np 2`` itself, once per engine (``$MODELPKG_COLLECTIVES``). Two timings per
size, median of ``--iters`` after ``--warmup`` untimed ones, every iteration started after a
barrier:

- ``communicator``: ``Communicator.allreduce_mean([gradient])`` as training runs it (float32
  buffer, sum, divide by the ranks);
- ``raw``: the collective alone (``hvd.allreduce(op=Sum)`` on a TF tensor, mpi4py's
  ``Allreduce`` on a numpy array).

Prints seconds per allreduce, GB/s (buffer bytes / seconds; for 2 ranks the bus bandwidth is
the same figure) and the Horovod/mpi4py time ratio (mpi4py, measured in the same run, is the
reference; the target is <= 1.2). Needs mpirun, mpi4py and Horovod (scripts/build-horovod.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("mpi4py", "horovod")


def _size(text: str) -> int:
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:].upper(), 1)
    number = text[:-1] if text[-1:].upper() in "KMG" else text
    try:
        value = int(float(number) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count such as 340M") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: need at least one value")
    return value


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=lambda s: [_size(x) for x in s.split(",")],
                   default=[340_000_000, 10_000_000],
                   help="float32 values per allreduce, comma separated (default 340M,10M)")
    p.add_argument("--iters", type=int, default=0,
                   help="timed iterations per size (default: 5 for >= 100M values, else 20)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations per size")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help="comma separated, of mpi4py,horovod")
    p.add_argument("--json", action="store_true", help="also print one JSON line")
    p.add_argument("--worker", metavar="OUT", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _iters(args, size: int) -> int:
    return args.iters or (5 if size >= 100_000_000 else 20)


# --------------------------------------------------------------------------------------------
# One rank (under mpirun)
# --------------------------------------------------------------------------------------------
def _worker(args) -> None:
    sys.path.insert(0, str(ROOT))
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from models.bert_large.tensorflow import distributed  # noqa: PLC0415

    comm = distributed.get_communicator()
    backend = comm._backend  # the raw collective of the engine
    results = []
    for size in args.sizes:
        grad = tf.random.stateless_uniform([size], seed=[comm.rank, 1], dtype=tf.float32)
        if comm.engine == "horovod":
            def raw(t=grad):
                return backend.allreduce(t, op=backend.Sum, name="bench_raw").numpy()
        else:
            host = grad.numpy()
            out = np.empty_like(host)

            def raw(h=host, o=out):
                from mpi4py import MPI  # noqa: PLC0415
                backend.Allreduce(h, o, op=MPI.SUM)
                return o

        def communicator(t=grad):
            return comm.allreduce_mean([t])[0].numpy()

        row = {"engine": comm.engine, "values": size, "bytes": 4 * size}
        for name, fn in (("raw", raw), ("communicator", communicator)):
            times = []
            for i in range(args.warmup + _iters(args, size)):
                comm.barrier()
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
                if i >= args.warmup:
                    times.append(elapsed)
            # The slower rank decides: a collective is done when both are.
            per_rank = comm.allgather(statistics.median(times))
            row[f"{name}_s"] = max(per_rank)
        results.append(row)
        del grad
    if comm.rank == 0:
        Path(args.worker).write_text(json.dumps(results))


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------
def _run_engine(engine: str, args, argv: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = ["mpirun", "--oversubscribe", "-np", "2"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
        cmd += [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", out]
        env = dict(os.environ, MODELPKG_COLLECTIVES=engine, TF_CPP_MIN_LOG_LEVEL="3",
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for key in [k for k in env if k.startswith(("OMPI_COMM_WORLD_", "PMI_", "PMIX_"))]:
            del env[key]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(out):
            sys.exit(f"error: the {engine} run failed (exit {proc.returncode}):\n"
                     f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
        return json.loads(Path(out).read_text())


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    if args.worker:
        _worker(args)
        return 0
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        print(f"error: --engines: unknown {', '.join(unknown) or '(none)'}; use "
              f"{','.join(ENGINES)}", file=sys.stderr)
        return 2
    passthrough = [a for a in argv if a != "--json"]
    runs = {e: _run_engine(e, args, passthrough) for e in engines}

    print("allreduce on 2 local ranks (mpirun -np 2), median of timed iterations")
    print(f"{'values':>12} {'engine':>8} {'what':>13} {'s/allreduce':>12} {'GB/s':>7}"
          f" {'vs mpi4py':>9}")
    report = []
    for i, size in enumerate(args.sizes):
        for what in ("raw", "communicator"):
            ref = runs["mpi4py"][i][f"{what}_s"] if "mpi4py" in runs else None
            for engine in engines:
                row = runs[engine][i]
                seconds = row[f"{what}_s"]
                ratio = seconds / ref if ref else None
                gbps = row["bytes"] / seconds / 1e9
                print(f"{size:>12,} {engine:>8} {what:>13} {seconds:>12.4f} {gbps:>7.2f}"
                      f" {('%.2fx' % ratio) if ratio else '-':>9}")
                report.append({"values": size, "engine": engine, "what": what,
                               "seconds": seconds, "gb_per_s": gbps, "ratio_vs_mpi4py": ratio})
    if args.json:
        print(json.dumps({"allreduce": report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
