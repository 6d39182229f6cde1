"""`plan_experiment(cfg)`: what a configuration costs, without training it.

Parameters are counted on a model built on the `meta` device (no memory), so `base` and
`large` presets plan instantly. Training compute per input token follows Kaplan et al.
(2020): 6 x N (N = non-embedding parameters that process the token: forward 2N,
backward 4N) plus the attention term 6 x layers x context x d_model, plus the output
projection 6 x d_model x V at the share of positions that are predicted (15% for MLM:
its projection runs only there). An encoder-decoder's decoder runs on
`decoder_tokens / input_tokens` of a token; ELECTRA adds its generator. Activation
memory follows Korthikanti et al. (2022) without recomputation: per layer
B x T x d x (34 + 5 x heads x T / d) bytes in 16-bit (twice that in fp32), plus the logits.

At `plan.gpus` = N processes a step reads N times the blocks (the global batch is
batch_size x grad_accum x N), the wall time assumes N times one GPU's throughput (linear
scaling: an upper bound), and the memory per GPU counts the training state — fp32 weights,
gradients and AdamW's two moments, 16 bytes per parameter (8 under Adafactor, whose factored
second moments are a row and a column per matrix) — whole on every GPU under DDP
(plus its 4-byte gradient buckets), or sharded N ways under FSDP2 plus the units gathered
whole while they compute (the root unit — embeddings and heads — and two transformer blocks:
the one running and the one prefetched).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pretrainer.config import Config
from pretrainer.data.blocks import BlockSet
from pretrainer.hashing import write_text_atomic
from pretrainer.loggers import print_key_values
from pretrainer.models import build_body
from pretrainer.models.positions import RelativePositionBias
from pretrainer.objectives import build_objective, objective_class
from pretrainer.objectives.t5_span import corrupted_lengths, raw_length_for_input
from pretrainer.tokenization import SPECIAL_TOKENS, SpecialIds
from pretrainer.training.batches import BatchStream, MicroBatches
from pretrainer.training.device import resolve_device, use_bf16
from pretrainer.training.loop import total_steps


@dataclass
class Shape:
    """Per input token: how much of each part of the model runs."""

    predicted: float  # share of positions whose output projection runs
    decoder: float  # decoder tokens per input token (encoder-decoder only)


def objective_shape(cfg: Config) -> Shape:
    name, block = cfg.objective.name, cfg.data.block_size
    if name == "t5_span":
        raw = raw_length_for_input(block, cfg.objective.mask_prob, cfg.objective.mean_span_length)
        targets = corrupted_lengths(raw, cfg.objective.mask_prob, cfg.objective.mean_span_length)[1]
        return Shape(predicted=targets / block, decoder=targets / block)
    if name == "bart":
        return Shape(predicted=1.0, decoder=1.0)
    if name == "clm":
        return Shape(predicted=1.0, decoder=0.0)
    if name == "prefix_lm":
        return Shape(predicted=0.5, decoder=0.0)  # prefix length uniform over the block: half is predicted
    return Shape(predicted=cfg.objective.mask_prob, decoder=0.0)  # the masked-LM family


def model_cost(cfg: Config, vocab: int | None = None) -> tuple[dict[str, int], float, int]:
    """(parameter counts, training FLOPs per input token, vocabulary size) of a configuration,
    counted on a model built on the `meta` device. `vocab`: the real tokenizer's size, if known."""
    if vocab is None:
        extra = objective_class(cfg.objective).special_tokens(cfg.objective, cfg.data.block_size)
        vocab = cfg.tokenizer.vocab_size + len(extra)
    with torch.device("meta"):
        body = build_body(cfg.arch, vocab)
        objective = build_objective(cfg.objective, body, planned_special_ids(cfg, vocab), vocab)
    counts = parameter_counts(body, objective)
    return counts, flops_per_token(cfg, counts, objective_shape(cfg), vocab), vocab


def plan_experiment(cfg: Config, run_dir: Path | None = None) -> dict[str, Any]:
    """The plan of one configuration; written to `run_dir/plan.json` and printed when a run dir is given."""
    counts, per_token, vocab = model_cost(cfg)
    shape = objective_shape(cfg)
    gpus = cfg.plan.gpus
    steps = total_steps(cfg.trainer, cfg.data.block_size, per_token, gpus)
    tokens = steps * cfg.trainer.batch_size * cfg.trainer.grad_accum * gpus * cfg.data.block_size
    plan = {
        "run_name": cfg.run_name or (run_dir.name if run_dir else "plan"),
        "arch": cfg.arch.name, "objective": cfg.objective.name, "vocab_size": vocab, **counts,
        "flops_per_token": per_token, "budget_kind": cfg.trainer.budget_kind, "steps": steps, "tokens": tokens,
        "total_flops": per_token * tokens,
        "activation_bytes": activation_bytes(cfg, shape, vocab),
        "gpus": gpus, "parallel": cfg.trainer.parallel if gpus > 1 else "none", "optimizer": cfg.trainer.optimizer,
    }
    plan["state_bytes_per_gpu"] = training_state_bytes(cfg, counts, gpus)
    plan["memory_per_gpu_bytes"] = plan["state_bytes_per_gpu"] + plan["activation_bytes"]
    plan |= expected_wall_time(cfg, plan)
    if run_dir is not None:
        write_text_atomic(run_dir / "plan.json", json.dumps(plan, indent=2))
        print_plan(plan)
    return plan


