#!/usr/bin/env python3
"""demo_bert.py: Habana's BERT demo front end for this package's TensorFlow BERT scripts.

Habana's ``demo_bert`` / ``demo_bert.py`` (Model-References ``TensorFlow/nlp/bert``) option set,
building real command lines of ``run_classifier.py`` (MRPC), ``run_squad.py`` (SQuAD) and
``run_pretraining.py`` (BooksWiki phase 1 + phase 2, overfit) and running them from this folder:

    ./demo_bert finetuning -d bf16 -m base -t mrpc -b 32 -s 128 -v
    ./demo_bert pretraining -d bf16 -m large -b 64 8 -v
    $PYTHON demo_bert.py --command pretraining --model_variant large --data_type bf16 \\
        --test_set bookswiki --dataset_path DIR --iters 50,50 --profile 30,31

``-v [N]`` runs N workers per server (default 8, or $NUM_WORKERS_PER_HLS) through the package's
launcher (``models/common/launch.py``, mpirun); ``MULTI_HLS_IPS`` adds servers. ``--dry-run``
prints the settings, the environment and the exact command lines and runs nothing.

Exit status: the training's own; 2 for a usage error found before anything runs (one
``error: ...`` line); 1 for a failure of the demo's own work (a download, a missing phase 1
checkpoint); 130 after Ctrl-C (the training is stopped too).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
USAGE_EXIT = 2
FAIL_EXIT = 1
STOP_GRACE = 30.0  # seconds a stopped training gets before SIGTERM / SIGKILL


def _package_root(start: str) -> str:
    """The folder holding models/common/launch.py: this folder in a package, the checkout's
    root when run from the repository (habana/bert_tensorflow/)."""
    d = start
    while True:
        if os.path.isfile(os.path.join(d, "models", "common", "launch.py")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            return start
        d = parent


ROOT = _package_root(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

try:  # the package's one owner of the masking rule
    from models.common.redact import mask_credentials
except ImportError:  # pragma: no cover - a package always ships models/common
    def mask_credentials(text: str, name: Optional[str] = None) -> str:
        return text


# ---------------------------------------------------------------------------------------------
# Habana's facts

COMMANDS = ("pretraining", "finetuning")
DATA_TYPES = ("fp32", "bf16")
TEST_SETS = {"pretraining": ("bookswiki", "overfit"), "finetuning": ("mrpc", "squad")}
GOOGLE_2020 = "https://storage.googleapis.com/bert_models/2020_02_20/"
GOOGLE_2019 = "https://storage.googleapis.com/bert_models/2019_05_30/"
# variant -> (pretrained model folder/zip name, google's URL folder, zip has a top folder)
VARIANTS: Dict[str, Tuple[str, str, bool]] = {
    "tiny": ("uncased_L-2_H-128_A-2", GOOGLE_2020, False),
    "mini": ("uncased_L-4_H-256_A-4", GOOGLE_2020, False),
    "small": ("uncased_L-4_H-512_A-8", GOOGLE_2020, False),
    "medium": ("uncased_L-8_H-512_A-8", GOOGLE_2020, False),
    "base": ("uncased_L-12_H-768_A-12", GOOGLE_2020, False),
    "large": ("wwm_uncased_L-24_H-1024_A-16", GOOGLE_2019, True),
}
DEFAULT_WORKERS_PER_SERVER = 8
DEFAULT_OUTPUT_DIR = "/tmp/bert"
DEFAULT_DATASET_PATH = "./dataset/"
DEFAULT_FT_LEARNING_RATE = 2e-5
# Fine-tuning defaults: (epochs, batch bf16, batch fp32, max_seq_length)
FT_DEFAULTS = {"mrpc": (3.0, 64, 32, 128), "squad": (2.0, 24, 10, 384)}
# BooksWiki: per phase steps, warmup, batch bf16/fp32, seq, global batch, LR at 8 workers and
# that global batch (Habana: lr = base * 8 / workers * global_batch / base_global_batch).
BW_STEPS = (7038, 782)
BW_WARMUP = (2000, 200)
BW_BATCH = {"bf16": (64, 8), "fp32": (32, 8)}
BW_SEQ = (128, 512)
BW_GLOBAL_BATCH = (65536, 32768)
BW_FAST_PERF_GLOBAL_BATCH = (1600, 200)
BW_BASE_LR = (0.00075, 0.0005)
BW_NO_ACCUMULATION_LR = (7.5e-4, 5.0e-4)
OVERFIT = {"steps": 200, "warmup": 10, "batch": 32, "seq": 128, "base_lr": 0.006}
EVAL_BATCH_SIZE = 8
DOC_STRIDE = 128
# HABANA_INITIAL_WORKSPACE_SIZE_MB Habana's demo sets for the fine-tuning runs.
WORKSPACE_MB = {("mrpc", None): "15437",
                ("squad", "large", "fp32"): "17257", ("squad", "base", "fp32"): "13271",
                ("squad", "large", "bf16"): "21393", ("squad", "base", "bf16"): "17371"}

# Environment variables: read by demo_bert, or by the training/launcher and shown in the log.
PRETRAINED_URL_ENV = "BERT_PRETRAINED_URL"
BF16_ENV = "TF_BF16_CONVERSION"
ENV_DOC: Tuple[Tuple[str, str], ...] = (
    (BF16_ENV, "bf16 recipe file; -d bf16 sets it (to --bf16_config_path) unless already set, "
               "-d fp32 removes it"),
    ("NUM_WORKERS_PER_HLS", "workers per server for a bare -v (default 8)"),
    ("MULTI_HLS_IPS", "servers for -v: comma list of hosts (workers = -v N x servers)"),
    ("MPI_TCP_INCLUDE", "launcher: interfaces/subnets for MPI TCP traffic"),
    ("DOCKER_SSHD_PORT", "launcher: sshd port on the servers (default 3022)"),
    ("MPI_MAP_BY_SOCKET_PE", "cores per rank for mpirun --map-by socket:PE=N (default auto)"),
    ("HOROVOD_HIERARCHICAL_ALLREDUCE", "1 for multi-server runs over host NICs "
                                        "(--horovod_hierarchical_allreduce sets it)"),
    (PRETRAINED_URL_ENV, "base URL of <model>.zip downloads (default: google's bert_models "
                         "buckets)"),
    ("PYTHON", "Python interpreter for the training scripts (default: this one)"),
    ("PYTHONPATH", "the package root is put first"),
    ("HABANA_USE_PREALLOC_BUFFER_FOR_ALLREDUCE", "Habana: false enables ART in HCL"),
    ("HABANA_SYNAPSE_LOGGER", "Habana: range = Synapse traces (SynapseLoggerHook)"),
    ("HABANA_INITIAL_WORKSPACE_SIZE_MB", "Habana: device workspace; demo_bert sets Habana's "
                                          "value for MRPC/SQuAD unless set"),
    ("HABANA_USE_STREAMS_FOR_HCL", "Habana: HCL streams"),
    ("HABANA_VISIBLE_DEVICES", "Habana: cards the run may use"),
    ("HABANA_LOGS", "Habana: log folder"),
    ("HCL_CONFIG_PATH", "Habana: HCL config (older SynapseAI)"),
    ("LOG_LEVEL_ALL", "Habana: log level of all components"),
    ("RUN_TPC_FUSER", "Habana: TPC fuser on/off"),
    ("GC_KERNEL_PATH", "Habana: TPC kernel library"),
    ("TF_ALLOW_CONTROL_EDGES_IN_HABANA_OPS", "Habana bridge option"),
    ("HBN_TF_REGISTER_DATASETOPS", "Habana bridge option"),
    ("TF_PRELIMINARY_CLUSTER_SIZE", "Habana bridge option"),
    ("TF_DISABLE_SCOPED_ALLOCATOR", "TensorFlow scoped allocator off"),
)
# What the launcher forwards to remote ranks itself (mpirun -x); others go through `env`.
LAUNCHER_FORWARDS = ("TF_BF16_CONVERSION", "PYTHONPATH", "HOROVOD_HIERARCHICAL_ALLREDUCE",
                     "GC_KERNEL_PATH", "HABANA_LOGS", "HABANA_VISIBLE_DEVICES")
REMOTE_ENV = tuple(name for name, _ in ENV_DOC
                   if name.startswith(("HABANA_", "HCL_", "LOG_LEVEL", "RUN_TPC", "TF_", "HBN_"))
                   and name not in LAUNCHER_FORWARDS)


class UsageError(Exception):
    """A problem found before anything runs: exit 2 with one line."""


class RunError(Exception):
    """A failure of the demo's own work (download, missing phase output): exit 1."""


