"""BERT pretraining throughput (sequences/s) and model FLOPs utilisation (MFU), ours vs Hugging
Face ``transformers.BertForPreTraining``, on an NVIDIA GPU or the CPU, in one run.

One step = forward (bf16 autocast by default) + backward + LAMB step (the training script's
``Lamb``, foreach ops), for phase 1 (seq 128, 20 masked positions) and phase 2 (seq 512, 80
masked). Both models get the same config, the same weights (``hf_copy``) and the same batches
(``make_batch``/``hf_inputs``, shared with ``benchmarks/pytorch_train_step.py``); on the
device the code path is run_pretraining's (``models/bert_large/pytorch/device.py``: the model
and batch on the device, ``autocast``).

    python benchmarks/pytorch_pretrain_throughput.py                     # BERT-Large, auto device
    python benchmarks/pytorch_pretrain_throughput.py --device cpu --layers 2 --hidden 128 \\
        --heads 2 --vocab 1000 --batch 2 --steps 2                       # tiny, on the CPU

Batch: on CUDA the largest power of two that fits, searched per model (a step that raises
``torch.cuda.OutOfMemoryError`` is the limit); ours and HF are compared at the same batch (the
smaller of the two limits), and ours is also timed at its own limit when that is larger. On the
CPU a fixed batch (``--batch``, default 4). ``--batch N`` fixes it everywhere.

FLOPs: a training step costs 6 x N x S FLOPs per sequence (2 forward, 4 backward per parameter
and token; N = every parameter of the model, embeddings included, S = sequence length); the
``MFU+attn`` column adds the attention score and value matmuls, 12 x layers x hidden x S^2. The
same model FLOPs are counted for both implementations (HF's full-vocabulary MLM head is extra
work, not extra model FLOPs), so the MFU ratio equals the throughput ratio.

Peak: on CUDA the dense bf16 (or fp32 --precision fp32: TF32 is not used) peak of the device
from ``PEAK_TFLOPS`` by ``torch.cuda.get_device_name`` (``--peak-tflops`` for others). On the
CPU there is no table: the peak is MEASURED in the same run as the rate of a large matmul
in the run's dtype with all threads (also printed: one thread, and fp32), and MFU is against
that measured rate, which the output says.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from models.bert_large.pytorch import device as devices  # noqa: E402
from models.common import platform_info  # noqa: E402
from models.bert_large.pytorch.modeling import BertConfig, BertForPreTraining, num_parameters  # noqa: E402
from models.bert_large.pytorch.optimization import Lamb  # noqa: E402
from pytorch_train_step import hf_copy, hf_inputs, make_batch, optional_import  # noqa: E402

# Dense (no sparsity) peak TFLOP/s by GPU name, first match wins: (name substring, bf16, fp32).
# NVIDIA data sheets; H100 SXM and H200 share the GH100 compute.
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0, 51.0),
    ("H100 NVL", 835.0, 60.0),
    ("H100", 989.0, 67.0),      # H100 SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", 989.0, 67.0),
    ("GH200", 989.0, 67.0),
    ("A100", 312.0, 19.5),
    ("L40S", 362.0, 91.6),
    ("A10G", 70.0, 31.2),
)
PHASES = {1: (128, 20), 2: (512, 80)}
MAX_BATCH = {1: 1024, 2: 256}  # the CUDA search stops here


def gpu_peak(name: str, precision: str) -> float | None:
    for key, bf16, fp32 in PEAK_TFLOPS:
        if key.lower() in name.lower():
            return bf16 if precision == "bf16" else fp32
    return None


def matmul_rate(dtype: torch.dtype, threads: int, n: int = 1024, seconds: float = 0.5) -> float:
    """Measured CPU matmul rate (FLOP/s) of [n, n] x [n, n] in ``dtype`` on ``threads``."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n).to(dtype)
        b = torch.randn(n, n).to(dtype)
        torch.mm(a, b)  # warm-up
        count, start = 0, time.perf_counter()
        while True:
            torch.mm(a, b)
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and count >= 3:
                return 2.0 * n**3 * count / elapsed
    finally:
        torch.set_num_threads(saved)


def flops_per_sequence(config: BertConfig, params: int, seq: int) -> tuple[float, float]:
    """(6 N S, 6 N S + attention 12 L H S^2): training FLOPs of one sequence."""
    dense = 6.0 * params * seq
    attention = 12.0 * config.num_hidden_layers * config.hidden_size * seq * seq
    return dense, dense + attention


