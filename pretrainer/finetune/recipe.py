"""The fine-tuning recipe: AdamW, warmup + linear decay, the best epoch on dev, early
stopping with patience.

Pretrained and scratch runs of a task share everything (seed, data order, head init)
except the body's starting weights, so their difference is what pretraining bought.
Modes: `full` trains everything; `linear_probe` freezes the body (kept in eval mode) and
trains the head only; `aux_lm` adds `aux_lm_weight` x the next-token loss on the input
(GPT's fine-tuning objective).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pretrainer.config import FinetuneConfig
from pretrainer.finetune.classifier import EncodedExamples, TaskModel, causal_lm_loss, flat_labels, task_loss
from pretrainer.finetune.metrics import task_metrics
from pretrainer.finetune.scratch_cache import ScratchCache
from pretrainer.loggers import RunLogger
from pretrainer.training.device import autocast
from pretrainer.training.optim import build_adamw, build_schedule


@dataclass
class EncodedTask:
    name: str
    kind: str  # classification | regression | tagging
    num_labels: int  # outputs of the head (1 for regression)
    metrics: tuple[str, ...]  # the first picks the best epoch on dev
    train: EncodedExamples
    dev: EncodedExamples
    test: EncodedExamples
    extra_eval: dict[str, EncodedExamples] = field(default_factory=dict)

    def evaluation_sets(self) -> dict[str, EncodedExamples]:
        """Every set scored after training, by name: test and any extra (GLUE's mismatched)."""
        return {"test": self.test, **self.extra_eval}


@dataclass
class FinetuneContext:
    device: torch.device
    bf16: bool
    pad_id: int
    logger: RunLogger
    # progress: called with the optimizer steps just taken (timed=False: skipped, e.g. a reused result)
    advance: Callable[..., None] = lambda steps, timed=True: None
    scratch_cache: ScratchCache | None = None  # where scratch baselines are kept for reuse (None: never reused)


def finetune(make_body: Callable[[], nn.Module], task: EncodedTask, cfg: FinetuneConfig, ctx: FinetuneContext,
             init_name: str, seed: int) -> dict[str, Any]:
    """Train on `task.train`; returns the metrics and predictions of every evaluation set at
    the best dev epoch, the best epoch and how many epochs ran."""
    torch.manual_seed(seed)
    model = TaskModel(make_body(), task.kind, task.num_labels, cfg.pooling, cfg.dropout).to(ctx.device)
    if cfg.mode == "linear_probe":
        model.body.requires_grad_(False)
    steps = steps_per_epoch(len(task.train), cfg.batch_size)
    total = steps * cfg.epochs
    optimizer = build_adamw(model, cfg.lr, cfg.weight_decay, (0.9, 0.999))
    scheduler = build_schedule(optimizer, "linear", max(1, int(cfg.warmup_ratio * total)), total, 0.0)
    primary = task.metrics[0]
    best: dict[str, Any] = {}
    best_weights: dict[str, torch.Tensor] = {}
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        train_loss = _train_epoch(model, task, cfg, ctx, optimizer, scheduler, seed, epoch)
        dev, dev_predictions = evaluate(model, task, task.dev, cfg.batch_size, ctx)
        ctx.logger.log({"phase": "finetune", "task": task.name, "init": init_name, "seed": seed, "step": epoch,
                        "loss": train_loss, **{f"dev_{k}": v for k, v in dev.items()}})
        if not best or _improves(dev[primary], best["dev"][primary]):
            best = {"dev": dev, "best_epoch": epoch, "predictions": {"dev": dev_predictions}}
            best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        elif cfg.patience is not None and epoch - best["best_epoch"] >= cfg.patience:
            break
    ctx.advance(steps * (cfg.epochs - epoch), timed=False)  # the epochs early stopping skipped
    # Test (and any extra set) once, from the best dev epoch's weights: not at every dev improvement.
    model.load_state_dict(best_weights)
    for split, data in task.evaluation_sets().items():
        best[split], best["predictions"][split] = evaluate(model, task, data, cfg.batch_size, ctx)
    return best | {"epochs_run": epoch}


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over `examples` (the last batch may be short)."""
    return math.ceil(examples / batch_size)


def _improves(score: float, best: float) -> bool:
    """A better dev score; a number always beats a NaN (a metric undefined at an earlier epoch)."""
    return score > best or (math.isnan(best) and not math.isnan(score))


def _train_epoch(model: TaskModel, task: EncodedTask, cfg: FinetuneConfig, ctx: FinetuneContext,
                 optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                 seed: int, epoch: int) -> float:
    model.train()
    if cfg.mode == "linear_probe":
        model.body.eval()  # a frozen body: no dropout either
    order = np.random.default_rng([seed, epoch]).permutation(len(task.train))
    losses = []
    for start in range(0, len(order), cfg.batch_size):
        rows = order[start : start + cfg.batch_size]
        inputs = task.train.batch(rows, ctx.pad_id, ctx.device)
        with autocast(ctx.device, ctx.bf16):
            logits, hidden = model(*inputs)
            loss = task_loss(task.kind, logits, task.train.label_batch(rows, task.kind, ctx.device))
            if cfg.mode == "aux_lm":
                loss = loss + cfg.aux_lm_weight * causal_lm_loss(model.body, hidden, inputs[0], ctx.pad_id)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        ctx.advance(1)
    return float(np.mean(losses))


@torch.no_grad()
def predict(model: TaskModel, task: EncodedTask, data: EncodedExamples, batch_size: int,
            ctx: FinetuneContext) -> list:
    """One prediction per example: a class id, a score, or (tagging) a tag per scored word."""
    model.eval()
    predictions: list = []
    for start in range(0, len(data), batch_size):
        rows = range(start, min(start + batch_size, len(data)))
        with autocast(ctx.device, ctx.bf16):
            logits, _ = model(*data.batch(rows, ctx.pad_id, ctx.device))
        if task.kind == "regression":
            predictions.extend(logits.float().squeeze(-1).cpu().tolist())
        elif task.kind == "tagging":
            tags = logits.argmax(-1).cpu()
            labels = data.label_batch(rows, task.kind, torch.device("cpu"))
            predictions.extend(tags[row][labels[row] != -100].tolist() for row in range(len(rows)))
        else:
            predictions.extend(logits.argmax(-1).cpu().tolist())
    return predictions


def evaluate(model: TaskModel, task: EncodedTask, data: EncodedExamples, batch_size: int,
             ctx: FinetuneContext) -> tuple[dict[str, float], list]:
    predictions = predict(model, task, data, batch_size, ctx)
    flat = np.concatenate([np.asarray(p) for p in predictions]) if task.kind == "tagging" else np.asarray(predictions)
    return task_metrics(task.metrics, flat_labels(data, task.kind), flat), predictions
