"""Where the time of one TensorFlow BERT train step goes: a TF profiler trace of our
pretraining train step (``benchmarks/tf_train_step.py``'s, i.e. the scripts' step), per
precision, summed per op type.

    python benchmarks/tf_step_profile.py                      # 2x1024 shape, fp32 and bf16
    python benchmarks/tf_step_profile.py --shape 4x256 --top 20 --json
    python benchmarks/tf_step_profile.py --jit_compile        # the XLA-compiled step

Prints, per precision, the op types by time per step (ms and share of the op time), the top
single ops, and the share of casts (``Cast`` ops: what the bf16 policy adds); then fp32
against bf16 per op type. One intra-op and one inter-op thread (as the benchmark), so an op's
traced duration is its CPU time and the shares add up. Op types are TF's kernel names after
graph rewriting (``_MklMatMul``, ``_MklFusedBatchMatMulV2``, ... with oneDNN).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tf_train_step (same folder)

import tf_train_step as bench  # noqa: E402
import tensorflow as tf  # noqa: E402

CAST_TYPES = ("Cast", "_MklCast")


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="2x1024", choices=sorted(bench.SHAPES))
    for key in bench.SHAPE_KEYS:
        p.add_argument(f"--{key}", type=int, default=None, help="overrides --shape's value")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--seq_length", type=int, default=128)
    p.add_argument("--masked_positions", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before tracing")
    p.add_argument("--steps", type=int, default=2, help="traced steps (figures are per step)")
    p.add_argument("--top", type=int, default=12, help="rows of the op type and op tables")
    p.add_argument("--jit_compile", action="store_true", help="profile the XLA-compiled step")
    p.add_argument("--json", action="store_true", help="also print one JSON line")
    args = p.parse_args(argv)
    args.precision_list = [x.strip() for x in args.precisions.split(",") if x.strip()]
    args.shape_dict = {k: getattr(args, k) if getattr(args, k) is not None
                       else bench.SHAPES[args.shape][k] for k in bench.SHAPE_KEYS}
    return args


def _xplane_class():
    try:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: PLC0415
    except ImportError:  # older layouts
        from tsl.profiler.protobuf import xplane_pb2  # noqa: PLC0415
    return xplane_pb2.XSpace


def op_events(logdir: str):
    """(op name, op type, seconds) of every TF op in the host trace under ``logdir``.

    Host TF op events are named ``name:type``; runtime events (``ExecutorState::Process``,
    ``ThreadpoolListener::...``) contain ``::``, Python-side ones (``EagerLocalExecute:
    __inference_step_1``) a space; both are skipped, as are function-call ops whose time is
    the time of the ops inside them."""
    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    if not paths:
        raise RuntimeError(f"no *.xplane.pb under {logdir}: the profiler wrote no trace")
    space = _xplane_class()()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    events = []
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            for ev in line.events:
                name = plane.event_metadata[ev.metadata_id].name
                if "::" in name or ":" not in name or " " in name:
                    continue
                op, kind = name.rsplit(":", 1)
                if kind in ("PartitionedCall", "StatefulPartitionedCall", "__inference"):
                    continue
                events.append((op, kind, ev.duration_ps * 1e-12))
    return events


def profile_step(args, precision: str) -> dict:
    shape = args.shape_dict
    step = bench.build_ours(shape, args, precision, jit_compile=args.jit_compile)
    features = bench.make_batch(shape["batch_size"], args)
    for _ in range(args.warmup):
        step(features).numpy()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(args.steps):
            step(features).numpy()
        tf.profiler.experimental.stop()
        events = op_events(logdir)
    by_type, by_op, counts = collections.Counter(), collections.Counter(), collections.Counter()
    for op, kind, seconds in events:
        by_type[kind] += seconds / args.steps
        by_op[f"{op}:{kind}"] += seconds / args.steps
        counts[kind] += 1
    total = sum(by_type.values())
    cast = sum(v for k, v in by_type.items() if k in CAST_TYPES)
    return {"precision": precision, "op_ms_per_step": 1000 * total,
            "cast_ms_per_step": 1000 * cast, "cast_share": cast / total if total else 0.0,
            "ops_per_step": len(events) / args.steps,
            "casts_per_step": sum(counts[k] for k in CAST_TYPES) / args.steps,
            "by_type_ms": {k: 1000 * v for k, v in by_type.most_common()},
            "count_by_type": {k: counts[k] / args.steps for k in by_type},
            "top_ops_ms": {k: 1000 * v for k, v in by_op.most_common(args.top)}}


def print_profile(p: dict, top: int) -> None:
    total = p["op_ms_per_step"]
    print(f"\n== {p['precision']}: {total:.1f} ms of op time per step, "
          f"{p['ops_per_step']:.0f} ops; casts {p['casts_per_step']:.0f} ops, "
          f"{p['cast_ms_per_step']:.1f} ms = {100 * p['cast_share']:.1f}%")
    print(f"{'op type':<34} {'ms/step':>9} {'share':>7} {'ops/step':>9}")
    for kind, ms in list(p["by_type_ms"].items())[:top]:
        print(f"{kind:<34} {ms:>9.1f} {100 * ms / total:>6.1f}% "
              f"{p['count_by_type'][kind]:>9.0f}")
    print("top ops:")
    for op, ms in p["top_ops_ms"].items():
        print(f"  {ms:>8.1f} ms  {op}")


def print_comparison(profiles: dict, top: int) -> None:
    a, b = profiles["fp32"], profiles["bf16"]
    kinds = sorted(set(a["by_type_ms"]) | set(b["by_type_ms"]),
                   key=lambda k: -max(a["by_type_ms"].get(k, 0), b["by_type_ms"].get(k, 0)))
    speed = a["op_ms_per_step"] / b["op_ms_per_step"]
    print(f"\n== fp32 vs bf16, ms per step by op type (total {a['op_ms_per_step']:.1f} vs "
          f"{b['op_ms_per_step']:.1f}: bf16/fp32 speed {speed:.2f}x)")
    print(f"{'op type':<34} {'fp32':>9} {'bf16':>9} {'bf16-fp32':>10}")
    for kind in kinds[:top]:
        x, y = a["by_type_ms"].get(kind, 0.0), b["by_type_ms"].get(kind, 0.0)
        print(f"{kind:<34} {x:>9.1f} {y:>9.1f} {y - x:>+10.1f}")


def main(argv=None) -> int:
    args = _parse(argv)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    shape = args.shape_dict
    print(f"TF {tf.__version__}; profile of our train step, shape {args.shape} ({shape}), seq "
          f"{args.seq_length}, vocab {args.vocab}; {'XLA' if args.jit_compile else 'tf.function'}"
          f"; {args.steps} traced steps after {args.warmup} warmup; one thread")
    profiles = {}
    for precision in args.precision_list:
        profiles[precision] = profile_step(args, precision)
        print_profile(profiles[precision], args.top)
    if "fp32" in profiles and "bf16" in profiles:
        print_comparison(profiles, args.top)
    if args.json:
        print(json.dumps({"shape": shape, "jit_compile": args.jit_compile,
                          "profiles": profiles}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
