"""Intel Model Zoo's ``launch_benchmark.py`` for the BERT Large TensorFlow packages.

Seed 003's command lines run as written, with this package's path:

    python3 benchmarks/launch_benchmark.py --model-name=bert_large --precision=bfloat16 \\
        --mode=training --mpi_num_processes=4 --mpi_num_processes_per_socket=1 \\
        --num-intra-threads=22 --num-inter-threads=1 --output-dir=/tmp/SQuAD_1.1_fine_tune \\
        --framework=tensorflow --batch-size=24 -- train_option=SQuAD \\
        vocab_file=... config_file=... init_checkpoint=... do_train=True train_file=... \\
        do_predict=True predict_file=... learning_rate=1.5e-5 num_train_epochs=2 \\
        warmup-steps=0 doc_stride=128 do_lower_case=False max_seq_length=384 \\
        experimental_gelu=True optimized-softmax=True mpi_workers_sync_gradients=True

    numactl --localalloc --physcpubind=0-27 python3 benchmarks/launch_benchmark.py \\
        --model-name=bert_large --precision=bfloat16 --mode=inference --framework=tensorflow \\
        --num-inter-threads 1 --num-intra-threads 28 --batch-size=32 \\
        --data-location /tmp/wwm_uncased_L-24_H-1024_A-16 \\
        --checkpoint /tmp/bert_large_checkpoints --output-dir /tmp/SQuAD_1.1_inference \\
        --benchmark-only

What runs: ``models/common/launch.py`` (numactl binding, MPI ranks, ``--num-instances``)
starting ``models/bert_large/tensorflow/run_squad.py`` / ``run_classifier.py`` (training,
``train_option=SQuAD|Classifier``) or ``run_inference.py`` (inference). Model arguments after
``--`` are ``name=value``; dashes and underscores in names are the same; each becomes the
script's ``--name=value`` flag, and an unknown name is an error listing the known ones.
Flag names take dashes or underscores too (``--num-intra-threads`` == ``--num_intra_threads``).

Inference: ``--data-location`` is the model folder holding ``vocab.txt``,
``bert_config.json`` and ``dev-v1.1.json`` (as seed 003 lays it out; the checkpoint folder is
searched for vocab/config too), ``--checkpoint`` the fine-tuned SQuAD checkpoint (its folder
or prefix: ``run_squad.py``'s output or Intel's ``bert_large_checkpoints``);
``--benchmark-only``: throughput/latency, ``--accuracy-only``: exact match/F1.

``--docker-image IMAGE`` runs the same command in IMAGE (docker, else buildah) with this
package mounted at /workspace/modelpkg, each ``--volume SRC:DST`` and the data, checkpoint and
output folders at their own paths. Exit status: 0 done, 2 an argument to fix (nothing
started), 1 a failure (no container engine, ...), else the run's own.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from typing import Dict, List, Mapping, Optional, Sequence, Tuple


def _package_root() -> str:
    """The folder holding models/common/launch.py above this file (the package, or the
    repository checkout)."""
    here = os.path.dirname(os.path.abspath(__file__))
    folder = here
    while True:
        if os.path.isfile(os.path.join(folder, "models", "common", "launch.py")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return os.path.dirname(here)
        folder = parent


ROOT = _package_root()
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from models.common import precisions  # noqa: E402

PROG = "launch_benchmark.py"
LAUNCH = os.path.join(ROOT, "models", "common", "launch.py")
TF_DIR = os.path.join(ROOT, "models", "bert_large", "tensorflow")
SCRIPTS = {"SQuAD": "run_squad.py", "Classifier": "run_classifier.py",
           "inference": "run_inference.py"}
MODEL_NAMES = ("bert_large", "bert")
CONTAINER_ROOT = "/workspace/modelpkg"
# Model arguments launch_benchmark.py itself consumes (not passed on as flags).
OWN_MODEL_ARGS = {"train_option": "SQuAD or Classifier (training)",
                  "infer_option": "SQuAD (inference)"}


class UsageError(Exception):
    """An argument to fix; one line, exit 2."""


class RunError(Exception):
    """A failure while starting the work; one line, exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{message} (see {PROG} --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, allow_abbrev=False,
                usage=f"{PROG} --model-name=bert_large --precision=P --mode=M "
                      "--framework=tensorflow [options] [-- name=value ...]",
                description="Intel Model Zoo's launch_benchmark.py for the BERT Large "
                            "TensorFlow packages (flag names: dashes or underscores).")
    p.add_argument("--model-name", required=True, help="bert_large")
    p.add_argument("--precision", required=True,
                   help="fp32 or bfloat16 (any spelling models/common/precisions.py knows)")
    p.add_argument("--mode", required=True, choices=("training", "inference"))
    p.add_argument("--framework", required=True, choices=("tensorflow",))
    p.add_argument("--batch-size", type=int, help="per process: training batch or inference "
                   "batch")
    p.add_argument("--mpi-num-processes", type=int, help="MPI ranks (training)")
    p.add_argument("--mpi-num-processes-per-socket", type=int, help="MPI ranks per socket")
    p.add_argument("--num-intra-threads", type=int, help="TF intra-op threads per process")
    p.add_argument("--num-inter-threads", type=int, help="TF inter-op threads per process")
    p.add_argument("--socket-id", type=int, help="run on this socket only")
    p.add_argument("--num-cores", type=int, help="physical cores per process")
    p.add_argument("--num-instances", type=int, help="inference: independent pinned instances")
    p.add_argument("--numa-cores-per-instance", help="inference: cores per instance, or socket")
    p.add_argument("--data-location", help="training: folder of train/dev json (SQuAD) or "
                   "MRPC (Classifier); inference: folder of vocab.txt, bert_config.json and "
                   "dev-v1.1.json")
    p.add_argument("--checkpoint", help="inference: the fine-tuned SQuAD checkpoint (folder or "
                   "prefix); training: the pretrained model (default of init_checkpoint)")
    p.add_argument("--output-dir", required=True, help="logs, results, checkpoints")
    p.add_argument("--benchmark-only", action="store_true", help="inference: throughput and "
                   "latency")
    p.add_argument("--accuracy-only", action="store_true", help="inference: exact match / F1")
    p.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    p.add_argument("--verbose", action="store_true", help="print how each argument is mapped")
    p.add_argument("--docker-image", help="run the same inside this image (docker or buildah)")
    p.add_argument("--volume", action="append", default=[], metavar="SRC:DST",
                   help="with --docker-image: also mount SRC at DST (repeatable)")
    return p


