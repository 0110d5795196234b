"""Command-line flags of the TensorFlow BERT scripts: parsing (google-research / absl
spellings), the checks every script runs before any work, and the entry-point wrapper that
turns a bad flag into one line and exit status 2.

Imports neither TensorFlow, Keras nor numpy (a test checks it): a misspelt flag or a bad value
fails in a fraction of a second, before the slow imports. The scripts import those after
their flags are validated.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import os
import re
import struct
import sys
from typing import Any, Callable, Sequence

from models.bert_large.config import BertConfig
from models.common import precisions, runtime_env

log = logging.getLogger("bert")

USAGE_EXIT = 2    # a bad flag, or a file a flag names that is missing / of another layout
FAILURE_EXIT = 1  # the work failed (a checkpoint that does not fit the model, ...)

# Flags of the original Intel / Habana / NVIDIA scripts that mean nothing here. Accepted so
# that existing command lines keep working; a warning says they are ignored.
IGNORED_SEED_FLAGS = frozenset({
    "experimental_gelu", "optimized_softmax", "use_tpu", "tpu_name", "tpu_zone",
    "gcp_project", "master", "num_tpu_cores", "use_fp16", "inter_op_parallelism_threads",
    "intra_op_parallelism_threads", "benchmark_only", "verbose_logging",
    "save_checkpoints_steps", "allreduce_post_accumulation",
    "train_option", "mode", "framework", "model_name", "resume",
})
TF_PRECISIONS = precisions.supported("tensorflow")


class FlagError(ValueError):
    """A bad command-line flag; the message names it and says what to do."""


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------
_TRUE = {"true", "1", "yes", "y", "t", "on"}
_FALSE = {"false", "0", "no", "n", "f", "off"}


def str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected True/False (or 1/0), got {value!r}")


def precision_flag(value: str) -> str:
    """``--precision``: the canonical name of any spelling of a precision TensorFlow runs."""
    try:
        return precisions.resolve(value, TF_PRECISIONS, "--precision")
    except precisions.PrecisionError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


PRECISION_HELP = (f"{precisions.human_list(TF_PRECISIONS)} (bf16: bfloat16 compute, float32 "
                  "weights; aliases such as bfloat16 are accepted)")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 with usage; keep that but name the fix
        self.print_usage(sys.stderr)
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message}\n")


def new_parser(description: str) -> argparse.ArgumentParser:
    """A parser whose errors exit 2 naming the fix; no abbreviated flag names."""
    return _Parser(description=description, allow_abbrev=False)


def add_bool(parser: argparse.ArgumentParser, name: str, default: bool, help: str,
             aliases: Sequence[str] = ()) -> None:
    parser.add_argument(f"--{name}", *[f"--{a}" for a in aliases], dest=name, type=str2bool,
                        nargs="?", const=True, default=default, metavar="BOOL", help=help)


def add_collective_timeout_flag(group) -> None:
    """``--collective_timeout`` (default: ``$COLLECTIVE_TIMEOUT``, else no limit)."""
    group.add_argument(runtime_env.COLLECTIVE_TIMEOUT_FLAG, type=float, default=None,
                       metavar="SECONDS",
                       help="several ranks: stop the job, naming the rank(s) that did not "
                            "answer, when one collective (gradient allreduce, broadcast, "
                            "gather) waits longer than this (default: "
                            f"${runtime_env.COLLECTIVE_TIMEOUT}; unset or 0: wait for ever)")


def check_collective_timeout(flags: argparse.Namespace) -> float | None:
    """Seconds a collective may wait (``runtime_env.collective_timeout``: the flag, else
    ``$COLLECTIVE_TIMEOUT``), None for no limit; a bad value is a FlagError naming it."""
    try:
        return runtime_env.collective_timeout(getattr(flags, "collective_timeout", None))
    except ValueError as err:
        raise FlagError(str(err)) from None


COLLECTIVES_ENV = "MODELPKG_COLLECTIVES"
COLLECTIVES_ENGINES = ("auto", "horovod", "mpi4py")


def check_collectives_engine(environ: Any = None) -> str:
    """The collectives engine ``$MODELPKG_COLLECTIVES`` asks for (``distributed.py``):
    ``auto`` when unset (Horovod when importable, else mpi4py), ``horovod`` or ``mpi4py``
    (tests use it to run both); anything else is a FlagError naming the variable."""
    raw = (os.environ if environ is None else environ).get(COLLECTIVES_ENV, "").strip()
    if not raw:
        return "auto"
    if raw.lower() not in COLLECTIVES_ENGINES:
        raise FlagError(f"{COLLECTIVES_ENV}={raw!r} is not a collectives engine: use "
                        f"{', '.join(COLLECTIVES_ENGINES)}")
    return raw.lower()


def add_thread_flags(group) -> None:
    """``--num_intra_threads`` / ``--num_inter_threads`` (default: the launcher's variables)."""
    group.add_argument(runtime_env.INTRA_FLAG, type=int, default=None,
                       help=f"TF intra-op threads (default: ${runtime_env.NUM_INTRA_THREADS})")
    group.add_argument(runtime_env.INTER_FLAG, type=int, default=None,
                       help=f"TF inter-op threads (default: ${runtime_env.NUM_INTER_THREADS})")


def add_seed_flags(group, habana_spelling: bool = True) -> None:
    """``--seed`` (alias ``--deterministic_seed``) and ``--deterministic_run``."""
    group.add_argument("--seed", "--deterministic_seed", dest="seed", type=int, default=12345,
                       help="seed of weight init, dropout and data order")
    add_bool(group, "deterministic_run", False,
             "bit-reproducible run: TensorFlow's deterministic ops "
             "(tf.config.experimental.enable_op_determinism) with --deterministic_seed")


def add_gaudi_flags(group, horovod_help: str) -> None:
    """The flags of Habana's scripts every TF BERT script takes: device, bf16 recipe,
    Horovod switch, profiler, graph options. Checked by :func:`check_gaudi_flags`."""
    from models.bert_large.tensorflow import device  # noqa: PLC0415 - standard library only

    group.add_argument("--device", choices=device.CHOICES, default="auto",
                       help="hpu: a Habana Gaudi through Habana's TensorFlow bridge; cpu; "
                            "auto (default): the Gaudi when /sys/class/accel shows one and "
                            "the bridge is installed, else the CPU")
    group.add_argument("--bf16_config_path", metavar="FILE",
                       help="bf16 recipe (bf16_config/bert.json): selects bf16 like "
                            f"${bf16_config_env()}; on a Gaudi the bridge applies it")
    add_bool(group, "horovod", False, horovod_help, aliases=("use_horovod",))
    group.add_argument("--profile", metavar="START,STOP",
                       help="write a TensorFlow profiler trace of training steps START..STOP "
                            "to <output_dir>/plugins/profile")
    group.add_argument("--dllog_path", help="dllogger JSON lines (default: "
                       "<output_dir>/bert_dllog.json); its folder is created")
    add_bool(group, "enable_scoped_allocator", None,
             "TensorFlow's scoped-allocator graph optimisation on/off (default: TF's choice)")
    add_bool(group, "amp", False, "NVIDIA's float16 automatic mixed precision: not "
             "supported, only --noamp / --amp=False is accepted (bf16: TF_BF16_CONVERSION)")
    add_bool(group, "use_xla", False, "Habana's/NVIDIA's XLA switch: not supported, only "
             "--nouse_xla / --use_xla=False is accepted (--xla compiles the train step)")
    group.add_argument("--iterations_per_loop", type=int, default=1,
                       help="steps per host loop in Habana's/TPU estimators; these scripts "
                            "run one step per call, which gives the same training")


XLA_HELP = ("compile the train step with XLA (tf.function jit_compile): faster on CPU, first "
            "step slower; single process only")


def add_xla_flag(group) -> None:
    """``--xla``: the training scripts build their train step with ``jit_compile=True``.
    Checked by :func:`check_gaudi_flags` (device) and :func:`check_xla_ranks` (ranks)."""
    add_bool(group, "xla", False, XLA_HELP)


def _refuse_xla_on_hpu(flags: argparse.Namespace, device_name: str) -> None:
    if getattr(flags, "xla", False):
        raise FlagError(f"--xla=True: the device is {device_name}, a Gaudi HPU, where Habana's "
                        "bridge compiles the graph itself; drop --xla (or use --device=cpu)")


def check_xla_ranks(flags: argparse.Namespace, world_size: int, sync: bool) -> None:
    """``--xla`` with several ranks averaging gradients is refused: the allreduce inside the
    train step is a Python call (mpi4py / Horovod) that XLA cannot compile."""
    if getattr(flags, "xla", False) and sync and world_size > 1:
        raise FlagError(f"--xla=True with {world_size} ranks synchronising gradients: the "
                        "gradient allreduce is a Python call that XLA cannot compile; drop "
                        "--xla or run a single process")


def bf16_config_env() -> str:
    from models.bert_large.tensorflow import bf16_config  # noqa: PLC0415

    return bf16_config.ENV


def check_gaudi_flags(flags: argparse.Namespace) -> None:
    """Check the flags :func:`add_gaudi_flags` adds and resolve, in place: ``flags.precision``
    (``--precision`` > ``--bf16_config_path`` > ``TF_BF16_CONVERSION`` > fp32),
    ``flags.bf16_recipe`` (the recipe file or None), ``flags.precision_reason``,
    ``flags.profile_steps`` ((start, stop) or None) and ``flags.device_choice``."""
    from models.bert_large.tensorflow import bf16_config, device, profiling  # noqa: PLC0415

    if flags.amp:
        raise FlagError("--amp=True (NVIDIA's float16 automatic mixed precision) is not "
                        "supported; use --noamp, and TF_BF16_CONVERSION=bf16_config/bert.json "
                        "or --precision=bf16 for bfloat16")
    if flags.use_xla:
        raise FlagError("--use_xla=True: Habana's/NVIDIA's XLA switch is not supported by "
                        "these scripts; use --nouse_xla (--xla=True XLA-compiles the train step "
                        "on CPU, single process)")
    if flags.iterations_per_loop < 1:
        raise FlagError(f"--iterations_per_loop={flags.iterations_per_loop} must be >= 1")
    try:
        flags.profile_steps = profiling.parse(flags.profile) if flags.profile else None
    except ValueError as err:
        raise FlagError(str(err)) from None
    try:
        flags.precision, flags.bf16_recipe, flags.precision_reason = bf16_config.resolve(
            flags.precision, flags.bf16_config_path)
    except bf16_config.Bf16ConfigError as err:
        raise FlagError(str(err)) from None
    if flags.device == "hpu":
        _refuse_xla_on_hpu(flags, "--device=hpu")
    try:
        flags.device_choice = device.select(flags.device)
    except device.DeviceError as err:
        raise FlagError(str(err)) from None
    if flags.device_choice.is_hpu:
        _refuse_xla_on_hpu(flags, f"--device={flags.device} -> hpu")


OPTIMIZED_SOFTMAX_REFUSAL = (
    "--optimized_softmax=False asks for Intel's unfused softmax, which this implementation "
    "does not have: attention always runs the fused tf.nn.softmax kernel in float32 "
    "(what optimized_softmax=True selects); drop the flag or set it to True")


def add_model_switches(group) -> None:
    """Intel's model switches, honoured: ``--experimental_gelu`` (tanh GELU) and
    ``--optimized_softmax`` (the fused softmax, the only one here; False is refused)."""
    add_bool(group, "experimental_gelu", False,
             "True: the tanh approximation of GELU (hidden_act gelu_new) instead of the erf "
             "GELU of bert_config.json")
    add_bool(group, "optimized_softmax", None,
             "True: the fused softmax kernel, which attention always uses here; False is "
             "refused (no unfused softmax in this implementation)")


def apply_model_switches(flags: argparse.Namespace, config: BertConfig) -> BertConfig:
    """``config`` with ``--experimental_gelu`` applied; ``--optimized_softmax=False`` is a
    FlagError saying why."""
    if getattr(flags, "optimized_softmax", None) is False:
        raise FlagError(OPTIMIZED_SOFTMAX_REFUSAL)
    if getattr(flags, "experimental_gelu", False) and config.hidden_act.lower() == "gelu":
        log.info("--experimental_gelu=True: tanh-approximated GELU (hidden_act gelu_new)")
        return dataclasses.replace(config, hidden_act="gelu_new")
    return config


def common_parser(description: str) -> argparse.ArgumentParser:
    """Flags both fine-tuning scripts take (google-research names)."""
    p = new_parser(description)
    g = p.add_argument_group("model")
    g.add_argument("--bert_config_file", "--config_file", dest="bert_config_file",
                   help="bert_config.json of the pre-trained model")
    g.add_argument("--vocab_file", help="vocab.txt of the pre-trained model")
    g.add_argument("--init_checkpoint",
                   help="google-research checkpoint prefix (…/bert_model.ckpt) or one of ours")
    add_bool(g, "do_lower_case", True, "lower-case input (True for uncased models)")
    g.add_argument("--precision", type=precision_flag, default=None,
                   help=f"{PRECISION_HELP}; default: bf16 when TF_BF16_CONVERSION or "
                        "--bf16_config_path is set, else fp32")
    add_model_switches(g)

    g = p.add_argument_group("training")
    g.add_argument("--output_dir", help="where checkpoints, predictions and logs go")
    add_bool(g, "do_train", False, "fine-tune")
    g.add_argument("--max_seq_length", type=int, default=128)
    g.add_argument("--train_batch_size", type=int, default=32, help="per rank")
    g.add_argument("--learning_rate", type=float, default=5e-5)
    g.add_argument("--num_train_epochs", type=float, default=3.0,
                   help="may be fractional; at least one step runs")
    g.add_argument("--num_train_steps", type=int, default=None,
                   help="optimizer steps (overrides --num_train_epochs)")
    g.add_argument("--warmup_proportion", type=float, default=0.1,
                   help="fraction of the steps with linear learning-rate warmup")
    g.add_argument("--num_warmup_steps", "--warmup_steps", dest="num_warmup_steps", type=int,
                   default=None, help="warmup steps (overrides --warmup_proportion)")
    g.add_argument("--optimizer", choices=("adamw", "lamb"), default="adamw")
    g.add_argument("--weight_decay_rate", type=float, default=0.01)
    g.add_argument("--log_steps", type=int, default=10,
                   help="log loss and examples/sec every N steps")
    add_seed_flags(g)

    g = p.add_argument_group("device, precision and Habana's flags")
    add_gaudi_flags(g, "under mpirun: synchronous data-parallel training of one model "
                       "(same as --mpi_workers_sync_gradients=True)")
    add_xla_flag(g)

    g = p.add_argument_group("multi-process (mpirun)")
    add_bool(g, "mpi_workers_sync_gradients", False,
             "True (or --use_horovod=True): average gradients across ranks every step "
             "(Horovod when importable, else mpi4py; $MODELPKG_COLLECTIVES=horovod|mpi4py "
             "forces one); False: independent ranks, best one reported at the end")
    add_bool(g, "checkpoint_all_ranks", False,
             "sync mode: every rank also saves its final weights in output_dir/rank_<r> "
             "(to check that ranks agree)")
    add_collective_timeout_flag(g)
    add_thread_flags(g)
    return p


def _normalise_argv(argv: Sequence[str], bool_flags: set[str]) -> list[str]:
    """absl habits argparse lacks: ``--no<flag>`` for bools and dashes in names."""
    out = []
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            name = name.replace("-", "_")
            if not eq and name.startswith("no") and name[2:] in bool_flags:
                out.append(f"--{name[2:]}=False")
                continue
            out.append(f"--{name}{eq}{value}")
        else:
            out.append(arg)
    return out


def parse_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
                ) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    bool_flags = {o[2:] for a in parser._actions if a.type is str2bool
                  for o in a.option_strings if o.startswith("--")}
    flags, unknown = parser.parse_known_args(_normalise_argv(argv, bool_flags))
    ignored, unexpected = [], []
    for arg in unknown:
        name = arg[2:].partition("=")[0] if arg.startswith("--") else ""
        if name.startswith("no") and name[2:] in IGNORED_SEED_FLAGS:
            name = name[2:]
        (ignored if name in IGNORED_SEED_FLAGS else unexpected).append(arg)
    if unexpected:
        # A misspelt flag would otherwise be dropped and its default used (absl, which the
        # seed scripts use, refuses unknown flags too).
        parser.error(_unknown_flags_message(parser, unexpected))
    flags.ignored_flags = ignored
    flags.unknown_flags = unexpected
    return flags