class Interrupted(Exception):
    """Ctrl-C / SIGTERM while a child ran (it was stopped too): exit 128 + the signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# ---------------------------------------------------------------------------------------------
# Options


def str2bool(value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("1", "true", "t", "yes", "y", "on"):
        return True
    if v in ("0", "false", "f", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not a boolean (true/false)")


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be >= 1")
    return n


def non_negative_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be >= 0")
    return n


def positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not x > 0 or math.isinf(x):
        raise argparse.ArgumentTypeError(f"{value!r} must be > 0")
    return x


def data_type(value: str) -> str:
    """fp32 / bf16, with the package's precision aliases (bfloat16, float32, ...)."""
    v = value.strip().lower()
    try:
        from models.common import precisions  # noqa: PLC0415

        v = precisions.ALIASES.get(v, v)
    except ImportError:  # pragma: no cover
        pass
    if v not in DATA_TYPES:
        raise argparse.ArgumentTypeError(f"invalid choice {value!r} (choose from "
                                         f"{', '.join(DATA_TYPES)})")
    return v


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (main prints it)
        raise UsageError(message)


BOOL = {"type": str2bool, "nargs": "?", "const": True, "metavar": "BOOL"}


def build_parser() -> Parser:
    p = Parser(
        prog="demo_bert",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Habana's BERT demo: builds and runs run_classifier.py (MRPC), run_squad.py\n"
                    "(SQuAD) or run_pretraining.py (BooksWiki phases 1+2, overfit) of this\n"
                    "package with Habana's defaults; -v runs them on several workers through\n"
                    "models/common/launch.py (mpirun). Exit status: the training's; 2 usage\n"
                    "error; 1 a failed download; 130 Ctrl-C.",
        epilog="examples:\n"
               "  ./demo_bert finetuning -d bf16 -m base -t mrpc -b 32 -s 128 -v\n"
               "  ./demo_bert finetuning -d bf16 -m large -t squad -b 24 -s 384 -v\n"
               "  ./demo_bert pretraining -d bf16 -m large -b 64 8 -v\n"
               "  $PYTHON demo_bert.py --command pretraining --model_variant large "
               "--data_type bf16 --test_set bookswiki --dataset_path DIR --epochs 1 "
               "--no_steps_accumulation 1 --iters 50,50 --profile 30,31\n"
               "  MULTI_HLS_IPS=10.0.0.1,10.0.0.2 ./demo_bert finetuning -d bf16 -m large -t mrpc "
               "-b 64 -s 128 -v\n\n"
               "Values of -b/-s/-i/-w/--global_batch_size: one value, or two for the pretraining "
               "phases (\"64 8\" or \"64,8\").\nThe opening log lists every setting and the "
               "environment variables that override them\n(TF_BF16_CONVERSION, MULTI_HLS_IPS, "
               f"NUM_WORKERS_PER_HLS, {PRETRAINED_URL_ENV}, HABANA_*, ...).")
    p.add_argument("command_word", nargs="?", choices=COMMANDS, metavar="{pretraining,finetuning}",
                   help="the command, as -c")
    p.add_argument("-c", "--command", choices=COMMANDS, metavar="<command>",
                   help="pretraining or finetuning (also as the first word)")
    p.add_argument("-d", "--data_type", "--dtype", type=data_type, metavar="<data_type>",
                   help="fp32 or bf16 (bf16: TF_BF16_CONVERSION=--bf16_config_path)")
    p.add_argument("-m", "--model_variant", choices=tuple(VARIANTS), metavar="<model_variant>",
                   help=f"{', '.join(VARIANTS)}: google's pre-trained model "
                        f"({', '.join(f'{k}={v[0]}' for k, v in VARIANTS.items())})")
    p.add_argument("-t", "--test_set", "--test-set", metavar="<test_set>",
                   help="finetuning: mrpc, squad; pretraining: bookswiki (default), overfit")
    p.add_argument("-o", "--output_dir", "--output-dir", metavar="<dir>",
                   default=DEFAULT_OUTPUT_DIR, help="output folder (default: %(default)s; "
                   "pretraining: phase_1/ and phase_2/ in it)")
    p.add_argument("-v", "--use_horovod", type=positive_int, nargs="?", const=0,
                   metavar="<num_workers_per_hls>",
                   help="synchronous data-parallel training under mpirun with N workers per "
                        "server (bare -v: $NUM_WORKERS_PER_HLS or 8); servers from "
                        "$MULTI_HLS_IPS")
    p.add_argument("-e", "--epochs", type=positive_float, metavar="<val>",
                   help="fine-tuning epochs (default 3 mrpc, 2 squad); not used by pretraining "
                        "(steps: -i)")
    p.add_argument("-b", "--batch_size", nargs="+", metavar="<val>",
                   help="batch per worker (default bf16/fp32: 64/32 mrpc, 24/10 squad, 64,8/32,8 "
                        "bookswiki, 32 overfit)")
    p.add_argument("-s", "--max_seq_length", nargs="+", metavar="<val>",
                   help="tokens per sequence (default 128 mrpc, 384 squad, 128,512 bookswiki, "
                        "128 overfit)")
    p.add_argument("-i", "--iters", nargs="+", metavar="<val>",
                   help="training steps: pretraining per phase (default 7038,1564 bookswiki "
                        "(Habana's 782 at phase 1's global batch), 200 overfit); fine-tuning: "
                        "--num_train_steps (overrides -e)")
    p.add_argument("-w", "--warmup", nargs="+", metavar="<val>",
                   help="warmup steps per phase (default 2000,200 bookswiki, 10 overfit; never "
                        "more than the phase's steps); fine-tuning: --num_warmup_steps")
    p.add_argument("--global_batch_size", nargs="+", metavar="<val>",
                   help="bookswiki global batch per phase, sets the accumulation steps (default "
                        "65536,32768)")
    p.add_argument("--no_steps_accumulation", type=non_negative_int, default=0, metavar="N",
                   help="bookswiki: N >= 1 sets --num_accumulation_steps=N (1: no accumulation, "
                        "Habana's LR 7.5e-4,5e-4); 0 (default): from the global batch size")
    p.add_argument("-fpo", "--fast_perf_only", "--fast-perf-only", type=non_negative_int,
                   nargs="?", const=1, default=0, metavar="0|1",
                   help="1: bookswiki global batch 1600,200 for performance measurements")
    p.add_argument("--learning_rate", nargs="+", metavar="<val>",
                   help="learning rate (default 2e-5 fine-tuning; pretraining: Habana's rule, "
                        "per phase)")
    p.add_argument("--max_predictions_per_seq", nargs="+", metavar="<val>",
                   help="pretraining masked tokens per sequence (default 20 at 128, 80 at 512, "
                        "else 15%%)")
    p.add_argument("--save_ckpt_steps", type=positive_int, default=100, metavar="<val>",
                   help="pretraining checkpoint interval (default: %(default)s)")
    p.add_argument("--dataset_path", default=DEFAULT_DATASET_PATH, metavar="<dataset_path>",
                   help="mrpc: the MRPC folder (downloaded when missing); squad: the folder of "
                        "train-v1.1.json, dev-v1.1.json; bookswiki: the tfrecord/ folder holding "
                        "seq_len_128/ and seq_len_512/; overfit: its TFRecords "
                        "(default: %(default)s)")
    p.add_argument("--init_checkpoint_path", default="", metavar="<path>",
                   help="fine-tuning: checkpoint instead of the model's bert_model.ckpt; "
                        "bookswiki: phase 1's --init_checkpoint (default: none, from scratch) "
                        "and phase 2's with --resume_p2; overfit: folder with "
                        "<variant>/model.ckpt-0, or a checkpoint")
    p.add_argument("--checkpoint_folder", "--bert-config-dir", "--bert_config_dir",
                   dest="model_dir", metavar="<dir>",
                   help="pre-trained model folder (bert_config.json, vocab.txt, bert_model.ckpt) "
                        "instead of <package>/<model name> (that one is downloaded from "
                        f"${PRETRAINED_URL_ENV} or google's bucket when missing)")
    p.add_argument("--bf16_config_path", metavar="<file>",
                   default=os.path.join(HERE, "bf16_config", "bert.json"),
                   help="bf16 recipe for -d bf16 (default: %(default)s)")
    p.add_argument("--kubernetes_run", default=False, **BOOL,
                   help="demo_bert itself runs in every worker (started by mpirun / the MPI "
                        "Operator): no launcher, -v only adds --horovod; phase 1 or 2 per run "
                        "(--run_phase2); nothing is downloaded for several workers")
    p.add_argument("--run_phase2", default=False, **BOOL,
                   help="with --kubernetes_run -v: run pretraining phase 2 only (phase 1 is "
                        "done); without it such a run does phase 1 only. Other runs do both")
    p.add_argument("--resume_p1", default=False, **BOOL,
                   help="phase 1 --resume=True (continue from its newest checkpoint)")
    p.add_argument("--resume_p2", default=False, **BOOL,
                   help="phase 2 --resume=True, from --init_checkpoint_path when given")
    p.add_argument("--enable_scoped_allocator", default=False, **BOOL,
                   help="--enable_scoped_allocator of the scripts (default: %(default)s)")
    p.add_argument("--horovod_hierarchical_allreduce", default=False, **BOOL,
                   help="set HOROVOD_HIERARCHICAL_ALLREDUCE=1 (multi-server over host NICs)")
    p.add_argument("--deterministic_run", default=None, **BOOL,
                   help="bit-reproducible run (scripts' --deterministic_run)")
    p.add_argument("--deterministic_seed", type=int, metavar="N",
                   help="seed (scripts' --deterministic_seed)")
    p.add_argument("--profile", metavar="START,STOP",
                   help="profiler trace of steps START..STOP (scripts' --profile)")
    p.add_argument("--iterations_per_loop", type=positive_int, metavar="N",
                   help="scripts' --iterations_per_loop")
    p.add_argument("--device", choices=("auto", "hpu", "cpu"),
                   help="scripts' --device (default: theirs, auto)")
    p.add_argument("--model", choices=("bert",), help="the model name: bert (ignored)")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                   help="print the settings, environment and command lines; run nothing")
    return p


