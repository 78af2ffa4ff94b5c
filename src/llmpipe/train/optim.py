"""Optimizer, learning-rate schedule and weight EMA.

AdamW (Loshchilov & Hutter 2019) with weight decay only on matrices of linear layers: norms,
biases and embeddings are not decayed (decaying embeddings shrinks rare-token rows for no gain).
Schedules: linear warmup then cosine to `min_lr_ratio * lr`, or warmup-stable-decay (WSD, Hu et
al. 2024, MiniCPM): constant after warmup, linear decay over the last `decay_fraction` of steps.
"""
from __future__ import annotations

import math

import torch

from llmpipe.params import TrainParams


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # 2-D weights of Linear layers decay; embeddings (embed_tokens), norms and biases do not.
        if p.dim() >= 2 and "embed_tokens" not in name:
            decay.append(p)
        else:
            no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, tp: TrainParams, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one vectorised pass per tensor) on CUDA and on CPU, where it
    is ~3x faster than foreach (whose CPU version runs one op per tensor per update term) and
    bitwise deterministic too (elementwise, no reductions). FSDP2's DTensor shards on CPU take
    foreach (the fused CPU kernel is not dispatched for DTensor everywhere)."""
    from torch.distributed.tensor import DTensor

    sharded = any(isinstance(p, DTensor) for p in model.parameters())
    extra = {"foreach": True} if sharded and device.type != "cuda" else {"fused": True}
    return torch.optim.AdamW(param_groups(model, tp.weight_decay), lr=tp.lr, betas=tuple(tp.betas),
                             eps=tp.eps, **extra)


def lr_at(step: int, total_steps: int, tp: TrainParams) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total_steps`."""
    lr, floor = tp.lr, tp.lr * tp.min_lr_ratio
    if tp.warmup and step < tp.warmup:
        return lr * (step + 1) / tp.warmup
    if tp.schedule == "constant":
        return lr
    if tp.schedule == "wsd":
        decay_steps = max(1, round(total_steps * tp.decay_fraction))
        decay_start = total_steps - decay_steps
        if step < decay_start:
            return lr
        frac = (step - decay_start + 1) / decay_steps
        return lr + (floor - lr) * min(1.0, frac)
    span = max(1, total_steps - tp.warmup)
    frac = min(1.0, (step - tp.warmup + 1) / span)
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * frac))


class EMA:
    """Exponential moving average of the weights (float32 shadow copy), updated after each step."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            self.shadow[k].lerp_(v.float(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)
