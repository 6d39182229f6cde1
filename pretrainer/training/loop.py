"""The pretraining loop, readable top to bottom: lr -> eval/checkpoint -> micro-steps ->
clip -> step -> log -> stop."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pretrainer.config import TrainerConfig
from pretrainer.data.blocks import BlockSet, PackedCorpus, epoch_order_indices
from pretrainer.loggers import ProgressBar, RunLogger, Stopwatch
from pretrainer.objectives import Objective, ObjectiveOutput
from pretrainer.training.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from pretrainer.training.device import autocast
from pretrainer.training.optim import build_adamw, build_schedule


class PretrainingModel(nn.Module):
    """The body plus the objective's heads; `forward` is the objective's loss."""

    def __init__(self, body: nn.Module, objective: Objective):
        super().__init__()
        self.body = body
        self.objective = objective

    def forward(self, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        return self.objective(self.body, batch)


@dataclass
class TrainState:
    """Runtime state, saved in checkpoints; never part of the config."""

    step: int = 0
    tokens_seen: int = 0
    train_time_s: float = 0.0
    eval_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)


@dataclass
class Runtime:
    device: torch.device
    bf16: bool
    checkpoint_path: Path
    checkpoint_extras: dict[str, Any]  # resolved config, tokenizer fingerprint


def total_steps(cfg: TrainerConfig, block_size: int, flops_per_token: float | None = None) -> int:
    """Optimizer steps of the budget: FLOPs (needs the planner's FLOPs per token), tokens or steps."""
    tokens_per_step = cfg.batch_size * cfg.grad_accum * block_size
    if cfg.max_flops is not None:
        if not flops_per_token:
            raise ValueError("a FLOPs budget needs the model's training FLOPs per token")
        return max(1, math.ceil(cfg.max_flops / flops_per_token / tokens_per_step))
    if cfg.max_tokens is not None:
        return math.ceil(cfg.max_tokens / tokens_per_step)
    return int(cfg.max_steps)


def step_generator(seed: int, *stream: int) -> torch.Generator:
    """An independent generator per (seed, stream...), so masks are a function of the step."""
    state = np.random.SeedSequence([seed, *stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def _micro_batch(model: PretrainingModel, blocks: BlockSet, indices: np.ndarray, generator: torch.Generator,
                 device: torch.device) -> dict[str, torch.Tensor]:
    batch = model.objective.collate(blocks.gather(indices), generator)
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def estimate_eval_loss(model: PretrainingModel, blocks: BlockSet, cfg: TrainerConfig, runtime: Runtime) -> float | None:
    """Mean loss on fixed held-out blocks with fixed masks, so successive evals compare."""
    if blocks.num_blocks == 0:
        return None
    model.eval()
    total, count = 0.0, 0
    for i in range(cfg.eval_batches):
        start = i * cfg.batch_size
        if start >= blocks.num_blocks:
            break
        indices = np.arange(start, min(start + cfg.batch_size, blocks.num_blocks))
        batch = _micro_batch(model, blocks, indices, step_generator(cfg.seed, 1, i), runtime.device)
        with autocast(runtime.device, runtime.bf16):
            out = model(batch)
        total += float(out.loss) * out.num_predictions
        count += out.num_predictions
    model.train()
    return total / max(count, 1)


def pretrain(model: PretrainingModel, data: PackedCorpus, cfg: TrainerConfig, runtime: Runtime,
             logger: RunLogger, resume: bool = False, flops_per_token: float | None = None) -> TrainState:
    steps = total_steps(cfg, data.train.block_size, flops_per_token)
    optimizer = build_adamw(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    scheduler = build_schedule(optimizer, cfg.schedule, cfg.warmup_steps, steps, cfg.min_lr_ratio)
    state = TrainState()
    if resume and runtime.checkpoint_path.is_file():
        state = _restore(runtime, model, optimizer, scheduler)
    forward_model = torch.compile(model) if cfg.compile else model
    tokens_per_step = cfg.batch_size * cfg.grad_accum * data.train.block_size
    bar = ProgressBar("pretrain", steps)
    window, window_tokens = Stopwatch(), 0
    model.train()
    while state.step < steps:
        if state.step > 0 and state.step % cfg.eval_every == 0:
            eval_loss = _record_eval(model, data, cfg, runtime, logger, state)
            if eval_loss is not None:
                bar.note(f"step {state.step}/{steps}: eval loss {eval_loss:.3f}")
        if cfg.checkpoint_every and state.step > 0 and state.step % cfg.checkpoint_every == 0:
            _save(runtime, model, optimizer, scheduler, state)

        loss, parts = _optimizer_step(forward_model, model, data.train, cfg, runtime, optimizer, state.step)
        scheduler.step()
        state.step += 1
        state.tokens_seen += tokens_per_step
        window_tokens += tokens_per_step

        if state.step % cfg.log_every == 0 or state.step == steps:
            seconds = window.elapsed()
            state.train_time_s += seconds
            record = {"phase": "pretrain", "step": state.step, "loss": loss, "lr": scheduler.get_last_lr()[0],
                      "tokens": state.tokens_seen, "tokens_per_s": window_tokens / max(seconds, 1e-9),
                      **{f"loss_{name}": value for name, value in parts.items()}}
            logger.log(record)
            bar.update(state.step, loss=loss, lr=record["lr"], **{"tok/s": record["tokens_per_s"]})
            window, window_tokens = Stopwatch(), 0
    bar.close()
    _record_eval(model, data, cfg, runtime, logger, state)
    _save(runtime, model, optimizer, scheduler, state)
    return state


def _optimizer_step(forward_model: nn.Module, model: PretrainingModel, blocks: BlockSet, cfg: TrainerConfig,
                    runtime: Runtime, optimizer: torch.optim.Optimizer, step: int) -> tuple[float, dict[str, float]]:
    """Accumulate `grad_accum` micro-batches, clip, step; returns the mean micro-batch loss
    and the mean of each named part of it (e.g. ELECTRA's generator and discriminator)."""
    losses, parts = [], []
    for micro in range(cfg.grad_accum):
        first = (step * cfg.grad_accum + micro) * cfg.batch_size
        indices = epoch_order_indices(first, cfg.batch_size, blocks.num_blocks, cfg.seed)
        batch = _micro_batch(model, blocks, indices, step_generator(cfg.seed, 0, step, micro), runtime.device)
        with autocast(runtime.device, runtime.bf16):
            out = forward_model(batch)
        (out.loss / cfg.grad_accum).backward()
        losses.append(out.loss.detach())
        parts.append(out.parts)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    part_means = {name: float(torch.stack([p[name] for p in parts]).mean()) for name in parts[0]}
    return float(torch.stack(losses).mean()), part_means


def _record_eval(model: PretrainingModel, data: PackedCorpus, cfg: TrainerConfig, runtime: Runtime,
                 logger: RunLogger, state: TrainState) -> float | None:
    """Eval loss at this step (measured once per step), appended to the state and logged."""
    if state.eval_losses and state.eval_losses[-1][0] == state.step:
        return state.eval_losses[-1][1]
    loss = estimate_eval_loss(model, data.eval, cfg, runtime)
    if loss is not None:
        state.eval_losses.append((state.step, loss))
        logger.log({"phase": "pretrain_eval", "step": state.step, "loss": loss, "tokens": state.tokens_seen})
    return loss


def _save(runtime: Runtime, model: PretrainingModel, optimizer: torch.optim.Optimizer,
          scheduler: torch.optim.lr_scheduler.LRScheduler, state: TrainState) -> None:
    save_checkpoint(runtime.checkpoint_path, {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "train_state": asdict(state), **runtime.checkpoint_extras,
    })


def _restore(runtime: Runtime, model: PretrainingModel, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler) -> TrainState:
    payload = load_checkpoint(runtime.checkpoint_path)
    expected = runtime.checkpoint_extras.get("tokenizer_fingerprint")
    if payload.get("tokenizer_fingerprint") != expected:
        found = payload.get("tokenizer_fingerprint")
        raise ValueError(f"{runtime.checkpoint_path} was trained with tokenizer {found}, this run has "
                         f"{expected}: resuming would scramble the vocabulary")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    restore_rng(payload)
    saved = payload["train_state"]
    saved["eval_losses"] = [tuple(item) for item in saved["eval_losses"]]
    return TrainState(**saved)