def _values(opt: str, raw: Optional[List[str]], kind, most: int,
            where: str = "") -> Optional[List]:
    """-b 64 8 / -b 64,8 -> [64, 8]; at most `most` values."""
    if raw is None:
        return None
    parts = [x for item in raw for x in item.split(",") if x != ""]
    if not parts:
        raise UsageError(f"{opt}: needs a value")
    if len(parts) > most:
        raise UsageError(f"{opt}: {len(parts)} values ({' '.join(raw)}); at most {most} "
                         + ("(one per pretraining phase)" if most == 2 else f"for {where}"))
    out = []
    for x in parts:
        try:
            out.append(kind(x))
        except argparse.ArgumentTypeError as err:
            raise UsageError(f"{opt}: {err}") from None
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = build_parser()
    argv = list(argv)
    if argv and argv[0] == "help":
        argv[0] = "--help"
    # The command word (seed 004: `./demo_bert finetuning ...`) may stand anywhere, also
    # after a bare -v; no option value is ever one of these words.
    words = [i for i, tok in enumerate(argv) if tok in COMMANDS
             and (i == 0 or argv[i - 1] not in ("-c", "--command"))]
    command_words = [argv[i] for i in words]
    argv = [tok for i, tok in enumerate(argv) if i not in words]
    args = p.parse_args(argv)
    named = ([args.command] if args.command else []) + command_words
    if len(set(named)) > 1:
        raise UsageError(f"two commands: {' and '.join(sorted(set(named)))}")
    args.command = named[0] if named else None
    missing = [o for o, v in (("-c/--command (or pretraining/finetuning first)", args.command),
                              ("-d/--data_type", args.data_type),
                              ("-m/--model_variant", args.model_variant)) if not v]
    if missing:
        raise UsageError(f"the following arguments are required: {', '.join(missing)}")
    args.test_set_given = args.test_set is not None
    if args.test_set is None:
        if args.command == "finetuning":
            raise UsageError("finetuning needs -t mrpc or -t squad")
        args.test_set = "bookswiki"
    if args.test_set not in TEST_SETS[args.command]:
        other = "pretraining" if args.command == "finetuning" else "finetuning"
        hint = (f" ({args.test_set} is a {other} test set)"
                if args.test_set in TEST_SETS[other] else "")
        raise UsageError(f"-t {args.test_set}: not a {args.command} test set{hint}; choose from "
                         f"{', '.join(TEST_SETS[args.command])}")
    two = 2 if args.test_set == "bookswiki" else 1
    where = f"{args.command} -t {args.test_set}"
    args.batch_size = _values("-b/--batch_size", args.batch_size, positive_int, two, where)
    args.max_seq_length = _values("-s/--max_seq_length", args.max_seq_length, positive_int,
                                  two, where)
    args.iters = _values("-i/--iters", args.iters, positive_int, two, where)
    args.warmup = _values("-w/--warmup", args.warmup, non_negative_int, two, where)
    args.global_batch_size = _values("--global_batch_size", args.global_batch_size,
                                     positive_int, 2)
    args.learning_rate = _values("--learning_rate", args.learning_rate, positive_float, two, where)
    args.max_predictions_per_seq = _values("--max_predictions_per_seq",
                                           args.max_predictions_per_seq, positive_int, two, where)
    if args.command == "finetuning":
        for opt, val in (("--global_batch_size", args.global_batch_size),
                         ("--max_predictions_per_seq", args.max_predictions_per_seq)):
            if val is not None:
                raise UsageError(f"{opt} is a pretraining option")
        if args.no_steps_accumulation:
            raise UsageError("--no_steps_accumulation is a bookswiki pretraining option")
    if args.test_set != "bookswiki" and args.global_batch_size is not None:
        raise UsageError("--global_batch_size is a bookswiki option")
    if args.profile is not None:
        try:
            a, b = (int(x) for x in args.profile.split(","))
        except ValueError:
            raise UsageError(f"--profile {args.profile}: expected START,STOP (two step "
                             "numbers, e.g. 30,31)") from None
        if a < 0 or b < a:
            raise UsageError(f"--profile {args.profile}: need 0 <= START <= STOP")
    return args


