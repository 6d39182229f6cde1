"""The fine-tuning recipe: AdamW, warmup + linear decay, pick the best epoch on dev.

Pretrained and scratch runs of a task share everything (seed, data order, head init)
except the body's starting weights, so their difference is what pretraining bought.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pretrainer.config import FinetuneConfig
from pretrainer.finetune.classifier import EncodedExamples, SequenceClassifier
from pretrainer.finetune.metrics import PRIMARY_METRIC, classification_metrics
from pretrainer.loggers import RunLogger
from pretrainer.training.device import autocast
from pretrainer.training.optim import build_adamw, build_schedule


@dataclass
class EncodedTask:
    name: str
    num_labels: int
    train: EncodedExamples
    dev: EncodedExamples
    test: EncodedExamples


@dataclass
class FinetuneContext:
    device: torch.device
    bf16: bool
    pad_id: int
    logger: RunLogger


def finetune(make_body: Callable[[], nn.Module], task: EncodedTask, cfg: FinetuneConfig,
             ctx: FinetuneContext, init_name: str) -> dict[str, Any]:
    """Train a classifier on `task.train`; returns dev/test metrics at the best dev epoch."""
    torch.manual_seed(cfg.seed)
    model = SequenceClassifier(make_body(), task.num_labels, cfg.pooling, cfg.dropout).to(ctx.device)
    steps_per_epoch = -(-len(task.train) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optimizer = build_adamw(model, cfg.lr, cfg.weight_decay, (0.9, 0.999))
    scheduler = build_schedule(optimizer, "linear", max(1, int(cfg.warmup_ratio * total)), total, 0.0)
    best: dict[str, Any] = {"dev": {PRIMARY_METRIC: -1.0}}
    for epoch in range(1, cfg.epochs + 1):
        train_loss = _train_epoch(model, task.train, cfg, ctx, optimizer, scheduler, epoch)
        dev = evaluate(model, task.dev, task.num_labels, cfg.batch_size, ctx)
        ctx.logger.log({"phase": "finetune", "task": task.name, "init": init_name, "step": epoch,
                        "loss": train_loss, **{f"dev_{k}": v for k, v in dev.items()}})
        if dev[PRIMARY_METRIC] > best["dev"][PRIMARY_METRIC]:
            test = evaluate(model, task.test, task.num_labels, cfg.batch_size, ctx)
            best = {"dev": dev, "test": test, "best_epoch": epoch}
    return best


def _train_epoch(model: SequenceClassifier, data: EncodedExamples, cfg: FinetuneConfig, ctx: FinetuneContext,
                 optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                 epoch: int) -> float:
    model.train()
    order = np.random.default_rng([cfg.seed, epoch]).permutation(len(data))
    losses = []
    for start in range(0, len(order), cfg.batch_size):
        rows = order[start : start + cfg.batch_size]
        labels = torch.as_tensor(data.labels[rows], device=ctx.device)
        with autocast(ctx.device, ctx.bf16):
            logits = model(*data.batch(rows, ctx.pad_id, ctx.device))
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return float(np.mean(losses))


@torch.no_grad()
def predict(model: SequenceClassifier, data: EncodedExamples, batch_size: int, ctx: FinetuneContext) -> np.ndarray:
    model.eval()
    predictions = []
    for start in range(0, len(data), batch_size):
        rows = range(start, min(start + batch_size, len(data)))
        with autocast(ctx.device, ctx.bf16):
            logits = model(*data.batch(rows, ctx.pad_id, ctx.device))
        predictions.append(logits.argmax(-1).cpu().numpy())
    return np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)


def evaluate(model: SequenceClassifier, data: EncodedExamples, num_labels: int, batch_size: int,
             ctx: FinetuneContext) -> dict[str, float]:
    return classification_metrics(data.labels, predict(model, data, batch_size, ctx), num_labels)