def _unknown_flags_message(parser: argparse.ArgumentParser, args: Sequence[str]) -> str:
    known = sorted({o[2:] for a in parser._actions for o in a.option_strings
                    if o.startswith("--")})
    parts = []
    for arg in args:
        name = arg[2:].partition("=")[0] if arg.startswith("--") else ""
        close = difflib.get_close_matches(name, known, n=1) if name else []
        parts.append(f"{arg} (did you mean --{close[0]}?)" if close else arg)
    return (f"unknown argument(s): {', '.join(parts)}; see --help for the flags "
            "(use --name=value)")


def warn_about_ignored(flags: argparse.Namespace) -> None:
    if flags.ignored_flags:
        log.warning("ignoring flags that have no effect in this implementation: %s",
                    " ".join(flags.ignored_flags))
    if flags.unknown_flags:
        log.warning("ignoring unknown arguments (check their spelling): %s",
                    " ".join(flags.unknown_flags))


# --------------------------------------------------------------------------------------------
# Validation (before any work)
# --------------------------------------------------------------------------------------------
def require_file(value: str | None, flag: str, what: str) -> None:
    if not value:
        raise FlagError(f"--{flag} is required: {what}")
    if not os.path.isfile(value):
        raise FlagError(f"--{flag}={value}: file not found ({what})")