# ---------------------------------------------------------------------------------------------
# Plan


@dataclass
class Step:
    """One process demo_bert starts."""
    name: str
    argv: List[str]
    env_set: Dict[str, str] = field(default_factory=dict)
    env_unset: List[str] = field(default_factory=list)
    cwd: str = HERE
    expect: Optional[str] = None  # a file the step must leave (phase 1's checkpoint)
    when_missing: Optional[str] = None  # a download: only when this path is missing

    def shell(self) -> str:
        parts = [f"cd {shlex.quote(self.cwd)} &&"]
        if self.env_unset:
            parts.append("env " + " ".join(f"-u {shlex.quote(n)}" for n in self.env_unset))
        parts += [f"{n}={shlex.quote(v)}" for n, v in self.env_set.items()]
        parts += [shlex.quote(a) for a in self.argv]
        return mask_credentials(" ".join(parts))


@dataclass
class Plan:
    args: argparse.Namespace
    settings: List[Tuple[str, str, str]]  # (option, value, source)
    notes: List[str]
    downloads: List[Step]
    steps: List[Step]
    env_set: Dict[str, str]
    env_unset: List[str]
    checks: List[Tuple[str, str]]  # (path, message) that must exist before the steps run


def _python(environ) -> str:
    return environ.get("PYTHON") or sys.executable or "python3"


def _script(name: str) -> str:
    """This folder's Habana-path script in a package; the real script in the checkout."""
    thin = os.path.join(HERE, name)
    if os.path.isfile(os.path.join(HERE, "models", "bert_large", "tensorflow", name)):
        return thin
    real = os.path.join(ROOT, "models", "bert_large", "tensorflow", name)
    return real if os.path.isfile(real) else thin


def _abs(path: str, cwd: str) -> str:
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))


def _hosts(environ) -> List[Tuple[str, Optional[int]]]:
    raw = environ.get("MULTI_HLS_IPS", "")
    out = []
    for item in raw.replace(" ", ",").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, slots = item.partition(":")
        if sep:
            try:
                out.append((host, positive_int(slots)))
            except argparse.ArgumentTypeError:
                raise UsageError(f"MULTI_HLS_IPS={raw}: {item!r}: slots must be a number "
                                 ">= 1") from None
        else:
            out.append((host, None))
    return out


def _mpi_world_size(environ) -> int:
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        if environ.get(name, "").isdigit():
            return int(environ[name])
    return 1


def _predictions(seq: int) -> int:
    return {128: 20, 512: 80}.get(seq, max(1, math.floor(0.15 * seq)))