class Runner:
    """One model, its LAMB optimizer and its step on ``device``."""

    def __init__(self, name: str, model, device: devices.Device, precision: str, hf: bool,
                 compile_model: bool = False):
        self.name = name
        self.device = device
        self.precision = precision
        self.hf = hf
        self.model = model.to(device.torch_device).train()
        self.opt = Lamb(self.model.parameters(), lr=1e-4)
        self.call = torch.compile(self.model) if compile_model else self.model

    def batch(self, config: BertConfig, batch: int, seq: int, preds: int) -> dict:
        data = make_batch(config, batch, seq, preds)
        data = hf_inputs(data) if self.hf else data
        pin, non_blocking = devices.transfer_policy(self.device)
        return devices.move_batch(data, self.device.torch_device, pin, non_blocking)

    def step(self, data: dict) -> None:
        with devices.autocast(self.device, self.precision):
            out = self.call(**data)
            loss = out.loss if self.hf else out["loss"]
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def sync(self) -> None:
        if self.device.is_cuda:
            torch.cuda.synchronize(self.device.index)


def time_steps(runners: list[Runner], datas: list[dict], steps: int, warmup: int) -> list[float]:
    """Median seconds per step of each runner; steps alternate so noise hits all alike."""
    for _ in range(warmup):
        for r, d in zip(runners, datas):
            r.step(d)
            r.sync()
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(steps):
        for i, (r, d) in enumerate(zip(runners, datas)):
            r.sync()
            t0 = time.perf_counter()
            r.step(d)
            r.sync()
            times[i].append(time.perf_counter() - t0)
    return [sorted(t)[len(t) // 2] for t in times]


def fits(runner: Runner, config: BertConfig, batch: int, seq: int, preds: int) -> bool:
    """One step at ``batch`` runs without running out of GPU memory."""
    try:
        runner.step(runner.batch(config, batch, seq, preds))
        runner.sync()
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        runner.opt.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()


def largest_batch(runner: Runner, config: BertConfig, seq: int, preds: int, cap: int) -> int:
    batch, best = 1, 0
    while batch <= cap and fits(runner, config, batch, seq, preds):
        best, batch = batch, batch * 2
    if not best:
        raise SystemExit(f"error: {runner.name}: even batch 1 does not fit in GPU memory")
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (CUDA when torch sees a GPU), cuda, cpu")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--phases", default="1,2", help="1 (seq 128, 20 masked), 2 (seq 512, 80)")
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--batch", type=int, help="fixed batch (default: searched on CUDA, 4 on CPU)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch threads on the CPU (default: torch's)")
    p.add_argument("--peak-tflops", type=float, help="the device's peak for MFU (overrides the table)")
    p.add_argument("--no-hf", action="store_true", help="time ours only")
    p.add_argument("--torch_compile", action="store_true",
                   help="also time ours through torch.compile (column ours+compile)")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    args = p.parse_args(argv)
    try:
        device = devices.select(args.device)
        phases = [int(x) for x in args.phases.split(",")]
        if any(ph not in PHASES for ph in phases):
            raise ValueError(f"--phases={args.phases}: use 1, 2 or 1,2")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    devices.activate(device)
    devices.configure_matmul(device, args.precision)  # fp32: no TF32
    transformers = None if args.no_hf else optional_import("transformers")
    if not args.no_hf and transformers is None:
        print("error: transformers does not import: pip install transformers, or pass --no-hf",
              file=sys.stderr)
        return 2
    config = BertConfig(vocab_size=args.vocab, hidden_size=args.hidden,
                        num_hidden_layers=args.layers, num_attention_heads=args.heads,
                        intermediate_size=4 * args.hidden, max_position_embeddings=512)
    torch.manual_seed(0)
    ours = BertForPreTraining(config)
    params = num_parameters(ours)
    runners = {"ours": Runner("ours", ours, device, args.precision, hf=False)}
    if transformers is not None:
        runners["hf"] = Runner("HF", hf_copy(ours, transformers), device, args.precision, hf=True)
    if args.torch_compile:
        twin = BertForPreTraining(config)
        twin.load_state_dict(ours.state_dict())
        runners["compiled"] = Runner("ours+compile", twin, device, args.precision, hf=False,
                                     compile_model=True)

    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    if device.is_cuda:
        name = torch.cuda.get_device_name(device.index)
        peak = args.peak_tflops or gpu_peak(name, args.precision)
        peak_note = (f"{peak:g} TFLOP/s dense {args.precision} ({name}"
                     f"{', --peak-tflops' if args.peak_tflops else ', data sheet'})"
                     if peak else f"unknown for {name}: pass --peak-tflops")
        peaks = {"peak_tflops": peak, "peak_source": "given" if args.peak_tflops else "table"}
    else:
        name = platform_info.detect().model_name or "CPU"  # the launcher's reading of the machine
        threads = torch.get_num_threads()
        rate = matmul_rate(dtype, threads) / 1e12
        one = matmul_rate(dtype, 1) / 1e12
        fp32 = matmul_rate(torch.float32, threads) / 1e12 if dtype != torch.float32 else rate
        peak = args.peak_tflops or rate
        peak_note = (f"{peak:.4g} TFLOP/s = {args.precision} 1024x1024 matmul MEASURED in this "
                     f"run on {threads} thread(s) (1 thread: {one:.4g}; fp32 on {threads}: "
                     f"{fp32:.4g} TFLOP/s); the CPU's measured rate, not a data-sheet peak")
        peaks = {"peak_tflops": peak, "peak_source": "measured matmul",
                 "measured_tflops": {f"{args.precision}_{threads}_threads": rate,
                                     f"{args.precision}_1_thread": one,
                                     f"fp32_{threads}_threads": fp32}}

    rows = []
    for phase in phases:
        seq, preds = PHASES[phase]
        dense, with_attn = flops_per_sequence(config, params, seq)
        if args.batch:
            limits = {key: args.batch for key in runners}
        elif device.is_cuda:
            limits = {key: largest_batch(r, config, seq, preds, MAX_BATCH[phase])
                      for key, r in runners.items()}
        else:
            limits = {key: 4 for key in runners}
        common = min(limits.values())
        plan = [(common, list(runners))]
        if limits["ours"] > common:
            plan.append((limits["ours"], ["ours"]))
        for batch, keys in plan:
            chosen = [runners[k] for k in keys]
            datas = [r.batch(config, batch, seq, preds) for r in chosen]
            seconds = time_steps(chosen, datas, args.steps, args.warmup)
            for key, s in zip(keys, seconds):
                rate = batch / s
                rows.append({
                    "phase": phase, "seq": seq, "masked": preds, "model": runners[key].name,
                    "batch": batch, "seq_per_s": rate, "tflops": rate * dense / 1e12,
                    "mfu": rate * dense / 1e12 / peak if peak else None,
                    "mfu_attn": rate * with_attn / 1e12 / peak if peak else None,
                    "largest_batch": limits[key] if device.is_cuda and not args.batch else None,
                })
            del datas
    ratios = []
    for phase in phases:
        same = {r["model"]: r for r in rows if r["phase"] == phase and r["batch"] == min(
            x["batch"] for x in rows if x["phase"] == phase)}
        for other in ("HF", "ours+compile"):
            if other in same:
                a, b = ("ours", "HF") if other == "HF" else ("ours+compile", "ours")
                ratios.append({"phase": phase, "what": f"{a}/{b}", "batch": same[a]["batch"],
                               "ratio": same[a]["seq_per_s"] / same[b]["seq_per_s"]})

    setup = {"device": device.kind, "device_name": name, "torch": torch.__version__,
             "precision": args.precision, "layers": args.layers, "hidden": args.hidden,
             "heads": args.heads, "vocab": args.vocab, "parameters": params,
             "flops_per_sequence": "6 x parameters x seq (+ 12 x layers x hidden x seq^2 "
                                   "attention in mfu_attn)", **peaks}
    if args.json:
        print(json.dumps({"setup": setup, "results": rows, "ratios": ratios}))
        return 0
    print(f"BERT pretraining throughput: {device.kind} ({name}), torch {torch.__version__}, "
          f"{args.precision}, {args.layers} layers x hidden {args.hidden}, {args.heads} heads, "
          f"vocab {args.vocab}: {params / 1e6:.2f}M parameters")
    print(f"FLOPs per sequence: 6 x {params} parameters x seq (MFU); MFU+attn adds attention "
          f"12 x {args.layers} layers x {args.hidden} hidden x seq^2")
    print(f"peak: {peak_note}")
    print(f"{'phase':>5} {'seq':>4} {'masked':>6} {'model':<13} {'batch':>5} {'seq/s':>10} "
          f"{'TFLOP/s':>9} {'MFU':>7} {'MFU+attn':>8}")
    for r in rows:
        mfu = f"{100 * r['mfu']:6.2f}%" if r["mfu"] is not None else "    n/a"
        mfu_a = f"{100 * r['mfu_attn']:7.2f}%" if r["mfu_attn"] is not None else "     n/a"
        print(f"{r['phase']:>5} {r['seq']:>4} {r['masked']:>6} {r['model']:<13} {r['batch']:>5} "
              f"{r['seq_per_s']:>10.2f} {r['tflops']:>9.4f} {mfu} {mfu_a}"
              + (f"  (largest batch {r['largest_batch']})" if r["largest_batch"] else ""))
    for r in ratios:
        print(f"phase {r['phase']}: {r['what']} {r['ratio']:.3f} (batch {r['batch']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