def check_init_checkpoint(prefix: str | None, example: str) -> None:
    """``--init_checkpoint``, when given, names a checkpoint prefix (``prefix.index``), a
    folder or a file; ``example`` is the kind of prefix the message suggests. A prefix whose
    bundle is visibly truncated (see :func:`bundle_problem`) is refused here too."""
    if prefix and not (os.path.isfile(prefix + ".index") or os.path.isdir(prefix)
                       or os.path.isfile(prefix)):
        raise FlagError(f"--init_checkpoint={prefix}: no checkpoint there (expected "
                        f"{prefix}.index); pass the prefix, e.g. {example}")
    problem = bundle_problem(prefix) if prefix else None
    if problem:
        raise FlagError(f"--init_checkpoint={prefix}: the checkpoint is truncated or corrupt: "
                        f"{problem}")


# A TensorFlow checkpoint bundle: ``<prefix>.index`` is a LevelDB-style table that ends with a
# 48-byte footer whose last 8 bytes are this magic number; ``<prefix>.data-NNNNN-of-MMMMM``
# are its M data shards.
_TABLE_MAGIC = struct.pack("<Q", 0xDB4775248B80FB57)
_TABLE_FOOTER = 48
_SHARD_RE = re.compile(r"\.data-(\d+)-of-(\d+)$")


