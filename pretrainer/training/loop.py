"""The pretraining loop, readable top to bottom: eval/checkpoint -> stop signal -> micro-steps ->
clip -> finite check -> step -> lr -> log.

Micro-batches come from a `BatchStream` (built ahead of the step, in worker processes when
`trainer.data_workers` > 0). The step keeps its values on the device: the one host sync
per optimizer step is the finite check of the loss and gradient norm (needed before the
optimizer may step; Adafactor, t5_span's optimizer, adds its own per-tensor norm reads);
losses reach the host at log steps only.

Faults it handles: SIGINT/SIGTERM (save between steps, raise `Interrupted`), a non-finite
loss or gradient norm (`trainer.nonfinite`: fail saves the last good state and raises
`DivergenceError`; skip drops the step), and resuming from a verified checkpoint payload.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pretrainer.config import TrainerConfig
from pretrainer.data.blocks import BlockSet, PackedCorpus
from pretrainer.errors import DivergenceError, Interrupted
from pretrainer.loggers import ProgressBar, RunLogger, Stopwatch, info, warn
from pretrainer.models.attention import set_attention_backend
from pretrainer.objectives import Objective, ObjectiveOutput
from pretrainer.training.batches import BatchStream, MicroBatches, dropout_seed, step_generator
from pretrainer.training.checkpoint import checkpoint_file, rng_state, torch_rng_state
from pretrainer.training.device import autocast
from pretrainer.training.distributed import World, max_across_ranks, sum_across_ranks
from pretrainer.training.optim import build_optimizer, build_schedule
from pretrainer.training.parallel import data_parallel, gradient_sync, is_sharded, local_value
from pretrainer.training.saver import Saver, TrainState, restore
from pretrainer.training.signals import StopRequest


class PretrainingModel(nn.Module):
    """The body plus the objective's heads; `forward` is the objective's loss."""

    def __init__(self, body: nn.Module, objective: Objective):
        super().__init__()
        self.body = body
        self.objective = objective

    def forward(self, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        return self.objective(self.body, batch)


@dataclass(frozen=True)
class Probe:
    """A measurement of the model every `every` pretraining steps, before the step's checkpoint
    (e.g. the zero-shot minimal pairs: when does the model learn agreement?). Rank 0 measures
    the unwrapped model in eval mode, under no_grad; its time is not training time (tokens/s
    leaves it out). The loop keeps each result in `TrainState.probes` with its step and tokens
    (so a resumed run keeps the points before it) and logs it under `phase`. The step that
    ends pretraining is the caller's to measure. Not for a model FSDP2 shards: the
    measurement would be a collective that rank 0 runs alone."""

    every: int
    phase: str  # metrics.jsonl's phase of the records
    measure: Callable[[nn.Module], dict[str, float | None]]  # PretrainingModel -> named values ("mean" is noted)


@dataclass
class Runtime:
    device: torch.device
    bf16: bool
    checkpoint_dir: Path
    checkpoint_extras: dict[str, Any]  # resolved config, tokenizer and data fingerprints
    stop: StopRequest = field(default_factory=StopRequest)  # SIGINT/SIGTERM, polled between steps
    resume_from: dict[str, Any] | None = None  # a verified checkpoint payload to continue from
    halt_at_step: int | None = None  # save and return at this step (`reproduce` replays a resumed run's legs)
    tokens_per_block: int | None = None  # model input tokens per block (T5 reads longer raw blocks); None: block size
    world: World = field(default_factory=World)  # this process's rank among the run's processes
    probe: Probe | None = None  # measured every `probe.every` steps on rank 0 (not under FSDP: scoring is whole-model)


def total_steps(cfg: TrainerConfig, block_size: int, flops_per_token: float | None = None, world_size: int = 1) -> int:
    """Optimizer steps of the budget: FLOPs (needs the planner's FLOPs per token), tokens or steps.
    A step reads `batch_size x grad_accum` blocks on each of `world_size` processes."""
    tokens_per_step = cfg.batch_size * cfg.grad_accum * world_size * block_size
    if cfg.max_flops is not None:
        if not flops_per_token:
            raise ValueError("a FLOPs budget needs the model's training FLOPs per token")
        return max(1, math.ceil(cfg.max_flops / flops_per_token / tokens_per_step))
    if cfg.max_tokens is not None:
        return math.ceil(cfg.max_tokens / tokens_per_step)
    return int(cfg.max_steps)


def _micro_batch(model: PretrainingModel, blocks: BlockSet, indices: np.ndarray, generator: torch.Generator,
                 device: torch.device) -> dict[str, torch.Tensor]:
    batch = model.objective.collate(blocks.gather(indices), generator)
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def estimate_eval_loss(model: PretrainingModel, blocks: BlockSet, cfg: TrainerConfig, runtime: Runtime) -> float | None:
    """Mean loss on fixed held-out blocks with fixed masks, so successive evals compare.

    The batches are dealt round-robin to the ranks and the sums added up, so the value does not
    depend on the world size. Every rank runs the same number of forwards (FSDP2's forward is a
    collective): a rank with one batch fewer repeats its first one with weight 0."""
    if blocks.num_blocks == 0:
        return None
    world = runtime.world
    batches = min(cfg.eval_batches, math.ceil(blocks.num_blocks / cfg.batch_size))
    sums = torch.zeros(2, dtype=torch.float64, device=runtime.device)  # (loss x predictions, predictions)
    model.eval()
    for i in range(world.rank, world.size * math.ceil(batches / world.size), world.size):
        weight = 1.0 if i < batches else 0.0
        i = i if i < batches else world.rank % batches
        indices = np.arange(i * cfg.batch_size, min((i + 1) * cfg.batch_size, blocks.num_blocks))
        batch = _micro_batch(model, blocks, indices, step_generator(cfg.seed, 1, i), runtime.device)
        with autocast(runtime.device, runtime.bf16):
            out = model(batch)
        predictions = out.num_predictions.to(torch.float64)
        sums += weight * torch.stack([out.loss.detach().to(torch.float64) * predictions, predictions])
    model.train()
    total, count = sum_across_ranks(sums).tolist()
    return total / max(count, 1)


def pretrain(model: PretrainingModel, data: PackedCorpus, cfg: TrainerConfig, runtime: Runtime,
             logger: RunLogger, flops_per_token: float | None = None) -> TrainState:
    world = runtime.world
    # Budgets count model-input tokens: t5_span reads longer raw blocks than its inputs.
    tokens_per_block = runtime.tokens_per_block or data.train.block_size
    steps = total_steps(cfg, tokens_per_block, flops_per_token, world.size)
    parallel_model = data_parallel(model, cfg.parallel, world, runtime.device)  # FSDP2 shards `model` in place
    if runtime.probe is not None and is_sharded(model):
        raise ValueError("a Probe measures the whole model on rank 0, which FSDP2 shards over the processes")
    optimizer = build_optimizer(model, cfg)
    warmup, eval_every = cfg.warmup_for(steps), cfg.eval_interval(steps)
    if world.main:
        warn_about_schedule(steps, warmup, eval_every, runtime.probe)
    scheduler = build_schedule(optimizer, cfg.schedule, warmup, steps, cfg.min_lr_ratio)
    state = TrainState()
    if runtime.resume_from is not None:
        state = restore(runtime.resume_from, model, optimizer, scheduler)
    forward_model = compiled(model, cfg, parallel_model)
    tokens_per_step = cfg.batch_size * cfg.grad_accum * world.size * tokens_per_block
    bar = ProgressBar("pretrain", steps, start=state.step)
    window, window_tokens = Stopwatch(), 0
    model.train()
    saver = Saver(runtime.checkpoint_dir, runtime.checkpoint_extras, world, model, optimizer, scheduler,
                  cfg.keep_checkpoints)
    if runtime.resume_from is not None and checkpoint_file(runtime.checkpoint_dir, state.step).is_file():
        saver.saved_step = state.step  # never rewrite the checkpoint this run starts from
    runtime.stop.graceful = True  # until the final checkpoint is written: a signal waits for the next save
    batches = MicroBatches(model.objective.collate, data.train, cfg.batch_size, cfg.grad_accum, cfg.seed,
                           world.rank, world.size)
    stream = BatchStream(batches, state.step, steps, runtime.device, cfg.data_workers)
    compile_clock = CompileClock(cfg.compile)
    stop_agreed = False  # some rank was signalled (agreed on at each step's collective): all stop together
    try:
        while state.step < steps:
            if state.step > 0 and state.step % eval_every == 0:
                eval_loss = _record_eval(model, data, cfg, runtime, logger, state)
                if eval_loss is not None:
                    bar.note(f"step {state.step}/{steps}: eval loss {eval_loss:.3f}")
            if runtime.probe is not None and state.step > 0 and state.step % runtime.probe.every == 0:
                window.start += _record_probe(model, runtime.probe, runtime.world, logger, state, bar, steps)
            if cfg.checkpoint_every and state.step > 0 and state.step % cfg.checkpoint_every == 0:
                saver.save(state)
            _stop_if_signalled(runtime, saver, state, stop_agreed)
            if state.step == runtime.halt_at_step:
                saver.save(state)
                return state

            rng_before = torch_rng_state()  # the last good state, should this step turn out non-finite
            compile_clock.start_step()
            outcome = _optimizer_step(forward_model, model, stream, cfg, runtime, optimizer, state.step)
            compile_clock.end_step(state)
            stop_agreed = outcome.stop_requested
            if outcome.finite:
                scheduler.step()
                state.consecutive_skips = 0
            else:
                _on_nonfinite(outcome, cfg, saver, state, rng_before)
            state.step += 1
            state.tokens_seen += tokens_per_step
            window_tokens += tokens_per_step

            if state.step % cfg.log_every == 0 or state.step == steps:
                seconds = window.elapsed()
                state.train_time_s += seconds
                loss, parts = _mean_over_ranks(outcome, world)
                record = {"phase": "pretrain", "step": state.step, "loss": loss,
                          "lr": scheduler.get_last_lr()[0], "grad_norm": float(outcome.grad_norm),
                          "tokens": state.tokens_seen, "tokens_per_s": window_tokens / max(seconds, 1e-9),
                          **{f"loss_{name}": value for name, value in parts.items()}}
                logger.log(record)
                bar.update(state.step, loss=record["loss"], lr=record["lr"], **{"tok/s": record["tokens_per_s"]})
                window, window_tokens = Stopwatch(), 0
        _record_eval(model, data, cfg, runtime, logger, state)
        saver.save(state)
        # one that came during the last step or the final eval (agreed on by all ranks here)
        _stop_if_signalled(runtime, saver, state, bool(max_across_ranks(_stop_flag(runtime)).item()))
    finally:
        stream.close()
        runtime.stop.graceful = False
        bar.close()
    compile_clock.report(state)
    return state


def warn_about_schedule(steps: int, warmup: int, eval_every: int, probe: Probe | None = None) -> None:
    """A shortened run whose fixed intervals no longer fit it says so, instead of training
    wholly inside warm-up or drawing a loss curve (or a probe's curve) of one point."""
    if warmup >= steps:
        warn(f"the run ends inside warm-up ({warmup} warm-up steps of {steps}): the learning rate never peaks; "
             "lower trainer.warmup_steps (or trainer.warmup_ratio when it is null)")
    evaluations = (steps - 1) // eval_every + 1  # the in-run ones, plus the final evaluation
    if evaluations < 3:
        warn(f"{evaluations} evaluation(s) in {steps} steps (trainer.eval_every={eval_every}): the eval-loss curve "
             "has fewer than 3 points; lower trainer.eval_every (or raise trainer.evals_per_run when it is null), "
             "or train longer")
    if probe is not None and probe.every >= steps:
        warn(f"{probe.phase} is measured every {probe.every} steps and the run has {steps}: no point before the "
             "end; lower the interval (zero_shot.every) for a curve")


def compiled(model: PretrainingModel, cfg: TrainerConfig, parallel_model: nn.Module | None = None) -> nn.Module:
    """The module the step calls, with the configured attention kernel: `parallel_model` (the
    DDP wrapper or FSDP2-sharded model; default `model` itself), or torch.compile of it (one
    graph: the objectives keep data-dependent shapes and host syncs out of their forward)."""
    set_attention_backend(model, cfg.attention)
    parallel_model = model if parallel_model is None else parallel_model
    if not cfg.compile:
        return parallel_model
    model.objective.static_shapes = True  # fixed prediction-slot capacities: one shape, no recompiles
    return torch.compile(parallel_model, backend=cfg.compile_backend)


class CompileClock:
    """How long torch.compile took: the first step's time beyond a steady step's (the second
    one, when the compiled graphs are cached), said in the console when it was most of the run."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.step_times: list[float] = []
        self._started = 0.0

    def start_step(self) -> None:
        if self.enabled and len(self.step_times) < 2:
            self._started = time.perf_counter()

    def end_step(self, state: TrainState) -> None:
        """Called after the step's finite check (a host sync: the step is done)."""
        if not self.enabled or len(self.step_times) >= 2:
            return
        self.step_times.append(time.perf_counter() - self._started)
        if len(self.step_times) == 2:
            state.compile_s += max(0.0, self.step_times[0] - self.step_times[1])

    def report(self, state: TrainState) -> None:
        if not self.enabled or not self.step_times:
            return
        if len(self.step_times) == 1:  # a one-step leg: all of it beyond nothing to compare with
            state.compile_s += self.step_times[0]
        share = state.compile_s / max(state.train_time_s, 1e-9)
        message = (f"torch.compile took {state.compile_s:.1f} s of {state.train_time_s:.1f} s of pretraining "
                   f"({share:.0%})")
        if share > 0.5:
            warn(f"{message}: for a run this short, trainer.compile=false is faster")
        else:
            info(message)


@dataclass
class StepOutcome:
    """One optimizer step's values, kept on the device: reading them is a host sync, done at log steps."""

    loss: torch.Tensor  # mean micro-batch loss
    parts: dict[str, torch.Tensor]  # mean of each named part of the loss (e.g. ELECTRA's generator and discriminator)
    grad_norm: torch.Tensor  # global gradient norm before clipping
    finite: bool  # loss and gradient norm are finite (on every rank): the optimizer stepped
    stop_requested: bool = False  # some rank has a SIGINT/SIGTERM pending: every rank stops after this step


def _optimizer_step(forward_model: nn.Module, model: PretrainingModel, stream: BatchStream, cfg: TrainerConfig,
                    runtime: Runtime, optimizer: torch.optim.Optimizer, step: int) -> StepOutcome:
    """Accumulate `grad_accum` micro-batches from `stream`, clip, and step unless the loss or
    gradient norm is non-finite (then the weights and optimizer moments stay as they were)."""
    if stream.position != step * cfg.grad_accum:  # the stream and the step counter must never drift apart
        raise RuntimeError(f"batch stream at micro-batch {stream.position}, step {step} needs {step * cfg.grad_accum}")
    losses, parts = [], []
    world = runtime.world
    for micro in range(cfg.grad_accum):
        batch = stream.next()
        # Dropout draws from torch's global RNG: seeded per (seed, step, global micro-batch), it
        # drops the same units whatever the world size, and a resumed run continues it exactly.
        torch.manual_seed(dropout_seed(cfg.seed, step, world.rank * cfg.grad_accum + micro))
        with gradient_sync(forward_model, enabled=micro == cfg.grad_accum - 1):
            with autocast(runtime.device, runtime.bf16):
                out = forward_model(batch)
            # The mean over this rank's micro-batches; DDP/FSDP2 average the gradients over the ranks.
            (out.loss / cfg.grad_accum).backward()
        losses.append(out.loss.detach())
        parts.append(out.parts)
    loss = torch.stack(losses).mean()
    # max_norm=inf measures without clipping (a factor of exactly 1): the finite check needs the norm.
    grad_norm = local_value(torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                           cfg.grad_clip if cfg.grad_clip > 0 else math.inf))
    # (loss not finite, norm not finite, stop requested), the max over the ranks: one collective and
    # the step's one host sync; every rank then takes the same decision.
    flags = torch.stack([~torch.isfinite(loss), ~torch.isfinite(grad_norm), _stop_flag(runtime, loss.device)])
    loss_bad, norm_bad, stop = max_across_ranks(flags.to(torch.float32)).tolist()
    finite = not (loss_bad or norm_bad)
    if finite:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    part_means = {name: torch.stack([p[name] for p in parts]).mean() for name in parts[0]}
    return StepOutcome(loss, part_means, grad_norm, finite, stop_requested=bool(stop))


def _stop_flag(runtime: Runtime, device: torch.device | None = None) -> torch.Tensor:
    return torch.tensor(runtime.stop.signum is not None, dtype=torch.float32, device=device or runtime.device)


def _mean_over_ranks(outcome: StepOutcome, world: World) -> tuple[float, dict[str, float]]:
    """The step's loss and its parts as means over every rank's micro-batches (a collective: every
    rank logs at the same steps, rank 0 writes)."""
    names = list(outcome.parts)
    values = torch.stack([outcome.loss, *(outcome.parts[name] for name in names)]).to(torch.float64)
    values = (sum_across_ranks(values) / world.size).tolist()
    return values[0], dict(zip(names, values[1:], strict=True))


def _on_nonfinite(outcome: StepOutcome, cfg: TrainerConfig, saver: Saver, state: TrainState,
                  rng_before: dict[str, Any]) -> None:  # rng_before: torch's RNGs before this step
    """The step was not applied. skip: record it and go on (the lr schedule does not advance);
    fail, or one skip more than `max_skips` in a row: save the state before this step and raise."""
    step = state.step + 1
    loss, grad_norm = float(outcome.loss), float(outcome.grad_norm)
    what = f"non-finite {'loss' if not math.isfinite(loss) else 'gradient norm'} " \
           f"(loss {loss}, gradient norm {grad_norm}) at step {step}"
    if cfg.nonfinite == "skip":
        if state.consecutive_skips < cfg.max_skips:
            state.skipped_steps.append(step)
            state.consecutive_skips += 1
            warn(f"{what}: step skipped ({state.consecutive_skips} in a row; trainer.max_skips={cfg.max_skips})")
            return
        what += f" ({state.consecutive_skips + 1} in a row, more than trainer.max_skips={cfg.max_skips})"
        remedy = "lower trainer.lr, then resume=true resume_allow_changes=[trainer.lr]"
    else:
        remedy = ("lower trainer.lr, then resume=true resume_allow_changes=[trainer.lr]; or skip such steps: "
                  "trainer.nonfinite=skip resume=true resume_allow_changes=[trainer.nonfinite]")
    path = saver.save(state, rng=rng_state() | rng_before)
    raise DivergenceError(f"pretraining diverged: {what}; saved the state before it (step {state.step}) to "
                          f"{path}; {remedy}")


def _stop_if_signalled(runtime: Runtime, saver: Saver, state: TrainState, agreed: bool = False) -> None:
    """A SIGINT/SIGTERM (or a chained signal such as SLURM's preemption notice) arrived: save,
    pass it on to a handler that was installed before ours, and stop. With several processes
    all stop at the same step (`agreed`: some rank was signalled, as the last step's collective
    found), whichever of them the signal reached."""
    if runtime.world.distributed:
        if not agreed:
            return
        signum = runtime.stop.signum or signal.SIGTERM
    else:
        signum = runtime.stop.signum
        if signum is None:
            return
    path = saver.save(state)
    if runtime.stop.signum is not None:
        runtime.stop.forward()
    raise Interrupted(signum, f"stopped by {signal.Signals(signum).name} after step {state.step}; saved {path}; "
                              "continue with resume=true (same overrides, same run dir)")


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


@torch.no_grad()
def _record_probe(model: PretrainingModel, probe: Probe, world: World, logger: RunLogger, state: TrainState,
                  bar: ProgressBar, steps: int) -> float:
    """The probe's values at this step (once per step: a run resumed here has them already).
    Returns the seconds it took."""
    if not world.main or (state.probes and state.probes[-1]["step"] == state.step):
        return 0.0
    clock = Stopwatch()
    model.eval()
    try:
        values = probe.measure(model)
    finally:
        model.train()
    state.probes.append({"step": state.step, "tokens": state.tokens_seen, "values": values})
    logger.log({"phase": probe.phase, "step": state.step, "tokens": state.tokens_seen, **values})
    if values.get("mean") is not None:
        bar.note(f"step {state.step}/{steps}: {probe.phase} mean {values['mean']:.3f}")
    return clock.elapsed()
