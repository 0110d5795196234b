"""LAMB optimizer and the warmup + polynomial-decay schedule used for BERT pretraining.

torch has no LAMB, so ``Lamb`` implements it (You et al., 2019, "Large Batch Optimization
for Deep Learning"): Adam moments with bias correction, decoupled weight decay added to the
update, and a per-tensor trust ratio ``||w|| / ||update||``. A step is a fixed number of
multi-tensor ``torch._foreach_*`` ops over all of a group's tensors (no per-tensor Python
loop, no host sync), the same code on the CPU and on CUDA (where the foreach kernels treat
many tensors per launch). ``create_optimizer`` uses IPEX's
fused LAMB instead when ``intel_extension_for_pytorch`` imports.
"""

from __future__ import annotations

import torch
from torch import nn

from models.bert_large.pytorch.modeling import no_decay_param_names

__all__ = ["Lamb", "poly_warmup_lambda", "create_optimizer"]


class Lamb(torch.optim.Optimizer):
    """Layer-wise Adaptive Moments optimizer for Batch training."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid LAMB hyper-parameters lr={lr} betas={betas} eps={eps}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            grads, exp_avgs, exp_avg_sqs = [], [], []
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("Lamb does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
            step = self.state[params[0]]["step"]
            bc1 = 1 - beta1**step
            bc2 = 1 - beta2**step

            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)  # m = b1*m + (1-b1)*g
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)  # v = b2*v + (1-b2)*g^2

            # update = m_hat / (sqrt(v_hat) + eps) + wd * w
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, bc2**0.5)
            torch._foreach_add_(denom, group["eps"])
            updates = torch._foreach_div(exp_avgs, denom)
            torch._foreach_div_(updates, bc1)
            if group["weight_decay"]:
                torch._foreach_add_(updates, params, alpha=group["weight_decay"])

            # trust ratio ||w|| / ||update||, 1 when either norm is 0 (fresh zero-init biases,
            # zero update): all tensors' norms at once, one vector, no host sync
            wn = torch.stack(torch._foreach_norm(params))
            un = torch.stack(torch._foreach_norm(updates))
            ratio = torch.where((wn > 0) & (un > 0), wn / un, torch.ones_like(wn))
            torch._foreach_mul_(updates, (ratio * -group["lr"]).unbind(0))
            torch._foreach_add_(params, updates)
        return loss


def poly_warmup_lambda(total_steps: int, warmup_steps: int, power: float = 0.5):
    """LR multiplier: linear warmup to 1, then ``(1 - progress) ** power`` decay to 0."""

    def fn(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if total_steps <= warmup_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return max(0.0, 1.0 - progress) ** power

    return fn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed weights, and biases/LayerNorm parameters without decay."""
    no_decay = no_decay_param_names(model)
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (plain if name in no_decay else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]


def create_optimizer(
    model: nn.Module,
    lr: float,
    total_steps: int,
    warmup_steps: int,
    weight_decay: float = 0.01,
    betas=(0.9, 0.999),
    eps: float = 1e-6,
    power: float = 0.5,
    use_ipex: bool = False,
):
    """Return (optimizer, scheduler, kind); kind is "ipex-fused-lamb" or "lamb"."""
    groups = param_groups(model, weight_decay)
    opt = None
    kind = "lamb"
    if use_ipex:
        try:
            from intel_extension_for_pytorch.optim._lamb import Lamb as IpexLamb

            opt = IpexLamb(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=True)
            kind = "ipex-fused-lamb"
        except (ImportError, TypeError, AttributeError):
            opt = None
    if opt is None:
        opt = Lamb(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, poly_warmup_lambda(total_steps, warmup_steps, power))
    return opt, sched, kind
