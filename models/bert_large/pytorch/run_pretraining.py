"""BERT pretraining, phase 1 (seq 128) or phase 2 (seq 512), with PyTorch on CPUs or NVIDIA GPUs.

Single process::

    python models/bert_large/pytorch/run_pretraining.py --phase=1 \
        --bert_config_file=$CONFIG_FILE --input_dir=$DATASET_DIR --output_dir=$OUTPUT_DIR

Several processes (DDP over gloo, or oneCCL when its bindings import) through the launcher::

    MPI_NUM_PROCESSES=2 python models/common/launch.py -- python .../run_pretraining.py ...

``--device auto|cuda|cpu`` (``device.py``, the one seam; auto: CUDA when torch sees a GPU): on
CUDA the model and batches live on this rank's GPU, bf16 is CUDA autocast, and several ranks
are DDP over NCCL (``launch.py --device cuda`` starts one rank per GPU). ``--torch_compile``
compiles the training module with ``torch.compile``.

Phase 2 starts from phase 1's ``OUTPUT_DIR/model_save`` (``--init_checkpoint``). Rank and world
size come from the MPI environment (``models.common.dist_env``); ``MASTER_ADDR`` and
``MASTER_PORT`` default to 127.0.0.1:29500 (one host). Rank 0 prints throughput lines, writes
``OUTPUT_DIR/model_save`` (config.json + model.safetensors + training_state.pt) atomically
every ``--save_steps`` and at the end, and ``OUTPUT_DIR/summary.json``. A run whose
``OUTPUT_DIR/model_save`` already holds this phase's training state resumes from it
(``checkpoint.py``).

``--collective_timeout SECONDS`` (or ``$COLLECTIVE_TIMEOUT``; default: no limit) bounds how long
a rank waits in one collective: a frozen or stuck rank then stops the job with one line naming
it (``collectives.py``) instead of hanging it.

Exit status: 0 done; 2 a usage error (a bad flag or variable, a folder a flag names that does
not fit, a bert_config.json with a wrong type; checked before any work), one ``error: ...`` line
on stderr; 1 a failure during the work (a model or data that cannot be read, a token id beyond
the vocabulary, a diverging loss, ranks that disagree, a collective that timed out).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the package root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from models.bert_large import packing  # noqa: E402
from models.bert_large.pytorch import checkpoint, collectives  # noqa: E402
from models.bert_large.pytorch import device as devices  # noqa: E402
from models.bert_large.pytorch.data import PHASE_GLOBS, PretrainingBatches, find_files, record_shape  # noqa: E402
from models.bert_large.pytorch.modeling import BertConfig, BertForPreTraining, num_parameters  # noqa: E402
from models.bert_large.pytorch.optimization import create_optimizer  # noqa: E402
from models.common import dist_env, precisions, runtime_env  # noqa: E402

PRECISIONS = precisions.supported("pytorch")
USAGE_EXIT = 2
FAILURE_EXIT = 1


class UsageError(Exception):
    """A bad flag or environment variable, found before any work: ``error: ...``, exit 2."""


class RunError(Exception):
    """A failure during the work (data, diverging loss): ``error: ...``, exit 1."""


# ----------------------------------------------------------------------------- flags

def _precision(value: str) -> str:
    try:
        return precisions.resolve(value, PRECISIONS, "--precision")
    except precisions.PrecisionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv=None) -> argparse.Namespace:
    """The flags, validated (``UsageError``); argparse itself exits 2 on an unknown flag."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", type=int, choices=(1, 2), required=True,
                   help="1: seq_128 data, a new model from --bert_config_file; 2: seq_512 data, "
                        "starting from --init_checkpoint")
    p.add_argument("--input_dir", required=True, help="DATASET_DIR with seq_128/ and seq_512/")
    p.add_argument("--output_dir", required=True, help="OUTPUT_DIR; model_save/ is written here")
    p.add_argument("--bert_config_file", help="bert_config.json (phase 1)")
    p.add_argument("--init_checkpoint", help="a model_save folder to start from (phase 2)")
    p.add_argument("--precision", default="fp32", type=_precision,
                   help=f"{precisions.human_list(PRECISIONS)} (default fp32; aliases such as "
                        "bfloat16 accepted). bf16: bfloat16 autocast; bf32: fp32 with bfloat16 "
                        "matmul math; avx-fp32: fp32 with DNNL_MAX_CPU_ISA unset")
    p.add_argument("--train_batch_size", type=int, default=224,
                   help="sequences per process per optimizer step (split over accumulation steps)")
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--max_steps", type=int, default=7038, help="optimizer steps")
    p.add_argument("--max_seq_length", type=int, help="default: the length of the records")
    p.add_argument("--max_predictions_per_seq", type=int, help="default: as in the records")
    p.add_argument("--learning_rate", type=float, default=6e-3)
    p.add_argument("--warmup_proportion", type=float, default=0.2843)
    p.add_argument("--poly_power", type=float, default=0.5)
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--lamb_epsilon", type=float, default=1e-6)
    p.add_argument("--max_grad_norm", type=float, default=1.0, help="global-norm clip; 0 disables")
    p.add_argument("--log_freq", type=int, default=10)
    p.add_argument("--save_steps", type=int, default=500, help="0: save only at the end")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="auto", metavar="{auto,cuda,cpu}",
                   help="where to train (DEVICE in the quickstarts): auto (default) takes this "
                        "rank's GPU when torch sees one (not with IPEX or avx-fp32), else the CPU")
    p.add_argument("--dist_backend", default="auto", choices=("auto", "gloo", "ccl", "nccl"),
                   help="auto: nccl on CUDA; on the CPU ccl when oneccl_bindings_for_pytorch "
                        "imports, else gloo")
    p.add_argument("--torch_compile", action="store_true",
                   help="run the training module through torch.compile (inductor)")
    p.add_argument(runtime_env.COLLECTIVE_TIMEOUT_FLAG, metavar="SECONDS", default=None,
                   help=f"give up a collective (allreduce, barrier) after SECONDS and stop the job "
                        f"naming the rank(s) that did not answer (default: "
                        f"${runtime_env.COLLECTIVE_TIMEOUT}, else no limit; 0: no limit)")
    p.add_argument("--no_ipex", action="store_true", help="do not use intel_extension_for_pytorch")
    p.add_argument("--packed_data", choices=("auto", "true", "false"), default="auto",
                   help="packed rows from pack_pretraining_data_tfrec.py (docs/packing.md); auto: "
                        "packed when the packing metadata (<folder>_metadata.json) is beside the "
                        "data folder; false forces unpacked; true requires the metadata")
    args = p.parse_args(argv)
    validate_args(args)
    return args