def bundle_problem(prefix: str) -> str | None:
    """What is visibly wrong with the checkpoint bundle at ``prefix`` (standard library, reads
    only the end of the ``.index``): an index cut short, data shards missing or empty. None
    when it looks complete, or when there is no ``prefix.index`` (other checks name that)."""
    index = prefix + ".index"
    if not os.path.isfile(index):
        return None
    try:
        size = os.path.getsize(index)
        with open(index, "rb") as f:
            f.seek(max(size - len(_TABLE_MAGIC), 0))
            tail = f.read()
    except OSError as err:
        return f"cannot read {index} ({err.strerror})"
    if size < _TABLE_FOOTER or tail != _TABLE_MAGIC:
        return (f"{index} is cut short or damaged ({size} bytes, no index table footer); copy "
                "the checkpoint again, or use an older one")
    folder, base = os.path.split(prefix)
    try:
        names = os.listdir(folder or ".")
    except OSError as err:
        return f"cannot list {folder or '.'} ({err.strerror})"
    shards: dict[int, str] = {}
    total = None
    for name in names:
        m = _SHARD_RE.search(name)
        if m and name[:m.start()] == base:
            shards[int(m.group(1))] = name
            total = int(m.group(2))
    if total is None:
        return f"no data file {base}.data-00000-of-NNNNN beside {index}"
    missing = [f"{base}.data-{i:05d}-of-{total:05d}" for i in range(total) if i not in shards]
    if missing:
        return f"data file(s) {', '.join(missing)} missing beside {index}"
    empty = [n for n in shards.values() if os.path.getsize(os.path.join(folder, n)) == 0]
    if empty:
        return f"data file(s) {', '.join(sorted(empty))} are empty"
    return None