def print_plan(plan: dict[str, Any]) -> None:
    print_key_values(f"Plan — {plan['run_name']}", plan_rows(plan))


def plan_rows(plan: dict[str, Any]) -> list[tuple[str, str]]:
    wall = plan["wall_time_s"]
    return [
        ("family / objective", f"{plan['arch']} / {plan['objective']}"),
        ("parameters (non-embedding)", f"{plan['params']:,} ({plan['non_embedding_params']:,})"),
        ("training FLOPs per token", f"{plan['flops_per_token']:.3e}"),
        ("steps / tokens", f"{plan['steps']:,} / {plan['tokens']:,}"),
        ("total training FLOPs", f"{plan['total_flops']:.3e}"),
        ("processes (GPUs)", f"{plan['gpus']} ({plan['parallel']})" if plan["gpus"] > 1 else "1"),
        ("activation memory per GPU", f"{plan['activation_bytes'] / 2**30:.2f} GiB"),
        (f"weights, gradients, {plan['optimizer']} per GPU", f"{plan['state_bytes_per_gpu'] / 2**30:.2f} GiB"),
        ("memory per GPU", f"{plan['memory_per_gpu_bytes'] / 2**30:.2f} GiB"),
        ("throughput", "—" if plan["tokens_per_s"] is None else
         f"{plan['tokens_per_s']:,.0f} tok/s ({plan['throughput_from']})"),
        ("expected wall time", "— (give plan.tokens_per_s, plan.flops_per_s or plan.measure_steps)"
         if wall is None else f"{wall:,.0f} s ({wall / 3600:.2f} h)"),
    ]


def planned_special_ids(cfg: Config, vocab: int) -> SpecialIds:
    """Special ids as a real tokenizer would have them: the special tokens first, a sentence end
    after them, and the objective's added tokens (T5's sentinels) at the end of the vocabulary."""
    added = len(objective_class(cfg.objective).special_tokens(cfg.objective, cfg.data.block_size))
    return SpecialIds(*range(len(SPECIAL_TOKENS)), count=len(SPECIAL_TOKENS), sentence_ends=(len(SPECIAL_TOKENS),),
                      sentinels=tuple(range(vocab - added, vocab)))


def parameter_counts(body: nn.Module, objective: nn.Module) -> dict[str, int]:
    """Total (tied matrices once) and non-embedding parameters, split by part."""
    model = nn.ModuleDict({"body": body, "objective": objective})
    # T5's relative bias is an nn.Embedding too, but a per-layer attention parameter, not an embedding.
    relative_bias = {id(m.embedding.weight) for m in model.modules() if isinstance(m, RelativePositionBias)}
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)} - relative_bias
    unique = {id(p): (name, p) for name, p in model.named_parameters()}
    total = sum(p.numel() for _, p in unique.values())
    embeddings = sum(p.numel() for key, (_, p) in unique.items() if key in embedding_ids)
    generator = sum(p.numel() for key, (name, p) in unique.items()
                    if name.startswith("objective.generator.") and key not in embedding_ids)
    decoder = sum(p.numel() for key, (name, p) in unique.items() if name.startswith("body.decoder."))
    return {"params": total, "embedding_params": embeddings, "non_embedding_params": total - embeddings,
            "body_non_embedding_params": sum(p.numel() for key, (name, p) in unique.items()
                                             if name.startswith("body.") and key not in embedding_ids),
            "decoder_params": decoder, "generator_params": generator}


def flops_per_token(cfg: Config, counts: dict[str, int], shape: Shape, vocab: int) -> float:
    arch, T = cfg.arch, cfg.data.block_size
    encoder = counts["body_non_embedding_params"] - counts["decoder_params"]
    dense = 6 * (encoder + counts["decoder_params"] * shape.decoder + counts["generator_params"])
    attention = 6 * arch.n_layer * T * arch.d_model
    if arch.name == "encoder_decoder":
        decoder_length = shape.decoder * T
        # decoder self-attention over its own length, cross-attention over the input, per decoder token
        attention += 6 * (arch.n_decoder_layer or arch.n_layer) * (decoder_length + T) * arch.d_model * shape.decoder
    projection = 6 * arch.d_model * vocab * shape.predicted
    return float(dense + attention + projection)


def activation_bytes(cfg: Config, shape: Shape, vocab: int) -> float:
    arch, T, B = cfg.arch, cfg.data.block_size, cfg.trainer.batch_size
    bytes_scale = 1.0 if use_bf16(cfg.trainer.precision, resolve_device(cfg.trainer.device)) else 2.0
    per_layer = B * T * arch.d_model * (34 + 5 * arch.n_head * T / arch.d_model) * bytes_scale
    layers = arch.n_layer + ((arch.n_decoder_layer or arch.n_layer) * shape.decoder * 1.5
                             if arch.name == "encoder_decoder" else 0)  # cross-attention: ~half a layer more
    logits = B * T * shape.predicted * vocab * 4  # fp32 logits for the loss
    return float(per_layer * layers + logits)