def validate_args(args: argparse.Namespace) -> None:
    """Check flags up front so a run never fails after minutes of work (``UsageError``)."""
    for name in ("train_batch_size", "gradient_accumulation_steps", "max_steps", "max_seq_length",
                 "max_predictions_per_seq", "log_freq"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name}={getattr(args, name)} must be a positive integer")
    if args.train_batch_size % args.gradient_accumulation_steps:
        raise UsageError(f"--train_batch_size={args.train_batch_size} must be a multiple of "
                         f"--gradient_accumulation_steps={args.gradient_accumulation_steps}")
    try:
        args.device = devices.check_choice(args.device)
    except devices.DeviceError as exc:
        raise UsageError(str(exc)) from None
    if not 0 <= args.warmup_proportion <= 1:
        raise UsageError(f"--warmup_proportion={args.warmup_proportion} must be within [0, 1]")
    if not Path(args.input_dir).is_dir():
        raise UsageError(f"--input_dir={args.input_dir} is not a directory; point it to "
                         "DATASET_DIR")
    try:
        checkpoint.check_start(args.phase, Path(args.output_dir),
                               Path(args.init_checkpoint) if args.init_checkpoint else None,
                               bool(args.bert_config_file))
        runtime_env.thread_settings(omp_fallback=True)
        args.collective_timeout = runtime_env.collective_timeout(args.collective_timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.bert_config_file and not Path(args.bert_config_file).is_file():
        raise UsageError(f"--bert_config_file={args.bert_config_file} is not a file; point it to "
                         "bert_config.json")
    try:  # the data and the config are readable: fail now, not after loading a model
        record_shape(find_files(args.input_dir, PHASE_GLOBS[args.phase])[0])
        if args.bert_config_file and not args.init_checkpoint:
            BertConfig.from_json_file(args.bert_config_file)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None


# ----------------------------------------------------------------------------- set-up

def setup_threads() -> tuple[int | None, int | None]:
    """Thread pools from the launcher's variables (``models.common.runtime_env``: intra-op
    from NUM_INTRA_THREADS, else OMP_NUM_THREADS; inter-op from NUM_INTER_THREADS)."""
    intra, inter = runtime_env.thread_settings(omp_fallback=True)
    if intra:
        torch.set_num_threads(intra)
    if inter:
        with contextlib.suppress(RuntimeError):  # only settable before any parallel work
            torch.set_num_interop_threads(inter)
    return intra, inter


def import_ipex(disabled: bool):
    if disabled:
        return None
    try:
        import intel_extension_for_pytorch as ipex
    except Exception:  # noqa: BLE001 - missing or built for another torch: run without it
        return None
    return ipex


def setup_precision(precision: str, ipex, device: devices.Device | None = None) -> None:
    if device is not None and device.is_cuda:  # TF32 for bf32 (device.py)
        devices.configure_matmul(device, precision)
        return
    if precision == "bf32":  # fp32 tensors, bf16 math inside oneDNN matmuls
        if ipex is not None:
            ipex.set_fp32_math_mode(mode=ipex.FP32MathMode.BF32, device="cpu")
        elif hasattr(torch.backends.mkldnn, "matmul"):
            torch.backends.mkldnn.matmul.fp32_precision = "bf16"
        else:
            torch.set_float32_matmul_precision("medium")


def setup_distributed(env: dist_env.DistEnv, backend: str, timeout_s: float | None = None,
                      monitor: collectives.CollectiveMonitor | None = None,
                      device: devices.Device | None = None) -> str | None:
    """The process group (None: one process). With ``timeout_s`` the ranks first meet at rank
    0's store (``collectives.join``), then every collective gives up after ``timeout_s``. The
    backend follows the device (``devices.ddp_backend``: NCCL on CUDA)."""
    if env.world_size == 1:
        return None
    kind = device.kind if device is not None else "cpu"
    ccl_importable = False
    if kind == "cpu" and backend in ("auto", "ccl"):
        try:
            import oneccl_bindings_for_pytorch  # noqa: F401 - registers the "ccl" backend

            ccl_importable = True
        except Exception as exc:  # noqa: BLE001 - missing, or built for another torch
            if backend == "ccl":
                raise UsageError(
                    f"--dist_backend=ccl needs oneccl_bindings_for_pytorch, which does not "
                    f"import ({type(exc).__name__}: {exc}); install the build matching torch "
                    f"{torch.__version__}, or use --dist_backend=gloo") from None
    try:
        backend = devices.ddp_backend(kind, backend, ccl_importable)
    except devices.DeviceError as exc:
        raise UsageError(str(exc)) from None
    extra = {"device_id": device.torch_device} if kind == "cuda" else {}
    if "MASTER_ADDR" not in os.environ and env.local_size < env.world_size:
        raise UsageError(f"{env.world_size} ranks over several hosts: set MASTER_ADDR to the "
                         "address of the host of rank 0 (the first host) and MASTER_PORT to a "
                         "free port on it")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    if timeout_s is None:
        dist.init_process_group(backend=backend, init_method="env://", rank=env.rank,
                                world_size=env.world_size, **extra)
        return backend
    host, port = os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]
    if not port.strip().isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"MASTER_PORT={port!r} is not a port number (1-65535)")
    try:
        store = collectives.open_store(env.rank, env.world_size, host, int(port), timeout_s)
        collectives.join(store, env.rank, env.world_size, timeout_s)
    except collectives.CollectiveError as exc:
        raise RunError(str(exc)) from None
    if monitor is not None:
        monitor.store, monitor.store_address = store, f"{host}:{port}"
        monitor.at("the set-up of the process group")
    dist.init_process_group(backend=backend, store=store, rank=env.rank, world_size=env.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s), **extra)
    return backend