def load_bert_config(path: str) -> BertConfig:
    """``--bert_config_file`` (already checked to exist) as a ``BertConfig``."""
    try:
        return BertConfig.from_json_file(path)
    except (ValueError, TypeError, KeyError) as err:
        raise FlagError(f"--bert_config_file={path}: {err}") from None


def check_max_seq_length(flags: argparse.Namespace, config: BertConfig) -> None:
    if flags.max_seq_length > config.max_position_embeddings:
        raise FlagError(f"--max_seq_length={flags.max_seq_length} is longer than the model's "
                        f"max_position_embeddings ({config.max_position_embeddings}) in "
                        f"{flags.bert_config_file}; lower --max_seq_length")


def check_thread_flags(flags: argparse.Namespace) -> tuple[int | None, int | None]:
    """The (intra, inter) thread counts from the flags or the launcher's variables
    (``models.common.runtime_env``); a bad value is a FlagError naming it."""
    try:
        return runtime_env.thread_settings(flags.num_intra_threads, flags.num_inter_threads)
    except runtime_env.ThreadSettingError as err:
        raise FlagError(str(err)) from None


def validate_common(flags: argparse.Namespace, needs_training_flags: bool) -> BertConfig:
    """Check the shared flags of the fine-tuning scripts; returns the loaded BertConfig."""
    require_file(flags.vocab_file, "vocab_file", "the vocab.txt of the pre-trained model")
    require_file(flags.bert_config_file, "bert_config_file",
                 "the bert_config.json of the pre-trained model")
    if not flags.output_dir:
        raise FlagError("--output_dir is required: the folder for checkpoints and results")
    check_init_checkpoint(flags.init_checkpoint, ".../bert_model.ckpt")
    _check_case_matches_checkpoint(flags.do_lower_case, flags.init_checkpoint)
    config = apply_model_switches(flags, load_bert_config(flags.bert_config_file))
    _check_vocab_fits_config(flags.vocab_file, flags.bert_config_file, config.vocab_size)
    check_vocab_tokens(flags.vocab_file, FINETUNE_SPECIAL_TOKENS)
    check_max_seq_length(flags, config)
    if flags.max_seq_length < 8:
        raise FlagError(f"--max_seq_length={flags.max_seq_length} is too short; use >= 8")
    if flags.log_steps < 1:
        raise FlagError(f"--log_steps={flags.log_steps} must be >= 1")
    check_thread_flags(flags)
    check_collective_timeout(flags)
    check_collectives_engine()
    check_gaudi_flags(flags)
    from models.common import dist_env  # noqa: PLC0415 - standard library only

    world = dist_env.from_environ().world_size  # the same rule as runtime.setup_runtime
    check_xla_ranks(flags, world, bool(flags.mpi_workers_sync_gradients or flags.horovod))
    if needs_training_flags:
        if flags.train_batch_size < 1:
            raise FlagError(f"--train_batch_size={flags.train_batch_size} must be >= 1")
        if flags.learning_rate <= 0:
            raise FlagError(f"--learning_rate={flags.learning_rate} must be > 0")
        if not flags.num_train_epochs > 0:
            raise FlagError(f"--num_train_epochs={flags.num_train_epochs} must be > 0")
        if not 0 <= flags.warmup_proportion <= 1:
            raise FlagError(f"--warmup_proportion={flags.warmup_proportion} must be in [0, 1]")
        if flags.num_train_steps is not None and flags.num_train_steps < 1:
            raise FlagError(f"--num_train_steps={flags.num_train_steps} must be >= 1")
        if flags.num_warmup_steps is not None and flags.num_warmup_steps < 0:
            raise FlagError(f"--num_warmup_steps={flags.num_warmup_steps} must be >= 0")
    return config