def _fmt(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(float(x))


def _bool(b: bool) -> str:
    return "True" if b else "False"


def make_plan(argv: Sequence[str], environ=None, cwd: Optional[str] = None) -> Plan:
    environ = dict(os.environ if environ is None else environ)
    cwd = cwd or os.getcwd()
    a = parse_args(argv)
    notes: List[str] = []
    settings: List[Tuple[str, str, str]] = []
    defaults = build_parser()
    given = {act.dest for act in defaults._actions
             if getattr(a, act.dest, None) != act.default}  # options set on the command line
    given.discard("test_set")
    given |= {"test_set"} if a.test_set_given else set()

    def setting(opt: str, value, source: str = "default"):
        settings.append((opt, "" if value is None else str(value), source))

    k8s = bool(a.kubernetes_run)
    in_mpi = _mpi_world_size(environ) > 1 or "OMPI_COMM_WORLD_SIZE" in environ
    if in_mpi and not k8s:
        raise UsageError("demo_bert runs inside mpirun here (OMPI_COMM_WORLD_SIZE is set): "
                         "start it without mpirun and use -v, or pass --kubernetes_run")

    # --- workers
    hosts = _hosts(environ)
    scaleout = a.use_horovod is not None
    per_server = a.use_horovod or 0
    per_server_source = "-v"
    if scaleout and per_server == 0:
        env_n = environ.get("NUM_WORKERS_PER_HLS")
        if env_n:
            try:
                per_server = positive_int(env_n)
            except argparse.ArgumentTypeError:
                raise UsageError(f"NUM_WORKERS_PER_HLS={env_n}: must be a number >= 1") from None
            per_server_source = "$NUM_WORKERS_PER_HLS"
        else:
            per_server, per_server_source = DEFAULT_WORKERS_PER_SERVER, "default for bare -v"
    host_list: List[str] = []
    if not scaleout:
        total = 1
        if hosts:
            notes.append(f"warning: without -v, MULTI_HLS_IPS={environ['MULTI_HLS_IPS']} has no "
                         "effect (one process on this machine)")
    elif k8s:
        total = _mpi_world_size(environ) if in_mpi else per_server * max(1, len(hosts))
    else:
        if hosts:
            host_list = [f"{h}:{n or per_server}" for h, n in hosts]
            total = sum(n or per_server for _, n in hosts)
        else:
            total = per_server
        if total < 2:
            raise UsageError(f"-v {per_server} on one server is a single worker; drop -v for "
                             "one process, or give -v N with N >= 2")
    launcher = scaleout and not k8s

    setting("--command", a.command, "option")
    setting("--data_type", a.data_type, "option")
    setting("--model_variant", a.model_variant, "option")
    setting("--test_set", a.test_set, "option" if "test_set" in given else "default")
    setting("--use_horovod", f"{per_server} per server x {max(1, len(hosts)) if launcher else 1}"
            f" server(s) = {total} workers" if scaleout else "off (one process)",
            per_server_source if scaleout else "default")
    if host_list:
        setting("hosts", ",".join(host_list), "$MULTI_HLS_IPS")
    setting("--kubernetes_run", k8s, "option" if "kubernetes_run" in given else "default")

    # --- model folder
    name, google_url, flatten = VARIANTS[a.model_variant]
    model_dir = _abs(a.model_dir, cwd) if a.model_dir else os.path.join(HERE, name)
    setting("model folder", model_dir, "--checkpoint_folder" if a.model_dir else "default")
    url_base = environ.get(PRETRAINED_URL_ENV) or google_url
    if not url_base.endswith("/"):
        url_base += "/"
    downloads: List[Step] = []
    checks: List[Tuple[str, str]] = []
    py = _python(environ)
    if not os.path.isdir(model_dir):
        if a.model_dir:
            raise UsageError(f"--checkpoint_folder {a.model_dir}: no such folder")
        if k8s and scaleout:
            raise UsageError(f"model folder {model_dir} is missing; with --kubernetes_run -v "
                             "download it first to a place every worker reads (Habana's K8s "
                             "instructions); demo_bert does not download from several workers")
        downloads.append(Step("download pretrained model",
                              [py, os.path.join(HERE, "download", "download_pretrained_model.py"),
                               url_base, name, _bool(flatten)], cwd=HERE,
                              when_missing=model_dir))
        if hosts and launcher:
            notes.append("warning: the model is downloaded on this server only; with "
                         "MULTI_HLS_IPS every server needs it at the same path")
    needed = ["bert_config.json"]
    if a.command == "finetuning" or a.test_set == "overfit":
        needed.append("vocab.txt")
    if a.command == "finetuning" and not a.init_checkpoint_path:
        needed.append("bert_model.ckpt.index")
    for f in needed:
        checks.append((os.path.join(model_dir, f), f"model folder {model_dir} has no {f}"))
    bert_config = os.path.join(model_dir, "bert_config.json")
    vocab = os.path.join(model_dir, "vocab.txt")

    # --- environment of the training
    env_set: Dict[str, str] = {}
    env_unset: List[str] = []
    if a.data_type == "bf16":
        if "bf16_config_path" in given or not environ.get(BF16_ENV):
            recipe = _abs(a.bf16_config_path, cwd)
            if environ.get(BF16_ENV) != recipe:
                env_set[BF16_ENV] = recipe
            checks.append((recipe, f"--bf16_config_path {recipe}: no such file"))
            setting(BF16_ENV, recipe, "--bf16_config_path" if "bf16_config_path" in given
                    else "default (-d bf16)")
        else:
            setting(BF16_ENV, environ[BF16_ENV], "$TF_BF16_CONVERSION")
    else:
        if BF16_ENV in environ:
            env_unset.append(BF16_ENV)
            notes.append(f"-d fp32: {BF16_ENV}={environ[BF16_ENV]} is removed for the training")
        setting(BF16_ENV, "(unset)", "-d fp32")
    pythonpath = environ.get("PYTHONPATH", "")
    if ROOT not in pythonpath.split(os.pathsep):
        env_set["PYTHONPATH"] = ROOT + (os.pathsep + pythonpath if pythonpath else "")
    if a.horovod_hierarchical_allreduce and environ.get("HOROVOD_HIERARCHICAL_ALLREDUCE") != "1":
        env_set["HOROVOD_HIERARCHICAL_ALLREDUCE"] = "1"
    if a.command == "finetuning":
        key = ("mrpc", None) if a.test_set == "mrpc" else (
            "squad", "large" if a.model_variant == "large" else "base", a.data_type)
        if not environ.get("HABANA_INITIAL_WORKSPACE_SIZE_MB"):
            env_set["HABANA_INITIAL_WORKSPACE_SIZE_MB"] = WORKSPACE_MB[key]

    # --- common script flags
    out = _abs(a.output_dir, cwd)
    setting("--output_dir", out, "option" if a.output_dir != DEFAULT_OUTPUT_DIR else "default")
    ds_given = a.dataset_path != DEFAULT_DATASET_PATH
    ds = _abs(a.dataset_path, cwd)
    extra = _extra(a)
    for opt in ("--device", "--deterministic_run", "--deterministic_seed", "--profile",
                "--iterations_per_loop"):
        val = getattr(a, opt[2:])
        setting(opt, "(scripts' default)" if val is None else val,
                "option" if val is not None else "default")

    steps: List[Step] = []

    def wrap(script_argv: List[str]) -> List[str]:
        """The launcher around the script for -v; the script alone otherwise."""
        if not launcher:
            return script_argv
        cmd = [py, os.path.join(ROOT, "models", "common", "launch.py"),
               "--mpi-num-processes", str(total)]
        if host_list:
            cmd += ["--hosts", ",".join(host_list)]
        cmd += ["--tag-output", "--merge-stderr-to-stdout",
                "--output-filename", os.path.join(out, "demo_bert_log"),
                "--map-by-socket-pe", environ.get("MPI_MAP_BY_SOCKET_PE") or "auto", "--"]
        if host_list:  # remote ranks: what the launcher does not forward itself
            fwd = {n: env_set.get(n, environ.get(n)) for n in REMOTE_ENV
                   if env_set.get(n, environ.get(n))}
            if fwd:
                cmd += ["env"] + [f"{n}={v}" for n, v in fwd.items()]
        return cmd + script_argv

    if a.command == "finetuning":
        epochs0, b_bf16, b_fp32, seq0 = FT_DEFAULTS[a.test_set]
        epochs = a.epochs or epochs0
        batch = a.batch_size[0] if a.batch_size else (b_bf16 if a.data_type == "bf16" else b_fp32)
        seq = a.max_seq_length[0] if a.max_seq_length else seq0
        lr = a.learning_rate[0] if a.learning_rate else DEFAULT_FT_LEARNING_RATE
        init = _abs(a.init_checkpoint_path, cwd) if a.init_checkpoint_path else \
            os.path.join(model_dir, "bert_model.ckpt")
        setting("--epochs", _fmt(epochs), "option" if a.epochs else "default")
        setting("--batch_size", batch, "option" if a.batch_size else f"default ({a.data_type})")
        setting("--max_seq_length", seq, "option" if a.max_seq_length else "default")
        setting("--iters", a.iters[0] if a.iters else "(from --epochs)",
                "option" if a.iters else "default")
        setting("--learning_rate", lr, "option" if a.learning_rate else "default")
        setting("--init_checkpoint", init, "--init_checkpoint_path" if a.init_checkpoint_path
                else "default")
        if a.init_checkpoint_path:
            checks.append((init if os.path.isdir(init) else init + ".index",
                           f"--init_checkpoint_path {a.init_checkpoint_path}: no checkpoint "
                           f"{init}"))
        common = [f"--vocab_file={vocab}", f"--bert_config_file={bert_config}",
                  f"--init_checkpoint={init}"]
        if a.test_set == "mrpc":
            data_dir = ds
            if os.path.isfile(os.path.join(ds, "MRPC", "train.tsv")) and not \
                    os.path.isfile(os.path.join(ds, "train.tsv")):
                data_dir = os.path.join(ds, "MRPC")
            have = os.path.isfile(os.path.join(data_dir, "train.tsv"))
            if not have:
                if os.path.isdir(ds) and os.listdir(ds):
                    raise UsageError(f"--dataset_path {a.dataset_path}: {ds} holds no train.tsv "
                                     "(nor MRPC/train.tsv); point it at the MRPC folder")
                if k8s and scaleout:
                    raise UsageError(f"MRPC dataset {ds} is missing; with --kubernetes_run -v "
                                     "download it first (download/download_dataset.py "
                                     "--dataset_path DIR)")
                downloads.append(Step("download MRPC dataset",
                                      [py, os.path.join(HERE, "download", "download_dataset.py"),
                                       "--dataset_path", ds], cwd=HERE, when_missing=ds))
                if hosts and launcher:
                    notes.append("warning: MRPC is downloaded on this server only; with "
                                 "MULTI_HLS_IPS every server needs it at the same path")
            setting("--dataset_path", ds, "option" if ds_given else "default")
            script = [py, _script("run_classifier.py"), "--task_name=MRPC", "--do_train=true",
                      "--do_eval=true", f"--data_dir={data_dir}"] + common
        else:
            for f in ("train-v1.1.json", "dev-v1.1.json"):
                checks.append((os.path.join(ds, f), f"--dataset_path {a.dataset_path}: {ds} has "
                               f"no {f} (the SQuAD v1.1 folder)"))
            setting("--dataset_path", ds, "option" if ds_given else "default")
            script = [py, _script("run_squad.py")] + common + [
                "--do_train=True", f"--train_file={os.path.join(ds, 'train-v1.1.json')}",
                "--do_predict=True", f"--predict_file={os.path.join(ds, 'dev-v1.1.json')}",
                "--do_eval=True"]
        script += [f"--max_seq_length={seq}", f"--train_batch_size={batch}",
                   f"--learning_rate={lr}", f"--num_train_epochs={_fmt(epochs)}"]
        if a.test_set == "squad":
            script.append(f"--doc_stride={DOC_STRIDE}")
        script.append(f"--output_dir={out}")
        if a.iters:
            script.append(f"--num_train_steps={a.iters[0]}")
        if a.warmup:
            script.append(f"--num_warmup_steps={a.warmup[0]}")
        if scaleout:
            script.append("--use_horovod=true")
        script.append(f"--enable_scoped_allocator={_bool(a.enable_scoped_allocator)}")
        steps.append(Step(f"finetuning {a.test_set}", wrap(script + extra)))
    else:
        steps += _pretraining_steps(a, environ, cwd, given, setting, notes, checks, wrap, py,
                                    scaleout, k8s, total, out, ds, ds_given, bert_config)

    for name_, value in (("--enable_scoped_allocator", a.enable_scoped_allocator),):
        setting(name_, value, "option" if name_[2:] in given else "default")
    for st in downloads + steps:  # printed as part of each command line
        st.env_set, st.env_unset = dict(env_set), list(env_unset)
    return Plan(a, settings, notes, downloads, steps, env_set, env_unset, checks)


def _pretraining_steps(a, environ, cwd, given, setting, notes, checks, wrap, py, scaleout, k8s,
                       total, out, ds, ds_given, bert_config) -> List[Step]:
    setting("--dataset_path", ds, "option" if ds_given else "default")
    if a.epochs:
        notes.append(f"--epochs {a.epochs}: pretraining runs -i steps; epochs are not used")
    flags_prec = ["--noamp", "--nouse_xla"]
    steps: List[Step] = []
    if a.test_set == "overfit":
        p_steps = a.iters[0] if a.iters else OVERFIT["steps"]
        batch = a.batch_size[0] if a.batch_size else OVERFIT["batch"]
        seq = a.max_seq_length[0] if a.max_seq_length else OVERFIT["seq"]
        warm = a.warmup[0] if a.warmup else min(OVERFIT["warmup"], p_steps)
        if warm > p_steps:
            raise UsageError(f"-w {warm}: more warmup steps than -i {p_steps}")
        preds = a.max_predictions_per_seq[0] if a.max_predictions_per_seq else _predictions(seq)
        lr = a.learning_rate[0] if a.learning_rate else OVERFIT["base_lr"] * batch * total / 65536
        init = ""
        if a.init_checkpoint_path:
            p = _abs(a.init_checkpoint_path, cwd)
            habana = os.path.join(p, a.model_variant, "model.ckpt-0")
            init = habana if os.path.isfile(habana + ".index") else p
        for opt, val, src in (("--iters", p_steps, a.iters), ("--batch_size", batch, a.batch_size),
                              ("--max_seq_length", seq, a.max_seq_length),
                              ("--warmup", warm, a.warmup),
                              ("--max_predictions_per_seq", preds, a.max_predictions_per_seq),
                              ("--learning_rate", lr, a.learning_rate),
                              ("--init_checkpoint", init or "(none: from scratch)",
                               a.init_checkpoint_path)):
            setting(opt, val, "option" if src else "default")
        checks.append((ds, f"--dataset_path {a.dataset_path}: {ds} is missing (overfit "
                       "TFRecords from create_pretraining_data.py)"))
        script = [py, _script("run_pretraining.py"), f"--input_files_dir={ds}",
                  f"--eval_files_dir={ds}", f"--output_dir={out}", "--do_train=True",
                  "--do_eval=True", f"--bert_config_file={bert_config}"]
        if init:
            script.append(f"--init_checkpoint={init}")
        script += [f"--train_batch_size={batch}", f"--eval_batch_size={EVAL_BATCH_SIZE}",
                   f"--max_seq_length={seq}", f"--max_predictions_per_seq={preds}",
                   f"--num_train_steps={p_steps}", "--num_accumulation_steps=1",
                   f"--num_warmup_steps={warm}",
                   f"--dllog_path={os.path.join(out, 'bert_dllog.json')}",
                   f"--learning_rate={lr}"]
        if scaleout:
            script.append("--horovod")
        script += flags_prec + [f"--enable_scoped_allocator={_bool(a.enable_scoped_allocator)}"]
        extra = _extra(a)
        steps.append(Step("pretraining overfit", wrap(script + extra)))
        return steps

    # bookswiki
    def two(vals, default):
        if not vals:
            return list(default), False
        return ([vals[0], default[1]] if len(vals) == 1 else list(vals)), True

    batch, b_given = two(a.batch_size, BW_BATCH[a.data_type])
    seqs, _ = two(a.max_seq_length, BW_SEQ)
    if a.max_predictions_per_seq:
        preds, _ = two(a.max_predictions_per_seq, [_predictions(s) for s in seqs])
    else:
        preds = [_predictions(s) for s in seqs]
    if a.fast_perf_only and not a.no_steps_accumulation and not a.global_batch_size:
        gbs_default = BW_FAST_PERF_GLOBAL_BATCH
    else:
        gbs_default = BW_GLOBAL_BATCH
    gbs, _ = two(a.global_batch_size, gbs_default)
    if a.no_steps_accumulation:
        acc = [a.no_steps_accumulation] * 2
        lr_default = list(BW_NO_ACCUMULATION_LR)
        acc_src = "--no_steps_accumulation"
    else:
        acc = []
        for k in range(2):
            n = gbs[k] // (total * batch[k])
            if n < 1:
                raise UsageError(f"phase {k + 1}: global batch {gbs[k]} is smaller than one step "
                                 f"of {total} worker(s) x batch {batch[k]}; lower -b or raise "
                                 "--global_batch_size")
            acc.append(n)
        lr_default = [BW_BASE_LR[k] * 8 / total * gbs[k] / BW_GLOBAL_BATCH[k] for k in range(2)]
        acc_src = "from the global batch size"
    lrs = list(lr_default)
    if a.learning_rate:
        lrs = [a.learning_rate[0], a.learning_rate[-1]] if len(a.learning_rate) == 2 else \
            [a.learning_rate[0], lr_default[1]]
    p_steps = [a.iters[0] if a.iters else BW_STEPS[0], None]
    if a.iters and len(a.iters) == 2:
        p_steps[1] = a.iters[1]
        p2_src = "option"
    else:
        # Habana: 782 phase-2 steps are counted at phase 1's global batch
        p2 = BW_STEPS[1]
        if not a.fast_perf_only:
            p2 = int(p2 * (batch[0] * acc[0]) / (batch[1] * acc[1]))
        p_steps[1] = max(1, p2)
        p2_src = "default (Habana's 782 at phase 1's global batch)"
    warm = []
    for k in range(2):
        if a.warmup and len(a.warmup) > k:
            if a.warmup[k] > p_steps[k]:
                raise UsageError(f"-w: phase {k + 1} warmup {a.warmup[k]} is more than its "
                                 f"{p_steps[k]} steps")
            warm.append(a.warmup[k])
        else:
            warm.append(min(BW_WARMUP[k], p_steps[k]))
            if BW_WARMUP[k] > p_steps[k]:
                notes.append(f"phase {k + 1}: warmup {BW_WARMUP[k]} cut to its {p_steps[k]} steps")
    setting("--iters", f"{p_steps[0]},{p_steps[1]}",
            "option" if a.iters else "default")
    if a.iters and len(a.iters) == 1:
        setting("phase 2 steps", p_steps[1], p2_src)
    setting("--warmup", f"{warm[0]},{warm[1]}", "option" if a.warmup else "default")
    setting("--batch_size", f"{batch[0]},{batch[1]}",
            "option" if b_given else f"default ({a.data_type})")
    setting("--max_seq_length", f"{seqs[0]},{seqs[1]}", "option" if a.max_seq_length else "default")
    setting("--max_predictions_per_seq", f"{preds[0]},{preds[1]}",
            "option" if a.max_predictions_per_seq else "default")
    setting("--global_batch_size", f"{gbs[0]},{gbs[1]}",
            "option" if a.global_batch_size else ("-fpo" if gbs_default != BW_GLOBAL_BATCH
                                                   else "default"))
    setting("num_accumulation_steps", f"{acc[0]},{acc[1]}", acc_src)
    setting("--learning_rate", f"{lrs[0]:.6g},{lrs[1]:.6g}",
            "option" if a.learning_rate else (
                "Habana's no-accumulation LR" if a.no_steps_accumulation
                else "Habana's rule: base x 8/workers x gbs/base"))
    setting("--save_ckpt_steps", a.save_ckpt_steps, "option" if "save_ckpt_steps" in given
            else "default")

    p1_init = _abs(a.init_checkpoint_path, cwd) if a.init_checkpoint_path else ""
    setting("phase 1 --init_checkpoint", p1_init or "(none: from scratch)",
            "--init_checkpoint_path" if p1_init else "default")
    phase_out = [os.path.join(out, "phase_1"), os.path.join(out, "phase_2")]
    p1_ckpt = os.path.join(phase_out[0], f"model.ckpt-{p_steps[0]}")
    p2_init = p1_init if (a.resume_p2 and p1_init) else p1_ckpt

    run = [True, True]
    if k8s and scaleout:  # Habana: one phase per Kubernetes job
        run = [not a.run_phase2, bool(a.run_phase2)]
        notes.append("--kubernetes_run -v: phase " + ("2" if a.run_phase2 else "1") +
                     " only (" + ("--run_phase2" if a.run_phase2 else "add --run_phase2 for "
                                  "phase 2 after it") + ")")
    elif a.run_phase2:
        notes.append("--run_phase2: phase 2 runs after phase 1 anyway (the option splits the "
                     "phases only with --kubernetes_run -v)")

    extra = _extra(a)
    for k in range(2):
        if not run[k]:
            continue
        data = os.path.join(ds, f"seq_len_{seqs[k]}", "books_wiki_en_corpus")
        checks.append((os.path.join(data, "training"),
                       f"--dataset_path {a.dataset_path}: no {os.path.join(data, 'training')} "
                       "(point it at the tfrecord/ folder holding seq_len_*/books_wiki_en_corpus)"))
        init = p1_init if k == 0 else p2_init
        if k == 1 and not run[0]:
            checks.append((init if os.path.isdir(init) else init + ".index",
                           f"phase 2 needs phase 1's checkpoint {init}"))
        script = [py, _script("run_pretraining.py"),
                  f"--input_files_dir={os.path.join(data, 'training')}"]
        if init:
            script.append(f"--init_checkpoint={init}")
        script += [f"--eval_files_dir={os.path.join(data, 'test')}",
                   f"--output_dir={phase_out[k]}", f"--bert_config_file={bert_config}",
                   "--do_train=True", "--do_eval=False",
                   f"--train_batch_size={batch[k]}", f"--eval_batch_size={EVAL_BATCH_SIZE}",
                   f"--max_seq_length={seqs[k]}", f"--max_predictions_per_seq={preds[k]}",
                   f"--num_train_steps={p_steps[k]}", f"--num_accumulation_steps={acc[k]}",
                   f"--num_warmup_steps={warm[k]}",
                   f"--save_checkpoints_steps={a.save_ckpt_steps}",
                   f"--learning_rate={lrs[k]:.10g}"]
        if scaleout:
            script.append("--horovod")
        script += flags_prec + ["--allreduce_post_accumulation=True",
                                f"--dllog_path={os.path.join(phase_out[k], 'bert_dllog.json')}",
                                f"--enable_scoped_allocator={_bool(a.enable_scoped_allocator)}",
                                f"--resume={_bool(a.resume_p1 if k == 0 else a.resume_p2)}"]
        steps.append(Step(f"pretraining phase {k + 1}", wrap(script + extra),
                          expect=(p1_ckpt + ".index") if k == 0 and run[1] else None))
    return steps


def _extra(a) -> List[str]:
    extra: List[str] = []
    if a.device:
        extra.append(f"--device={a.device}")
    if a.deterministic_run is not None:
        extra.append(f"--deterministic_run={_bool(a.deterministic_run)}")
    if a.deterministic_seed is not None:
        extra.append(f"--deterministic_seed={a.deterministic_seed}")
    if a.profile:
        extra.append(f"--profile={a.profile}")
    if a.iterations_per_loop:
        extra.append(f"--iterations_per_loop={a.iterations_per_loop}")
    return extra


# ---------------------------------------------------------------------------------------------
# Log and run


def log(msg: str = "") -> None:
    print(mask_credentials(msg), flush=True)


def opening_log(plan: Plan, environ) -> None:
    a = plan.args
    name = VARIANTS[a.model_variant][0]
    log(f"demo_bert: BERT {a.model_variant} ({name}) {a.command} {a.test_set}, {a.data_type}")
    log("demo_bert: settings (value [where it comes from]):")
    width = max(len(o) for o, _, _ in plan.settings)
    for opt, value, source in plan.settings:
        log(f"  {opt:<{width}}  {value}  [{source}]")
    log("demo_bert: environment variables (set them to override; current values):")
    for var, what in ENV_DOC:
        value = environ.get(var)
        log(f"  {var}={'(unset)' if value is None else value}  # {what}")
    if plan.env_set or plan.env_unset:
        log("demo_bert: the training's environment adds:")
        for n, v in plan.env_set.items():
            log(f"  {n}={v}")
        for n in plan.env_unset:
            log(f"  unset {n}")
    for note in plan.notes:
        log(f"demo_bert: {note}")


def _child_env(plan: Plan, environ) -> Dict[str, str]:
    env = dict(environ)
    for n in plan.env_unset:
        env.pop(n, None)
    env.update(plan.env_set)
    return env


def run_child(step: Step, env: Dict[str, str]) -> int:
    """Run one process and wait for it. Ctrl-C / SIGTERM reach it too (forwarded; after
    STOP_GRACE seconds it is terminated, then killed) and then end demo_bert (130). Returns
    its exit status (128+N when a signal N ended it)."""
    sys.stdout.flush()
    try:
        # its own process group: a signal reaches the training (and mpirun's children) once,
        # from here, also when only demo_bert was signalled
        proc = subprocess.Popen(step.argv, cwd=step.cwd, env=env, start_new_session=True)
    except OSError as err:
        raise RunError(f"cannot start {step.argv[0]}: {err}") from None
    forwarded: List[int] = []

    def forward(signum, _frame):
        forwarded.append(signum)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signum)
            except OSError:
                pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    def group(sig):
        return lambda: os.killpg(proc.pid, sig) if proc.poll() is None else None

    escalation = [group(signal.SIGTERM), group(signal.SIGKILL)]
    try:
        while True:
            try:
                rc = proc.wait(timeout=STOP_GRACE if forwarded else None)
                break
            except subprocess.TimeoutExpired:
                # still running STOP_GRACE s after the signal: SIGTERM, then SIGKILL
                if escalation:
                    escalation.pop(0)()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if forwarded:
        raise Interrupted(forwarded[0])
    return 128 - rc if rc < 0 else rc