@contextlib.contextmanager
def collective_errors(monitor: collectives.CollectiveMonitor | None):
    """In a multi-process run (``monitor`` set): a failed collective becomes a ``RunError``
    naming the rank(s) that did not answer; a rank that stops for another error tells the
    others why (``monitor.report``). A no-op for one process (``monitor`` None)."""
    try:
        yield
    except (UsageError, RunError, checkpoint.CheckpointError) as exc:
        if monitor is not None:
            monitor.report(f"stopped: error: {exc}")
        raise
    except Exception as exc:
        if monitor is not None and collectives.is_collective_failure(exc):
            raise RunError(monitor.diagnose(exc)) from None
        raise


@dataclasses.dataclass(frozen=True)
class Setup:
    """What ``setup`` decided: this process' rank, the DDP backend (None: one process),
    intel_extension_for_pytorch (None: not used), the output folder and the device."""

    env: dist_env.DistEnv
    backend: str | None
    ipex: object
    output_dir: Path
    monitor: collectives.CollectiveMonitor | None = None
    device: devices.Device = devices.Device("cpu", "default")

    def log(self, message: str) -> None:
        if self.env.is_primary:
            print(message, flush=True)

    def at(self, where: str) -> None:
        """What this rank does now, named if a collective fails (no communication)."""
        if self.monitor is not None:
            self.monitor.at(where)

    def collective_errors(self):
        return collective_errors(self.monitor if self.backend else None)

    def barrier(self, what: str = "a barrier") -> None:
        if self.backend:
            self.at(what)
            dist.barrier()

    def teardown(self) -> None:
        if self.backend:
            self.at("the final barrier")
            dist.barrier()
            dist.destroy_process_group()


