"""AdamW (or T5's Adafactor) with decay only on weight matrices, and warmup followed by a decay schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from pretrainer.config import TrainerConfig


def decay_and_no_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Weight decay applies to Linear weights only: not to norms, biases or embeddings."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue  # tied weights appear under several modules
            seen.add(id(param))
            (decay if isinstance(module, nn.Linear) and name == "weight" else no_decay).append(param)
    return decay, no_decay


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay on Linear weights (`decay_and_no_decay`), none on the rest."""
    decay, no_decay = decay_and_no_decay(model)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_adamw(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    groups = parameter_groups(model, weight_decay)
    params = [param for group in groups for param in group["params"]]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused_supported(params) or None)


def build_optimizer(model: nn.Module, cfg: TrainerConfig) -> torch.optim.Optimizer:
    """The pretraining optimizer `cfg.optimizer` (a TrainerConfig) names, at peak lr `cfg.lr`.

    adafactor is T5's (Shazeer & Stern 2018; torch.optim.Adafactor): each tensor's step is `lr` x
    its RMS (at least 1e-3 x `lr`), from factored second moments, the update clipped at RMS 1, no
    momentum; torch also caps the step at 1/sqrt(step), T5's decay, which binds after 10k steps at
    lr 1e-2. AdamW moves every weight by about `lr` whatever its scale, which collapsed t5_span's
    encoder (the README's benchmark section). Adafactor reads each tensor's norm on the host: a sync
    per parameter and step.
    """
    if cfg.optimizer == "adafactor":
        return torch.optim.Adafactor(parameter_groups(model, cfg.weight_decay), lr=cfg.lr)
    return build_adamw(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))


def fused_supported(params: list[nn.Parameter]) -> bool:
    """The fused AdamW kernel (one pass over all parameters) runs on CUDA and, since torch 2.4,
    on the CPU, where it cuts an optimizer step several-fold against the per-tensor loop; it
    needs every parameter on one device type."""
    kinds = {p.device.type for p in params}
    return len(kinds) == 1 and kinds <= {"cuda", "cpu"}


def lr_multiplier(schedule: str, warmup_steps: int, total_steps: int, min_ratio: float) -> Callable[[int], float]:
    """step -> factor on the peak lr: linear warmup, then cosine / linear decay to `min_ratio`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
        return min_ratio + (1 - min_ratio) * shape

    return factor


def build_schedule(optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, total_steps: int,
                   min_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(schedule, warmup_steps, total_steps, min_ratio))
