"""A run's training state, and how it is written to checkpoints and restored from them.

With one process, or DDP (every rank holds the same weights), rank 0 writes the ordinary
checkpoint file and the other ranks write nothing. Under FSDP2 every rank writes its shards
(`training/sharded.py`) and rank 0 the file that records them. Either kind restores on any
number of processes: a full checkpoint into a sharded model, a sharded one into a whole model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pretrainer.errors import CheckpointError
from pretrainer.training.checkpoint import checkpoint_file, restore_rng, save_checkpoint
from pretrainer.training.distributed import World
from pretrainer.training.parallel import is_sharded
from pretrainer.training.sharded import load_full_into_sharded, load_shards, save_shards


@dataclass
class TrainState:
    """Runtime state, saved in checkpoints; never part of the config."""

    step: int = 0
    tokens_seen: int = 0
    train_time_s: float = 0.0
    compile_s: float = 0.0  # torch.compile's share of the first step (trainer.compile), this leg of the run
    eval_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    skipped_steps: list[int] = field(default_factory=list)  # steps dropped as non-finite (trainer.nonfinite=skip)
    probes: list[dict[str, Any]] = field(default_factory=list)  # {"step", "tokens", "values"}: `loop.Probe`'s points
    consecutive_skips: int = 0


class Saver:
    """Writes the run's checkpoints, each step at most once (a signal or a divergence on a step
    that was just checkpointed, or the step a run resumed from, is not written again). Every
    rank calls `save` at the same steps; who writes what depends on how the model is held."""

    def __init__(self, directory: Path, extras: dict[str, Any], world: World, model: nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, keep: int):
        self.directory, self.extras, self.world = directory, extras, world  # extras: config and fingerprints
        self.model, self.optimizer, self.scheduler, self.keep = model, optimizer, scheduler, keep
        self.saved_step: int | None = None

    def save(self, state: TrainState, rng: dict[str, Any] | None = None) -> Path:
        path = checkpoint_file(self.directory, state.step)
        if state.step == self.saved_step:
            return path
        if is_sharded(self.model):
            weights = save_shards(self.model, self.optimizer, path)  # all ranks
        elif self.world.main:  # DDP: every rank holds the same weights
            weights = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.world.main:
            save_checkpoint(self.directory, state.step, {
                **weights, "scheduler": self.scheduler.state_dict(), "train_state": asdict(state), **self.extras,
            }, self.keep, rng=rng)
        self.saved_step = state.step
        return path

# Optimizer settings a checkpoint's state would override: this run's config decides them, so that
# a change accepted on resume (`resume_allow_changes=[trainer.lr]`) takes effect. Adafactor has no betas.
HYPERPARAMETERS = ("initial_lr", "betas", "weight_decay")


def _apply_configured(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
                      configured: list[dict[str, Any]]) -> None:
    """Put the configured peak lr, betas and weight decay back after loading a checkpoint's state,
    and recompute the current lr from the schedule (unchanged values give the same lr, bit for bit)."""
    for group, values in zip(optimizer.param_groups, configured, strict=True):
        group.update(values)
    scheduler.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def restore(payload: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler) -> TrainState:
    """Weights, optimizer, schedule, RNG and train state from a verified checkpoint payload
    (its config and tokenizer were checked against this run's before). `model` may be sharded
    by FSDP2 and the checkpoint sharded or full, in any combination."""
    configured = [{key: group[key] for key in HYPERPARAMETERS if key in group} for group in optimizer.param_groups]
    try:
        if "sharded" in payload:
            load_shards(model, optimizer, Path(payload["checkpoint_dir"]) / payload["sharded"])
        elif is_sharded(model):
            load_full_into_sharded(model, optimizer, payload)
        else:
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"the checkpoint's weights do not fit this model: {str(error).splitlines()[0]}") \
            from None
    scheduler.load_state_dict(payload["scheduler"])
    _apply_configured(optimizer, scheduler, configured)
    restore_rng(payload)
    saved = dict(payload["train_state"])
    saved["eval_losses"] = [tuple(item) for item in saved["eval_losses"]]
    known = TrainState.__dataclass_fields__
    return TrainState(**{key: value for key, value in saved.items() if key in known})