def select_device(args: argparse.Namespace, env: dist_env.DistEnv, ipex) -> devices.Device:
    """``--device`` resolved for this rank (``device.select``); IPEX and avx-fp32 keep a run on
    the CPU. A device that cannot be had is a ``UsageError``."""
    cpu_only = None
    if ipex is not None:
        cpu_only = ("intel_extension_for_pytorch is in use, which runs on the CPU only; add "
                    "--no_ipex to train on the GPU, or use --device=cpu")
    elif args.precision == "avx-fp32":
        cpu_only = ("--precision=avx-fp32 is a CPU setting (oneDNN's instruction set); use fp32, "
                    "bf32 (TF32 matmuls) or bf16 on the GPU, or --device=cpu")
    try:
        device = devices.select(args.device, env.local_rank, cpu_only)
    except devices.DeviceError as exc:
        raise UsageError(str(exc)) from None
    if args.torch_compile and ipex is not None:
        raise UsageError("--torch_compile with intel_extension_for_pytorch (which optimises the "
                         "model itself) is not supported: add --no_ipex, or drop --torch_compile")
    return device


def setup(args: argparse.Namespace) -> Setup:
    """Threads, ipex, the device, ranks and precision; rank 0 creates OUTPUT_DIR and repairs
    an interrupted save before any rank looks at model_save."""
    if args.precision == "avx-fp32":  # also when started without the launcher; before oneDNN runs
        os.environ.pop("DNNL_MAX_CPU_ISA", None)
    env = dist_env.from_environ()
    setup_threads()
    ipex = import_ipex(args.no_ipex)
    device = select_device(args, env, ipex)
    devices.activate(device)  # before the process group: NCCL works on the current GPU
    monitor = (collectives.CollectiveMonitor(env.rank, env.world_size, args.collective_timeout)
               if env.world_size > 1 else None)
    with collective_errors(monitor):
        backend = setup_distributed(env, args.dist_backend, args.collective_timeout, monitor,
                                    device)
    setup_precision(args.precision, ipex, device)
    run = Setup(env=env, backend=backend, ipex=ipex, output_dir=Path(args.output_dir),
                monitor=monitor, device=device)
    run.log(devices.describe(device))
    with run.collective_errors():
        if env.is_primary:
            run.output_dir.mkdir(parents=True, exist_ok=True)
            checkpoint.recover_interrupted_save(run.output_dir)
        run.barrier("the start-up barrier")
    return run