def normalise_flags(argv: Sequence[str]) -> List[str]:
    """``--num_intra_threads`` -> ``--num-intra-threads`` (Intel mixes both spellings)."""
    out = []
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            out.append(f"--{name.replace('_', '-')}{eq}{value}")
        else:
            out.append(arg)
    return out


def parse_model_args(items: Sequence[str]) -> Dict[str, str]:
    """``["optimized-softmax=True", ...]`` -> ``{"optimized_softmax": "True"}``."""
    args: Dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise UsageError(f"model argument {item!r} is not name=value (after --, e.g. "
                             "train_option=SQuAD)")
        args[name.strip().lstrip("-").replace("-", "_")] = value
    return args


def script_flags(script: str) -> List[str]:
    """The long flag names (without --) the script's parser takes."""
    if script == "run_inference.py":
        from models.bert_large.tensorflow import run_inference as mod  # noqa: PLC0415
    elif script == "run_classifier.py":
        from models.bert_large.tensorflow import run_classifier as mod  # noqa: PLC0415
    else:
        from models.bert_large.tensorflow import run_squad as mod  # noqa: PLC0415
    names = set()
    for action in mod.build_parser()._actions:
        names.update(o[2:] for o in action.option_strings if o.startswith("--"))
    names.discard("help")
    return sorted(names)


