"""BERT pretraining, phase 1 (seq 128) or phase 2 (seq 512), on CPU with PyTorch.

Single process::

    python models/bert_large/pytorch/run_pretraining.py --phase=1 \
        --bert_config_file=$CONFIG_FILE --input_dir=$DATASET_DIR --output_dir=$OUTPUT_DIR

Several processes (DDP over gloo, or oneCCL when its bindings import) through the launcher::

    MPI_NUM_PROCESSES=2 python models/common/launch.py -- python .../run_pretraining.py ...

Phase 2 starts from phase 1's ``OUTPUT_DIR/model_save`` (``--init_checkpoint``). Rank and world
size come from the MPI environment (``models.common.dist_env``); ``MASTER_ADDR`` and
``MASTER_PORT`` default to 127.0.0.1:29500 (one host). Rank 0 prints throughput lines, writes
``OUTPUT_DIR/model_save`` (config.json + model.safetensors + training_state.pt) atomically
every ``--save_steps`` and at the end, and ``OUTPUT_DIR/summary.json``. A run whose
``OUTPUT_DIR/model_save`` already holds this phase's training state resumes from it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the package root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from models.bert_large.pytorch.data import PHASE_GLOBS, PretrainingBatches, find_files, record_shape  # noqa: E402
from models.bert_large.pytorch.modeling import BertConfig, BertForPreTraining, num_parameters  # noqa: E402
from models.bert_large.pytorch.optimization import create_optimizer  # noqa: E402
from models.common import dist_env  # noqa: E402

PRECISIONS = ("fp32", "avx-fp32", "bf16", "bf32")
MODEL_SAVE = "model_save"
WEIGHTS = "model.safetensors"
STATE = "training_state.pt"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", type=int, choices=(1, 2), required=True,
                   help="1: seq_128 data, a new model from --bert_config_file; 2: seq_512 data, "
                        "starting from --init_checkpoint")
    p.add_argument("--input_dir", required=True, help="DATASET_DIR with seq_128/ and seq_512/")
    p.add_argument("--output_dir", required=True, help="OUTPUT_DIR; model_save/ is written here")
    p.add_argument("--bert_config_file", help="bert_config.json (phase 1)")
    p.add_argument("--init_checkpoint", help="a model_save folder to start from (phase 2)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="bf16: bfloat16 autocast; bf32: fp32 with bfloat16 matmul math; "
                        "avx-fp32: fp32 with DNNL_MAX_CPU_ISA unset (default fp32)")
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
    p.add_argument("--dist_backend", default="auto", choices=("auto", "gloo", "ccl"))
    p.add_argument("--no_ipex", action="store_true", help="do not use intel_extension_for_pytorch")
    args = p.parse_args(argv)
    validate_args(args)
    return args


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


def validate_args(args: argparse.Namespace) -> None:
    """Check flags up front so a run never fails after minutes of work."""
    for name in ("train_batch_size", "gradient_accumulation_steps", "max_steps", "max_seq_length",
                 "max_predictions_per_seq", "log_freq"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            _fail(f"--{name}={getattr(args, name)} must be a positive integer")
    if args.train_batch_size % args.gradient_accumulation_steps:
        _fail(f"--train_batch_size={args.train_batch_size} must be a multiple of "
              f"--gradient_accumulation_steps={args.gradient_accumulation_steps}")
    if not 0 <= args.warmup_proportion <= 1:
        _fail(f"--warmup_proportion={args.warmup_proportion} must be within [0, 1]")
    if not Path(args.input_dir).is_dir():
        _fail(f"--input_dir={args.input_dir} is not a directory; point it to DATASET_DIR")
    if args.init_checkpoint:
        ckpt = Path(args.init_checkpoint)
        if not (ckpt / "config.json").is_file() and (ckpt / MODEL_SAVE / "config.json").is_file():
            _fail(f"--init_checkpoint={ckpt} is phase 1's OUTPUT_DIR, not its model; use "
                  f"--init_checkpoint={ckpt / MODEL_SAVE} (CHECKPOINT_DIR=<phase 1 OUTPUT_DIR>/"
                  f"{MODEL_SAVE})")
        for name in ("config.json", WEIGHTS):
            if not (ckpt / name).is_file():
                _fail(f"--init_checkpoint={ckpt} has no {name}; use the model_save folder that "
                      "phase 1 wrote to its OUTPUT_DIR")
        if _same_path(ckpt, Path(args.output_dir) / MODEL_SAVE):
            _fail(f"--output_dir={args.output_dir} is the folder of --init_checkpoint={ckpt}: "
                  f"this run would overwrite the {MODEL_SAVE} it starts from; set OUTPUT_DIR "
                  f"(--output_dir) to a new directory for phase {args.phase}")
    elif args.phase == 2 and not _has_state(Path(args.output_dir) / MODEL_SAVE, 2):
        _fail("phase 2 needs --init_checkpoint (CHECKPOINT_DIR): phase 1's OUTPUT_DIR/model_save")
    elif args.phase == 1 and not args.bert_config_file:
        _fail("phase 1 needs --bert_config_file (CONFIG_FILE): the bert_config.json of the model")
    own_save = Path(args.output_dir) / MODEL_SAVE
    if own_save.exists() and _saved_phase(own_save) != args.phase:
        other = _saved_phase(own_save)
        held = f"phase {other}'s model" if other else "a model"
        _fail(f"{own_save} already holds {held}, which this phase {args.phase} run would "
              "overwrite; set OUTPUT_DIR (--output_dir) to a new, empty directory")
    if args.bert_config_file and not Path(args.bert_config_file).is_file():
        _fail(f"--bert_config_file={args.bert_config_file} is not a file; point it to bert_config.json")
    try:  # the data and the config are readable: fail now, not after loading a model
        record_shape(find_files(args.input_dir, PHASE_GLOBS[args.phase])[0])
        if args.bert_config_file and not args.init_checkpoint:
            BertConfig.from_json_file(args.bert_config_file)
    except (OSError, ValueError) as exc:
        _fail(str(exc))


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


# ----------------------------------------------------------------------------- checkpoints

def _saved_phase(model_save: Path) -> int | None:
    """The phase whose training state ``model_save`` holds (None: no readable state)."""
    state = model_save / STATE
    if not state.is_file():
        return None
    try:
        return torch.load(state, map_location="cpu", weights_only=True).get("phase")
    except Exception:  # noqa: BLE001 - truncated/foreign file: not a state to resume from
        return None


def _has_state(model_save: Path, phase: int) -> bool:
    return _saved_phase(model_save) == phase


def _recover_interrupted_save(output_dir: Path) -> None:
    """A crash between the two renames of ``save`` leaves only the old copy: put it back."""
    target = output_dir / MODEL_SAVE
    if target.exists():
        return
    olds = sorted(output_dir.glob(f".{MODEL_SAVE}.old-*"))
    if olds:
        olds[-1].rename(target)


def save(output_dir: Path, model: BertForPreTraining, optimizer, scheduler, step: int, phase: int,
         samples: int) -> Path:
    """Write model_save/ (config.json, model.safetensors, training_state.pt) atomically."""
    from safetensors.torch import save_file

    target = output_dir / MODEL_SAVE
    tmp = output_dir / f".{MODEL_SAVE}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    save_file(model.hf_state_dict(), str(tmp / WEIGHTS), metadata={"format": "pt"})
    torch.save(
        {"phase": phase, "step": step, "samples": samples, "optimizer": optimizer.state_dict(),
         "scheduler": scheduler.state_dict()},
        tmp / STATE,
    )
    old = output_dir / f".{MODEL_SAVE}.old-{os.getpid()}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def load_model(model_save: Path) -> BertForPreTraining:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        config = BertConfig.from_json_file(model_save / "config.json")
        model = BertForPreTraining(config)
        model.load_hf_state_dict(load_file(str(model_save / WEIGHTS)), source=str(model_save / WEIGHTS))
    except (OSError, ValueError, SafetensorError) as exc:
        _fail(f"cannot load the model in {model_save}: {exc}; point CHECKPOINT_DIR "
              "(--init_checkpoint) to a model_save folder written by run_pretraining.py")
    return model


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter's bytes: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- set-up

def setup_threads() -> None:
    """Thread pools from the launcher's NUM_INTRA_THREADS / NUM_INTER_THREADS when set."""
    intra = os.environ.get("NUM_INTRA_THREADS") or os.environ.get("OMP_NUM_THREADS")
    if intra and intra.isdigit() and int(intra) > 0:
        torch.set_num_threads(int(intra))
    inter = os.environ.get("NUM_INTER_THREADS")
    if inter and inter.isdigit() and int(inter) > 0:
        with contextlib.suppress(RuntimeError):  # only settable before any parallel work
            torch.set_num_interop_threads(int(inter))


