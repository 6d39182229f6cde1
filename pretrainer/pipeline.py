"""`train(cfg, run_dir)`: tokenizer -> packed corpus -> pretraining -> fine-tuning -> summary.

Importable and testable without the CLI; receives typed config dataclasses only.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from pretrainer.config import Config
from pretrainer.data.blocks import PackedCorpus, load_or_pack
from pretrainer.data.sources import open_corpus
from pretrainer.finetune.recipe import FinetuneContext
from pretrainer.finetune.run import body_inits, finetune_all, finetune_extras
from pretrainer.hashing import write_text_atomic
from pretrainer.loggers import RunLogger, Stopwatch, info, print_results_table, write_summary
from pretrainer.models import build_body
from pretrainer.objectives import build_objective, objective_class
from pretrainer.plan import model_cost
from pretrainer.provenance import build_manifest, write_manifest
from pretrainer.tokenization import (
    SpecialIds,
    add_special_tokens,
    load_or_train_tokenizer,
    tokenizer_fingerprint,
    with_bpe_dropout,
)
from pretrainer.training.device import resolve_device, use_bf16
from pretrainer.training.loop import PretrainingModel, Runtime, TrainState, pretrain


def train(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """Run one experiment into `run_dir`; returns (and writes) its summary."""
    clock = Stopwatch()
    run_dir.mkdir(parents=True, exist_ok=True)
    run_name = cfg.run_name or run_dir.name
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    device = resolve_device(cfg.trainer.device)
    bf16 = use_bf16(cfg.trainer.precision, device)
    torch.manual_seed(cfg.trainer.seed)
    cache_dir = Path(cfg.cache_dir).expanduser()

    corpus = open_corpus(cfg.data)
    trained, tokenizer_cached = load_or_train_tokenizer(
        cfg.tokenizer, corpus.fingerprint, corpus.documents(), cache_dir)
    objective_type = objective_class(cfg.objective)
    # BPE-dropout segments the pretraining corpus only; evaluation and fine-tuning use plain BPE.
    segmenter = with_bpe_dropout(trained, cfg.tokenizer.bpe_dropout) if cfg.tokenizer.bpe_dropout else trained
    packed = load_or_pack(corpus.documents(), segmenter, corpus.fingerprint, tokenizer_fingerprint(segmenter),
                          objective_type.raw_block_size(cfg.objective, cfg.data.block_size),
                          cfg.data.eval_fraction, cache_dir)
    # Tokens an objective adds (T5's sentinels) go after the trained vocabulary; text encodes as before.
    tokenizer = add_special_tokens(trained, objective_type.special_tokens(cfg.objective, cfg.data.block_size))
    tokenizer_hash = tokenizer_fingerprint(tokenizer)
    write_text_atomic(run_dir / "tokenizer" / "tokenizer.json", tokenizer.to_str())
    write_manifest(run_dir, build_manifest(cfg, corpus.fingerprint, tokenizer_hash))
    info(f"{run_name}: device {device}{' (bf16)' if bf16 else ''}; tokenizer "
                  f"{'cached' if tokenizer_cached else 'trained'} ({tokenizer.get_vocab_size()} tokens); "
                  f"{packed.train.num_blocks} train / {packed.eval.num_blocks} eval blocks "
                  f"({'cached' if packed.from_cache else 'packed'})")

    with RunLogger(run_dir, cfg.logger, run_name, asdict(cfg)) as logger:
        special = SpecialIds.of(tokenizer)
        body = build_body(cfg.arch, tokenizer.get_vocab_size())
        model = PretrainingModel(body, build_objective(cfg.objective, body, special, tokenizer.get_vocab_size()))
        model.to(device)
        runtime = Runtime(device, bf16, run_dir / "checkpoints" / "last.pt",
                          {"config": asdict(cfg), "tokenizer_fingerprint": tokenizer_hash})
        # The planner's count of training FLOPs per token: a FLOPs budget becomes steps through it.
        flops_per_token = model_cost(cfg, tokenizer.get_vocab_size())[1]
        pretrain_clock = Stopwatch()
        state = pretrain(model, packed, cfg.trainer, runtime, logger, resume=cfg.resume,
                         flops_per_token=flops_per_token)
        pretrain_seconds = pretrain_clock.elapsed()
        pretrained_weights = {k: v.detach().cpu().clone() for k, v in body.state_dict().items()}
        del model, body

        context = FinetuneContext(device, bf16, special.pad, logger)
        inits = body_inits(cfg.arch, tokenizer.get_vocab_size(), pretrained_weights, cfg.finetune.scratch_baseline)
        results = finetune_all(cfg.finetune, tokenizer, inits, context, run_dir)
        summary = _summary(cfg, run_name, run_dir, tokenizer, tokenizer_hash, packed, state, pretrain_seconds, results)
        summary["pretrain"]["budget"] = budget_record(cfg, flops_per_token, state.tokens_seen)
        summary["wall_time_s"] = clock.elapsed()
        summary.update(finetune_extras(cfg.finetune, results))
        write_summary(run_dir, summary, logger)
    print_results_table(summary)
    return summary


def budget_record(cfg: Config, flops_per_token: float, tokens: int) -> dict[str, Any]:
    """The budget kind that ruled the run, its value, and the compute actually spent."""
    trainer = cfg.trainer
    value = {"flops": trainer.max_flops, "tokens": trainer.max_tokens, "steps": trainer.max_steps}[trainer.budget_kind]
    return {"kind": trainer.budget_kind, "value": value, "flops_per_token": flops_per_token,
            "flops": flops_per_token * tokens}


def _summary(cfg: Config, run_name: str, run_dir: Path, tokenizer: Tokenizer, tokenizer_hash: str,
             packed: PackedCorpus, state: TrainState, pretrain_seconds: float,
             results: dict[str, Any]) -> dict[str, Any]:
    final_eval = state.eval_losses[-1][1] if state.eval_losses else None
    return {
        "run_name": run_name,
        "run_dir": str(run_dir),
        "choices": {"tokenizer": cfg.tokenizer.name, "arch": cfg.arch.name, "objective": cfg.objective.name,
                    "data": cfg.data.source},
        "tokenizer": {"vocab_size": tokenizer.get_vocab_size(), "fingerprint": tokenizer_hash},
        "data": {"train_blocks": packed.train.num_blocks, "eval_blocks": packed.eval.num_blocks,
                 "block_size": packed.train.block_size},
        "pretrain": {"steps": state.step, "tokens": state.tokens_seen, "wall_time_s": pretrain_seconds,
                     "train_time_s": state.train_time_s,
                     "tokens_per_s": state.tokens_seen / max(state.train_time_s, 1e-9),
                     "final_eval_loss": final_eval, "eval_losses": state.eval_losses},
        "finetune": results,
    }