def _find(folders: Sequence[Optional[str]], name: str) -> Optional[str]:
    for folder in folders:
        if folder and os.path.isfile(os.path.join(folder, name)):
            return os.path.join(os.path.abspath(folder), name)
    return None


def _require_dir(path: Optional[str], flag: str, what: str) -> None:
    if path and not os.path.isdir(path):
        raise UsageError(f"{flag} {path}: not a folder ({what})")


def plan(opts: argparse.Namespace, model_args: Dict[str, str],
         environ: Mapping[str, str] = os.environ) -> Tuple[List[str], List[str], List[str]]:
    """(launcher options, script command, notes) for the arguments; every check before work."""
    if opts.model_name not in MODEL_NAMES:
        raise UsageError(f"--model-name={opts.model_name}: this package runs bert_large")
    try:
        precision = precisions.resolve(opts.precision, precisions.supported("tensorflow"),
                                       "--precision")
    except precisions.PrecisionError as err:
        raise UsageError(str(err)) from None
    for name in ("batch_size", "mpi_num_processes", "mpi_num_processes_per_socket",
                 "num_intra_threads", "num_inter_threads", "num_cores", "num_instances"):
        value = getattr(opts, name)
        if value is not None and value < (0 if name.endswith("_threads") else 1):
            raise UsageError(f"--{name.replace('_', '-')}={value} must be "
                             f"{'>= 0' if name.endswith('_threads') else '>= 1'}")
    _require_dir(opts.data_location, "--data-location", "the dataset / model folder")
    notes: List[str] = []
    training = opts.mode == "training"
    if training:
        option = model_args.pop("train_option", "SQuAD")
        if option not in ("SQuAD", "Classifier"):
            raise UsageError(f"train_option={option}: use SQuAD or Classifier")
        script = SCRIPTS[option]
        if opts.benchmark_only or opts.accuracy_only:
            raise UsageError("--benchmark-only/--accuracy-only are inference options; "
                             "training predicts and scores with do_predict=True / do_eval=True")
        if opts.num_instances or opts.numa_cores_per_instance:
            raise UsageError("--num-instances/--numa-cores-per-instance are inference options; "
                             "training uses --mpi_num_processes")
    else:
        option = model_args.pop("infer_option", "SQuAD")
        if option != "SQuAD":
            raise UsageError(f"infer_option={option}: this package's inference is SQuAD")
        script = SCRIPTS["inference"]
        if opts.benchmark_only and opts.accuracy_only:
            raise UsageError("--benchmark-only and --accuracy-only exclude each other: pick one")
        if (opts.mpi_num_processes or 1) > 1:
            raise UsageError("--mpi_num_processes is for training; inference scales with "
                             "--num-instances / --numa-cores-per-instance")
    known = script_flags(script)
    unknown = sorted(k for k in model_args if k not in known)
    if unknown:
        raise UsageError(f"unknown model argument(s) {', '.join(unknown)} for --mode="
                         f"{opts.mode} ({script}); known: "
                         f"{', '.join(sorted({*known, *OWN_MODEL_ARGS}))}")
    flags: Dict[str, str] = {}
    out = os.path.abspath(opts.output_dir)
    if training:
        flags["output_dir"] = out
        flags["precision"] = precision
        if opts.batch_size:
            flags["train_batch_size"] = str(opts.batch_size)
        ckpt = opts.checkpoint
        if ckpt and "init_checkpoint" not in model_args:
            if os.path.isdir(ckpt) and not _find([ckpt], "bert_model.ckpt.index"):
                raise UsageError(f"--checkpoint {ckpt}: no bert_model.ckpt.index in it; pass "
                                 "init_checkpoint=PREFIX")
            flags["init_checkpoint"] = (os.path.join(os.path.abspath(ckpt), "bert_model.ckpt")
                                        if os.path.isdir(ckpt) else ckpt)
        folders = [ckpt if ckpt and os.path.isdir(ckpt) else None]
        for key, name in (("vocab_file", "vocab.txt"), ("bert_config_file", "bert_config.json")):
            found = _find(folders, name)
            if found and key not in model_args and not (key == "bert_config_file"
                                                        and "config_file" in model_args):
                flags[key] = found
        sync = environ.get("MPI_WORKERS_SYNC_GRADIENTS", "").strip()
        if sync and "mpi_workers_sync_gradients" not in model_args:
            if sync.lower() not in ("true", "false", "1", "0"):
                raise UsageError(f"MPI_WORKERS_SYNC_GRADIENTS={sync!r}: use True or False")
            flags["mpi_workers_sync_gradients"] = sync
        if opts.data_location:
            data = os.path.abspath(opts.data_location)
            if option == "SQuAD":
                flags["dataset_path"] = data
            else:
                flags["data_dir"] = data
                flags.setdefault("task_name", "MRPC")
    else:
        _require_dir(opts.checkpoint, "--checkpoint", "the fine-tuned SQuAD checkpoint")
        flags["output_dir"] = out
        flags["precision"] = precision
        flags["mode"] = "accuracy" if opts.accuracy_only else "benchmark"
        if not opts.benchmark_only and not opts.accuracy_only:
            notes.append("neither --benchmark-only nor --accuracy-only: running the benchmark")
        if opts.batch_size:
            flags["batch_size"] = str(opts.batch_size)
        ckpt = opts.checkpoint
        folders = [opts.data_location, ckpt if ckpt and os.path.isdir(ckpt) else None]
        init = model_args.pop("init_checkpoint", None)
        if init and ckpt and not os.path.isabs(init) and os.path.isdir(ckpt):
            init = os.path.join(os.path.abspath(ckpt), init)  # Intel: model.ckpt-3649
        init = init or (os.path.abspath(ckpt) if ckpt else None)
        if not init:
            raise UsageError("--checkpoint is required for --mode=inference: the fine-tuned "
                             "SQuAD checkpoint folder (or init_checkpoint=PREFIX)")
        flags["init_checkpoint"] = init
        for key, name, alias in (("vocab_file", "vocab.txt", None),
                                 ("bert_config_file", "bert_config.json", "config_file"),
                                 ("predict_file", "dev-v1.1.json", None)):
            if key in model_args or (alias and alias in model_args):
                continue
            found = _find(folders, name)
            if not found:
                raise UsageError(f"{name} not found in --data-location"
                                 f"{' or --checkpoint' if name != 'dev-v1.1.json' else ''} "
                                 f"({', '.join(f for f in folders if f) or 'none given'}): "
                                 f"put it there or pass {key}=PATH after --")
            flags[key] = found
    for key, value in model_args.items():
        flags[key] = value
    command = [sys.executable, os.path.join(TF_DIR, script)]
    command += [f"--{k}={v}" for k, v in flags.items()]

    launcher = ["--precision", precision]
    for name in ("mpi_num_processes", "mpi_num_processes_per_socket", "num_intra_threads",
                 "num_inter_threads", "socket_id", "num_cores", "num_instances",
                 "numa_cores_per_instance"):
        value = getattr(opts, name)
        if value is not None:
            launcher += [f"--{name.replace('_', '-')}", str(value)]
    if not training and (opts.num_instances or opts.numa_cores_per_instance):
        launcher += ["--aggregate-file", os.path.join(out, "inference_results_aggregate.json")]
    if opts.verbose:
        notes += [f"{opts.mode} ({option}) -> {script}"]
        notes += [f"  --{k}={v}" for k, v in flags.items()]
    return launcher, command, notes