# ----------------------------------------------------------------------------- model and data

def load_or_create_model(args: argparse.Namespace, run: Setup
                         ) -> tuple[BertForPreTraining, str, dict | None]:
    """(model, where it came from, training state to resume or None): this phase's own
    model_save (resume), else --init_checkpoint, else a new model from --bert_config_file."""
    torch.manual_seed(args.seed)
    own_save = run.output_dir / checkpoint.MODEL_SAVE
    if checkpoint.has_state(own_save, args.phase):
        return (checkpoint.load_model(own_save), f"resuming from {own_save}",
                checkpoint.load_state(own_save))
    if args.init_checkpoint:
        return (checkpoint.load_model(Path(args.init_checkpoint)),
                f"initialised from {args.init_checkpoint}", None)
    return (BertForPreTraining(BertConfig.from_json_file(args.bert_config_file)),
            f"new model from {args.bert_config_file}", None)


def open_data(args: argparse.Namespace, run: Setup, config: BertConfig, step: int):
    """(files, endless micro-batches of this rank's share, on this rank's device): sequence
    length and predictions default to the records'; a resumed run reshuffles with
    ``seed + step``."""
    files = find_files(args.input_dir, PHASE_GLOBS[args.phase])
    seq_len, max_pred = record_shape(files[0])
    mode = {"auto": None, "true": True, "false": False}[args.packed_data]
    try:
        args.packing = packing.packed_input(files[0], mode, "--packed_data")
    except packing.PackingMetadataError as exc:
        raise RunError(str(exc)) from None
    args.max_seq_length = args.max_seq_length or seq_len
    if args.packing is not None:
        # A packed row holds several sequences: all its masked-LM slots are read, and the
        # accumulation is divided by the sequences per row (Habana's rule).
        if args.max_predictions_per_seq and args.max_predictions_per_seq > max_pred:
            raise UsageError(f"--max_predictions_per_seq={args.max_predictions_per_seq} exceeds "
                             f"the {max_pred} masked LM slots of the packed rows in {files[0]}")
        args.max_predictions_per_seq = max_pred
        micro = args.train_batch_size // args.gradient_accumulation_steps
        acc = packing.packed_accumulation_steps(args.gradient_accumulation_steps, args.packing)
        run.log(f"packed data ({args.packing.path}): {args.packing.avg_seq_per_sample:.3f} "
                f"sequences per row, packing efficiency {100 * args.packing.packing_efficiency:.2f}%; "
                f"--gradient_accumulation_steps {args.gradient_accumulation_steps} -> {acc} "
                f"(divided by the sequences per row), {micro} rows per micro-batch")
        args.gradient_accumulation_steps, args.train_batch_size = acc, micro * acc
    args.max_predictions_per_seq = args.max_predictions_per_seq or max_pred
    if args.max_seq_length > config.max_position_embeddings:
        raise UsageError(f"sequence length {args.max_seq_length} exceeds the model's "
                         f"max_position_embeddings={config.max_position_embeddings}")
    micro = args.train_batch_size // args.gradient_accumulation_steps
    batches = PretrainingBatches(
        files, micro, args.max_seq_length, args.max_predictions_per_seq,
        rank=run.env.rank, world_size=run.env.world_size, seed=args.seed + step,
        vocab_size=config.vocab_size, type_vocab_size=config.type_vocab_size,
    )
    return files, devices.DeviceBatches(batches, run.device)  # pinned, non_blocking on CUDA