def import_ipex(disabled: bool):
    if disabled:
        return None
    try:
        import intel_extension_for_pytorch as ipex
    except Exception:  # noqa: BLE001 - missing or built for another torch: run without it
        return None
    return ipex


def setup_precision(precision: str, ipex) -> None:
    if precision == "bf32":  # fp32 tensors, bf16 math inside oneDNN matmuls
        if ipex is not None:
            ipex.set_fp32_math_mode(mode=ipex.FP32MathMode.BF32, device="cpu")
        elif hasattr(torch.backends.mkldnn, "matmul"):
            torch.backends.mkldnn.matmul.fp32_precision = "bf16"
        else:
            torch.set_float32_matmul_precision("medium")


def setup_distributed(env: dist_env.DistEnv, backend: str) -> str | None:
    if env.world_size == 1:
        return None
    if backend in ("auto", "ccl"):
        try:
            import oneccl_bindings_for_pytorch  # noqa: F401 - registers the "ccl" backend

            backend = "ccl"
        except Exception as exc:  # noqa: BLE001 - missing, or built for another torch
            if backend == "ccl":
                _fail(f"--dist_backend=ccl needs oneccl_bindings_for_pytorch, which does not "
                      f"import ({type(exc).__name__}: {exc}); install the build matching torch "
                      f"{torch.__version__}, or use --dist_backend=gloo")
            backend = "gloo"
    if "MASTER_ADDR" not in os.environ and env.local_size < env.world_size:
        _fail(f"{env.world_size} ranks over several hosts: set MASTER_ADDR to the address of the "
              "host of rank 0 (the first host) and MASTER_PORT to a free port on it")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    dist.init_process_group(backend=backend, init_method="env://", rank=env.rank,
                            world_size=env.world_size)
    return backend