FINETUNE_SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[UNK]")
PRETRAINING_SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[MASK]", "[UNK]")


def check_vocab_tokens(vocab_file: str, needed: Sequence[str], flag: str = "vocab_file") -> None:
    """The special tokens the script writes into its sequences must be lines of the vocab
    (standard library; tokens are the stripped lines, as ``tokenization.load_vocab`` reads)."""
    try:
        with open(vocab_file, encoding="utf-8") as f:
            tokens = {line.strip() for line in f}
    except (OSError, UnicodeDecodeError) as err:
        raise FlagError(f"--{flag}={vocab_file}: cannot read it ({err})") from None
    missing = [t for t in needed if t not in tokens]
    if missing:
        raise FlagError(f"--{flag}={vocab_file} lacks the special token(s) {' '.join(missing)} "
                        f"(needed: {' '.join(needed)}); use the vocab.txt of a BERT model (one "
                        "wordpiece per line)")


def _check_vocab_fits_config(vocab_file: str, config_file: str, vocab_size: int) -> None:
    """A vocab.txt with more entries than the model's vocab_size (e.g. an uncased vocab with a
    cased model) yields token ids the embedding table lacks: fail here, not mid-training."""
    from models.bert_large.tensorflow import tokenization  # noqa: PLC0415 - imports tokenizers

    try:  # ids are line numbers; blank lines at the end give no token
        count = 1 + max((i for t, i in tokenization.load_vocab(vocab_file).items() if t),
                        default=-1)
    except (ValueError, UnicodeDecodeError) as err:
        raise FlagError(f"--vocab_file={vocab_file}: {err}") from None
    if count > vocab_size:
        raise FlagError(f"--vocab_file={vocab_file} has {count} entries but vocab_size in "
                        f"--bert_config_file={config_file} is {vocab_size}; use the vocab.txt "
                        "and bert_config.json of the same model")