# ----------------------------------------------------------------------------- training

@dataclasses.dataclass
class Progress:
    step: int = 0
    samples: int = 0
    first_loss: float | None = None
    last_loss: float | None = None
    timed_steps: int = 0
    timed_seconds: float = 0.0


def train(args, run: Setup, model, train_model, optimizer, scheduler, batches,
          progress: Progress, global_batch: int) -> Progress:
    """Optimizer steps up to --max_steps: accumulation, clipping, logging every --log_freq
    steps (means over ranks), a save every --save_steps (rank 0). ``train_model`` is the DDP
    module, or its ``torch.compile`` form, which passes ``no_sync`` on to it."""
    backend = run.backend
    accumulation = args.gradient_accumulation_steps
    dev = run.device.torch_device

    train_model.train()
    window = {"loss": 0.0, "mlm": 0.0, "nsp": 0.0, "correct": 0, "count": 0, "n": 0, "t": 0.0}
    while progress.step < args.max_steps:
        t0 = time.perf_counter()
        # loss, mlm loss, nsp loss / mlm correct, count: summed over micro-batches on the
        # device, read once per step (one host sync on CUDA)
        totals = torch.zeros(3, device=dev)
        counts = torch.zeros(2, dtype=torch.long, device=dev)
        run.at(f"step {progress.step + 1}: forward/backward and the gradient allreduce (DDP)")
        for micro_step in range(accumulation):
            try:
                batch = next(batches)
            except ValueError as exc:  # a corrupt or foreign record, a token id beyond the vocab
                raise RunError(str(exc)) from None
            last = micro_step == accumulation - 1
            sync = train_model.no_sync() if backend and not last else contextlib.nullcontext()
            with sync:
                with devices.autocast(run.device, args.precision):
                    out = train_model(**batch)
                (out["loss"] / accumulation).backward()
            totals += torch.stack([out[k].detach().float() for k in ("loss", "mlm_loss", "nsp_loss")])
            counts += torch.stack([out["mlm_correct"].detach(), out["mlm_count"]])
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        lr = optimizer.param_groups[0]["lr"]  # logged: what this step used, read from the optimizer
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        progress.samples += global_batch
        step = progress.step
        loss = (totals / accumulation).tolist()  # waits for the step's device work
        correct, count = counts.tolist()
        seconds = time.perf_counter() - t0

        if backend:  # report the mean over ranks
            run.at(f"step {step}: the allreduce of the logged losses")
            t = torch.tensor(loss[:3] + [correct, count], dtype=torch.float64, device=dev)
            dist.all_reduce(t)
            t = t.cpu()
            loss = (t[:3] / run.env.world_size).tolist()
            correct, count = int(t[3]), int(t[4])
        if not all(math.isfinite(v) for v in loss[:3]):
            raise RunError(f"loss became {loss[0]} at step {step}; lower --learning_rate or use fp32")
        progress.first_loss = loss[0] if progress.first_loss is None else progress.first_loss
        progress.last_loss = loss[0]
        if step > 1 or args.max_steps == 1:  # the first step includes one-off set-up work
            progress.timed_steps += 1
            progress.timed_seconds += seconds
        for k, v in (("loss", loss[0]), ("mlm", loss[1]), ("nsp", loss[2])):
            window[k] += v
        window["correct"] += correct
        window["count"] += count
        window["n"] += 1
        window["t"] += seconds
        if step % args.log_freq == 0 or step == args.max_steps:
            n = window["n"]
            run.log(f"step {step}/{args.max_steps} loss {window['loss'] / n:.4f} "
                    f"mlm_loss {window['mlm'] / n:.4f} nsp_loss {window['nsp'] / n:.4f} "
                    f"mlm_acc {window['correct'] / max(window['count'], 1):.4f} "
                    f"lr {lr:.3e} "
                    f"throughput {global_batch * n / window['t']:.2f} sequences/s")
            window = dict.fromkeys(window, 0)
            window["t"] = 0.0
        if run.env.is_primary and args.save_steps and step % args.save_steps == 0 and step < args.max_steps:
            checkpoint.save(run.output_dir, model, optimizer, scheduler, step, args.phase,
                            progress.samples)
    return progress