def container_command(opts: argparse.Namespace, argv: Sequence[str],
                      environ: Mapping[str, str]) -> List[str]:
    """The docker/buildah command running this script with ARGV (less the container options)
    inside ``--docker-image``."""
    inner: List[str] = []
    skip = False
    for arg in normalise_flags(argv):
        if skip:
            skip = False
            continue
        if arg == "--":
            inner.append(arg)
            skip = False
            continue
        name = arg.partition("=")[0]
        if name in ("--docker-image", "--volume"):
            skip = "=" not in arg
            continue
        inner.append(arg)
    cut = inner.index("--") if "--" in inner else len(inner)
    # the model arguments stay after --; everything else is this script's own options
    mounts = [(os.path.abspath(ROOT), CONTAINER_ROOT)]
    for folder in (opts.data_location, opts.checkpoint, opts.output_dir):
        if folder:
            path = os.path.abspath(folder if os.path.isdir(folder) or folder == opts.output_dir
                                   else os.path.dirname(folder))
            mounts.append((path, path))
    for volume in opts.volume:
        src, sep, dst = volume.partition(":")
        if not sep or not src or not dst:
            raise UsageError(f"--volume {volume!r} must be SRC:DST")
        mounts.append((os.path.abspath(src), dst))
    run = ["python3", f"{CONTAINER_ROOT}/benchmarks/launch_benchmark.py", *inner[:cut],
           *inner[cut:]]
    env = [k for k in ("MPI_WORKERS_SYNC_GRADIENTS", "COLLECTIVE_TIMEOUT") if k in environ]
    engine = container_engine(environ)
    if engine is None:
        raise RunError("--docker-image needs docker (with a running daemon) or buildah, and "
                       "neither is usable here: install one, or drop --docker-image to run on "
                       "this machine")
    volumes = [a for src, dst in dict(mounts).items() for a in ("-v", f"{src}:{dst}")]
    if os.path.basename(engine) == "docker":
        return [engine, "run", "--rm", "--shm-size", "8g", "--privileged", *volumes,
                *[a for k in env for a in ("-e", k)], "-w", CONTAINER_ROOT,
                opts.docker_image, *run]
    # buildah: a working container from the image, the command in it, then removed
    script = (f"set -e; c=$({shlex.quote(engine)} from -q {shlex.quote(opts.docker_image)}); "
              f"trap '{shlex.quote(engine)} rm \"$c\" >/dev/null' EXIT; "
              f"{shlex.quote(engine)} run --isolation chroot "
              + " ".join(shlex.quote(a) for a in volumes)
              + " " + " ".join(f"--env {k}={shlex.quote(environ[k])}" for k in env)
              + f" --workingdir {CONTAINER_ROOT} \"$c\" -- "
              + " ".join(shlex.quote(a) for a in run))
    return ["bash", "-c", script]