def execute(plan: Plan, environ, dry_run: bool) -> int:
    env = _child_env(plan, environ)
    downloaded = tuple(d.when_missing for d in plan.downloads)

    def under_download(path: str) -> bool:
        return any(path == d or path.startswith(d + os.sep) for d in downloaded)

    # Everything not to be downloaded must be there before any work starts (exit 2).
    missing = [(path, msg) for path, msg in plan.checks if not os.path.exists(path)]
    for path, msg in missing:
        if under_download(path):
            continue
        if not dry_run:
            raise UsageError(msg)
        log(f"demo_bert: dry run: {msg}")
    for d in plan.downloads:
        if dry_run:
            log(f"demo_bert: {d.when_missing} is missing: would download it with")
            log(f"+ {d.shell()}")
            continue
        log(f"demo_bert: {d.name}: {d.when_missing} is missing")
        if not os.path.isfile(d.argv[1]):
            raise RunError(f"cannot {d.name}: {d.argv[1]} is missing from the package")
        log(f"+ {d.shell()}")
        rc = run_child(d, env)
        if rc != 0:
            raise RunError(f"{d.name} failed (exit {rc})")
        if not os.path.exists(d.when_missing):
            raise RunError(f"{d.name} ended without creating {d.when_missing}")
    if not dry_run:
        for path, msg in plan.checks:
            if under_download(path) and not os.path.exists(path):
                raise RunError(f"after the download: {msg}")
        if plan.args.command == "finetuning" and plan.args.test_set == "mrpc":
            _fix_mrpc_dir(plan)
    for step in plan.steps:
        log(f"demo_bert: {'would run' if dry_run else 'running'} {step.name}:")
        log(f"+ {step.shell()}")
        if dry_run:
            continue
        rc = run_child(step, env)
        if rc != 0:
            log(f"demo_bert: {step.name} ended with exit status {rc}")
            return rc
        if step.expect and not os.path.exists(step.expect):
            raise RunError(f"{step.name} ended without {step.expect[:-len('.index')]}, which "
                           "phase 2 starts from")
    return 0