def build_optimizer(args: argparse.Namespace, run: Setup, model):
    """(optimizer, scheduler, kind, warmup steps): LAMB (ipex's fused one when available) with
    polynomial decay after a linear warmup over --warmup_proportion of --max_steps."""
    warmup = int(args.warmup_proportion * args.max_steps)
    optimizer, scheduler, kind = create_optimizer(
        model, lr=args.learning_rate, total_steps=args.max_steps, warmup_steps=warmup,
        weight_decay=args.weight_decay, betas=(args.beta1, args.beta2), eps=args.lamb_epsilon,
        power=args.poly_power, use_ipex=run.ipex is not None,
    )
    return optimizer, scheduler, kind, warmup


def prepare_for_training(args: argparse.Namespace, run: Setup, model, optimizer, scheduler):
    """(model, optimizer, the module to call): ipex-optimised when ipex is used, wrapped in
    DDP when there are several ranks (on this rank's GPU on CUDA), then compiled with
    ``--torch_compile`` (``model`` stays the unwrapped one, for saving).

    ``ipex.optimize`` changes the model and the optimizer in place (``inplace=True``): without
    it, it returns copies, and ``scheduler``, built on the original optimizer, would go on
    setting the learning rate of an optimizer that never steps (training at the frozen initial
    rate while the log shows the scheduled one)."""
    if run.ipex is not None:
        model.train()
        optimized, optimizer = run.ipex.optimize(
            model, optimizer=optimizer,
            dtype=torch.bfloat16 if args.precision == "bf16" else torch.float32, inplace=True)
        if optimized is not model or scheduler.optimizer is not optimizer:
            raise RunError("intel_extension_for_pytorch's optimize(inplace=True) returned a new "
                           "model or optimizer: the LR scheduler would not drive the optimizer "
                           "that steps; run with --no_ipex")
    run.at("the broadcast of rank 0's initial weights (DDP set-up)")
    train_model = (torch.nn.parallel.DistributedDataParallel(model, **devices.ddp_kwargs(run.device))
                   if run.backend else model)
    if args.torch_compile:
        train_model = torch.compile(train_model)
    return model, optimizer, train_model


def rank_digests(run: Setup, model) -> list[str]:
    """Every rank's weights digest (DDP keeps replicas equal; a mismatch means a broken setup)."""
    digests = [checkpoint.weights_digest(model)]
    if run.backend:
        run.at("the all-gather of the weight digests after training")
        digests = [None] * run.env.world_size
        dist.all_gather_object(digests, checkpoint.weights_digest(model))
        if len(set(digests)) != 1:
            run.log(f"error: model weights differ between ranks: {digests}")
    return digests