def container_engine(environ: Mapping[str, str]) -> Optional[str]:
    """docker when its daemon answers, else buildah, else None."""
    docker = shutil.which("docker", path=environ.get("PATH"))
    if docker:
        try:
            ok = subprocess.run([docker, "info"], capture_output=True, timeout=20,
                                check=False).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return docker
    return shutil.which("buildah", path=environ.get("PATH"))


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None
         ) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    own, model = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    try:
        opts = build_parser().parse_args(normalise_flags(own))
        model_args = parse_model_args(model)
        if opts.volume and not opts.docker_image:
            raise UsageError("--volume goes with --docker-image")
        launcher, command, notes = plan(opts, dict(model_args), environ)
        if opts.docker_image:
            outer = container_command(opts, argv, environ)
            print(f"{PROG}: running in {opts.docker_image}: {shlex.join(outer)}", flush=True)
            if opts.dry_run:
                return 0
            return subprocess.run(outer, check=False).returncode
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except RunError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"{PROG}: {note}", flush=True)
    if not opts.dry_run:
        os.makedirs(opts.output_dir, exist_ok=True)
    full = [sys.executable, LAUNCH, *launcher, *(["--dry-run"] if opts.dry_run else []), "--",
            *command]
    env = dict(environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    print(f"{PROG}: {shlex.join(full)}", flush=True)
    try:
        os.execve(full[0], full, env)
    except OSError as exc:
        print(f"{PROG}: error: cannot run {full[0]}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
