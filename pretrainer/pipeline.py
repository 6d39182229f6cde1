"""`train(cfg, run_dir)`: tokenizer -> packed corpus -> pretraining -> fine-tuning -> summary.

Importable and testable without the CLI; receives typed config dataclasses only.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn

from pretrainer.config import Config
from pretrainer.data.blocks import PackedCorpus, load_or_pack
from pretrainer.data.sources import open_corpus
from pretrainer.finetune.classifier import encode_examples
from pretrainer.finetune.recipe import EncodedTask, FinetuneContext, finetune
from pretrainer.finetune.tasks import chance_accuracy, load_tasks
from pretrainer.hashing import write_text_atomic
from pretrainer.loggers import RunLogger, Stopwatch, info, print_results_table
from pretrainer.models import build_body
from pretrainer.objectives import build_objective, objective_class
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
    info(f"{run_name}: device {device}{' (bf16)' if bf16 else ''}; tokenizer "
                  f"{'cached' if tokenizer_cached else 'trained'} ({tokenizer.get_vocab_size()} tokens); "
                  f"{packed.train.num_blocks} train / {packed.eval.num_blocks} eval blocks "
                  f"({'cached' if packed.from_cache else 'packed'})")

    logger = RunLogger(run_dir, cfg.logger, run_name, asdict(cfg))
    try:
        special = SpecialIds.of(tokenizer)
        body = build_body(cfg.arch, tokenizer.get_vocab_size())
        model = PretrainingModel(body, build_objective(cfg.objective, body, special, tokenizer.get_vocab_size()))
        model.to(device)
        runtime = Runtime(device, bf16, run_dir / "checkpoints" / "last.pt",
                          {"config": asdict(cfg), "tokenizer_fingerprint": tokenizer_hash})
        pretrain_clock = Stopwatch()
        state = pretrain(model, packed, cfg.trainer, runtime, logger, resume=cfg.resume)
        pretrain_seconds = pretrain_clock.elapsed()
        pretrained_weights = {k: v.detach().cpu().clone() for k, v in body.state_dict().items()}
        del model, body

        context = FinetuneContext(device, bf16, special.pad, logger)
        results = _finetune_all(cfg, tokenizer, pretrained_weights, context)
        summary = _summary(cfg, run_name, run_dir, tokenizer, tokenizer_hash, packed, state, pretrain_seconds, results)
        summary["wall_time_s"] = clock.elapsed()
        write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
        logger.summarize(summary)
    finally:
        logger.close()
    print_results_table(summary)
    return summary


def _finetune_all(cfg: Config, tokenizer: Tokenizer, pretrained: dict[str, torch.Tensor],
                  ctx: FinetuneContext) -> dict[str, Any]:
    vocab_size = tokenizer.get_vocab_size()

    def pretrained_body() -> nn.Module:
        body = build_body(cfg.arch, vocab_size)
        body.load_state_dict(pretrained)
        return body

    def scratch_body() -> nn.Module:
        return build_body(cfg.arch, vocab_size)

    results: dict[str, Any] = {}
    for task in load_tasks(cfg.finetune):
        splits = (task.train, task.dev, task.test)
        encoded = EncodedTask(task.name, task.num_labels,
                              *(encode_examples(tokenizer, split, cfg.finetune.max_length) for split in splits))
        result: dict[str, Any] = {"num_labels": task.num_labels, "chance": chance_accuracy(task),
                                  "train_size": len(task.train)}
        inits = {"pretrained": pretrained_body} | ({"scratch": scratch_body} if cfg.finetune.scratch_baseline else {})
        for init_name, make_body in inits.items():
            clock = Stopwatch()
            result[init_name] = finetune(make_body, encoded, cfg.finetune, ctx, init_name)
            result[init_name]["wall_time_s"] = clock.elapsed()
            info(f"fine-tuned {task.name} ({init_name}): test accuracy "
                          f"{result[init_name]['test']['accuracy']:.3f} in {clock.elapsed():.1f}s")
        results[task.name] = result
    return results


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