def training_state_bytes(cfg: Config, counts: dict[str, int], gpus: int) -> float:
    """Weights, gradients and optimizer moments held by one GPU (see the module docstring)."""
    params = counts["params"]
    state = 16.0 if cfg.trainer.optimizer == "adamw" else 8.0  # Adafactor's moments: ~0 bytes a parameter
    if gpus == 1:
        return state * params
    if cfg.trainer.parallel == "ddp":
        return (state + 4.0) * params  # + DDP's gradient buckets
    arch = cfg.arch
    blocks = arch.n_layer + ((arch.n_decoder_layer or arch.n_layer) if arch.name == "encoder_decoder" else 0)
    block_params = counts["body_non_embedding_params"] / blocks
    root_params = params - counts["body_non_embedding_params"]  # embeddings and the objective's heads
    gathered = 8.0 * (root_params + 2 * block_params)  # whole weights and gradients while they compute
    return state * params / gpus + gathered


def expected_wall_time(cfg: Config, plan: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s of all GPUs (one GPU's times `plan.gpus`) and the wall time of the budget at that rate."""
    gpus = cfg.plan.gpus
    scaled = f" x {gpus} GPUs, linear scaling assumed" if gpus > 1 else ""
    if cfg.plan.tokens_per_s:
        per_gpu, source = cfg.plan.tokens_per_s, "given"
    elif cfg.plan.flops_per_s:
        per_gpu, source = cfg.plan.flops_per_s / plan["flops_per_token"], "flops_per_s"
    elif cfg.plan.measure_steps:
        per_gpu, source = measure_throughput(cfg, plan["vocab_size"]), f"measured over {cfg.plan.measure_steps} steps"
    else:
        return {"tokens_per_s": None, "throughput_from": None, "wall_time_s": None}
    tokens_per_s = per_gpu * gpus
    return {"tokens_per_s": tokens_per_s, "throughput_from": source + scaled,
            "wall_time_s": plan["tokens"] / tokens_per_s}


def measure_throughput(cfg: Config, vocab: int) -> float:
    """Tokens/s of the training step `train` runs (`_optimizer_step`: the same collation, batch
    stream, autocast, compile and optimizer) on random text-like blocks, on trainer.device.
    The warm-up steps (one, two under compile: compilation, then the cached graph) are not timed."""
    from pretrainer.training.loop import PretrainingModel, Runtime, _optimizer_step, compiled
    from pretrainer.training.optim import build_optimizer

    trainer = cfg.trainer
    device = resolve_device(trainer.device)
    torch.manual_seed(0)
    body = build_body(cfg.arch, vocab)
    objective = build_objective(cfg.objective, body, planned_special_ids(cfg, vocab), vocab)
    model = PretrainingModel(body, objective).to(device)
    optimizer = build_optimizer(model, trainer)
    forward_model = compiled(model, trainer)
    runtime = Runtime(device, use_bf16(trainer.precision, device), Path(), {})
    raw = objective_class(cfg.objective).raw_block_size(cfg.objective, cfg.data.block_size)
    warmup = 2 if trainer.compile else 1
    steps = warmup + cfg.plan.measure_steps
    blocks = random_text_blocks(raw, trainer.batch_size * trainer.grad_accum * steps, model.objective.special, vocab)
    batches = MicroBatches(model.objective.collate, blocks, trainer.batch_size, trainer.grad_accum, trainer.seed)
    with BatchStream(batches, 0, steps, device, trainer.data_workers) as stream:
        for step in range(steps):
            if step == warmup:
                start = time.perf_counter()
            _optimizer_step(forward_model, model, stream, trainer, runtime, optimizer, step)  # ends in a host sync
    seconds = time.perf_counter() - start
    return cfg.plan.measure_steps * trainer.batch_size * trainer.grad_accum * cfg.data.block_size / seconds


def random_text_blocks(raw_block_size: int, num_blocks: int, special: SpecialIds, vocab: int) -> BlockSet:
    """Blocks of random word ids with the planner's special ids, shaped like packed text: words
    of one to three tokens, a sentence end about every 12 tokens and a document end about
    every 100, so that span, sentence and document logic does its usual work."""
    rng = np.random.default_rng(0)
    words = (special.count + 1, vocab - len(special.sentinels))  # neither special tokens nor sentinels
    stream = rng.integers(*words, size=(num_blocks, raw_block_size - 1))
    stream[rng.random(stream.shape) < 1 / 12] = special.sentence_ends[0]
    stream[rng.random(stream.shape) < 1 / 100] = special.sep
    word_starts = (rng.random(stream.shape) < 0.7).astype(np.uint8)
    return BlockSet(stream, word_starts, special.cls, special.sep)