def log(env: dist_env.DistEnv, message: str) -> None:
    if env.is_primary:
        print(message, flush=True)


# ----------------------------------------------------------------------------- training

def main(argv=None) -> int:
    args = parse_args(argv)
    if args.precision == "avx-fp32":  # also when started without the launcher; before oneDNN runs
        os.environ.pop("DNNL_MAX_CPU_ISA", None)
    env = dist_env.from_environ()
    setup_threads()
    backend = setup_distributed(env, args.dist_backend)
    ipex = import_ipex(args.no_ipex)
    setup_precision(args.precision, ipex)
    output_dir = Path(args.output_dir)
    if env.is_primary:
        output_dir.mkdir(parents=True, exist_ok=True)
        _recover_interrupted_save(output_dir)
    if backend:
        dist.barrier()

    torch.manual_seed(args.seed)
    own_save = output_dir / MODEL_SAVE
    resume = _has_state(own_save, args.phase)
    if resume:
        model = load_model(own_save)
        source = f"resuming from {own_save}"
    elif args.init_checkpoint:
        model = load_model(Path(args.init_checkpoint))
        source = f"initialised from {args.init_checkpoint}"
    else:
        model = BertForPreTraining(BertConfig.from_json_file(args.bert_config_file))
        source = f"new model from {args.bert_config_file}"
    config = model.config

    warmup = int(args.warmup_proportion * args.max_steps)
    optimizer, scheduler, opt_kind = create_optimizer(
        model, lr=args.learning_rate, total_steps=args.max_steps, warmup_steps=warmup,
        weight_decay=args.weight_decay, betas=(args.beta1, args.beta2), eps=args.lamb_epsilon,
        power=args.poly_power, use_ipex=ipex is not None,
    )
    step = samples = 0
    if resume:
        state = torch.load(own_save / STATE, map_location="cpu", weights_only=True)
        if state["step"] >= args.max_steps:
            # Finished before: leave model_save and summary.json as that run wrote them.
            log(env, f"phase {args.phase} already finished: {own_save} holds step "
                     f"{state['step']} of --max_steps={args.max_steps}; nothing to do. Use a new "
                     "OUTPUT_DIR to train again, or a larger MAX_STEPS (--max_steps) to go on")
            if backend:
                dist.barrier()
                dist.destroy_process_group()
            return 0
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, samples = state["step"], state["samples"]

    bf16 = args.precision == "bf16"
    if ipex is not None:
        model.train()
        model, optimizer = ipex.optimize(
            model, optimizer=optimizer, dtype=torch.bfloat16 if bf16 else torch.float32
        )
    train_model = model
    if backend:
        train_model = torch.nn.parallel.DistributedDataParallel(model)

    files = find_files(args.input_dir, PHASE_GLOBS[args.phase])
    seq_len, max_pred = record_shape(files[0])
    args.max_seq_length = args.max_seq_length or seq_len
    args.max_predictions_per_seq = args.max_predictions_per_seq or max_pred
    if args.max_seq_length > config.max_position_embeddings:
        _fail(f"sequence length {args.max_seq_length} exceeds the model's "
              f"max_position_embeddings={config.max_position_embeddings}")
    micro = args.train_batch_size // args.gradient_accumulation_steps
    batches = iter(PretrainingBatches(
        files, micro, args.max_seq_length, args.max_predictions_per_seq,
        rank=env.rank, world_size=env.world_size, seed=args.seed + step,
    ))
    global_batch = args.train_batch_size * env.world_size
    log(env, f"BERT pretraining phase {args.phase}: {source}; {num_parameters(model) / 1e6:.1f}M "
             f"parameters; precision {args.precision}; world size {env.world_size} "
             f"({backend or 'single process'}); optimizer {opt_kind}; ipex "
             f"{'on' if ipex is not None else 'off'}; {len(files)} file(s); global batch "
             f"{global_batch} = {env.world_size} x {micro} x {args.gradient_accumulation_steps} "
             f"accumulation; steps {step}..{args.max_steps}; warmup {warmup}; DNNL_MAX_CPU_ISA "
             f"{os.environ.get('DNNL_MAX_CPU_ISA', 'unset')}")

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    train_model.train()
    first_loss = last_loss = None
    timed_steps = 0
    timed_seconds = 0.0
    start = time.perf_counter()
    window = {"loss": 0.0, "mlm": 0.0, "nsp": 0.0, "correct": 0, "count": 0, "n": 0, "t": 0.0}
    while step < args.max_steps:
        t0 = time.perf_counter()
        totals = torch.zeros(3)  # loss, mlm loss, nsp loss summed over micro-batches
        correct = count = 0
        for micro_step in range(args.gradient_accumulation_steps):
            try:
                batch = next(batches)
            except ValueError as exc:  # a corrupt or foreign record further into the data
                _fail(str(exc))
            last = micro_step == args.gradient_accumulation_steps - 1
            sync = train_model.no_sync() if backend and not last else contextlib.nullcontext()
            with sync:
                with autocast():
                    out = train_model(**batch)
                (out["loss"] / args.gradient_accumulation_steps).backward()
            totals += torch.stack([out[k].detach().float() for k in ("loss", "mlm_loss", "nsp_loss")])
            correct += int(out["mlm_correct"])
            count += int(out["mlm_count"])
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        samples += global_batch
        seconds = time.perf_counter() - t0

        loss = (totals / args.gradient_accumulation_steps).tolist()
        if backend:  # report the mean over ranks
            t = torch.tensor(loss[:3] + [correct, count], dtype=torch.float64)
            dist.all_reduce(t)
            loss = (t[:3] / env.world_size).tolist()
            correct, count = int(t[3]), int(t[4])
        if not all(math.isfinite(v) for v in loss[:3]):
            _fail(f"loss became {loss[0]} at step {step}; lower --learning_rate or use fp32")
        first_loss = loss[0] if first_loss is None else first_loss
        last_loss = loss[0]
        if step > 1 or args.max_steps == 1:  # the first step includes one-off set-up work
            timed_steps += 1
            timed_seconds += seconds
        for k, v in (("loss", loss[0]), ("mlm", loss[1]), ("nsp", loss[2])):
            window[k] += v
        window["correct"] += correct
        window["count"] += count
        window["n"] += 1
        window["t"] += seconds
        if step % args.log_freq == 0 or step == args.max_steps:
            n = window["n"]
            log(env, f"step {step}/{args.max_steps} loss {window['loss'] / n:.4f} "
                     f"mlm_loss {window['mlm'] / n:.4f} nsp_loss {window['nsp'] / n:.4f} "
                     f"mlm_acc {window['correct'] / max(window['count'], 1):.4f} "
                     f"lr {scheduler.get_last_lr()[0]:.3e} "
                     f"throughput {global_batch * n / window['t']:.2f} sequences/s")
            window = dict.fromkeys(window, 0)
            window["t"] = 0.0
        if env.is_primary and args.save_steps and step % args.save_steps == 0 and step < args.max_steps:
            save(output_dir, model, optimizer, scheduler, step, args.phase, samples)

    elapsed = time.perf_counter() - start
    digests = [weights_digest(model)]
    if backend:  # DDP keeps replicas equal; check it, a mismatch means a broken setup
        digests = [None] * env.world_size
        dist.all_gather_object(digests, weights_digest(model))
        if len(set(digests)) != 1:
            log(env, f"error: model weights differ between ranks: {digests}")
    if env.is_primary:
        path = save(output_dir, model, optimizer, scheduler, step, args.phase, samples)
        throughput = global_batch * timed_steps / timed_seconds if timed_seconds else 0.0
        summary = {
            "phase": args.phase, "precision": args.precision, "steps": step,
            "max_steps": args.max_steps, "world_size": env.world_size, "backend": backend,
            "global_batch_size": global_batch, "max_seq_length": args.max_seq_length,
            "first_loss": first_loss, "final_loss": last_loss,
            "throughput_sequences_per_second": round(throughput, 3),
            "elapsed_seconds": round(elapsed, 3), "optimizer": opt_kind,
            "ipex": ipex is not None, "model_save": str(path),
            "weights_identical_on_all_ranks": len(set(digests)) == 1,
            "rank_weight_digests": digests,
        }
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print("=" * 72)
        print(f"Summary (also in {output_dir / 'summary.json'}):")
        for key, value in summary.items():
            print(f"  {key}: {value}")
        print("=" * 72, flush=True)
    if backend:
        dist.barrier()
        dist.destroy_process_group()
    return 0 if len(set(digests)) == 1 else 1


def _exit_after_distributed_run(code: int) -> None:
    """Leave without interpreter teardown after a multi-process run: gloo's worker threads can
    still own tensors then, and freeing them during finalisation aborts the process (SIGABRT,
    "terminate called without an active exception") after a run that succeeded."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_code = main()
    if dist_env.from_environ().world_size > 1:
        _exit_after_distributed_run(exit_code)
    sys.exit(exit_code)