def _check_case_matches_checkpoint(do_lower_case: bool, init_checkpoint: str | None) -> None:
    """google's published checkpoints say their casing in the folder name."""
    if not init_checkpoint:
        return
    folder = os.path.basename(os.path.dirname(os.path.abspath(init_checkpoint)))
    if folder.startswith(("uncased_L-", "wwm_uncased_L-", "multilingual_L-", "chinese_L-")):
        if not do_lower_case:
            raise FlagError(f"--do_lower_case=False but {folder} is an uncased model; "
                            "set --do_lower_case=True")
    elif folder.startswith(("cased_L-", "wwm_cased_L-", "multi_cased_L-")):
        if do_lower_case:
            raise FlagError(f"--do_lower_case=True but {folder} is a cased model; "
                            "set --do_lower_case=False")


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def run_main(main: Callable[[Sequence[str] | None], int]) -> None:
    """Entry point wrapper: flag errors print one line and exit 2; a checkpoint that does not
    fit the model (``CheckpointError``, which names the variable) one line and exit 1; no
    traceback for either."""
    try:
        sys.exit(main(None))
    except FlagError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(USAGE_EXIT)
    except ValueError as err:
        # Only loaded once a checkpoint was read, so no CheckpointError can exist before.
        ckpt = sys.modules.get("models.bert_large.tensorflow.checkpoint")
        if ckpt is None or not isinstance(err, ckpt.CheckpointError):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(FAILURE_EXIT)


def flag_values(flags: argparse.Namespace) -> dict[str, Any]:
    """The flags as a dict for logs, without the bookkeeping entries ``parse_flags`` adds."""
    values = {k: v for k, v in sorted(vars(flags).items())
              if k not in ("ignored_flags", "unknown_flags", "device_choice")}
    if getattr(flags, "device_choice", None) is not None:
        values["device_used"] = flags.device_choice.kind
    if isinstance(values.get("profile_steps"), tuple):
        values["profile_steps"] = list(values["profile_steps"])
    return values