def _fix_mrpc_dir(plan: Plan) -> None:
    """After a download: the MRPC files may sit in DIR/MRPC/ (GLUE's layout)."""
    step = plan.steps[0]
    i = next(i for i, x in enumerate(step.argv) if x.startswith("--data_dir="))
    data_dir = step.argv[i].split("=", 1)[1]
    if os.path.isfile(os.path.join(data_dir, "train.tsv")):
        return
    sub = os.path.join(data_dir, "MRPC")
    if os.path.isfile(os.path.join(sub, "train.tsv")):
        step.argv[i] = f"--data_dir={sub}"
        return
    raise RunError(f"after the download: {data_dir} holds no train.tsv (nor MRPC/train.tsv)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = dict(os.environ)
    try:
        plan = make_plan(argv, environ)
        opening_log(plan, environ)
        return execute(plan, environ, plan.args.dry_run)
    except UsageError as err:
        print(f"error: {mask_credentials(str(err))}", file=sys.stderr)
        return USAGE_EXIT
    except RunError as err:
        print(f"error: {mask_credentials(str(err))}", file=sys.stderr)
        return FAIL_EXIT
    except Interrupted as err:
        print(f"demo_bert: interrupted ({signal.Signals(err.signum).name}); the training was "
              "stopped", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:
        print("demo_bert: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