def write_summary(output_dir: Path, summary: dict) -> None:
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("=" * 72)
    print(f"Summary (also in {output_dir / 'summary.json'}):")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    print("=" * 72, flush=True)


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)                                     # 1. flags, before any work
    run = setup(args)                                           # 2. threads, ranks, precision
    with run.collective_errors():  # a failed collective: one line naming the stuck rank
        model, source, state = load_or_create_model(args, run)  # 3. model and optimizer
        model.to(run.device.torch_device)  # before the optimizer: its state follows the weights
        optimizer, scheduler, opt_kind, warmup = build_optimizer(args, run, model)
        progress = Progress()
        if state is not None:
            if state["step"] >= args.max_steps:
                # Finished before: leave model_save and summary.json as that run wrote them.
                run.log(f"phase {args.phase} already finished: {run.output_dir / checkpoint.MODEL_SAVE} "
                        f"holds step {state['step']} of --max_steps={args.max_steps}; nothing to do. "
                        "Use a new OUTPUT_DIR to train again, or a larger MAX_STEPS (--max_steps) to go on")
                run.teardown()
                return 0
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            progress.step, progress.samples = state["step"], state["samples"]
        model, optimizer, train_model = prepare_for_training(args, run, model, optimizer, scheduler)
        files, batches = open_data(args, run, model.config, progress.step)  # 4. this rank's data
        env = run.env
        micro = args.train_batch_size // args.gradient_accumulation_steps
        global_batch = args.train_batch_size * env.world_size
        run.log(f"BERT pretraining phase {args.phase}: {source}; {num_parameters(model) / 1e6:.1f}M "
                f"parameters; precision {args.precision}; device {run.device.torch_device}; "
                f"torch.compile {'on' if args.torch_compile else 'off'}; world size {env.world_size} "
                f"({run.backend or 'single process'}); optimizer {opt_kind}; ipex "
                f"{'on' if run.ipex is not None else 'off'}; {len(files)} file(s); global batch "
                f"{global_batch} = {env.world_size} x {micro} x {args.gradient_accumulation_steps} "
                f"accumulation; steps {progress.step}..{args.max_steps}; warmup {warmup}; "
                f"DNNL_MAX_CPU_ISA {os.environ.get('DNNL_MAX_CPU_ISA', 'unset')}")
        start = time.perf_counter()                             # 5. the training loop
        train(args, run, model, train_model, optimizer, scheduler, batches, progress, global_batch)
        elapsed = time.perf_counter() - start
        digests = rank_digests(run, model)                      # 6. check replicas, save
        if env.is_primary:
            path = checkpoint.save(run.output_dir, model, optimizer, scheduler, progress.step,
                                   args.phase, progress.samples)
            throughput = (global_batch * progress.timed_steps / progress.timed_seconds
                          if progress.timed_seconds else 0.0)
            write_summary(run.output_dir, {
                "phase": args.phase, "precision": args.precision, "steps": progress.step,
                "max_steps": args.max_steps, "world_size": env.world_size, "backend": run.backend,
                "global_batch_size": global_batch, "max_seq_length": args.max_seq_length,
                "first_loss": progress.first_loss, "final_loss": progress.last_loss,
                "throughput_sequences_per_second": round(throughput, 3),
                "elapsed_seconds": round(elapsed, 3), "optimizer": opt_kind,
                "ipex": run.ipex is not None, "device": run.device.kind,
                "torch_compile": args.torch_compile, "model_save": str(path),
                "packed_data": args.packing.path if args.packing else None,
                "avg_sequences_per_row": args.packing.avg_seq_per_sample if args.packing else 1.0,
                "weights_identical_on_all_ranks": len(set(digests)) == 1,
                "rank_weight_digests": digests,
            })
        run.teardown()
        return 0 if len(set(digests)) == 1 else FAILURE_EXIT


def run_main(argv=None) -> int:
    """``main`` with the exit convention: a ``UsageError`` prints ``error: ...`` and returns 2,
    a failure during the work (``RunError``, ``checkpoint.CheckpointError``) returns 1; no
    traceback for either."""
    try:
        return main(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return USAGE_EXIT
    except (RunError, checkpoint.CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return FAILURE_EXIT


def _exit_after_distributed_run(code: int) -> None:
    """Leave without interpreter teardown after a multi-process run: gloo's worker threads can
    still own tensors then, and freeing them during finalisation aborts the process (SIGABRT,
    "terminate called without an active exception") after a run that succeeded."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_code = run_main()
    if dist_env.from_environ().world_size > 1:
        _exit_after_distributed_run(exit_code)
    sys.exit(exit_code)
